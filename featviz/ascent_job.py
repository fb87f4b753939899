"""One ascent job: visualize one chunk of units of one layer in a single batch and store the
images (.npz) and per-unit stats (.json) side by side."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from .artifacts import read_units
from .ascent import RecipeError, auto_chunk_size, get_recipe, visualize
from .ascent.render import batch_size as batch_used
from .ascent.recipes import AUTO, auto_recipe
from .ascent.views import Views
from .checks import check_sections
from .chunks import write_chunk
from .device import resolve_device, resolve_precision
from .errors import FeatvizError
from .io import pack_images
from .model import load_model
from .results import read_spectrum
from .schema import with_defaults
from .units import check_selection, chunks, find_layer, layer_names, selected_units

SNAPSHOT_SIZE = 64  # evolution snapshots are stored (and shown) at most this many pixels high


def small_snapshot(images: np.ndarray, size: int = SNAPSHOT_SIZE) -> np.ndarray:
    """(N, C, H, W) float -> uint8, area-downscaled so that the longer side is at most `size`."""
    h, w = images.shape[-2:]
    if max(h, w) > size:
        factor = max(h, w) / size
        out = (max(1, round(h / factor)), max(1, round(w / factor)))
        images = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(images, np.float32)),
                                                 size=out, mode="area").numpy()
    return pack_images(images)


KINDS = ("conv", "dense", "class")


def channels_last_works(model, dev, wanted: bool) -> bool:
    """`ascent.channels_last` where the network runs on NHWC tensors: a user's forward that calls
    `.view` on a conv output (`x.view(x.size(0), -1)`) fails on them, and then the ascent runs
    contiguous (one log line says so) instead of failing."""
    if not wanted:
        return False
    why_not = model.use_channels_last(dev)
    if why_not is not None:
        print(f"ascent.channels_last: the network's forward pass fails on NHWC tensors ({why_not}); "
              f"running contiguous", flush=True)
    return why_not is None


def recipe_for(kind: str, ascent_cfg: dict, layer: str | None = None, input_size=None) -> tuple[str, dict]:
    """The recipe and overrides of a layer's units: `recipe.layers.<layer>` where given, else
    `recipe.<kind>`; `overrides.<kind>` with `overrides.layers.<layer>` applied over it (seed 003's
    table: lr and median settings differ per layer). `auto` becomes the kind's recipe for an input of
    `input_size`, (C, H, W) or (H, W) (without one: `auto` itself, overrides unchecked)."""
    recipes = ascent_cfg.get("recipe") or {}
    all_overrides = ascent_cfg.get("overrides") or {}
    per_layer = (recipes.get("layers") or {}).get(layer) if layer is not None else None
    layer_overrides = (all_overrides.get("layers") or {}).get(layer) if layer is not None else None
    # the schema's default where the config leaves the kind out (no default of our own)
    name = per_layer or recipes.get(kind) or with_defaults("ascent", {})["recipe"][kind]
    overrides = {**(all_overrides.get(kind) or {}), **(layer_overrides or {})}
    if name == AUTO:
        if input_size is None:
            return name, overrides
        name, settings = auto_recipe(kind, input_size)
        overrides = {**settings, **overrides}
    try:
        get_recipe(name, overrides)
    except RecipeError as exc:
        key = (f"ascent.recipe.layers.{layer}" if per_layer else f"ascent.recipe.{kind}") \
            if str(exc).startswith("unknown recipe '") else \
            (f"ascent.overrides.layers.{layer}" if layer_overrides else f"ascent.overrides.{kind}")
        raise FeatvizError(f"{key}: {exc}") from None
    return name, overrides


MAX_SHIFT = 4  # pads and jitters: at most this many times the input's longer side


def _transform_problem(spec, size: int | None = None) -> str | None:
    """What is wrong with one transform dict of a recipe's `transforms` list, or None; `size`: the
    input's longer side: a pad or a jitter adds at most 4x that on each side (more only shrinks the
    image to nothing, and a pad with its own `value` allocates it all)."""
    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(spec, dict):
        return f"{spec!r} is not a transform object ({{type: pad|jitter|scale|rotate, ...}})"
    kind = spec.get("type")
    if kind == "pad" and not (isinstance(spec.get("pad"), int) and spec["pad"] >= 0):
        return f"{spec}: pad needs `pad`, a number of pixels >= 0"
    if kind == "jitter" and not (isinstance(spec.get("d"), int) and spec["d"] >= 0):
        return f"{spec}: jitter needs `d`, a number of pixels >= 0"
    if kind in ("scale", "rotate"):
        values = spec.get("choices") if "choices" in spec else spec.get("range")
        if not isinstance(values, list) or not values or not all(num(v) for v in values) \
                or ("choices" not in spec and (len(values) != 2 or values[0] > values[1])):
            return f"{spec}: {kind} needs `choices` (a list of numbers) or `range` ([low, high])"
        if kind == "scale" and min(values) <= 0:
            return f"{spec}: scale factors must be > 0"
    key = {"pad": "pad", "jitter": "d"}.get(kind)
    if key and size is not None and spec[key] > MAX_SHIFT * size:
        return f"{spec}: `{key}` {spec[key]} is more than {MAX_SHIFT}x the input's size ({size} px)"
    if "value" in spec and not num(spec["value"]):
        return f"{spec}: `value` (the fill gray level) must be a number"
    return None


def check_recipe_values(units_info: dict, ascent_cfg: dict, where: str = "ascent") -> None:
    """Recipe parameters whose validity depends on the network, checked against units.json (or the
    network built on paper) before any ascent job: the transforms (presets and each transform's
    keys) and `neuron_pos` inside every selected conv layer, and `views.units` (check_views)."""
    from .ascent.transforms import build as build_transforms

    check_views(units_info, ascent_cfg, where)

    h, w = units_info["input_shape"][1:]
    for section in ("recipe", "overrides"):
        for name in (ascent_cfg.get(section) or {}).get("layers") or {}:
            try:
                find_layer(units_info, name)
            except FeatvizError as exc:
                raise FeatvizError(f"{where}.{section}.layers: {exc}") from None
    for layer in units_info["layers"]:
        kind = layer["kind"]
        if kind not in KINDS or not selected_units(layer, ascent_cfg):
            continue
        try:
            name, overrides = recipe_for(kind, ascent_cfg, layer["name"], units_info["input_shape"])
        except FeatvizError as exc:
            raise FeatvizError(f"{where}{str(exc).removeprefix('ascent')}") from None
        recipe = get_recipe(name, overrides)
        per_layer = any(layer["name"] in ((ascent_cfg.get(s) or {}).get("layers") or {}) for s in ("recipe", "overrides"))
        key = f"{where}.overrides.layers.{layer['name']}" if per_layer else f"{where}.overrides.{kind}"
        try:
            build_transforms(recipe, (h, w))
        except RecipeError as exc:
            raise FeatvizError(f"{key}.transforms: {exc}") from None
        if isinstance(recipe["transforms"], list):
            for i, spec in enumerate(recipe["transforms"]):
                problem = _transform_problem(spec, max(h, w))
                if problem:
                    raise FeatvizError(f"{key}.transforms[{i}]: {problem}")
        if recipe["jitter"] > MAX_SHIFT * max(h, w):
            raise FeatvizError(f"{key}.jitter: {recipe['jitter']} is more than {MAX_SHIFT}x the input's size "
                               f"({max(h, w)} px)")
        pos = recipe["neuron_pos"]
        if kind == "conv" and pos is not None:  # outside a layer whatever the objective: a mistake
            if len(pos) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pos):
                raise FeatvizError(f"{key}.neuron_pos: {pos!r} is not a position [y, x] of integers >= 0")
            shape = layer.get("output_shape") or []
            if len(shape) == 3 and not (pos[0] < shape[1] and pos[1] < shape[2]):
                raise FeatvizError(f"{key}.neuron_pos: {list(pos)} is outside layer {layer['name']}, whose "
                                   f"maps are {shape[1]}x{shape[2]} (y 0..{shape[1] - 1}, x 0..{shape[2] - 1})")


def views_for(layer: dict, units: list[int], ascent_cfg: dict) -> Views | None:
    """The extra views (`ascent.views`, defaults filled) of one chunk's units: for a conv layer, the
    views in `show` for the units `views.units` names for the layer, else for the first
    `units_per_layer` of the layer's visualized units (all of them with null), those in this chunk;
    None where there are none."""
    cfg = ascent_cfg["views"]
    if layer["kind"] != "conv" or not cfg["show"]:
        return None
    named = next((us for key, us in (cfg.get("units") or {}).items() if key in layer_names(layer)), None)
    first = selected_units(layer, ascent_cfg)
    first = set(named if named is not None else first if cfg["units_per_layer"] is None
                else first[:cfg["units_per_layer"]])
    mine = [u for u in units if u in first]
    if not mine:
        return None
    return Views({view: mine for view in cfg["show"]}, int(cfg["diversity_images"]), float(cfg["diversity_weight"]))


def check_views(units_info: dict, ascent_cfg: dict, where: str = "ascent") -> None:
    """`ascent.views.units` names conv layers of units.json and units of them that are visualized."""
    for name, ids in ((ascent_cfg.get("views") or {}).get("units") or {}).items():
        try:
            layer = find_layer(units_info, name)
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.views.units: {exc}") from None
        if layer["kind"] != "conv":
            raise FeatvizError(f"{where}.views.units.{name}: layer '{name}' is not a conv layer (its kind is "
                               f"{layer['kind']}): only conv channels have views")
        shown = set(selected_units(layer, ascent_cfg))
        bad = [u for u in ids if u not in shown]
        if bad:
            why = f"'{name}' has {layer['units']} units" if bad[0] >= layer["units"] else \
                "ascent.layers or ascent.units leave it out"
            raise FeatvizError(f"{where}.views.units.{name}: unit {bad[0]} is not visualized ({why})")


def check_units_match(model, units_info: dict, layer: dict, units_json: Path) -> None:
    """units.json was made for this model: same input and classes, and the layer exists with the
    unit count units.json gives (a stale or edited units.json would index past the layer)."""
    from .units import candidates

    remake = f"re-run `featviz units --model <this model> --out {units_json}`"
    if list(units_info["input_shape"]) != list(model.input_shape) or list(units_info["classes"]) != list(model.classes):
        raise FeatvizError(f"units file {units_json} was made for another model (input shape or classes differ): {remake}")
    if layer["kind"] == "class":
        actual = len(model.classes)
    else:
        found = {e["name"]: e["units"] for e in candidates(model.net, tuple(model.input_shape))[0]}
        if layer["name"] not in found:
            raise FeatvizError(f"units file {units_json}: the model has no module '{layer['name']}': {remake}")
        actual = found[layer["name"]]
    if layer["units"] != actual:
        raise FeatvizError(f"units file {units_json}: layer '{layer['name']}' has {actual} units in the model, not "
                           f"{layer['units']}: {remake}")


def spectrum_for(path: Path | None, recipe: dict, channels: int, where: str) -> np.ndarray | None:
    """The magnitude a job's recipe needs: read from `path` (results/<run>/spectrum.npz) for
    `param: maco`, with an error naming `where` without it or with one of other channels; None for
    every other recipe."""
    if recipe["param"] != "maco":
        return None
    if path is None:
        raise FeatvizError(f"{where}: recipe '{recipe['name']}' (param maco) needs the run's magnitude spectrum: "
                           f"give --spectrum results/<run>/spectrum.npz (made by `featviz spectrum`)")
    mag = read_spectrum(path)
    if mag.shape[0] != channels:
        raise FeatvizError(f"{where}: magnitude spectrum {path} has {mag.shape[0]} channel(s), the network's input "
                           f"{channels}: it was made from other images (re-run `featviz spectrum` on the run's data)")
    return mag


def run_chunk(model_dir: Path, units_json: Path, layer_name: str, chunk: int, ascent_cfg: dict,
              out_npz: Path, out_json: Path, device: str = "auto", trust: bool = False,
              spectrum: Path | None = None) -> dict:
    units_info = read_units(units_json)
    batch_size = ascent_cfg.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise FeatvizError(f"ascent.batch_size: {batch_size!r} is not a positive integer (leave it unset for "
                           "as many units as fit the device's memory)")
    # the checks the DAG makes: the schema's ascent section, then layers and units against units.json
    check_sections(ascent=ascent_cfg)
    ascent_cfg = with_defaults("ascent", ascent_cfg)
    check_selection(units_info, ascent_cfg, "ascent")
    check_recipe_values(units_info, ascent_cfg, "ascent")
    layer = find_layer(units_info, layer_name)
    size = int(ascent_cfg["chunk_size"])
    all_chunks = chunks(selected_units(layer, ascent_cfg), size)
    if not 0 <= chunk < len(all_chunks):
        raise FeatvizError(f"layer '{layer_name}' has {len(all_chunks)} chunks of {size}; no chunk {chunk}")
    units = all_chunks[chunk]
    recipe, overrides = recipe_for(layer["kind"], ascent_cfg, layer_name, units_info["input_shape"])
    magnitude = spectrum_for(spectrum, get_recipe(recipe, overrides), int(units_info["input_shape"][0]), "ascend")
    dev = resolve_device(device)
    precision = resolve_precision(ascent_cfg["precision"], dev, "ascent.precision")
    model = load_model(model_dir, trust)
    check_units_match(model, units_info, layer, Path(units_json))
    model = model.to(dev)
    channels_last = channels_last_works(model, dev, bool(ascent_cfg["channels_last"]))
    seed = int(ascent_cfg["seed"])
    target = None if layer["kind"] == "class" else layer_name
    # units per batch: the config's ascent.batch_size, else as many as fit this device's memory
    batch = batch_size or auto_chunk_size(model.net, target, tuple(model.input_shape), dev)
    views = views_for(layer, units, ascent_cfg)
    torch.manual_seed(seed)
    started = time.perf_counter()
    result = visualize(
        model.net, target, units, layer["kind"],
        tuple(model.input_shape), normalize=model.normalize, recipe=recipe, overrides=overrides,
        seed=seed, device=str(dev), progress=False, max_batch=batch,
        precision=precision, channels_last=channels_last, spectrum=magnitude, views=views)
    wall = time.perf_counter() - started
    record = {
        "layer": layer_name,
        "kind": layer["kind"],
        "chunk": chunk,
        "units": units,
        "recipe": result.recipe,
        "seed": seed,
        "device": str(dev),
        "batch_size": batch_used(result.recipe, len(units), batch),
        "precision": precision,
        "channels_last": channels_last,
        "stats": result.stats,
    }
    if views is not None:  # one record per extra view image, in the order of the npz's view_images
        record["views"] = result.views
        record["view_settings"] = {"diversity_images": views.diversity_images,
                                   "diversity_weight": views.diversity_weight}
    write_chunk(out_npz, out_json, images=pack_images(result.images), objective=result.objective.astype(np.float32),
                units=units, snapshots={step: small_snapshot(arr) for step, arr in result.snapshots.items()},
                trace=result.trace.astype(np.float32), record=record, transparency=result.transparency,
                view_images=None if views is None else pack_images(result.view_images))
    # throughput goes to the log (and Snakemake's benchmark TSV), not the chunk JSON: results stay
    # byte-identical between runs. unit-steps: units x optimization steps actually taken
    unit_steps = sum(int(s.get("steps", 0)) for s in result.stats + (result.views or []))
    extra = f" (+{len(result.views)} view images)" if result.views else ""
    print(f"ascent {layer_name} chunk {chunk}: {len(units)} units{extra} with recipe {recipe} in {wall:.2f} s "
          f"on {dev}, batches of at most {record['batch_size']} units, {unit_steps / max(wall, 1e-9):.1f} unit-steps/s "
          f"({precision}{', channels_last' if channels_last else ''})", flush=True)
    # where the job ran: read by the Slurm CI check, useful to anyone reading the log
    print(f"SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID', 'none')} "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'none')}", flush=True)
    return record
