"""How long Snakemake takes to build a large featviz DAG (issue: scale-out, item 5).

Builds a config with several datasets and a network with 512-channel layers, lays out every
upstream file (prepared data, checkpoints, units.json: the real unit lists of the real networks,
so that the checkpoint-dependent part of the DAG expands fully), then times `snakemake --dry-run`.
Nothing is trained; no data is read.

    python benchmarks/bench_dag.py [--chunk-size 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VGG512 = [{"type": "conv", "out": c, "kernel": 3, "padding": "same"} for c in (64, 128, 256, 512, 512)]
VGG512 = [x for c in VGG512 for x in (c, {"type": "relu"}, {"type": "maxpool", "kernel": 2})][:-1]
VGG512 += [{"type": "flatten"}, {"type": "fc", "out": 512}, {"type": "relu"}, {"type": "fc"}]


def config(chunk_size: int) -> dict:
    ascent = {"chunk_size": chunk_size}
    return {
        "data_root": ".",
        "device": "cpu",
        "runs": [
            {"name": "mnist", "dataset": "mnist", "model": {"preset": "hvass-mnist"}, "ascent": ascent},
            {"name": "fashion", "dataset": "fashion-mnist", "model": {"preset": "allibhai-mnist"}, "ascent": ascent},
            {"name": "svhn", "dataset": "svhn", "model": {"preset": "uygur-svhn"}, "ascent": ascent},
            {"name": "cifar10", "dataset": "cifar10", "model": {"preset": "keras-cifar10"}, "ascent": ascent},
            {"name": "cifar10-vgg512", "dataset": "cifar10", "model": {"layers": VGG512}, "ascent": ascent},
        ],
    }


def lay_out(workdir: Path, cfg: dict) -> int:
    """Create the files upstream of the ascent jobs, oldest first; return the number of units."""
    from featviz.config import expected_input, resolve_runs
    from featviz.io import write_json
    from featviz.model import build, resolve_layers
    from featviz.units import enumerate_units

    from snakemake.utils import validate

    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))  # fills defaults, as the DAG does
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        runs = resolve_runs(cfg)
    finally:
        os.chdir(cwd)
    total = 0
    for i, run in enumerate(runs):
        d = workdir / "results" / "data" / run.data_key
        d.mkdir(parents=True, exist_ok=True)
        for f in ("train.pt", "test.pt", "info.json"):
            (d / f).touch()
    time.sleep(1.1)
    for i, run in enumerate(runs):
        shape, n_classes = expected_input(cfg["runs"][i])
        net = build(resolve_layers(run.model), shape, n_classes)
        m = workdir / "results" / run.id / "model"
        m.mkdir(parents=True, exist_ok=True)
        for f in ("model.pt", "model.json", "metrics.json"):
            (m / f).touch()
        units = enumerate_units(net, shape, [str(c) for c in range(n_classes)])
        total += sum(layer["units"] for layer in units["layers"])
        write_json(workdir / "results" / run.id / "units.json", units)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cfg = config(args.chunk_size)
        (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
        n_units = lay_out(workdir, cfg)  # (fills cfg's defaults in place, after it was written)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--dry-run",
               "--cores", "2", "--configfile", str(workdir / "config.yaml"), "--directory", str(workdir)]
        times, out = [], ""
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            out = r.stdout + r.stderr
            if r.returncode != 0:
                sys.exit(out[-3000:])
        if os.environ.get("BENCH_DEBUG"):
            print(out)
        m = re.search(r"^ascend\s+(\d+)", out, re.M)
        upstream = re.findall(r"^(data|train)\s+\d+", out, re.M)
        if upstream:
            sys.exit(f"the laid-out upstream files were not accepted: {upstream} would run")
        total = re.search(r"^total\s+(\d+)", out, re.M)
        print(f"runs: {len(cfg['runs'])} (incl. a network with 512-channel conv layers), units: {n_units}, "
              f"chunk_size: {args.chunk_size}")
        print(f"jobs in the DAG: {total.group(1) if total else '?'} ({m.group(1) if m else '?'} ascend jobs)")
        print(f"snakemake --dry-run wall time: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
              f"over {len(times)} runs")


if __name__ == "__main__":
    main()
