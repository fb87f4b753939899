"""Scale rehearsal: the real workflow (Snakemake, the real rules) on random-weight torchvision
networks imported from state_dict files, on a synthetic ImageNet-like image folder, with every unit
and every class selected and the recipe's steps cut down, so that a ResNet-50-sized report
(26,560 conv channels + 1,000 classes) runs on a small machine. Prints, per stage: jobs, wall
(sum over jobs), peak RSS, bytes written; plus DAG build time, report size, archive size and time,
pages and pictures in the report, and the Chromium load time of the run page and of the heaviest
layer page.

    python benchmarks/bench_scale.py --arch resnet18 resnet50 --size 64 --steps 1 --workdir /tmp/scale

`--targets conv` (default) selects every Conv2d channel (the issue's 26,560 for resnet50),
`--targets default` featviz's default torchvision targets (block outputs, each block's final conv,
the stem). Results stay in --workdir (reports/<run>/, results/<run>/, the logs and Snakemake's
per-job benchmark TSVs under results/<run>/benchmarks/).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.synthetic_imagenet import make_folder, random_weights  # noqa: E402

STAGES = ("import_model", "evaluate", "units", "probe", "ascent", "report", "archive")


def write_config(workdir: Path, folder: Path, archs: list[str], size: int, steps: int, chunk: int,
                 targets: str) -> Path:
    runs = []
    for arch in archs:
        runs.append({
            "name": arch,
            "dataset": "imagefolder",
            "data": {"path": str(folder), "image_size": [size, size], "resize": size * 8 // 7},
            "model": {"torchvision": arch, "import": {"path": str(folder / f"{arch}-random.pth")}},
            "ascent": {
                "chunk_size": chunk,
                "targets": [{"type": "conv"}] if targets == "conv" else None,
                "overrides": {kind: {"steps": steps, "class_steps": steps, "snapshots": 2, "dead_retries": 0,
                                     "robustness_samples": 1} for kind in ("conv", "dense", "class")},
                "transfer": None,
            },
        })
    cfg = {"data_root": str(workdir), "device": "auto", "seed": 0, "runs": runs}
    path = workdir / "scale.yaml"
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    return path


def snakemake(workdir: Path, config: Path, *args: str, cores: int = 2) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # rerun on changed inputs only: a rehearsal resumed after a code change keeps the jobs it finished
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", str(cores),
           "--configfile", str(config), "--directory", str(workdir), "--rerun-triggers", "mtime",
           "--rerun-incomplete", *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - t, proc


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def stage_table(run_dir: Path) -> dict[str, dict]:
    """Per stage, from Snakemake's benchmark TSVs: jobs, summed wall s, peak RSS MB, MB written."""
    out = {}
    for stage in STAGES:
        files = ([run_dir / "benchmarks" / f"{stage}.tsv"] if stage != "ascent"
                 else sorted((run_dir / "benchmarks" / "ascent").rglob("*.tsv")))
        rows = []
        for f in files:
            if f.exists():
                with open(f) as fh:
                    rows += list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue

        def num(r, k):
            try:
                return float(r.get(k) or 0)
            except ValueError:
                return 0.0

        out[stage] = {"jobs": len(rows), "wall_s": sum(num(r, "s") for r in rows),
                      "max_wall_s": max(num(r, "s") for r in rows),
                      "peak_rss_mb": max(num(r, "max_rss") for r in rows),
                      "written_mb": sum(num(r, "io_out") for r in rows)}
    return out


def load_times(report: Path) -> dict:
    """Chromium load time (navigationStart -> loadEventEnd) of the run page and the heaviest layer page."""
    try:
        from tests.browser import Browser, browser_unavailable_reason
    except ImportError as exc:
        return {"skipped": str(exc)}
    why = browser_unavailable_reason()
    if why:
        return {"skipped": why}
    layers = sorted(report.glob("layer-*.html"), key=lambda p: p.stat().st_size)
    pages = {"run page": report / "index.html"}
    if layers:
        pages[f"heaviest layer page ({layers[-1].name}, {layers[-1].stat().st_size // 1024} KB)"] = layers[-1]
    out = {}
    with Browser() as b:
        for what, page in pages.items():
            b.driver.get(page.resolve().as_uri())
            time.sleep(0.5)
            ms = b.driver.execute_script(
                "const t = performance.timing; return t.loadEventEnd - t.navigationStart;")
            errors = [e for e in b.drain_log() if e.get("level") == "SEVERE"]
            out[what] = {"load_ms": ms, "console_errors": len(errors)}
    return out


def unit_step_flops(arch: str, size: int, targets: str) -> list[tuple[str, int, float]]:
    """(layer, units, FLOPs of one unit-step: the forward up to the layer plus the gradient with
    respect to the input, as the ascent computes it) for every selected layer at `size` px."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    from featviz.ascent.hooks import ActivationReader
    from featviz.units import enumerate_units

    net = torchvision.models.get_model(arch, weights=None).eval().requires_grad_(False)
    units = enumerate_units(net, (3, size, size), [str(i) for i in range(1000)],
                            [{"type": "conv"}] if targets == "conv" else None, family="torchvision")
    rows = []
    for layer in units["layers"]:
        name = None if layer["kind"] == "class" else layer["name"]
        x = torch.rand(1, 3, size, size, requires_grad=True)
        with FlopCounterMode(display=False) as fc:
            with ActivationReader(net, [name]) as reader:
                a = reader(x)[name]
            a.flatten(1)[:, 0].sum().backward()
        rows.append((layer["name"], layer["units"], float(fc.get_total_flops())))
    return rows


MODES = (("fp32", False), ("fp32", True), ("bf16", True))


def measured_rates(arch: str, size: int, layer: str, device: str = "cpu", units: int = 4, steps: int = 3,
                   rounds: int = 2) -> list[dict]:
    """Unit-steps/s and achieved GFLOP/s of featviz's lucid ascent for a few units of one layer, in
    each execution mode (precision x memory format), alternated over `rounds` in one process."""
    import torch
    import torchvision

    from featviz.ascent import visualize

    flops = dict((n, f) for n, _, f in unit_step_flops(arch, size, "default"))
    ov = {"steps": steps, "snapshots": 0, "robustness_samples": 0, "dead_retries": 0}
    nets = {}
    for precision, cl in MODES:
        torch.manual_seed(0)
        nets[(precision, cl)] = torchvision.models.get_model(arch, weights=None).eval().to(device)
        visualize(nets[(precision, cl)], layer, list(range(units)), "conv", (3, size, size), recipe="lucid",
                  overrides={**ov, "steps": 1}, device=device, precision=precision, channels_last=cl)  # warm-up
    walls = {m: [] for m in MODES}
    for _ in range(rounds):
        for m in MODES:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            visualize(nets[m], layer, list(range(units)), "conv", (3, size, size), recipe="lucid", overrides=ov,
                      device=device, precision=m[0], channels_last=m[1])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            walls[m].append(time.perf_counter() - t)
    out = []
    for m in MODES:
        wall = min(walls[m])
        out.append({"precision": m[0], "channels_last": m[1], "unit_steps_per_s": units * steps / wall,
                    "gflops": flops[layer] * units * steps / wall / 1e9})
    return out


def project(arch: str, size: int, steps: int, targets: str, job_overhead_s: float, chunk: int,
            device: str = "cpu") -> None:
    """The wall time of the full report at `steps` steps, from FLOP counts and throughputs."""
    rows = unit_step_flops(arch, size, targets)
    n = sum(u for _, u, _ in rows)
    total = sum(u * f for _, u, f in rows) * steps
    jobs = sum(-(-u // chunk) for _, u, _ in rows)
    print(f"\n== projection: {arch} at {size} px, {len(rows)} layers, {n} units, {steps} steps, "
          f"{jobs} ascent jobs of <= {chunk} units")
    print(f"FLOPs: {total / 1e15:.1f} PFLOP in all, {total / n / steps / 1e9:.2f} GFLOP per unit-step on average")
    import torch

    layer = "layer3.1" if "resnet" in arch else rows[len(rows) // 2][0]
    where = f"{torch.cuda.get_device_name()}" if device.startswith("cuda") else f"this CPU ({torch.get_num_threads()} threads)"
    rates = measured_rates(arch, size, layer, device)
    print(f"{where}, measured on {layer} ({size} px, lucid recipe, 4 units x 3 steps, best of 2 rounds):")
    for r in rates:
        print(f"  {r['precision']}{' + channels_last' if r['channels_last'] else '':<16} "
              f"{r['unit_steps_per_s']:8.2f} unit-steps/s  {r['gflops']:9.1f} GFLOP/s achieved")
    best = max(rates, key=lambda r: r["gflops"])
    fp32 = rates[0]
    print(f"  fastest: {best['precision']}{' + channels_last' if best['channels_last'] else ''} "
          f"({best['gflops'] / fp32['gflops']:.2f}x fp32)")
    gflops = best["gflops"]
    cases = [(f"{where}, 1 process, measured", gflops * 1e9, 1)]
    if device.startswith("cuda"):
        cases.append(("8 such GPUs via Slurm", gflops * 1e9, 8))
    for eff in (0.10, 0.30):
        cases.append((f"1 H200 at {eff:.0%} of 989 TFLOP/s bf16 (assumed, not measured)", 989e12 * eff, 1))
        cases.append((f"8 H200 via Slurm at {eff:.0%} (assumed)", 989e12 * eff, 8))
    for what, rate_flops, gpus in cases:
        compute = total / rate_flops / gpus
        overhead = jobs * job_overhead_s / gpus
        print(f"  {what:<62} compute {compute / 3600:>9.2f} h + job start-up {overhead / 3600:.2f} h "
              f"= {(compute + overhead) / 3600:.2f} h")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=64, help="image size the networks see (224 for the real thing)")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=1, help="test (and train) images per class")
    p.add_argument("--steps", type=int, default=1, help="ascent steps per unit (512 in a real report)")
    p.add_argument("--chunk-size", type=int, default=256, help="units per ascent job")
    p.add_argument("--targets", choices=("conv", "default"), default="conv")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", default="/tmp/featviz-scale")
    p.add_argument("--project", metavar="ARCH", help="only print the projection of the full report of ARCH at "
                   "--project-size px and --project-steps steps (no workflow run)")
    p.add_argument("--project-size", type=int, default=224)
    p.add_argument("--project-steps", type=int, default=512)
    p.add_argument("--device", default="cpu", help="device of the --project measurement (cuda on a GPU machine)")
    p.add_argument("--job-overhead", type=float, default=5.0, help="seconds of start-up per ascent job (from a rehearsal)")
    a = p.parse_args()
    if a.project:
        project(a.project, a.project_size, a.project_steps, a.targets, a.job_overhead, a.chunk_size, a.device)
        return
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = workdir / "imagenet-synth"
    t = time.perf_counter()
    if not (folder / "train").is_dir():
        make_folder(folder, a.classes, a.per_class, a.per_class, a.size)
    for arch in a.arch:
        if not (folder / f"{arch}-random.pth").exists():
            random_weights(arch, folder / f"{arch}-random.pth", a.classes)
    print(f"synthetic folder and weights: {time.perf_counter() - t:.1f} s ({a.classes} classes x {a.per_class} "
          f"train + {a.per_class} test images, {a.size} px)")
    config = write_config(workdir, folder, a.arch, a.size, a.steps, a.chunk_size, a.targets)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    dag_s, proc = snakemake(workdir, config, "-n", "--quiet", cores=a.cores)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    print(f"DAG build (snakemake -n, before units are known): {dag_s:.1f} s")
    wall, proc = snakemake(workdir, config, "--keep-going", cores=a.cores)
    if proc.returncode:
        print(proc.stderr[-5000:])
        sys.exit("the workflow failed")
    print(f"whole workflow: {wall:.1f} s wall on {a.cores} cores")
    dag2, _ = snakemake(workdir, config, "-n", "--quiet", cores=a.cores)
    print(f"DAG build with every ascent job known (snakemake -n, nothing to do): {dag2:.1f} s")

    for run_dir in sorted((workdir / "results").glob("*-*")):
        if run_dir.name == "data" or not (run_dir / "units.json").exists():
            continue
        units = json.loads((run_dir / "units.json").read_text())
        n_units = sum(layer["units"] for layer in units["layers"])
        print(f"\n== {run_dir.name}: {len(units['layers'])} layers, {n_units} units "
              f"({n_units - len(units['classes'])} + {len(units['classes'])} classes)")
        print(f"{'stage':<13}{'jobs':>6}{'wall s':>10}{'max job s':>11}{'peak RSS MB':>13}{'written MB':>12}")
        for stage, r in stage_table(run_dir).items():
            print(f"{stage:<13}{r['jobs']:>6}{r['wall_s']:>10.1f}{r['max_wall_s']:>11.1f}{r['peak_rss_mb']:>13.0f}"
                  f"{r['written_mb']:>12.1f}")
        report = workdir / "reports" / run_dir.name
        archive = workdir / "reports" / f"{run_dir.name}.tar.gz"
        pages = sum(1 for _ in report.rglob("*.html"))
        pictures = sum(1 for f in report.rglob("*") if f.suffix in (".png", ".jpg", ".jpeg", ".webp", ".svg"))
        size = folder_bytes(report)
        print(f"results folder: {folder_bytes(run_dir) / 1e6:.1f} MB; report: {size / 1e6:.1f} MB, {pages} pages, "
              f"{pictures} pictures, {size / max(1, n_units) / 1e3:.1f} KB per unit; archive: "
              f"{archive.stat().st_size / 1e6 if archive.exists() else 0:.1f} MB")
        for what, r in load_times(report).items():
            print(f"chromium {what}: {r}")


if __name__ == "__main__":
    main()
