"""How far to trust a picture: does a unit's ascent picture drive the unit the way its strongest
test images do? (Geirhos et al. 2023, "Don't trust your eyes: on the (un)reliability of feature
visualizations": a picture can drive a unit through a path natural images never use.)

The path is read in the layers just below the unit. For a unit u of layer L:

* **the layers below**: the `layers_below` layers of units.json just before L in computation order
  (the classes are never below anything);
* **an image's path** in such a layer B: the contribution of each unit of B to u on that image,
  gradient x activation summed over positions, c_i = sum_p A_i,p * du/dA_i,p (u: a conv channel's
  spatial mean, a dense unit's value, a class logit: what the ascent maximizes). A unit of B the
  image leaves silent contributes nothing, and so does one that u does not read, whatever the
  picture does there;
* **the natural path** N_B(u): the mean path of u's top-k test images (probe.json);
* r_B(x): the cosine similarity of image x's path with N_B(u): 1 when x drives u through the
  units of B in the same proportions as the top images do. r(x) is its mean over the layers below.

Three values of r per unit: `picture` (its ascent picture), `random` (the mean over `images` random
test images: the baseline), `top` (each top image against the mean of the other k - 1, averaged:
how alike the unit's own natural images are). The **score** puts the picture on that scale:

    score = max(-1, 1 - max(0, r_top - r_picture) / max(r_top - r_random, MIN_SPREAD))

that is (r_picture - r_random) / (r_top - r_random), at most 1 and at least -1. 1: the picture
drives u through the units below as much the natural way as one of its own top images does (or
more); 0: no more than a random test image; below 0: less (-1: twice as far from the natural path
as a random test image, or further). The unit is flagged **unnatural** when score < `threshold`.
MIN_SPREAD is the least scale: where every test image drives u much the same way (r_random near
r_top: a unit that reads the same few units below whatever the image), being like a random test
image is being natural, and a picture is flagged (at the default threshold) when its r falls more
than 0.1 below r_top.
`percentile`: the share of the random test images whose r is below the picture's. No score (null,
with `why`): a unit with no layer below (or none it depends on), a dead unit (its top images are
arbitrary) or one with fewer than two top images.

Cost: one forward and backward pass per (image, unit) pair, (1 + k + images) pairs per unit.
Output `trust.json` (featviz.results.write_trust).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError

MIN_SPREAD = 0.2  # the least scale of the score, in r (module docstring)
PAIR_FLOATS = 2 ** 25  # contributions (pairs x units below) held at once, float64: 256 MiB
MEASURE = ("score = max(-1, 1 - max(0, r_top - r_picture) / max(r_top - r_random, 0.2)), with r the cosine "
           "similarity between an image's path to the unit (each unit of the layers below by its contribution, "
           "gradient × activation summed over positions) and the mean path of the unit's top test images, averaged "
           "over the layers below: 1 = as much the natural way as one of the unit's own top images, 0 = no more than a "
           "random test image")


def trust_config(cfg: dict | None) -> dict | None:
    """runs[i].trust with the schema's defaults filled (workflow/schemas/config.schema.yaml);
    None where the config switches the measure off (`trust: null`)."""
    from .checks import check_sections
    from .schema import with_defaults

    if cfg is None:
        return None
    check_sections(trust=dict(cfg))
    return with_defaults("trust", dict(cfg))


def check_settings(images, layers_below, threshold) -> None:
    for key, v, low in (("images", images, 2), ("layers_below", layers_below, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise FeatvizError(f"trust.{key}: must be an integer >= {low}, got {v!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise FeatvizError(f"trust.threshold: must be a number, got {threshold!r}")


def layers_below(units: dict, n: int) -> dict[str, list[str]]:
    """Per layer of units.json, the names of the (at most) n layers just before it, nearest first;
    the classes are never below anything."""
    out, seen = {}, []
    for layer in units["layers"]:
        out[layer["name"]] = list(reversed(seen[-n:]))
        if layer["kind"] != "class":
            seen.append(layer["name"])
    return out


def _reduce(out: torch.Tensor) -> torch.Tensor:
    """A layer's units per image: a conv channel's spatial mean, a dense unit's or logit's value."""
    return out.flatten(2).mean(2) if out.dim() > 2 else out.flatten(1)


class _Capture:
    """Forward hooks keeping each module's output at its first call of a forward pass."""

    def __init__(self, mods: list):
        self.out: dict[int, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._keep(j)) for j, m in enumerate(mods)]

    def _keep(self, j):
        def keep(_m, _i, o):
            if j not in self.out and isinstance(o, torch.Tensor):
                self.out[j] = o
        return keep

    def close(self):
        for h in self.handles:
            h.remove()


def contributions(model, target: dict, below: list[dict], images, units, device,
                  batch_size: int | None = None) -> list[np.ndarray | None]:
    """Per layer below, (N, its units) float64: on image i, each of its units' contribution to unit
    units[i] of `target` (gradient x activation summed over positions); None for a layer `target`
    does not depend on. `images`: uint8 (N, C, H, W), or float in [0, 1]."""
    from .probe import module_of

    net = model.net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    cap = _Capture([module_of(net, layer) for layer in [target, *below]])
    units = torch.as_tensor(np.asarray(units, np.int64))
    parts: list[list] = [[] for _ in below]
    bs = model.batch_for(batch_size)
    try:
        for s in range(0, len(units), bs):
            cap.out = {}
            x = model.to_input(torch.as_tensor(images[s:s + bs]), device).requires_grad_(True)
            with torch.enable_grad():
                net(x)
                missing = [layer["name"] for j, layer in enumerate([target, *below]) if j not in cap.out]
                if missing:
                    raise FeatvizError(f"trust: layer '{missing[0]}' gave no tensor in a forward pass; "
                                       f"re-run `featviz units`")
                r = _reduce(cap.out[0])
                u = units[s:s + bs].to(r.device)
                objective = r[torch.arange(len(u), device=r.device), u].sum()
                acts = [cap.out[j + 1] for j in range(len(below))]
                grads = torch.autograd.grad(objective, acts, allow_unused=True)
            for j, (a, g) in enumerate(zip(acts, grads)):
                parts[j].append(None if g is None else (a.detach() * g).flatten(2).sum(2).double().cpu()
                                if a.dim() > 2 else (a.detach() * g).flatten(1).double().cpu())
            cap.out = {}
    finally:
        cap.close()
    return [None if not p or any(x is None for x in p) else torch.cat(p).numpy() for p in parts]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit norm (a zero row stays zero): a dot product of two rows is their
    cosine similarity."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-30)


def layer_similarities(picture: np.ndarray, top: np.ndarray, random: np.ndarray) -> dict:
    """One unit in one layer below, from the paths of its picture (C,), its top images (k, C) and
    the random images (R, C): r of the picture, of each random image, and of each top image against
    the mean of the others (leave one out) averaged (nan with fewer than two top images)."""
    k = len(top)
    natural = _unit_rows(top.mean(0))
    r_top = float("nan")
    if k >= 2:
        others = _unit_rows((top.sum(0)[None] - top) / (k - 1))
        r_top = float(np.mean(np.sum(_unit_rows(top) * others, 1)))
    return {"picture": float(_unit_rows(picture) @ natural), "random_each": _unit_rows(random) @ natural, "top": r_top}


def _r(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def unit_record(unit: int, per_layer: dict[str, dict], threshold: float, dead: bool, k: int) -> dict:
    """A unit's entry of trust.json from its similarities in each layer below (layer_similarities)."""
    row = {"unit": int(unit), "score": None, "unnatural": None, "picture": None, "random": None, "top": None,
           "percentile": None, "layers": {}}
    if not per_layer:
        return dict(row, why="no layer below it that it depends on")
    for name, c in per_layer.items():
        row["layers"][name] = {"picture": _r(c["picture"]), "random": _r(float(np.mean(c["random_each"]))),
                               "top": _r(c["top"])}
    r_pic = float(np.mean([c["picture"] for c in per_layer.values()]))
    r_each = np.mean([c["random_each"] for c in per_layer.values()], axis=0)
    r_rand = float(r_each.mean())
    r_top = float(np.mean([c["top"] for c in per_layer.values()]))
    row.update(picture=_r(r_pic), random=_r(r_rand), top=_r(r_top), percentile=_r(float(np.mean(r_each < r_pic))))
    if dead:
        return dict(row, why="dead unit: no test image activates it, so its top images are arbitrary")
    if k < 2:
        return dict(row, why="fewer than two top test images")
    score = max(-1.0, 1.0 - max(0.0, r_top - r_pic) / max(r_top - r_rand, MIN_SPREAD))
    return dict(row, score=_r(score), unnatural=bool(score < threshold))


def sample_indices(n: int, images: int, seed: int) -> np.ndarray:
    """`images` test-set indices (all when the test set is smaller), a seeded sample, sorted."""
    if images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, images, replace=False))


def layer_scores(model, target: dict, below: list[dict], units: list[int], pictures: np.ndarray, per_unit: list[dict],
                 test_images, rand_idx: np.ndarray, threshold: float, device) -> list[dict]:
    """trust.json's unit entries of one layer: `pictures` (N, C, H, W) of `units` (uint8, or float in [0, 1]),
    `per_unit` the probe's rows of the layer (top_index, dead), the random test images `rand_idx`."""
    if not below:
        return [unit_record(u, {}, threshold, False, 0) for u in units]
    n = len(test_images)
    width = sum(layer["units"] for layer in below)
    k_max = max((len(per_unit[u].get("top_index", [])) for u in units), default=0)
    group = max(1, PAIR_FLOATS // max(1, width * (1 + k_max + len(rand_idx))))
    rows = []
    for g0 in range(0, len(units), group):
        us = units[g0:g0 + group]
        tops = [[int(t) for t in per_unit[u].get("top_index", []) if 0 <= int(t) < n] for u in us]
        pics = contributions(model, target, below, pictures[g0:g0 + group], us, device)
        idx = [t for ts in tops for t in ts] + [int(j) for _ in us for j in rand_idx]
        who = [u for u, ts in zip(us, tops) for _ in ts] + [u for u in us for _ in rand_idx]
        nat = contributions(model, target, below, _Rows(test_images, idx), who, device)
        start, r0 = 0, sum(len(ts) for ts in tops)
        for i, (u, ts) in enumerate(zip(us, tops)):
            per_layer = {}
            for layer, pic, c in zip(below, pics, nat):
                if pic is None or c is None or not ts:
                    continue
                per_layer[layer["name"]] = layer_similarities(
                    pic[i], c[start:start + len(ts)], c[r0 + i * len(rand_idx):r0 + (i + 1) * len(rand_idx)])
            start += len(ts)
            rows.append(unit_record(u, per_layer, threshold, bool(per_unit[u].get("dead")), len(ts)))
    return rows


class _Rows:
    """Rows `idx` of a (memory-mapped) image tensor, read a slice at a time."""

    def __init__(self, images, idx: list[int]):
        self.images, self.idx = images, np.asarray(idx, np.int64)

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, sl: slice):
        return self.images[torch.from_numpy(self.idx[sl])]


def trust_scores(model, units: dict, probe_summary: dict, test_images, pictures: dict[str, tuple[list[int], np.ndarray]],
                 *, images: int, layers_below_n: int, threshold: float, seed: int = 0, device="cpu",
                 log=None) -> dict:
    """trust.json's record (module docstring). `pictures`: per layer name, its visualized units and
    their pictures (N, C, H, W), uint8 or float in [0, 1], or a function returning them (called when
    the layer's turn comes); `test_images`: the test set (uint8, may be memory-mapped)."""
    check_settings(images, layers_below_n, threshold)
    by_name = {layer["name"]: layer for layer in units["layers"]}
    probe_layers = {e["name"]: e for e in probe_summary["layers"]}
    below = layers_below(units, layers_below_n)
    rand_idx = sample_indices(len(test_images), images, seed)
    out_layers = []
    for name in (n for n in by_name if n in pictures):
        if name not in probe_layers:
            raise FeatvizError(f"trust: probe.json has no layer '{name}' (re-run `featviz probe`)")
        us, imgs = pictures[name]
        imgs = imgs() if callable(imgs) else imgs
        per_unit = probe_layers[name]["per_unit"]
        if any(u >= len(per_unit) for u in us):
            raise FeatvizError(f"trust: probe.json's layer '{name}' has {len(per_unit)} units, the pictures go up to "
                               f"unit {max(us)} (re-run `featviz probe`)")
        if log:
            log(f"trust: {name}: {len(us)} pictures, paths in {', '.join(below[name]) or 'no layer below'}")
        rows = layer_scores(model, by_name[name], [by_name[b] for b in below[name]], us, imgs, per_unit, test_images,
                            rand_idx, threshold, device)
        out_layers.append({"name": name, "kind": by_name[name]["kind"], "below": below[name], "units": rows})
    scored = [r for layer in out_layers for r in layer["units"] if r["score"] is not None]
    return {"version": 1, "measure": MEASURE, "images": int(len(rand_idx)), "layers_below": layers_below_n,
            "threshold": threshold, "seed": seed, "layers": out_layers,
            "summary": {"units": sum(len(layer["units"]) for layer in out_layers), "scored": len(scored),
                        "unnatural": sum(bool(r["unnatural"]) for r in scored)}}


def read_pictures(folder, units: dict) -> dict[str, tuple[list[int], object]]:
    """Every layer's visualized units and a function reading their ascent pictures (final images,
    no snapshots) when called: uint8 (N, C, H, W) in unit order, as the chunks store them, checked
    against units.json's input shape. One layer's pictures are in memory at a time."""
    from .io import pack_images
    from .chunks import read_chunk_images, read_layer_ascent

    out = {}
    for layer in units["layers"]:
        data = read_layer_ascent(folder.ascent_dir(layer["name"]))
        if data is None:
            continue

        def pixels(data=data, name=layer["name"]) -> np.ndarray:
            parts = [pack_images(read_chunk_images(chunk, (), count)[0]) for chunk, count in zip(data.chunks, data.counts)]
            images = np.concatenate(parts)
            if list(images.shape[1:]) != list(units["input_shape"]):
                raise FeatvizError(f"trust: the pictures of layer '{name}' are {list(images.shape[1:])}, the "
                                   f"network takes {units['input_shape']}: re-run its ascent jobs")
            return images

        out[layer["name"]] = (data.units, pixels)
    return out


def run_trust(results: Path, data_dir: Path, out: Path, cfg: dict, *, seed: int = 0, device: str = "cpu",
              trust_checkpoint: bool = False) -> dict:
    """`featviz trust`: every input checked before any compute, then trust.json written atomically."""
    from .artifacts import check_prepared_file, read_prepared, read_probe_summary, read_units
    from .device import resolve_device
    from .errors import why
    from .model import load_model
    from .results import RunFolder, write_trust

    check_settings(cfg["images"], cfg["layers_below"], cfg["threshold"])
    folder = RunFolder(results)
    units = read_units(folder.units)
    if not folder.probe_json.is_file():
        raise FeatvizError(f"trust: {folder.probe_json} is missing (run `featviz probe` first: the top test images "
                           f"of every unit)")
    probe_summary = read_probe_summary(folder.probe_json)
    pictures = read_pictures(folder, units)
    check_prepared_file(data_dir, "test")
    model = load_model(folder.model_dir, trust_checkpoint)
    if list(units["input_shape"]) != list(model.input_shape):
        raise FeatvizError(f"units file {folder.units} was made for inputs {units['input_shape']}, the model in "
                           f"{folder.model_dir} takes {list(model.input_shape)}: re-run `featviz units`")
    test = read_prepared(data_dir, "test", mmap=True)
    if list(test.images.shape[1:]) != list(model.input_shape):
        raise FeatvizError(f"prepared dataset {data_dir} holds {list(test.images.shape[1:])} images, the model in "
                           f"{folder.model_dir} takes {list(model.input_shape)}")
    dev = resolve_device(device)
    model.to(dev)
    try:
        rec = trust_scores(model, units, probe_summary, test.images, pictures, images=cfg["images"],
                           layers_below_n=cfg["layers_below"], threshold=cfg["threshold"], seed=seed, device=dev,
                           log=lambda line: print(line, flush=True))
    except torch.OutOfMemoryError as exc:
        raise FeatvizError(f"trust: out of memory on {dev} ({why(exc)})") from None
    write_trust(out, rec)
    s = rec["summary"]
    print(f"trust: {s['units']} pictures, {s['scored']} scored, {s['unnatural']} take an unnatural path "
          f"(score < {rec['threshold']})", flush=True)
    return rec
