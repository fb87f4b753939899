"""Method comparison (`ascent.compare`, the methods page): the same few units of a layer visualized
by several recipes, or one recipe with overrides (seed 001's without/with regularization, seed 003's
lr and blur/median sweeps), each with its scores and its time per unit (the job's batch time / its units).

One job per entry (all its layers in one process, `run_compare_layers`) writes
results/<run>/compare/<entry slug>/<layer>.npz (uint8 images) and .json (per-unit stats). The config side (`resolve_compare`, `check_compare`) needs no torch; the job
(`run_compare`) imports it when it runs.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from .errors import FeatvizError
from .schema import with_defaults


def entry_slug(label: str) -> str:
    """The folder name of a comparison entry: lower case letters, digits, `.`, `_`, `-`."""
    s = re.sub(r"[^a-z0-9._-]+", "-", label.lower()).strip("-._")
    return s[:60] or "entry"


def _default_label(recipe: str, overrides: dict) -> str:
    if not overrides:
        return recipe
    return recipe + "+" + ",".join(f"{k}={v}" for k, v in overrides.items())


def resolve_compare(compare: dict | None, where: str = "ascent.compare", check: bool = True) -> dict | None:
    """The compare section with its defaults and its entries resolved: each entry
    `{recipe, overrides, label, slug}`; None where there is no comparison. With `check`, recipe names
    and override keys/values are checked (featviz.ascent.get_recipe, which imports torch): one
    FeatvizError naming the key. The report reads the entries without (it never imports torch)."""
    if compare is None:
        return None
    if not isinstance(compare, dict) or not compare.get("recipes"):
        raise FeatvizError(f"{where}.recipes: a comparison needs a non-empty list of recipes")
    out = with_defaults(("ascent", "compare"), compare)  # the schema's defaults of the keys it leaves out
    n = out["units_per_layer"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise FeatvizError(f"{where}.units_per_layer: {n!r} is not a positive integer")
    _check_explicit_units(out["units"], f"{where}.units")
    entries, labels, slugs = [], {}, {}
    for j, item in enumerate(compare["recipes"]):
        key = f"{where}.recipes[{j}]"
        if isinstance(item, str):
            item = {"recipe": item}
        if not isinstance(item, dict) or not isinstance(item.get("recipe"), str):
            raise FeatvizError(f"{key}: {item!r} is not a recipe name or {{recipe: NAME, overrides: {{...}}, label: TEXT}}")
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise FeatvizError(f"{key}.overrides: {overrides!r} is not a mapping of recipe parameters")
        try:
            if check:
                from .ascent import get_recipe

                get_recipe(item["recipe"], overrides)
        except ValueError as exc:  # featviz.ascent.RecipeError
            sub = "recipe" if str(exc).startswith("unknown recipe '") else "overrides"
            raise FeatvizError(f"{key}.{sub}: {exc}") from None
        label = str(item.get("label") or _default_label(item["recipe"], overrides))
        slug = entry_slug(label)
        for seen, what, value in ((labels, "label", label), (slugs, "folder name", slug)):
            if value in seen:
                raise FeatvizError(f"{key}: {what} '{value}' is also recipes[{seen[value]}]'s; give each entry "
                                   f"its own `label`")
            seen[value] = j
        entries.append({"recipe": item["recipe"], "overrides": dict(overrides), "label": label, "slug": slug})
    out["entries"] = entries
    return out


def _check_explicit_units(units, where: str) -> None:
    """`compare.units`: null, or per layer name a non-empty list of distinct unit indices >= 0."""
    if units is None:
        return
    if not isinstance(units, dict):
        raise FeatvizError(f"{where}: {units!r} is not a mapping of layer names to unit lists, e.g. {{conv2: [0, 5]}}")
    for name, ids in units.items():
        if not isinstance(ids, list) or not ids or not all(
                isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in ids):
            raise FeatvizError(f"{where}.{name}: {ids!r} is not a non-empty list of unit indices (integers >= 0)")
        if len(set(ids)) != len(ids):
            raise FeatvizError(f"{where}.{name}: {ids!r} lists a unit twice")


def compare_layers(units_info: dict, compare: dict) -> list[dict]:
    """The layers of units.json the comparison covers: `compare.layers`, else every layer."""
    wanted = compare.get("layers")
    if not wanted:
        return list(units_info["layers"])
    by_name = {layer["name"]: layer for layer in units_info["layers"]}
    return [by_name[name] for name in wanted if name in by_name]


def compare_units(layer: dict, n: int, picked: list[int] | None = None) -> list[int]:
    """`n` units of a layer, evenly spaced over its units (or over `ascent.units`' list for it):
    the same units for every entry."""
    pool = sorted(set(picked)) if picked else list(range(layer["units"]))
    if len(pool) <= n:
        return pool
    return [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)] if n > 1 else [pool[0]]


def check_compare(units_info: dict, ascent_cfg: dict, where: str = "ascent") -> None:
    """What depends on the network, checked against units.json before any job: `compare.layers` name
    layers it has, and each entry's network-dependent values (transforms, neuron_pos) hold on them."""
    from .ascent_job import check_recipe_values
    from .units import find_layer

    compare = resolve_compare(ascent_cfg.get("compare"), f"{where}.compare")
    if compare is None:
        return
    for name in compare.get("layers") or []:
        try:
            find_layer(units_info, name)
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.compare.layers: {exc}") from None
    layers = [layer["name"] for layer in compare_layers(units_info, compare)]
    for name, ids in (compare.get("units") or {}).items():
        try:
            layer = find_layer(units_info, name)
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.compare.units: {exc}") from None
        if name not in layers:
            raise FeatvizError(f"{where}.compare.units.{name}: layer '{name}' is not compared "
                               f"(compare.layers: {layers})")
        bad = [u for u in ids if u >= layer["units"]]
        if bad:
            raise FeatvizError(f"{where}.compare.units.{name}: unit {bad[0]} is out of range ('{name}' has "
                               f"{layer['units']} units: 0..{layer['units'] - 1})")
    for j, e in enumerate(compare["entries"]):
        cfg = {"layers": layers, "recipe": {k: e["recipe"] for k in ("conv", "dense", "class")},
               "overrides": {k: e["overrides"] for k in ("conv", "dense", "class")}}
        try:
            check_recipe_values(units_info, cfg, "")
        except FeatvizError as exc:
            detail = re.sub(r"^\.overrides\.(conv|dense|class)", "", str(exc))
            raise FeatvizError(f"{where}.compare.recipes[{j}].overrides{detail}") from None


def job_config(ascent_cfg: dict, entry: dict, layer_name: str) -> dict:
    """What one comparison job reads (so that changing anything else reruns none of them)."""
    ascent = with_defaults("ascent", ascent_cfg)
    compare = resolve_compare(ascent["compare"])
    return {"recipe": entry["recipe"], "overrides": entry["overrides"], "label": entry["label"],
            "units_per_layer": compare["units_per_layer"],
            "units": (ascent["units"] or {}).get(layer_name),
            "explicit": (compare.get("units") or {}).get(layer_name),
            "seed": int(ascent["seed"]), "precision": ascent["precision"],
            "channels_last": bool(ascent["channels_last"])}


JOB_ASCENT_KEYS = ("seed", "precision", "channels_last")  # a job config's keys that are the ascent's


def check_compare_job(units_json: Path, layer_name: str, cfg: dict):
    """Everything one comparison job checks before it loads the model: its config (keys and values
    against the schema, as the workflow writes it), the layer and the units. Returns
    (entry, units.json, layer, the units compared)."""
    from .artifacts import read_units
    from .units import find_layer
    from .verb_args import check_compare_config

    check_compare_config(cfg, layer_name)  # keys and values against the schema, as the workflow's
    entry = resolve_compare({"recipes": [{"recipe": cfg["recipe"], "overrides": cfg.get("overrides") or {},
                                          "label": cfg["label"]}],
                             "units_per_layer": cfg["units_per_layer"]}, "compare")["entries"][0]
    units_info = read_units(units_json)
    layer = find_layer(units_info, layer_name)
    picked = cfg.get("units")
    if picked:
        bad = [u for u in picked if not (isinstance(u, int) and 0 <= u < layer["units"])]
        if bad:
            raise FeatvizError(f"compare --config units: unit {bad[0]} is out of range ({layer_name} has "
                               f"{layer['units']} units)")
    check_compare(units_info, {"compare": {"recipes": [{k: entry[k] for k in ("recipe", "overrides", "label")}],
                                           "layers": [layer_name]}}, "compare")
    explicit = cfg.get("explicit")
    if explicit:  # ascent.compare.units: exactly these, in this order
        _check_explicit_units({layer_name: explicit}, "compare --config explicit")
        bad = [u for u in explicit if u >= layer["units"]]
        if bad:
            raise FeatvizError(f"compare --config explicit: unit {bad[0]} is out of range ({layer_name} has "
                               f"{layer['units']} units)")
        units = list(explicit)
    else:
        units = compare_units(layer, int(cfg["units_per_layer"]), picked)
    return entry, units_info, layer, units


def run_compare(model_dir: Path, units_json: Path, layer_name: str, cfg: dict, out_npz: Path, out_json: Path,
                device: str = "auto", trust: bool = False, transfer_model_dir: Path | None = None,
                spectrum: Path | None = None) -> dict:
    """One comparison job: the layer's compared units in one batch with the recipe entry `cfg`
    describes; each unit's time is the batch's time divided by its units. Class images are also
    scored by the run's independent model (`transfer_model_dir`), where it is valid
    (featviz.transfer.load_transfer_model)."""
    import torch

    from .ascent import get_recipe, visualize
    from .ascent.hooks import ActivationReader
    from .ascent.objectives import for_kind
    from .ascent_job import channels_last_works, check_units_match, spectrum_for
    from .device import resolve_device, resolve_precision
    from .io import pack_images, write_json, write_npz
    from .model import load_model
    from .chunks import TRANSPARENCY, pack_transparency

    entry, units_info, layer, units = check_compare_job(units_json, layer_name, cfg)
    recipe = get_recipe(entry["recipe"], entry["overrides"])
    magnitude = spectrum_for(spectrum, recipe, int(units_info["input_shape"][0]), f"compare {entry['label']}")
    dev = resolve_device(device)
    model = load_model(model_dir, trust)
    check_units_match(model, units_info, layer, Path(units_json))
    model = model.to(dev)
    kind = layer["kind"]
    target = None if kind == "class" else layer_name
    # the ascent settings a job config leaves out: the schema's ascent defaults
    ascent = with_defaults("ascent", {k: cfg[k] for k in JOB_ASCENT_KEYS if k in cfg})
    seed = int(ascent["seed"])
    precision = resolve_precision(ascent["precision"], dev, "ascent.precision")
    channels_last = channels_last_works(model, dev, bool(ascent["channels_last"]))
    # the probe's measure (channel mean, unit value, logit), whatever the recipe optimizes (a sum,
    # one neuron): comparable across recipes and with the unit's strongest test image
    measure = for_kind(kind, target, units, get_recipe("hvass"))
    # one batch, as the report's own ascent runs them (a unit's image does not depend on its batch);
    # each unit's time is the batch's share: wall time is what a user waits, CPU time (all threads)
    # is less sensitive to other load
    started, cpu = time.perf_counter(), time.process_time()
    result = visualize(model.net, target, units, kind, tuple(model.input_shape), normalize=model.normalize,
                       recipe=entry["recipe"], overrides=entry["overrides"], seed=seed, device=str(dev),
                       progress=False, precision=precision, channels_last=channels_last, spectrum=magnitude)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    images = result.images
    stats = [{**st, "wall_s": round(wall / len(units), 4), "cpu_s": round(cpu / len(units), 4)}
             for st in result.stats]
    traces = [result.trace]
    with torch.no_grad(), ActivationReader(model.net, set(measure.layers)) as reader:
        acts = reader(model.normalize(torch.from_numpy(images).to(dev)))
        activation = measure(acts, torch.arange(len(units))).double().cpu().numpy()
    for st, a in zip(stats, activation):
        st["activation"] = float(a) if np.isfinite(a) else None
    tinfo = None
    if kind == "class" and transfer_model_dir is not None:
        from .transfer import load_transfer_model

        tmodel, tinfo = load_transfer_model(transfer_model_dir, model, dev, trust)
        if tmodel is not None:
            q = tmodel.predict(torch.from_numpy(images), dev, batch_size=256).numpy()
            for st, u, row in zip(stats, units, q):
                st["transfer_softmax"] = float(row[u])
                st["transfer_recognized"] = bool(row.argmax() == u)
    # trace: (units, steps) float32, each unit's objective before every step (docs/ascent.md, "Trace")
    extra = {} if result.transparency is None else {TRANSPARENCY: pack_transparency(result.transparency)}
    write_npz(out_npz, images=pack_images(images), units=np.asarray(units, dtype=np.int64),
              activation=activation.astype(np.float32), trace=np.concatenate(traces).astype(np.float32), **extra)
    record = {"layer": layer_name, "kind": kind, "units": units, "label": entry["label"], "slug": entry["slug"],
              "entry": {k: entry[k] for k in ("recipe", "overrides", "label")}, "recipe": recipe, "seed": seed,
              "device": str(dev), "precision": precision, "channels_last": channels_last, "wall_s": round(sum(s["wall_s"] for s in stats), 3), "stats": stats,
              "transfer_model": tinfo}
    write_json(out_json, record)
    print(f"compare {entry['label']} on {layer_name}: units {units} in {record['wall_s']:.2f} s on {dev}", flush=True)
    return record


def run_compare_layers(model_dir: Path, units_json: Path, jobs: list[tuple[str, dict]], out_dir: Path,
                       device: str = "auto", trust: bool = False, transfer_model_dir: Path | None = None,
                       spectrum: Path | None = None) -> list[dict]:
    """One entry's comparison on several layers in one process (`jobs`: (layer, its job config)),
    written as out_dir/<layer>.npz + .json. Every layer's config is checked before any is computed,
    and the folder appears whole or not at all (built beside it, then renamed into place; a folder
    already there is replaced only then)."""
    import shutil

    names = [layer for layer, _ in jobs]
    if not jobs or len(set(names)) != len(names):
        raise FeatvizError(f"compare --layer: each layer once, at least one (given: {', '.join(names) or 'none'})")
    for layer, cfg in jobs:
        check_compare_job(units_json, layer, cfg)
    out_dir = Path(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        records = [run_compare(model_dir, units_json, layer, cfg, partial / f"{layer}.npz", partial / f"{layer}.json",
                               device=device, trust=trust, transfer_model_dir=transfer_model_dir,
                               spectrum=spectrum)
                   for layer, cfg in jobs]
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old")
    if out_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    partial.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return records


# ---------------------------------------------------------------------------------------------- reading

def score(stat: dict, base: dict | None) -> dict:
    """The scores of one compared image against the unit's probe baseline `base` (probe.json
    per_unit: `max` and `mean` over the test images of the probe's measure):

    - `reached`: (activation - test mean) / (test max - test mean): 0 is an average test image, 1
      the unit's strongest test image, above 1 stronger than any. (The plain ratio activation / test
      max is undefined where the strongest test activation is <= 0, e.g. every pre-ReLU conv2
      channel of the quick MNIST net, whose spatial means are negative on all test images; where the
      test mean is 0 the two agree.) `ratio`: that plain ratio, where test max > 0.
    - robustness, target softmax (classes), steps, wall and CPU time, as the job measured them."""
    a = stat.get("activation")
    hi = base.get("max") if base else None
    lo = base.get("mean") if base else None
    reached = (a - lo) / (hi - lo) if a is not None and hi is not None and lo is not None and hi > lo else None
    ratio = a / hi if a is not None and hi is not None and hi > 0 else None
    return {"reached": reached, "ratio": ratio, "activation": a, "robustness": stat.get("robustness"),
            "target_softmax": stat.get("target_softmax"), "transfer_softmax": stat.get("transfer_softmax"),
            "transfer_recognized": stat.get("transfer_recognized"),
            "wall_s": stat.get("wall_s"), "cpu_s": stat.get("cpu_s"),
            "steps": stat.get("steps"), "dead": bool(stat.get("dead"))}


SCORES = ("reached", "robustness", "target_softmax", "transfer_softmax", "transfer_recognized", "steps", "wall_s",
          "cpu_s")


def summarize(scores: list[dict]) -> dict:
    """Means over a layer's compared units of each score (None values left out), and the median of
    `reached` (`reached_median`: a unit whose strongest test image barely activates it makes the
    mean of ratios large)."""
    def finite(key):
        return [float(s[key]) for s in scores if s.get(key) is not None and np.isfinite(s[key])]

    out = {k: (sum(finite(k)) / len(finite(k)) if finite(k) else None) for k in SCORES}
    out["reached_median"] = float(np.median(finite("reached"))) if finite("reached") else None
    return out


def read_compare(results: Path, entries: list[dict] | None = None) -> list[dict]:
    """results/<run>/compare/: per entry (in config order where `entries` is given, else by folder)
    `{slug, label, entry, layers: {layer: {json: record, npz: path}}}`. No pixels are read."""
    root = Path(results) / "compare"
    if not root.is_dir():
        return []
    slugs = [e["slug"] for e in entries] if entries else sorted(p.name for p in root.iterdir() if p.is_dir())
    out = []
    for s in slugs:
        folder = root / s
        if not folder.is_dir():
            continue
        layers = {}
        for js in sorted(folder.glob("*.json")):
            from .artifacts import read_compare_record

            rec = read_compare_record(js)
            npz = js.with_suffix(".npz")
            if npz.is_file():
                layers[rec["layer"]] = {"record": rec, "npz": npz}
        if layers:
            first = next(iter(layers.values()))["record"]
            out.append({"slug": s, "label": first["label"], "entry": first["entry"], "layers": layers})
    return out
