"""Cost of `featviz circuits` where layers are not directly connected: torchvision's resnet18
(random weights, 10 classes) with its default targets (stem conv, each block's final conv, block
and stage outputs, classes), whose pairs all need the data measure (residual adds), on random
images. Prints per pair its measure and the later layer's unit count (the gradients computed per
batch: batched, several per backward pass where they fit), then the wall time.

    python benchmarks/bench_circuits.py --images 32 --size 32
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from featviz.circuits import circuits
from featviz.model import LoadedModel, torchvision_archs
from featviz.model.hookable import no_inplace
from featviz.units import enumerate_units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="input height and width")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape = (3, a.size, a.size)
    net = no_inplace(torchvision_archs.build(a.arch, 10)).eval()
    classes = [str(i) for i in range(10)]
    units = enumerate_units(net, shape, classes, family="torchvision")
    model = LoadedModel(net, classes, shape, [0.5] * 3, [0.25] * 3)
    images = torch.randint(0, 256, (a.images, *shape), dtype=torch.uint8)
    t = time.perf_counter()
    r = circuits(model, units, images, images=a.images, top=6)
    wall = time.perf_counter() - t
    grads = 0
    for p in r["pairs"]:
        if p["measure"] == "data":
            grads += p["to_units"]
        print(f"{p['from']:>18} -> {p['to']:<18} {p['measure']:<8} {p['to_units']:>5} later units")
    print(f"{a.arch} at {a.size} px: {len(r['pairs'])} pairs, {grads} unit gradients per batch, "
          f"{r['images']} images: {wall:.1f} s")


if __name__ == "__main__":
    main()
