"""Cost of `featviz circuits` at 224 px on a real MobileNetV2: the former measure (every unit of the
later layer, batched gradients, the whole graph kept; featviz/circuits.py as of commit ae51e7a, read
from git) against the current one (only the units the report shows, one backward pass per shown
unit from a graph that starts at the earlier layer, images per batch from `circuits.memory_mb`).

Each measure runs in its own process, so that its peak memory (ru_maxrss) is its own; synthetic
images (the throughput does not depend on what they show). The report's selection: `--layers`
(ascent.layers, default a block output at six depths and the classes), `--per-layer` units of each
(ascent.units, spread over the layer) and `--classes` classes.

    python benchmarks/bench_circuits.py --images 64 --old-images 2 --threads 2

The network: torchvision's mobilenet_v2 with ../shared/models/mobilenet_v2-coral-qat.pth (ImageNet
mean/std; `--weights` elsewhere); skipped with a message where the file is absent. `--modes` picks
among `old` (former measure, every unit), `all` (current measure, every unit: the former's work done
the current way), `new` (current measure, the report's units) and `probe` (the probe stage with the
schema's settings on `--probe-images` images and the default targets: the stage circuits is held to).
The measures are linear in the images: their time per image, times `--project` (the schema's
circuits.images), is the stage's projected time. Give the load (`uptime`) with any figure.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WEIGHTS = ROOT.parent / "shared" / "models" / "mobilenet_v2-coral-qat.pth"
OLD_COMMIT = "ae51e7a"  # the last commit of the former measure
LAYERS = ["features.2", "features.4", "features.7", "features.11", "features.14", "features.17", "classes"]


def _old_module():
    """featviz/circuits.py as of OLD_COMMIT, imported inside the featviz package (its relative imports)."""
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:featviz/circuits.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "_circuits_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("featviz._circuits_old", path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "featviz"
    spec.loader.exec_module(mod)
    return mod


def _spread(n: int, k: int) -> list[int]:
    import numpy as np

    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, k)).round()})


def one(a) -> dict:
    """One measure in this process: its wall time and this process's peak RSS."""
    import torch
    import torchvision

    from featviz.model import LoadedModel
    from featviz.model.hookable import no_inplace
    from featviz.units import enumerate_units

    torch.set_num_threads(a.threads)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(a.weights, weights_only=True))
    net = no_inplace(net).eval()
    shape = (3, a.size, a.size)
    classes = [f"c{i}" for i in range(1000)]
    units = enumerate_units(net, shape, classes, family="torchvision")
    model = LoadedModel(net, classes, shape, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    n = {"old": a.old_images, "all": a.all_images, "new": a.images, "probe": a.probe_images}[a.one]
    images = torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    if a.one == "probe":
        return _probe(a, model, units, images)
    counts = {layer["name"]: layer["units"] for layer in units["layers"]}
    shown = {name: _spread(counts[name], a.classes if name == "classes" else a.per_layer) for name in a.layers}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if a.one == "old":
        r = _old_module().circuits(model, units, images, images=n, top=6, layers=a.layers)
    else:
        from featviz.circuits import circuits

        r = circuits(model, units, images, images=n, top=6, layers=a.layers, memory_mb=a.memory_mb,
                     shown=shown if a.one == "new" else None, log=print if a.verbose else None)
    wall = time.perf_counter() - t
    later = sum(len(shown[p["to"]]) if a.one == "new" else p["to_units"] for p in r["pairs"] if p["measure"] == "data")
    return {"mode": a.one, "images": n, "wall_s": wall, "per_image_s": wall / n, "later_units": later,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "before_mb": base / 1024, "pairs": [(p["from"], p["to"], p["measure"]) for p in r["pairs"]]}


def _probe(a, model, units, images) -> dict:
    """The probe stage with the schema's settings on the same images: the stage circuits is held to."""
    import torch

    from featviz.io import save_torch
    from featviz.probe import probe
    from featviz.schema import with_defaults

    cfg = with_defaults("probe", {})
    labels = torch.randint(0, 1000, (len(images),), generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        save_torch(Path(tmp) / "data" / "test.pt", {"images": images, "labels": labels, "classes": model.classes})
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        probe(model, units, Path(tmp) / "data", Path(tmp) / "probe", "cpu", top_k=cfg["top_k"], samples=cfg["samples"],
              histogram_images=cfg["histogram_images"], prune_images=cfg["prune_images"],
              prune_passes=cfg["prune_passes"], prune_precision=cfg["prune_precision"])
        wall = time.perf_counter() - t
    return {"mode": "probe", "images": len(images), "wall_s": wall, "per_image_s": wall / len(images),
            "later_units": 0, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "before_mb": base / 1024, "pairs": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16, help="images for the current measure (the report's units)")
    ap.add_argument("--old-images", type=int, default=2, help="images for the former measure (every unit)")
    ap.add_argument("--all-images", type=int, default=2, help="images for the current measure over every unit")
    ap.add_argument("--probe-images", type=int, default=1000,
                    help="test images of the probe (mode probe; its time is not linear in them: fixed costs)")
    ap.add_argument("--modes", nargs="+", default=["old", "new"], choices=["old", "all", "new", "probe"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--layers", nargs="+", default=LAYERS, help="ascent.layers")
    ap.add_argument("--per-layer", type=int, default=4, help="units shown per layer (ascent.units)")
    ap.add_argument("--classes", type=int, default=50, help="classes shown")
    ap.add_argument("--memory-mb", type=int, default=None, help="circuits.memory_mb (default the schema's)")
    ap.add_argument("--project", type=int, default=256, help="images to project the stage time to")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="the MobileNetV2 state_dict (default ../shared/models/...)")
    ap.add_argument("--verbose", action="store_true", help="the measure's log lines")
    ap.add_argument("--one", choices=["old", "all", "new", "probe"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.weights.is_file():
        print(f"skipped: {a.weights} is absent (the real MobileNetV2 this benchmark measures)")
        return
    if a.one:
        print("RESULT " + json.dumps(one(a)))
        return
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"({os.cpu_count()} CPUs), {a.threads} threads")
    rows = {}
    for mode in a.modes:
        r = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", mode], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{mode} failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
        if a.verbose:
            print(r.stdout.rsplit("RESULT ", 1)[0], end="")
        rows[mode] = json.loads(r.stdout.rsplit("RESULT ", 1)[1])
        print(f"load after {mode} ({rows[mode]['images']} images, {rows[mode]['wall_s']:.1f} s): {os.getloadavg()[0]:.2f}")
    first = next(iter(rows.values()))
    print(f"pairs ({len(first['pairs'])}): " + ", ".join(f"{f}->{t} {m}" for f, t, m in first["pairs"]))
    print(f"{'mode':<5} {'images':>6} {'later units':>11} {'wall s':>8} {'s/image':>8} "
          f"{'to ' + str(a.project) + ' images':>16} {'peak RSS MB':>11} {'(before)':>9}")
    for m, r in rows.items():
        projected = f"{r['per_image_s'] * a.project:>8.0f} s" if m != "probe" else f"{'-':>10}"
        print(f"{m:<5} {r['images']:>6} {r['later_units']:>11} {r['wall_s']:>8.1f} {r['per_image_s']:>8.2f} "
              f"{projected:>16} {r['maxrss_mb']:>11.0f} {r['before_mb']:>9.0f}")
    if "old" in rows and "new" in rows:
        print(f"old / new per image: {rows['old']['per_image_s'] / rows['new']['per_image_s']:.1f}x")
    if "old" in rows and "all" in rows:
        print(f"old / all per image (same units): {rows['old']['per_image_s'] / rows['all']['per_image_s']:.2f}x")
    if "new" in rows and "probe" in rows:
        print(f"circuits projected to {a.project} images / probe on {rows['probe']['images']}: "
              f"{rows['new']['per_image_s'] * a.project / rows['probe']['wall_s']:.2f}")

if __name__ == "__main__":
    main()
