"""Probe at scale: `featviz.probe.probe` on a random-weight torchvision network and a fake prepared
test set, outside Snakemake. Prints wall time, peak RSS of this process, probe.npz / probe.json
sizes and what the probe kept (layers, units, images in the top-k bank, pruning passes used).

    python benchmarks/bench_probe.py --arch resnet50 --images 64 --size 64 --targets conv

`--targets conv` selects every Conv2d channel (26,560 for resnet50), `default` featviz's default
torchvision targets (the stem, block and stage outputs, each block's final conv). The probe
settings default to the schema's (workflow/schemas/config.schema.yaml, runs[i].probe).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featviz.io import save_torch  # noqa: E402
from featviz.model.hookable import no_inplace  # noqa: E402
from featviz.model.loaded import LoadedModel  # noqa: E402
from featviz.probe import probe  # noqa: E402
from featviz.units import enumerate_units  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--images", type=int, default=64, help="test images")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--targets", choices=["conv", "default"], default="conv")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--top-k", type=int, default=9)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--histogram-images", type=int, default=2000)
    ap.add_argument("--prune-images", type=int, default=2000)
    ap.add_argument("--prune-passes", type=int, default=64)
    ap.add_argument("--workdir", default=None, help="keep the outputs here (default a temporary folder)")
    a = ap.parse_args()

    torch.manual_seed(0)
    net = no_inplace(getattr(torchvision.models, a.arch)(num_classes=a.classes)).eval()
    shape = (3, a.size, a.size)
    classes = [f"c{i}" for i in range(a.classes)]
    targets = [{"type": "conv"}] if a.targets == "conv" else None
    units = enumerate_units(net, shape, classes, targets, family="torchvision")
    model = LoadedModel(net, classes, shape, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (a.images, *shape), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, a.classes, (a.images,), generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.workdir or tmp)
        save_torch(work / "data" / "test.pt", {"images": images, "labels": labels, "classes": classes})
        del images
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        s = probe(model, units, work / "data", work / "probe", a.device, top_k=a.top_k, samples=a.samples,
                  histogram_images=a.histogram_images, prune_images=a.prune_images, prune_passes=a.prune_passes)
        wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        npz, js = (work / "probe" / "probe.npz").stat().st_size, (work / "probe" / "probe.json").stat().st_size
        import numpy as np

        with np.load(work / "probe" / "probe.npz") as z:
            bank = z["topk_bank"].shape
    layers = [e for e in s["layers"] if e["kind"] != "class"]
    curves = [e["name"] for e in s["layers"] if e.get("pruning")]
    methods = {}
    for e in layers:
        m = (e.get("receptive_field") or {}).get("method", "-")
        methods[m] = methods.get(m, 0) + 1
    print(f"{a.arch} {a.size}px, {a.images} test images, targets {a.targets}: {len(layers)} layers, "
          f"{sum(e['units'] for e in layers)} units (+{s['layers'][-1]['units']} classes), device {s['device']}, "
          f"batch {s['batch_size']}")
    print(f"wall {wall:.1f} s; peak RSS {rss / 1024:.0f} MiB (before the probe: {rss0 / 1024:.0f} MiB)")
    print(f"probe.npz {npz / 2**20:.1f} MiB, probe.json {js / 2**20:.1f} MiB; topk_bank {bank} "
          f"({bank[0]} distinct test images)")
    print(f"pruning: {s['prune_passes']['used']} of {s['prune_passes']['budget']} passes, curves for {curves}; "
          f"receptive fields: {methods}")


if __name__ == "__main__":
    main()
