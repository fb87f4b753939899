"""Projection from measurement (issue 27 item 6): how long a full default report of a 224 px ImageNet
network takes on this machine, from a measured per-unit-step cost of the ascent at each of its
default target layers and a measured inference pass.

    python benchmarks/project_report.py --arch mobilenet_v2 resnet50 --threads 2
    python benchmarks/project_report.py --arch resnet50 --device cuda   # on a GPU machine

The networks are torchvision's architectures with random weights: the time of a step does not depend
on the weights (the pictures do). For each default target layer (as `featviz units` lists them for
`model: {torchvision: <arch>}`) and the classes, the ascent of `--batch` units runs `--short` and
`--long` steps of the default recipe (`auto`: each kind's recipe and settings at the input's size;
the fastest of `--repeats` runs each) in featviz's default execution mode; the difference over the
extra steps is the cost of one step of that batch, its intercept a job's fixed cost. The projection:

    ascent  = sum over layers of  ceil(units / batch) * (fixed + steps * step(batch))
    probe   = test images / measured forward throughput (one pass; evaluate reuses it)

with the recipe's steps (class_steps for the classes; maco's steps each pass `crops` crops) and every unit of every default layer, as the
default config visualizes. Circuits, trust, spectrum and the report are left out (minutes against
the ascent's hours; see docs/scale-out.md). The batch here is the default on a GPU and a lower bound
of it on CPU: featviz sizes batches to memory (2 GiB on CPU), and on CPU a step's cost grows about
linearly with the batch, so the per-unit cost carries over.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def cpu_flags() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "lscpu unavailable"
    has = [f for f in ("amx_bf16", "avx512_bf16", "avx512f") if f in flags]
    return ", ".join(has) or "no avx512"


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def ascent_cost(net, layer, kind, batch, steps, shape, normalize, recipe, precision, device, settings=None) -> float:
    from featviz.ascent import visualize

    ov = {**(settings or {}), "steps": steps, "class_steps": steps, "robustness_samples": 0, "snapshots": 0,
          "dead_retries": 0}
    units = list(range(batch))
    return timed(lambda: visualize(net, None if kind == "class" else layer, units, kind, shape, normalize=normalize,
                                   recipe=recipe, overrides=ov, device=str(device), precision=precision,
                                   channels_last=True), device)


def forward_rate(net, shape, device, precision, batch=32, reps=3) -> float:
    """Images per second of plain inference (channels_last, bf16 autocast where `precision` is bf16)."""
    x = torch.rand(batch, *shape, device=device).to(memory_format=torch.channels_last)
    net = net.to(memory_format=torch.channels_last)

    def run():
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            net(x)

    run()
    return batch * reps / sum(timed(run, device) for _ in range(reps))


def fmt(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def project(arch: str, a, device) -> None:
    from featviz.ascent import get_recipe
    from featviz.ascent.recipes import AUTO, auto_recipe
    from featviz.device import resolve_precision
    from featviz.model.architecture import build_named
    from featviz.model.torchvision_archs import imagenet_categories
    from featviz.units import enumerate_units

    shape = (3, a.size, a.size)
    classes = imagenet_categories()
    net = build_named({"format": "torchvision", "torchvision": arch}, len(classes)).eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    info = enumerate_units(net, shape, classes, family="torchvision")
    precision = resolve_precision(a.precision, device)
    total_units = sum(layer["units"] for layer in info["layers"])
    print(f"\n{arch}: {len(info['layers'])} layers (default targets + classes), {total_units} units, "
          f"input {shape}, recipe {a.recipe}, {precision}, channels_last, batch {a.batch}")
    print(f"{'layer':<22}{'units':>7}{'recipe':>14}{'steps':>6}{'step s':>9}{'unit-step ms':>14}{'fixed s':>9}"
          f"{'projected':>11}")
    ascent = 0.0
    for layer in info["layers"]:
        kind, name = layer["kind"], layer["name"]
        b = min(a.batch, layer["units"])
        recipe, settings = auto_recipe(kind, shape[1:]) if a.recipe == AUTO else (a.recipe, {})
        rec = get_recipe(recipe, settings)
        norm = lambda v: (v - mean) / std  # noqa: E731
        ascent_cost(net, name, kind, b, 1, shape, norm, recipe, precision, device, settings)  # warm-up
        short, long = (min(ascent_cost(net, name, kind, b, n, shape, norm, recipe, precision, device, settings)
                           for _ in range(a.repeats)) for n in (a.short, a.long))
        step = max(1e-9, (long - short) / (a.long - a.short))
        fixed = max(0.0, short - a.short * step)
        steps = rec["class_steps"] if kind == "class" else rec["steps"]
        t = math.ceil(layer["units"] / b) * (fixed + steps * step)
        ascent += t
        print(f"{name:<22}{layer['units']:>7}{recipe:>14}{steps:>6}{step:>9.3f}{1000 * step / b:>14.1f}{fixed:>9.2f}"
              f"{fmt(t):>11}")
    rate = forward_rate(net, shape, device, precision)
    probe = a.test_images / rate
    print(f"ascent, every unit of every default layer: {fmt(ascent)}; probe pass over {a.test_images} test images "
          f"at {rate:.1f} images/s: {fmt(probe)}; total {fmt(ascent + probe)} "
          f"(one worker with {a.threads} threads on {device})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=["mobilenet_v2", "resnet50"], help="torchvision architectures")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8, help="units per measured batch")
    p.add_argument("--short", type=int, default=2, help="steps of the shorter measuring run")
    p.add_argument("--long", type=int, default=6, help="steps of the longer measuring run")
    p.add_argument("--repeats", type=int, default=2, help="runs of each length; the fastest counts (load only adds)")
    p.add_argument("--recipe", default="auto", help="the recipe projected (default: auto, the config's default: "
                                                   "each kind's recipe and settings at the input's size)")
    p.add_argument("--precision", default="auto", help="auto (bf16 where native, as ascent.precision), fp32, bf16")
    p.add_argument("--test-images", type=int, default=50000, help="test images of the probe pass (ImageNet val: 50,000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if not 1 <= a.short < a.long:
        p.error("--short must be at least 1 and below --long")
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    load = os.getloadavg()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({cpu_flags()})"
    print(f"project_report: {name}, {a.threads} threads, torch {torch.__version__}, "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for arch in a.arch:
        project(arch, a, device)


if __name__ == "__main__":
    main()
