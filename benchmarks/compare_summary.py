"""The figures of a run's method comparison (ascent.compare), as a Markdown table: per layer and
recipe entry the mean (and median) activation reached over the unit's strongest test image,
robustness, target softmax (classes), steps, and wall / CPU seconds per unit. The same numbers as the
methods page's summary tables, from the same files.

    python benchmarks/compare_summary.py results/<run>     (after the workflow's compare jobs and probe)

Prints `uptime` too: the times are as loaded as the machine was when the jobs ran, not when this runs,
so run it right after the jobs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from featviz.compare import read_compare, score, summarize  # noqa: E402
from featviz.io import read_json  # noqa: E402


def fmt(v, d=3):
    return "–" if v is None else f"{v:.{d}f}"


def main(results: Path) -> None:
    units = read_json(results / "units.json")
    probe = read_json(results / "probe" / "probe.json") if (results / "probe" / "probe.json").is_file() else {}
    per_unit = {e["name"]: e["per_unit"] for e in probe.get("layers", [])}
    entries = read_compare(results)
    print(f"{results.name}: {len(entries)} entries; uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
    print()
    print("| layer | recipe | units | reached (mean) | reached (median) | robustness | target softmax | steps | s / unit | CPU s / unit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    total = {}
    for layer in units["layers"]:
        for e in entries:
            part = e["layers"].get(layer["name"])
            if part is None:
                continue
            stats = part["record"]["stats"]
            pu = per_unit.get(layer["name"], [])
            scores = [score(st, pu[st["unit"]] if st["unit"] < len(pu) else None) for st in stats]
            m = summarize(scores)
            total.setdefault(e["label"], []).extend(s["wall_s"] for s in scores)
            print(f"| {layer['name']} | {e['label']} | {len(stats)} | {fmt(m['reached'])} | {fmt(m['reached_median'])} | "
                  f"{fmt(m['robustness'])} | {fmt(m['target_softmax'])} | {fmt(m['steps'], 0)} | {fmt(m['wall_s'])} | "
                  f"{fmt(m['cpu_s'])} |")
    print()
    print("| recipe | units | wall s, all layers | s / unit |")
    print("| --- | --- | --- | --- |")
    for label, walls in total.items():
        print(f"| {label} | {len(walls)} | {sum(walls):.1f} | {sum(walls) / len(walls):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
