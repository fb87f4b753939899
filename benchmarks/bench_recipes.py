"""Every recipe on one trained model: class images (target softmax, transfer to an independent
model, robustness) and one conv layer (mean objective, dead units), with wall times, printed
as a markdown table (docs/ascent.md, "Recipe benchmark").

    python benchmarks/bench_recipes.py --model results/<run>/model \\
        --transfer-model results/<run>/transfer_model [--layer conv2] [--seed 0] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featviz.ascent import list_recipes, visualize  # noqa: E402
from featviz.ascent.recipes import get_recipe  # noqa: E402
from featviz.model import load_model  # noqa: E402
from featviz.transfer import score_images  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--transfer-model", required=True)
    p.add_argument("--layer", default="conv2")
    p.add_argument("--recipes", nargs="*", default=None, help="default: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model(Path(a.model))
    tmodel = load_model(Path(a.transfer_model))
    shape = tuple(model.input_shape)
    classes = list(range(len(model.classes)))
    n_conv = dict(model.net.named_modules())[a.layer].out_channels
    print(f"model {a.model}; independent model {a.transfer_model} ({tmodel.meta.get('model')}, "
          f"seed {tmodel.meta.get('seed')}); layer {a.layer} ({n_conv} units); ascent seed {a.seed}; "
          f"torch threads {a.threads}; load average {os.getloadavg()[0]:.2f}")
    print()
    print("| recipe | class steps | target softmax mean / min | ≥ 0.99 | recognised by independent model "
          "| transfer softmax mean | class robustness | class wall s "
          f"| {a.layer} steps | {a.layer} mean objective | dead | {a.layer} wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in a.recipes or list_recipes():
        rec = get_recipe(name)
        t0 = time.perf_counter()
        r = visualize(model.net, None, classes, "class", shape, normalize=model.normalize, recipe=name,
                      overrides={"snapshots": 0}, seed=a.seed)
        wall_c = time.perf_counter() - t0
        rows = score_images(model, tmodel, r.images, classes, seed=a.seed, samples=8)
        ts = np.array([x["target_softmax"] for x in rows])
        tr = np.array([x["transfer_softmax"] for x in rows])
        n_rec = sum(x["transfer_recognized"] for x in rows)
        rob = [x["robustness"] for x in rows if x["robustness"] is not None]
        t0 = time.perf_counter()
        c = visualize(model.net, a.layer, list(range(n_conv)), "conv", shape, normalize=model.normalize,
                      recipe=name, overrides={"snapshots": 0}, seed=a.seed)
        wall_v = time.perf_counter() - t0
        dead = sum(1 for s in c.stats if s["dead"])
        csteps = rec["class_steps"] if rec["class_steps"] is not None else rec["steps"]
        print(f"| `{name}` | {csteps} | {ts.mean():.4f} / {ts.min():.4f} | {int((ts >= 0.99).sum())}/{len(ts)} "
              f"| {n_rec}/{len(ts)} | {tr.mean():.3f} | {np.mean(rob) if rob else float('nan'):.3f} "
              f"| {wall_c:.1f} | {rec['steps']} | {float(np.nanmean(c.objective)):.3f} | {dead}/{n_conv} "
              f"| {wall_v:.1f} |", flush=True)


if __name__ == "__main__":
    main()
