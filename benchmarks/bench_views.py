"""What each extra view of a conv unit (featviz.ascent.views: neuron, negative, a diversity set)
costs, on the quick MNIST net (seed 000's architecture, random weights: the cost does not depend on
them) with the quick report's recipe and execution mode.

    python benchmarks/bench_views.py [--layers conv1 conv2] [--units 2] [--steps 512] [--threads 1] [--repeats 2]
    python benchmarks/bench_views.py --model results/<run>/model --weights 100 10 1 0 [--units 4]

For each layer, one job's batch as the quick report runs it (every unit of the layer), timed without
views, with each view alone for the first `--units` units, and with all of them; prints the CPU
time of this process (best of `--repeats` rounds, each round timing every variant once, so that a
burst of load from elsewhere hits one round rather than one variant; on one thread CPU time is the
work, which the load of other processes changes far less than wall time), the time each view adds
per unit, and that per image.

With `--model` (a trained run's model folder, e.g. the quick MNIST report's), instead: for each
diversity weight of `--weights`, the diversity sets of the layer's first `--units` units, with the
mean channel each set reaches beside the unit's positive picture, and how far apart its images are
(mean pairwise L2 distance of the pixels).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.bench_ascent import mnist_net  # noqa: E402
from featviz.ascent import visualize  # noqa: E402
from featviz.ascent.views import VIEWS, Views  # noqa: E402
from featviz.device import resolve_precision  # noqa: E402
from featviz.schema import with_defaults  # noqa: E402

CHANNELS = {"conv1": 16, "conv2": 36}


def timed(net, layer, views, steps, recipe, precision) -> float:
    """CPU seconds of one job's batch of the whole layer."""
    t = time.process_time()
    visualize(net, layer, list(range(CHANNELS[layer])), "conv", (1, 28, 28), recipe=recipe, overrides={"steps": steps},
              precision=precision, channels_last=True, views=views)
    return time.process_time() - t


def weights(model_dir, layers, units, steps, recipe, precision, k, values) -> None:
    import numpy as np

    from featviz.model import load_model

    m = load_model(model_dir)
    first = list(range(units))
    print(f"{model_dir}: recipe {recipe}, {steps} steps, diversity sets of {k} for units {first}")
    print("| layer | weight | positive picture's channel, per unit | set's mean channel | mean distance in a set |")
    print("|---|---|---|---|---|")
    for layer in layers:
        for w in values:
            r = visualize(m.net, layer, first, "conv", tuple(m.input_shape), normalize=m.normalize, recipe=recipe,
                          overrides={"steps": steps}, precision=precision, channels_last=True,
                          views=Views({"diversity": first}, k, w))
            ch = np.array([s["channel"] for s in r.views]).reshape(units, k)
            f = r.view_images.reshape(units, k, -1)
            spread = np.mean([np.linalg.norm(f[u, i] - f[u, j]) for u in range(units) for i in range(k)
                              for j in range(i + 1, k)])
            print(f"| {layer} | {w:g} | {', '.join(f'{v:.2f}' for v in r.objective)} | "
                  f"{', '.join(f'{v:.2f}' for v in ch.mean(1))} | {spread:.1f} |", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", nargs="+", default=["conv1", "conv2"], choices=sorted(CHANNELS))
    ap.add_argument("--units", type=int, default=2, help="units per layer that get the views")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", help="a trained run's model folder: compare diversity weights on it instead")
    ap.add_argument("--weights", type=float, nargs="+", default=[100.0, 10.0, 1.0, 0.0])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = with_defaults("ascent", {})
    recipe, k = cfg["recipe"]["conv"], cfg["views"]["diversity_images"]
    precision = resolve_precision(cfg["precision"], torch.device("cpu"), "ascent.precision")
    if args.model:
        return weights(args.model, args.layers, args.units, args.steps, recipe, precision, k, args.weights)
    net = mnist_net()
    timed(net, args.layers[0], Views({v: [0] for v in VIEWS}, k), 8, recipe, precision)  # warm-up, not counted
    print(f"recipe {recipe}, {args.steps} steps, {precision} + channels_last, {args.threads} thread(s), "
          f"views for units 0..{args.units - 1}, diversity sets of {k}, best of {args.repeats}")
    print("| layer | views | images in the batch | CPU s | added s | added s per unit | per image |")
    print("|---|---|---|---|---|---|---|")
    first = list(range(args.units))
    variants = [("none", None), *((v, Views({v: first}, k)) for v in VIEWS),
                ("all three", Views({v: first for v in VIEWS}, k))]
    for layer in args.layers:
        best = {label: float("inf") for label, _ in variants}
        for _ in range(args.repeats):
            for label, views in variants:
                best[label] = min(best[label], timed(net, layer, views, args.steps, recipe, precision))
        base, n = best["none"], CHANNELS[layer]
        print(f"| {layer} | none | {n} | {base:.2f} | | | |")
        for label, views in variants[1:]:
            images = sum(len(views.of(u)) for u in first)
            t = best[label]
            print(f"| {layer} | {label} | {n + images} | {t:.2f} | {t - base:+.2f} | {(t - base) / args.units:+.3f} "
                  f"| {(t - base) / images:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
