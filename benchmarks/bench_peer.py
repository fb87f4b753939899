"""featviz's ascent against its peer, torch-lucent 0.1.8 (Lucid for PyTorch), on the same trained
networks, units and steps, in one process, alternating order (ABBA), same threads; each tool's time is the
fastest of its runs (`--stat min`: on a shared machine load only adds time, and so does the allocator's
warm-up in the first run after the other tool's), or their median (`--stat median`).

    pip install --no-deps torch-lucent==0.1.8 kornia decorator kornia_rs   # for this benchmark only
    python benchmarks/bench_peer.py --model results/mnist-*/model --layers conv2 fc1 classes --steps 512
    python benchmarks/bench_peer.py --model results/tv-resnet18-cifar10-*/model --layers layer2.0.conv2 classes --steps 256
    python benchmarks/bench_peer.py ... --modes fp32 bf16-cl --threads 1 --clock cpu   # featviz's modes, CPU time
    python benchmarks/bench_peer.py ... --steps 512 --featviz-steps 64 128 256 --recipe lucid-scaled   # time to Lucent's objective

featviz runs its `lucid` recipe (FFT parameterization, decorrelated colour, Lucid's standard
transforms, Adam 0.05), stopping the forward pass at the target layer; Lucent runs `render_vis`
with its own standard transforms plus a centre crop back to the input size (its transforms pad and
scale the image; featviz's crop back too), its FFT image parameterization (decorrelated for RGB)
and the same Adam learning rate, the network wrapped with the model's input normalization. Both
images are then scored the same way: the clean objective (the unit's mean activation for a conv
channel, its value for a dense unit or class logit) on the final image, without transforms.

Lucent's `render_vis` leaves a forward hook on every module after it returns (it never closes its
`ModuleHook`s); the benchmark removes them after each Lucent run, else every later run of either tool
on the same network would pay for them (a Python call per module and forward pass, and the last
activations kept alive).

Two shims, both for Lucent only and stated here: torch-lucent imports IPython for notebook display
(a stub module stands in: nothing is displayed), and calls kornia's pre-0.5 top-level names
`kornia.get_rotation_matrix2d` / `kornia.warp_affine` (aliased to their kornia.geometry homes).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def import_lucent():
    if "IPython" not in sys.modules:
        ipy = types.ModuleType("IPython")
        ipy.display = types.ModuleType("IPython.display")
        sys.modules["IPython"], sys.modules["IPython.display"] = ipy, ipy.display
    import kornia
    import kornia.geometry.transform as kt

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kt, name))
    from lucent.optvis import objectives, param, render, transform

    return objectives, param, render, transform


class Normalized(nn.Module):
    """The network with its input normalization in front, as Lucent needs it (preprocess=False)."""

    def __init__(self, net, normalize):
        super().__init__()
        self.net = net
        self._normalize = normalize

    def forward(self, x):
        return self.net(self._normalize(x))


def clean_objective(model, layer, kind, units, images: np.ndarray) -> np.ndarray:
    from featviz.ascent import get_recipe, objectives as O
    from featviz.ascent.hooks import ActivationReader, OUTPUT

    obj = O.for_kind(kind, None if kind == "class" else layer, units, get_recipe("lucid"))
    need = set(obj.layers) | ({OUTPUT} if kind == "class" else set())
    with torch.no_grad(), ActivationReader(model.net, need) as reader:
        x = torch.as_tensor(images, dtype=torch.float32)
        return obj(reader(model.normalize(x)), torch.arange(len(units))).double().numpy()


# featviz's execution modes (`ascent.precision`, `ascent.channels_last`): name -> (precision, channels_last)
MODES = {"fp32": ("fp32", False), "fp32-cl": ("fp32", True), "bf16-cl": ("bf16", True)}


STAT = {"min": min, "median": np.median}


def clock(kind: str) -> float:
    """Wall time, or this process's CPU time (all its threads: less sensitive to other load)."""
    return time.perf_counter() if kind == "wall" else time.process_time()


def run_featviz(model, layer, kind, units, steps, mode="fp32", clock_kind="wall", recipe="lucid"):
    from featviz.ascent import visualize

    precision, channels_last = MODES[mode]
    ov = {"steps": steps, "class_steps": steps, "robustness_samples": 0, "snapshots": 0, "dead_retries": 0}
    t = clock(clock_kind)
    r = visualize(model.net, None if kind == "class" else layer, units, kind, tuple(model.input_shape),
                  normalize=model.normalize, recipe=recipe, overrides=ov, precision=precision,
                  channels_last=channels_last)
    wall = clock(clock_kind) - t
    model.net.to(memory_format=torch.contiguous_format)  # visualize converted it in place: Lucent gets it back
    return wall, r.images


def run_lucent(lucent, model, layer, kind, units, steps, wrapped, names, clock_kind="wall"):
    objectives, param, render, transform = lucent
    c, h, w = model.input_shape
    name = names[layer]
    objective = sum(objectives.channel(name, u, batch=i) for i, u in enumerate(units))

    def param_f():
        return param.image(w, h=h, batch=len(units), channels=None if c == 3 else c, decorrelate=True, fft=True)

    def crop(x):  # Lucent's transforms pad and rescale: crop back to the network's input size
        y0, x0 = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return x[..., max(0, y0):max(0, y0) + h, max(0, x0):max(0, x0) + w]

    tf = list(transform.standard_transforms) + [crop]
    opt = lambda params: torch.optim.Adam(params, lr=5e-2)  # noqa: E731
    before = {m: set(m._forward_hooks) for m in wrapped.modules()}
    t = clock(clock_kind)
    images = render.render_vis(wrapped, objective, param_f, optimizer=opt, transforms=tf, thresholds=(steps,),
                               preprocess=False, progress=False, show_image=False, fixed_image_size=(h, w))
    wall = clock(clock_kind) - t
    remove_new_hooks(wrapped, before)
    return wall, np.transpose(images[-1], (0, 3, 1, 2))


def remove_new_hooks(net: nn.Module, before: dict) -> None:
    """Lucent's render_vis hooks every module and never removes its hooks: take them off after its run, so
    that neither featviz's runs nor the next Lucent run pay for (and keep activations alive through) them."""
    for m in net.modules():
        for key in [k for k in m._forward_hooks if k not in before.get(m, ())]:
            del m._forward_hooks[key]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a featviz model folder (results/<run>/model)")
    p.add_argument("--layers", nargs="+", required=True, help="layers to compare (`classes` for the class logits)")
    p.add_argument("--units", type=int, default=32, help="units per layer (the first N)")
    p.add_argument("--steps", type=int, default=512)
    p.add_argument("--featviz-steps", type=int, nargs="+", default=None,
                   help="featviz's steps, when fewer than Lucent's --steps: with several, featviz runs each and the "
                        "table adds its time to Lucent's objective (the fastest run that reaches it); default: the same")
    p.add_argument("--recipe", default="lucid",
                   help="featviz's recipe (lucid: the same method as Lucent's; lucid-scaled: featviz's default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="ABBA rounds (each runs both twice)")
    p.add_argument("--modes", nargs="+", default=["fp32"], choices=sorted(MODES),
                   help="featviz execution modes to run (each against the same Lucent runs)")
    p.add_argument("--stat", choices=sorted(STAT), default="min",
                   help="each tool's time: the fastest of its runs (default: load and the allocator's warm-up "
                        "after the other tool's run only ever add time) or their median")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or the process's CPU time (use with --threads 1 on a loaded machine)")
    a = p.parse_args()
    for flag, v in (("--steps", a.steps), ("--featviz-steps", min(a.featviz_steps or [1])), ("--units", a.units),
                    ("--threads", a.threads), ("--rounds", a.rounds)):
        if v is not None and v < 1:
            p.error(f"{flag} must be at least 1, not {v}")
    torch.set_num_threads(a.threads)
    from featviz.errors import FeatvizError
    from featviz.model import load_model
    from featviz.units import enumerate_units

    lucent = import_lucent()
    try:
        model = load_model(Path(a.model))
    except FeatvizError as exc:
        sys.exit(f"bench_peer: {exc}")
    model.net.eval()
    info = enumerate_units(model.net, tuple(model.input_shape), model.classes)
    layers = {layer["name"]: layer for layer in info["layers"]}
    wrapped = Normalized(model.net, model.normalize).eval()
    names = {n: "net_" + n.replace(".", "_") for n in layers}
    # the class logits: the network's output (the whole wrapped network's hook; SqueezeNet has no Linear)
    names["classes"] = "net"
    load = os.getloadavg()
    fsteps = a.featviz_steps or [a.steps]
    steps = f"{a.steps} steps" if fsteps == [a.steps] else f"featviz {'/'.join(map(str, fsteps))} steps, Lucent {a.steps}"
    print(f"model {a.model}: input {tuple(model.input_shape)}; {steps}; featviz recipe {a.recipe}; "
          f"{a.threads} threads; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"featviz modes {', '.join(a.modes)}; {a.clock} clock; {a.stat} of {2 * a.rounds} runs per tool")
    print(f"{'layer':<18}{'mode':>9}{'steps':>6}{'units':>6}{'featviz s':>11}{'lucent s':>10}{'speed-up':>10}"
          f"{'featviz obj':>13}{'lucent obj':>12}")
    runs = [(mode, n) for mode in a.modes for n in fsteps]
    totals = {m: 0.0 for m in a.modes}
    reached = {m: 0.0 for m in a.modes}  # time to Lucent's objective, summed over layers (None: not reached)
    total_l = 0.0
    for name in a.layers:
        if name not in layers:
            sys.exit(f"no layer {name!r} (known: {', '.join(layers)})")
        layer = layers[name]
        kind = layer["kind"]
        units = list(range(min(a.units, layer["units"])))
        walls = {who: [] for who in ["lucent", *runs]}
        imgs = {}
        for _ in range(a.rounds):  # ABBA: featviz runs, Lucent twice, featviz runs reversed
            for who in [*runs, "lucent", "lucent", *reversed(runs)]:
                if who == "lucent":
                    wall, im = run_lucent(lucent, model, name, kind, units, a.steps, wrapped, names, a.clock)
                else:
                    wall, im = run_featviz(model, name, kind, units, who[1], who[0], a.clock, a.recipe)
                walls[who].append(wall)
                imgs[who] = im
        lu = float(STAT[a.stat](walls["lucent"]))
        ol = clean_objective(model, name, kind, units, imgs["lucent"]).mean()
        total_l += lu
        for mode in a.modes:
            best = None
            for n in fsteps:
                f = float(STAT[a.stat](walls[(mode, n)]))
                of = clean_objective(model, name, kind, units, imgs[(mode, n)]).mean()
                if n == max(fsteps):
                    totals[mode] += f
                if of >= ol and (best is None or f < best):
                    best = f
                print(f"{name:<18}{mode:>9}{n:>6}{len(units):>6}{f:>11.2f}{lu:>10.2f}{lu / f:>9.2f}x"
                      f"{of:>13.3f}{ol:>12.3f}")
            if len(fsteps) > 1:
                to = f"{best:.2f} s, {lu / best:.2f}x faster" if best else "not reached"
                print(f"{name:<18}{mode:>9}  time to Lucent's objective: {to}")
            reached[mode] = None if best is None or reached[mode] is None else reached[mode] + best
    for mode in a.modes:
        print(f"{'all':<18}{mode:>9}{max(fsteps):>6}{'':>6}{totals[mode]:>11.2f}{total_l:>10.2f}"
              f"{total_l / totals[mode]:>9.2f}x")
        if len(fsteps) > 1:
            to = f"{reached[mode]:.2f} s vs {total_l:.2f} s, {total_l / reached[mode]:.2f}x faster" \
                if reached[mode] else "not reached on every layer"
            print(f"{'all':<18}{mode:>9}  time to Lucent's objective: {to}")

if __name__ == "__main__":
    main()
