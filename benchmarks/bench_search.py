"""The report search at ResNet-50 size: a tiny synthetic report whose units-index.js is replaced by
one row per Conv2d channel of torchvision's resnet50 (26,560) plus 1,000 class units (random scores
and flags; pages and thumbnails point at the tiny report's files), opened in headless Chromium.
Prints the index's bytes per unit, the run page's load time, how long after the load event the
search is ready, and the time of one search (keystroke) and of one flag filter.

    python benchmarks/bench_search.py [--workdir /tmp/bench-search]
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featviz.report import render_run  # noqa: E402
from featviz.report.search_index import index_script  # noqa: E402
from tests.synthetic_run import make_run  # noqa: E402


def resnet50_rows(rng: random.Random) -> list[dict]:
    import torch
    import torchvision

    net = torchvision.models.resnet50(weights=None)
    layers = [(n, m.out_channels) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    layers.append(("classes", 1000))
    rows = []
    for name, width in layers:
        for u in range(width):
            r = {"l": name, "u": u, "p": f"units/conv2/{u % 6}.html", "t": f"units/conv2/{u % 6}.png"}
            if name == "classes":
                r["n"] = f"class {u:04d}"
            f = "".join(c for c, p in (("d", .05), ("w", .2), ("r", .1), ("u", .3)) if rng.random() < p)
            if f:
                r["f"] = f
            for k, hi in (("o", 30), ("m", 20), ("a", 1), ("c", 1)):
                r[k] = float(f"{rng.uniform(0, hi):.4g}")
            if name == "classes":
                r["s"], r["x"] = float(f"{rng.random():.4g}"), float(f"{rng.random():.4g}")
            rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-search"))
    args = ap.parse_args()
    from tests.browser import Browser

    shutil.rmtree(args.workdir, ignore_errors=True)
    run = make_run(args.workdir, steps=20)
    site = args.workdir / "reports" / run.name
    render_run(run, site, {"name": "bench-search"})
    rows = resnet50_rows(random.Random(0))
    text = index_script(rows)
    (site / "units-index.js").write_text(text)
    size = len(text.encode())
    print(f"index: {len(rows)} units, {size / 1e6:.2f} MB, {size / len(rows):.1f} bytes per unit")
    with Browser() as b:
        d = b.driver
        d.get((site / "index.html").as_uri())
        load = d.execute_script("var n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;")
        t = time.perf_counter()
        while not d.execute_script("return !!(window.FeatvizSearch && window.FeatvizSearch.ready)"):
            time.sleep(0.01)
        print(f"run page load event: {load:.0f} ms; search ready {1000 * (time.perf_counter() - t):.0f} ms later")
        for q in ("layer4", "layer3.2.conv2", "layer2.1.conv1#7", "7", "class 0042"):
            ms, count = d.execute_script(
                "var box = document.getElementById('q'); box.value = arguments[0]; var t = performance.now();"
                " box.dispatchEvent(new Event('input'));"
                " return [performance.now() - t, document.getElementById('q-count').textContent];", q)
            print(f"search {q!r}: {ms:.1f} ms, {count}")
        ms, count = d.execute_script(
            "document.getElementById('q').value = ''; var b = document.querySelector('input.q-flag[value=d]');"
            " b.checked = true; var t = performance.now(); b.dispatchEvent(new Event('change'));"
            " return [performance.now() - t, document.getElementById('q-count').textContent];")
        print(f"flag filter 'dead': {ms:.1f} ms, {count}")
        severe = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        print(f"console errors: {len(severe)}")


if __name__ == "__main__":
    main()
