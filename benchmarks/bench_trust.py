"""How far to trust a picture (docs/ascent.md, "How far to trust a picture"): the trust score
(featviz/trust.py) where the answer is known, and on a real network.

* The planted two-paths net (benchmarks/planted.py, build_planted_paths): per conv2 unit, whether a
  picture can reach it through colour, a path its grey data set never uses. For each recipe, the
  score of every unit beside the answer, and the same for the activation-pattern variant (each
  layer below as its units' activations, a conv channel by its spatial mean or by its maximum,
  standardized over the random test images, Pearson r with the top images' mean pattern; the same
  score formula).
* `--mnist`: the quick report's network (hvass-mnist) trained one epoch on the real MNIST in
  ../shared/data, its units visualized with `--mnist-recipe` (default lucid-scaled, 512 steps),
  then scored: per layer the share of units flagged, the mean score and the spread of r.

    python benchmarks/bench_trust.py [--recipes hvass lucid-scaled lucid] [--steps 128] [--mnist [--data-root DIR] [--workdir DIR]]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted import build_planted_paths  # noqa: E402

from featviz.ascent import visualize  # noqa: E402
from featviz.model import load_model  # noqa: E402
from featviz.probe import module_of, probe  # noqa: E402
from featviz.trust import layer_similarities, layers_below, sample_indices, trust_scores, unit_record  # noqa: E402
from featviz.units import enumerate_units  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@torch.no_grad()
def activation_patterns(model, layers: list[dict], images, pool: str = "mean") -> list[np.ndarray]:
    """Per layer, (N, units): a conv channel's spatial mean (or maximum), a dense unit's value."""
    got = {}

    def keep(j):
        def hook(_m, _i, o):
            v = (o.flatten(2).mean(2) if pool == "mean" else o.flatten(2).amax(2)) if o.dim() > 2 else o
            got.setdefault(j, v.double())
        return hook

    hooks = [module_of(model.net, layer).register_forward_hook(keep(j)) for j, layer in enumerate(layers)]
    out = [[] for _ in layers]
    try:
        for s in range(0, len(images), 256):
            got.clear()
            model.net(model.to_input(torch.as_tensor(images[s:s + 256]), "cpu"))
            for j in range(len(layers)):
                out[j].append(got[j])
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(o).numpy() for o in out]


def activation_variant(model, units, summary, test_images, layer_name, unit_ids, pictures, images, threshold, n_below,
                       pool="mean"):
    """The issue's first suggestion, scored like featviz's: standardized activation patterns."""
    by_name = {layer["name"]: layer for layer in units["layers"]}
    below = [by_name[b] for b in layers_below(units, n_below)[layer_name]]
    per_unit = next(e for e in summary["layers"] if e["name"] == layer_name)["per_unit"]
    rand = sample_indices(len(test_images), images, 0)
    nat = activation_patterns(model, below, test_images, pool)
    pics = activation_patterns(model, below, torch.from_numpy(pictures), pool)
    rows = []
    for i, u in enumerate(unit_ids):
        top = per_unit[u]["top_index"]
        per_layer = {}
        for layer, p, q in zip(below, nat, pics):
            mu, sd = p[rand].mean(0), p[rand].std(0)
            sd = np.maximum(sd, 0.05 * sd.mean() + 1e-12)

            def z(x):
                x = (x - mu) / sd
                return x - x.mean(-1, keepdims=True)  # centred: cosine = Pearson r

            per_layer[layer["name"]] = layer_similarities(z(q[i]), z(p[top]), z(p[rand]))
        rows.append(unit_record(u, per_layer, threshold, bool(per_unit[u]["dead"]), len(top)))
    return rows


def planted(args) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-trust-"))
    info = build_planted_paths(root / "model", root / "data")
    model = load_model(root / "model")
    units = enumerate_units(model.net, model.input_shape, model.classes)
    summary = probe(model, units, root / "data", root / "probe", "cpu", top_k=9, samples=2, prune_passes=0)
    test = torch.load(root / "data" / "test.pt")["images"]
    us = list(range(len(info["unnatural"])))
    print(f"planted two-paths net: {len(test)} grey test images, conv2 units {us}, "
          f"a colour path into {[u for u in us if info['unnatural'][u]]}")
    print("recipe         steps  s    measure      " + " ".join(f"u{u}{'*' if info['unnatural'][u] else ' '}  " for u in us)
          + " right")
    for recipe in args.recipes:
        t = time.perf_counter()
        res = visualize(model.net, "conv2", us, "conv", tuple(model.input_shape), normalize=model.normalize,
                        recipe=recipe, overrides={"snapshots": 0, "robustness_samples": 0, "steps": args.steps}, seed=0)
        wall = time.perf_counter() - t
        rec = trust_scores(model, units, summary, test, {"conv2": (us, res.images)}, images=args.images,
                           layers_below_n=3, threshold=args.threshold)
        variants = [("contribution", rec["layers"][0]["units"])] + [
            (f"act. {pool}", activation_variant(model, units, summary, test, "conv2", us, res.images, args.images,
                                                args.threshold, 3, pool)) for pool in ("mean", "max")]
        for name, rows in variants:
            right = sum(bool(r["unnatural"]) == info["unnatural"][r["unit"]] for r in rows)
            print(f"{recipe:14} {args.steps:5d} {wall:4.1f} {name:12} "
                  + " ".join(" none" if r["score"] is None else f"{r['score']:+.2f}" for r in rows)
                  + f"  {right}/{len(rows)}")
            print(f"{'':33} r picture/random/top: "
                  + "  ".join(f"u{r['unit']} {r['picture']:+.2f}/{r['random']:+.2f}/{r['top']:+.2f}" for r in rows))
        grey = res.images.std(1).mean((1, 2))  # how far a pixel is from grey
        print(f"{'':33} colour of the pictures (mean std over R, G, B): " + " ".join(f"{g:.3f}" for g in grey))
        print(f"{'':33} conv1 spatial means of the pictures (5 grey, then red-green, blue-yellow):")
        for u, m in zip(us, activation_patterns(model, [units["layers"][0]], torch.from_numpy(res.images))[0]):
            print(f"{'':35} u{u}: " + " ".join(f"{v:+.2f}" for v in m))


def mnist(args) -> None:
    from featviz.data import prepare
    from featviz.train import train

    shared = Path(args.data_root)
    if not (shared / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        print(f"--mnist: no MNIST at {shared}")
        return
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-trust-mnist-"))
    t = time.perf_counter()
    if not (root / "model" / "model.json").is_file():  # a --workdir of an earlier run keeps its model
        prepare({"dataset": "mnist"}, shared, root / "data")
        train(root / "data", {"preset": "hvass-mnist"}, {"epochs": 1, "batch_size": 128, "lr": 0.002}, root / "model",
              seed=0, device="cpu", run_name="mnist", progress=False)
    model = load_model(root / "model")
    units = enumerate_units(model.net, model.input_shape, model.classes)
    summary = probe(model, units, root / "data", root / "probe", "cpu", top_k=9, samples=2, prune_passes=0)
    print(f"hvass-mnist, 1 epoch: test accuracy {summary['test_accuracy']:.4f} ({time.perf_counter() - t:.0f} s "
          f"to train and probe)")
    test = torch.load(root / "data" / "test.pt")["images"]
    pictures = {}
    t = time.perf_counter()
    for layer in units["layers"]:
        us = list(range(layer["units"]))
        saved = root / f"pictures-{args.mnist_recipe}-{layer['name']}.npy"
        if not saved.is_file():
            target = None if layer["kind"] == "class" else layer.get("module") or layer["name"]
            res = visualize(model.net, target, us, layer["kind"], tuple(model.input_shape), normalize=model.normalize,
                            recipe=args.mnist_recipe, overrides={"snapshots": 0, "robustness_samples": 0}, seed=0)
            np.save(saved, res.images)
        pictures[layer["name"]] = (us, np.load(saved))
    print(f"ascent ({args.mnist_recipe}): {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    rec = trust_scores(model, units, summary, test, pictures, images=args.images, layers_below_n=3,
                       threshold=args.threshold)
    print(f"trust: {time.perf_counter() - t:.1f} s for {rec['summary']['units']} units")
    print("layer     below                 scored  unnatural  score: mean  median  r: picture random top")
    for e in rec["layers"]:
        rows = [r for r in e["units"] if r["score"] is not None]
        if not rows:
            print(f"{e['name']:9} {', '.join(e['below']) or '-':21} {0:6d}")
            continue
        s = np.array([r["score"] for r in rows])
        mean = {k: np.mean([r[k] for r in rows]) for k in ("picture", "random", "top")}
        print(f"{e['name']:9} {', '.join(e['below']):21} {len(rows):6d} {sum(r['unnatural'] for r in rows):9d}"
              f"  {s.mean():11.2f} {np.median(s):7.2f}     {mean['picture']:.2f}    {mean['random']:.2f}   {mean['top']:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=["hvass", "lucid-scaled", "lucid"])
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--images", type=int, default=32, help="random test images (trust.images)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--mnist", action="store_true")
    p.add_argument("--mnist-recipe", default="lucid-scaled")
    p.add_argument("--workdir", default=None, help="--mnist: keep (and reuse) the model and pictures here")
    p.add_argument("--data-root", default=str(REPO / ".." / "shared" / "data"), help="holds MNIST/raw (--mnist)")
    args = p.parse_args()
    torch.manual_seed(0)
    planted(args)
    if args.mnist:
        mnist(args)


if __name__ == "__main__":
    main()
