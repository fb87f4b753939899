"""Each visualized layer on real images (`featviz dream`; the layer pages, as OpenAI Microscope's):
DeepDream and the caricature (featviz.ascent.dream) of the same `images` test images (a seeded
sample, the same for every layer), with the recipe's parameterization, transforms, optimizer and
`steps`. One job per run: every conv and dense layer of units.json that the ascent visualizes.

Cost: per layer, 2 x `steps` forward-backward passes of a batch of `images` images up to the layer.

Output (featviz.results.write_layer_views): `layer_views.npz` with `images` (the test images) and
per layer j `deepdream_<j>` and `caricature_<j>` (uint8, at most `size` px a side),
`layer_views.json` with the layers' names and each picture's objective (the test image's, the
starting point's, the result's).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError

KINDS = ("conv", "dense")


def layer_views_config(cfg: dict | None) -> dict | None:
    """runs[i].layer_views with the schema's defaults filled; None where it is off (`layer_views: null`)."""
    from .checks import check_sections
    from .schema import with_defaults

    if cfg is None:
        return None
    check_sections(layer_views=dict(cfg))
    return with_defaults("layer_views", dict(cfg))


def view_layers(units: dict, select: dict) -> list[dict]:
    """The conv and dense layers of units.json that the ascent visualizes (`select`: its `layers` and
    `units`, checked against units.json; missing: all)."""
    from .units import check_selection, selected_units

    check_selection(units, select, "ascent")
    return [layer for layer in units["layers"] if layer["kind"] in KINDS and selected_units(layer, select)]


def sample(n: int, k: int, seed: int) -> list[int]:
    """k test image indices out of n, a seeded sample in increasing order."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 28])
    return sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False))


def run_dream(results: Path, data_dir: Path, out_dir: Path, cfg: dict, select: dict, *, seed: int = 0,
              device: str = "cpu", trust_checkpoint: bool = False) -> dict:
    """`featviz dream`: every input checked before any compute, then layer_views.{npz,json}."""
    from .artifacts import check_prepared_file, read_prepared, read_units
    from .ascent import RecipeError, get_recipe
    from .ascent.dream import MODES, dream
    from .class_views import shrink, to_u8
    from .device import resolve_device
    from .model import load_model
    from .results import RunFolder, write_layer_views

    overrides = {} if cfg["steps"] is None else {"steps": int(cfg["steps"])}
    try:
        rec = get_recipe(cfg["recipe"], overrides)
    except RecipeError as exc:
        raise FeatvizError(f"layer_views.recipe: {exc}") from None
    if rec["param"] == "maco":
        raise FeatvizError(f"layer_views.recipe: '{cfg['recipe']}' optimizes a MACO phase with a fixed magnitude, "
                           f"which cannot start from a test image (DeepDream); pick a pixel or Fourier recipe")
    folder = RunFolder(results)
    units = read_units(folder.units)
    layers = view_layers(units, select)
    check_prepared_file(data_dir, "test")
    model = load_model(folder.model_dir, trust_checkpoint)
    names = {n for n, _ in model.net.named_modules()}
    for layer in layers:
        if (layer.get("module") or layer["name"]) not in names:
            raise FeatvizError(f"dream: the model has no module '{layer['name']}' (from units.json); re-run `featviz units`")
    test = read_prepared(data_dir, "test", mmap=True)
    if list(test.images.shape[1:]) != list(model.input_shape):
        raise FeatvizError(f"dream: prepared dataset {data_dir} holds {list(test.images.shape[1:])} images, the model "
                           f"in {folder.model_dir} takes {list(model.input_shape)}")
    index = sample(len(test.images), cfg["images"], seed)
    images = torch.as_tensor(np.asarray(test.images[index])).float() / 255.0
    dev = resolve_device(device)
    model.to(dev)
    net = model.net.eval()
    size = cfg["size"]
    arrays = {"images": to_u8(shrink(images, size))}
    record = {"settings": cfg, "seed": seed, "recipe": rec, "images": [
        {"index": i, "label": int(test.labels[i])} for i in index], "layers": []}
    for j, layer in enumerate(layers):
        entry = {"name": layer["name"]}
        for mode in MODES:
            try:
                r = dream(net, layer.get("module") or layer["name"], images, mode, cfg["recipe"], overrides, seed, dev,
                          model.normalize, cfg["cossim_pow"])
            except torch.OutOfMemoryError as exc:
                from .errors import why
                raise FeatvizError(f"dream: out of memory on {dev} at layer '{layer['name']}' ({why(exc)})") from None
            arrays[f"{mode}_{j}"] = to_u8(shrink(torch.as_tensor(r.images), size))
            entry[mode] = {"image": [float(v) for v in r.image], "start": [float(v) for v in r.start],
                           "final": [float(v) for v in r.final]}
        record["layers"].append(entry)
        print(f"dream: {layer['name']}: deepdream {np.mean(entry['deepdream']['image']):.4g} -> "
              f"{np.mean(entry['deepdream']['final']):.4g}, caricature {np.mean(entry['caricature']['start']):.4g} -> "
              f"{np.mean(entry['caricature']['final']):.4g} (the image's own {np.mean(entry['caricature']['image']):.4g})",
              flush=True)
    write_layer_views(out_dir, record, arrays)
    return record
