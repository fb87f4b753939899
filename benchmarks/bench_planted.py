"""Planted features: every recipe's recovery of units whose best input is known (benchmarks/planted.py),
as a markdown table (docs/ascent.md, "Planted features"). Recovery = Pearson correlation of the
visualization (the [0, 1] image a report shows) with the planted pattern; for a conv filter, of its
best filter-sized window.

    python benchmarks/bench_planted.py [--recipes lucid hvass ...] [--seed 0] [--threads 1] [--spectrum FILE]

MACO's magnitude (recipe `maco`) is the 1/f power law (`featviz.ascent.spectrum.power_law`: the planted
nets were trained on nothing), or a `featviz spectrum` file (`--spectrum results/<run>/spectrum.npz`,
e.g. of an MNIST run). Above the dense and class tables: MACO's magnitude ceiling (the template's own
phase with that magnitude), the bound its fixed magnitude sets.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted import build_planted, ceiling, magnitude_ceiling, recovery, transform_ceiling

from featviz.ascent import (
    get_recipe,
    list_recipes,
    visualize,
)
from featviz.model import load_model

# (net, layer visualized, unit kind, overrides, label): conv1 is what a report shows by default
# (pre-ReLU, channel mean); relu1 the same filters after the ReLU; "neuron" the centre neuron.
TARGETS = [
    ("conv", "conv1", "conv", {}, "conv1 (channel mean)"),
    ("conv", "relu1", "conv", {}, "relu1 (channel mean)"),
    ("conv", "conv1", "conv", {"conv_objective": "neuron"}, "conv1 (centre neuron)"),
    ("dense", "fc1", "dense", {}, "fc1 (template · x)"),
    ("class", None, "class", {}, "class logit (template · x)"),
]


# seed 001-style "recipe with overrides" rows shown beside the six recipes
VARIANTS = [("lucid", {"transforms": "none"}, "lucid+{transforms: none}"),
            ("lucid", {"transforms": "none", "param": "pixel", "clamp": True},
             "lucid+{transforms: none, param: pixel, clamp: true}"),
            # MACO: its published crop geometry at 28 px; fading its crops to the picture; its fixed
            # magnitude alone (no canvas, no crops, no noise)
            ("maco", {"transforms_size": 0}, "maco+{transforms_size: 0}"),
            ("maco", {"transforms_fade": 0.5}, "maco+{transforms_fade: 0.5}"),
            ("maco", {"transforms": "none", "canvas_scale": 1.0}, "maco+{transforms: none, canvas_scale: 1}")]


def run(recipes, seed, root: Path, steps=None, targets=TARGETS, variants=(), spectrum=None):
    """Rows of {recipe, target, names, scores, mean, wall, ceilings, tf_ceilings, mag_ceilings}: one per
    recipe (or variant: (recipe, overrides, label)) and target. `spectrum`: MACO's magnitude (None: the
    power law)."""
    from featviz.ascent.spectrum import power_law

    magnitude = spectrum if spectrum is not None else power_law(1, 28, 28)
    runs = [(name, {}, name) for name in recipes] + list(variants)
    nets = {}
    rows = []
    for net_kind, layer, kind, extra, label in targets:
        if net_kind not in nets:
            info = build_planted(net_kind, root / net_kind, seed=seed)
            nets[net_kind] = (load_model(root / net_kind), info)
        model, info = nets[net_kind]
        for name, variant, rlabel in runs:
            over = {"snapshots": 0, "robustness_samples": 0, **extra, **variant}
            if steps is not None:
                over.update(steps=steps, class_steps=steps)
            t0 = time.perf_counter()
            res = visualize(model.net, layer, list(range(len(info["patterns"]))), kind, tuple(model.input_shape),
                            normalize=model.normalize, recipe=name, overrides=over, seed=seed, spectrum=spectrum)
            wall = time.perf_counter() - t0
            scores = [recovery(img, pat) for img, pat in zip(res.images, info["patterns"])]
            full = [p for p in info["patterns"] if p.shape == tuple(model.input_shape[1:])]
            rows.append({"recipe": rlabel, "target": label, "names": info["names"], "scores": scores,
                         "mean": float(np.mean(scores)), "wall": wall,
                         "ceilings": [ceiling(p) for p in info["patterns"]],
                         "tf_ceilings": [transform_ceiling(get_recipe(name, over), p) for p in full],
                         "mag_ceilings": [magnitude_ceiling(p, magnitude) for p in full]})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="*", default=None, help="default: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-variants", dest="variants", action="store_false", help="only the recipes themselves")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--spectrum", default=None, help="MACO's magnitude: a `featviz spectrum` file (default: 1/f)")
    a = p.parse_args(argv)
    spectrum = None
    if a.spectrum:
        from featviz.results import read_spectrum

        spectrum = read_spectrum(a.spectrum)
    torch.set_num_threads(a.threads)
    recipes = a.recipes or list_recipes()
    print(f"planted nets (benchmarks/planted.py); ascent seed {a.seed}; torch threads {a.threads}; "
          f"load average {os.getloadavg()[0]:.2f}; maco's magnitude: {a.spectrum or '1/f power law'}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(recipes, a.seed, Path(tmp), variants=VARIANTS if a.variants else (), spectrum=spectrum)
    last = None
    for r in rows:
        if r["target"] != last:
            last = r["target"]
            print()
            print(f"**{last}**: box optimum's correlation with the pattern: "
                  + ", ".join(f"{n} {c:.2f}" for n, c in zip(r["names"], r["ceilings"])))
            if r["mag_ceilings"]:
                print(f"maco's magnitude ceiling (the pattern's own phase with the fixed magnitude): "
                      + ", ".join(f"{n} {c:.2f}" for n, c in zip(r["names"], r["mag_ceilings"])))
            print()
            tfc = "| box optimum under the transforms " if r["tf_ceilings"] else ""
            print("| recipe | " + " | ".join(r["names"]) + f" | mean {tfc}| wall s |")
            print("|---" * (len(r["names"]) + 3 + bool(tfc)) + "|")
        tfc = ("| " + " ".join("–" if c is None else f"{c:.2f}" for c in r["tf_ceilings"]) + " ") \
            if r["tf_ceilings"] else ""
        print(f"| `{r['recipe']}` | " + " | ".join(f"{s:.3f}" for s in r["scores"])
              + f" | **{r['mean']:.3f}** {tfc}| {r['wall']:.1f} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
