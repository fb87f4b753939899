"""Scheduling overhead of the ascent stage of the MNIST report (issue: scale-out, item 4).

Runs the quick MNIST config once (training etc. untimed), then times the ascent stage alone
(`--forcerun ascend --until ascend`) with the configured chunking and again with one unit per job,
and prints for each: wall time, number of jobs, the sum of the jobs' compute (the time each `featviz ascend`
spends after its imports: loading the model, optimizing, writing; from each job's log), the overhead fraction
1 - (compute / cores) / wall (core-time not spent computing: process start, imports, model load,
Snakemake's bookkeeping, idle cores), and the fixed cost per job. With `--whole`, also the whole
report from the prepared dataset (every job's work from its own log line, weighted by its threads),
`--repeats` times; `--no-stage` skips the ascent stage alone.

    FEATVIZ_DATA_ROOT=../shared/data python benchmarks/bench_overhead.py [--workdir DIR] [--cores 2]
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


def snakemake(workdir: Path, cfg: Path, cores: int, *args: str) -> float:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", str(cores),
           "--configfile", str(cfg), "--directory", str(workdir), *args]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(r.stderr[-4000:])
    return wall


def ascent_compute(workdir: Path) -> tuple[int, float]:
    """(jobs, seconds of optimization) from the ascend logs written by the last run."""
    total, n = 0.0, 0
    for log in (workdir / "results").glob("mnist-*/logs/ascent/*/*.log"):
        m = re.search(r"featviz ascend: ([0-9.]+) s of work", log.read_text())
        if m:
            total += float(m.group(1))
            n += 1
    return n, total


def whole_report(workdir: Path, cfg: Path, cores: int) -> None:
    """The whole MNIST report from the prepared dataset: every job's work, weighted by the threads
    it ran with (training jobs use all cores), against the wall time."""
    import json
    import shutil

    for run in (workdir / "results").glob("mnist-*"):
        shutil.rmtree(run)
    for d in (workdir / "reports").glob("mnist-*"):
        shutil.rmtree(d) if d.is_dir() else d.unlink()
    wall = snakemake(workdir, cfg, cores)
    rows, core_work, startups = [], 0.0, []
    for log in sorted((workdir / "results").glob("mnist-*/logs/**/*.log")):
        m = re.search(r"featviz (\S+): ([0-9.]+) s of work after ([0-9.]+) s", log.read_text())
        if not m:
            continue
        verb, work, startup = m.group(1), float(m.group(2)), float(m.group(3))
        threads = 1
        if verb == "train":
            metrics = log.parent.parent / ("transfer_model" if "transfer" in log.name else "model") / "metrics.json"
            threads = int(json.loads(metrics.read_text()).get("threads") or cores) if metrics.exists() else cores
        core_work += work * threads
        startups.append(startup)
        rows.append((log.relative_to(workdir / "results"), verb, work, threads))
    overhead = 1 - (core_work / cores) / wall
    print(f"\nwhole MNIST report (from the prepared dataset): {len(rows)} jobs, wall {wall:.1f} s, "
          f"jobs' work {core_work:.1f} core-s, overhead {overhead:.0%}, "
          f"start-up per job {sum(startups) / max(1, len(startups)):.2f} s")
    for path, verb, work, threads in rows:
        print(f"    {verb:<10} {work:7.1f} s x {threads} thread(s)  {path}")


def stage(workdir: Path, cfg: Path, cores: int, label: str) -> None:
    for log in (workdir / "results").glob("mnist-*/logs/ascent/*/*.log"):
        log.unlink()
    wall = snakemake(workdir, cfg, cores, "--forcerun", "ascend", "--until", "ascend")
    jobs, compute = ascent_compute(workdir)
    overhead = 1 - (compute / cores) / wall
    fixed = (wall * cores - compute) / max(1, jobs)
    print(f"| {label} | {jobs} | {wall:.1f} | {compute:.1f} | {overhead:.0%} | {fixed:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="reuse a folder (keeps the trained model between runs)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "quick.yaml")
    ap.add_argument("--chunk-sizes", type=int, nargs="*", default=[],
                    help="more chunk sizes to time (besides the config's and one unit per job)")
    ap.add_argument("--skip-one-unit", action="store_true", help="do not time one unit per job")
    ap.add_argument("--whole", action="store_true", help="also time the whole report (retrains the models)")
    ap.add_argument("--no-stage", action="store_true", help="do not time the ascent stage alone")
    ap.add_argument("--repeats", type=int, default=1, help="time the whole report this many times")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="featviz-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(args.config.read_text())
    default_cfg = workdir / "bench-default.yaml"
    default_cfg.write_text(yaml.safe_dump(cfg))

    def with_chunk(size: int) -> Path:
        c = yaml.safe_load(args.config.read_text())
        c["runs"][0].setdefault("ascent", {})["chunk_size"] = size
        path = workdir / f"bench-chunk-{size}.yaml"
        path.write_text(yaml.safe_dump(c))
        return path

    t = snakemake(workdir, default_cfg, args.cores)
    print(f"workdir {workdir}; full quick run (training included, untimed goal): {t:.0f} s; "
          f"load {os.getloadavg()[0]:.1f}")
    chunk = cfg["runs"][0].get("ascent", {}).get("chunk_size", "schema default")
    if not args.no_stage:
        print("\n| ascent stage | jobs | wall s | jobs' compute s | overhead | fixed cost per job s |")
        print("|---|---|---|---|---|---|")
        stage(workdir, default_cfg, args.cores, f"chunk_size {chunk} (config)")
        for size in args.chunk_sizes:
            stage(workdir, with_chunk(size), args.cores, f"chunk_size {size}")
        if not args.skip_one_unit:
            stage(workdir, with_chunk(1), args.cores, "one unit per job")
    for _ in range(args.repeats if args.whole else 0):
        whole_report(workdir, default_cfg, args.cores)
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
