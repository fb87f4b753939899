"""From a config (already validated against the JSON schema, defaults filled) to the list of runs,
each with a stable id: `<name>-<hash>` where the hash covers everything that determines the
weights (dataset and its options, network, training settings, seed). Also the checks that need
featviz's own knowledge (dataset names, presets, recipes, layer names) so that a bad config stops
before any job with one message naming the key.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .checks import _check_model, check_sections, expected_input  # noqa: F401 (check_sections: re-exported)
from .errors import FeatvizError

# the schema's readers are re-exported for callers that import them from here (the workflow, the CLI)
from .schema import SCHEMA_PATH, fill_defaults, load_schema, schema_error, with_defaults  # noqa: F401

ENV_DATA_ROOT = "FEATVIZ_DATA_ROOT"
# Options that decide where bytes come from, not what they are: they stay out of the hash.
_DATA_KEYS_NOT_HASHED = ("download", "source")
# Keys added after run ids existed: hashed only when set, so that older configs keep their ids.
_DATA_KEYS_HASHED_WHEN_SET = ("resize",)


def short_hash(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    dataset: str
    data_key: str
    data: dict
    model: dict
    train: dict
    ascent: dict
    seed: int
    probe: dict = field(default_factory=dict)
    circuits: dict | None = field(default_factory=dict)  # None: `circuits: null`, no circuits stage
    match: dict = field(default_factory=dict)
    trust: dict | None = field(default_factory=dict)  # None: not measured
    input_shape: tuple[int, int, int] | None = None  # (C, H, W) of its inputs, where known before its data is prepared
    attribution: dict | None = field(default_factory=dict)  # None: no class views (featviz attribute)
    layer_views: dict | None = field(default_factory=dict)  # None: no layer views (featviz dream)

    @property
    def imported(self) -> bool:
        """The run's network comes from elsewhere (a file, or torchvision's pretrained weights)."""
        return bool(self.model.get("import") or self.model.get("weights"))

    def data_config(self) -> dict:
        return {"dataset": self.dataset, **self.data}


def top_level(config: dict) -> dict:
    """A shallow copy of a config with the schema's defaults of its top-level keys (data_root,
    device, seed, trust_checkpoint) filled, as validation fills them."""
    out = dict(config)
    schema = load_schema()
    if schema is not None:
        for key, sub in schema["properties"].items():
            if key not in out and "default" in sub:
                out[key] = sub["default"]
    return out


def data_root(config: dict) -> Path:
    """The data root: $FEATVIZ_DATA_ROOT, else the config's data_root (the schema's default where unset)."""
    return Path(os.environ.get(ENV_DATA_ROOT) or top_level(config)["data_root"])


def export_data_root(config: dict) -> Path:
    """Put the resolved data root in the environment, where every `featviz data` job (local, or
    on Slurm, which exports the environment) reads it."""
    root = data_root(config).resolve()
    os.environ[ENV_DATA_ROOT] = str(root)
    return root


def _data_identity(run_cfg: dict) -> dict:
    data = {k: v for k, v in (run_cfg.get("data") or {}).items()
            if k not in _DATA_KEYS_NOT_HASHED and not (k in _DATA_KEYS_HASHED_WHEN_SET and v is None)}
    return {"dataset": run_cfg["dataset"], **data}


def _check_selection(where: str, r: dict, model_cfg: dict) -> None:
    """ascent.targets / ascent.layers / ascent.units name modules, layers and units that exist in
    the network (built here, untrained, for a network featviz trains; an imported network's layers
    are only known once it is imported: the workflow checks them when units.json exists)."""
    from .model.architecture import build_architecture, describe, zoo_of
    from .units import check_selection, enumerate_units

    shape = expected_input(r)
    if shape is None or model_cfg.get("import") or model_cfg.get("weights"):
        return
    try:
        net = build_architecture(describe(model_cfg), shape[0], shape[1])
    except FeatvizError as exc:
        raise FeatvizError(f"{where}.{exc}") from None
    ascent = r.get("ascent") or {}
    try:
        units = enumerate_units(net, shape[0], [str(i) for i in range(shape[1])], ascent.get("targets"),
                                family=zoo_of(model_cfg) or "spec")
    except FeatvizError as exc:
        raise FeatvizError(f"{where}.{exc}") from None
    check_selection(units, ascent, f"{where}.ascent")
    from .ascent_job import check_recipe_values

    check_recipe_values(units, ascent, f"{where}.ascent")
    from .compare import check_compare

    check_compare(units, ascent, f"{where}.ascent")


def _check_run(i: int, r: dict) -> None:
    from .ascent import RecipeError, get_recipe
    from .ascent.recipes import AUTO, AUTO_RECIPES, check_overrides
    from .data import DATASET_NAMES

    where = f"runs[{i}]"
    if r["dataset"] not in DATASET_NAMES:
        raise FeatvizError(f"{where}.dataset: unknown dataset '{r['dataset']}' (known: {', '.join(DATASET_NAMES)})")
    data = r.get("data") or {}
    if r["dataset"] == "imagefolder" and not data.get("path"):
        raise FeatvizError(f"{where}.data.path: required for dataset imagefolder (a folder with train/<class>/ images)")
    if data.get("path") and not Path(data["path"]).is_dir():
        raise FeatvizError(f"{where}.data.path: folder {data['path']} does not exist")
    if data.get("resize") is not None:
        size = data.get("image_size")
        if not size:
            raise FeatvizError(f"{where}.data.resize: needs data.image_size (the centre crop taken after resizing)")
        if data["resize"] < max(size):
            raise FeatvizError(f"{where}.data.resize: {data['resize']} is smaller than the crop data.image_size "
                               f"{list(size)}; resize the shorter side to at least {max(size)}")
    imported = bool((r.get("model") or {}).get("import") or (r.get("model") or {}).get("weights"))
    if r["dataset"] == "imagefolder":
        from .data import check_classes

        split = Path(data["path"], "train")
        if not split.is_dir():
            if not imported:
                raise FeatvizError(f"{where}.data.path: {data['path']} has no train/ folder: featviz trains this run's "
                                   f"network on train/<class>/<image> (an imported network needs only test/)")
            split = Path(data["path"], "test")
        if split.is_dir():
            check_classes(sorted(d.name for d in split.iterdir() if d.is_dir() and not d.name.startswith(".")),
                          f"{where}.data.path")
    if data.get("source") and not Path(data["source"]).is_dir():
        raise FeatvizError(f"{where}.data.source: folder {data['source']} does not exist")
    model = r.get("model") or {}
    _check_model(where, model)
    ascent = r.get("ascent") or {}
    recipes, overrides = ascent.get("recipe") or {}, ascent.get("overrides") or {}
    for kind, name in recipes.items():
        if kind == "layers":
            continue
        try:
            for choice, settings in AUTO_RECIPES[kind] if name == AUTO else [(name, {})]:  # auto: each it may be
                get_recipe(choice, {**settings, **(overrides.get(kind) or {})})
        except RecipeError as exc:
            section = "recipe" if str(exc).startswith("unknown recipe '") else "overrides"
            also = f"; or {AUTO}, the default" if section == "recipe" else ""
            raise FeatvizError(f"{where}.ascent.{section}.{kind}: {exc}{also}") from None
    # per-layer recipes by name here; their layer names, and per-layer overrides with the recipe of
    # the layer they apply to, against the network (_check_selection, or the workflow's units.json)
    for layer, name in (recipes.get("layers") or {}).items():
        try:
            if name != AUTO:
                get_recipe(name, None)
        except RecipeError as exc:
            raise FeatvizError(f"{where}.ascent.recipe.layers.{layer}: {exc}") from None
    for layer, values in (overrides.get("layers") or {}).items():  # values and ranges, whatever the recipe
        try:
            check_overrides(values)
        except RecipeError as exc:
            raise FeatvizError(f"{where}.ascent.overrides.layers.{layer}: {exc}") from None
    from .compare import resolve_compare

    resolve_compare(ascent.get("compare"), f"{where}.ascent.compare")  # recipe names, override values
    _check_selection(where, r, model)  # then what depends on the network (layers, units, recipe values)


def _zoo_input_size(r: dict) -> dict:
    """A run importing a timm network on an image folder whose config gives no `data.image_size`:
    timm's pretrained config's input size and crop (`resize` = size / crop_pct, as timm evaluates)."""
    model, data = r.get("model") or {}, dict(r.get("data") or {})
    if not (model.get("timm") and (model.get("import") or model.get("weights"))) or r["dataset"] != "imagefolder" \
            or data.get("image_size"):
        return r
    from .model.timm_archs import pretrained_config

    cfg = pretrained_config(model["timm"])
    if not cfg.get("input_size"):
        return r
    h, w = (int(v) for v in cfg["input_size"][1:])
    data["image_size"] = [h, w]
    if data.get("resize") is None:
        data["resize"] = int(round(max(h, w) / float(cfg.get("crop_pct") or 1.0)))
    return {**r, "data": data}


def _input_shape(r: dict) -> tuple[int, int, int] | None:
    """(C, H, W) of the run's inputs where known before its data is prepared (expected_input)."""
    try:
        shape = expected_input(r)
    except (OSError, KeyError, TypeError):
        return None
    return None if shape is None else tuple(int(v) for v in shape[0])


def resolve_runs(config: dict) -> list[Run]:
    """The runs of a validated config, checked, with their ids. Raises FeatvizError."""
    root = data_root(config)
    if not root.is_dir():
        where = f"environment variable {ENV_DATA_ROOT}" if os.environ.get(ENV_DATA_ROOT) else "data_root"
        raise FeatvizError(f"{where}: folder '{root}' does not exist (create it, or point {ENV_DATA_ROOT} at your data)")
    config = top_level(config)
    runs, seen = [], {}
    for i, r in enumerate(config.get("runs") or []):
        _check_run(i, r)
        r = _zoo_input_size(r)
        name = r.get("name") or r["dataset"]
        if name in seen:
            raise FeatvizError(f"runs[{i}].name: duplicate run name '{name}' (also runs[{seen[name]}]); give each run its own name")
        seen[name] = i
        model = dict(r.get("model") or {})
        if model.get("import"):
            from .model.formats import identity as import_identity

            # the imported file's sha256 (and its class's source) decide the weights
            model_id = {"import": import_identity(model["import"], model, f"runs[{i}].model.import")}
        elif model.get("weights"):
            from .model.architecture import describe

            model_id = {"pretrained": {**describe(model), "weights": model["weights"]}}
        else:
            from .model.architecture import describe

            arch = describe(model)
            # a spec's id is its layer list alone, as before torchvision architectures existed
            model_id = {"layers": arch["layers"]} if arch["format"] == "featviz-spec" else {"architecture": arch}
        identity = {
            "data": _data_identity(r),
            "model": model_id,
            "train": None if model.get("import") or model.get("weights") else r.get("train"),
            "seed": config["seed"],
        }
        data_id = _data_identity(r)
        runs.append(Run(
            id=f"{name}-{short_hash(identity)}",
            name=name,
            dataset=r["dataset"],
            data_key=f"{r['dataset']}-{short_hash(data_id)}",
            data=dict(r.get("data") or {}),
            model=model,
            train=dict(r.get("train") or {}),
            ascent=dict(r.get("ascent") or {}),
            seed=int(config["seed"]),
            probe=dict(r.get("probe") or {}),
            circuits=None if "circuits" in r and r["circuits"] is None else dict(r.get("circuits") or {}),
            match=dict(r.get("match") or {}),
            trust=None if "trust" in r and r["trust"] is None else dict(r.get("trust") or {}),
            input_shape=_input_shape(r),
            attribution=None if "attribution" in r and r["attribution"] is None else dict(r.get("attribution") or {}),
            layer_views=None if "layer_views" in r and r["layer_views"] is None else dict(r.get("layer_views") or {}),
        ))
    if not runs:
        raise FeatvizError("runs: the config lists no runs")
    return runs


def yaml_syntax_error(path: str | os.PathLike) -> str | None:
    """A config file's YAML syntax error as one line with the file and the line (`config/config.yaml:
    line 4, column 4: expected <block end>, but found '<block mapping start>'`), or None (also when
    the file does not exist: whoever loads it says so)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot be read as text ({exc})"
    try:
        yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        return f"{path}: {where}{exc.problem or 'YAML syntax error'}{context}"
    except yaml.YAMLError as exc:
        return f"{path}: YAML syntax error: {' '.join(str(exc).split())}"
    return None
