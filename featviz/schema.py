"""The workflow's config schema (workflow/schemas/config.schema.yaml) as featviz reads it: the one
home of every config default (`with_defaults`, `default_of`), the schema check a verb runs on its
own config sections (`check_sections`), and the one-line message of a schema violation."""
from __future__ import annotations

import copy
from pathlib import Path

from .errors import FeatvizError

# The workflow's schema: verbs check their own config sections against it too, so that a verb used
# without Snakemake refuses what the DAG refuses (one copy of the rules). It lives in the checkout;
# an installed featviz without it skips this check (the verbs' own checks remain).
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
_SCHEMA: list = []


def load_schema() -> dict | None:
    if not _SCHEMA:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where present: 6 ms instead of 40
        _SCHEMA.append(yaml.load(SCHEMA_PATH.read_text(), Loader=loader) if SCHEMA_PATH.is_file() else None)
    return _SCHEMA[0]


def _fill(obj, schema: dict) -> None:
    for key, sub in (schema.get("properties") or {}).items():
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        if isinstance(obj.get(key), dict):
            _fill(obj[key], sub)


def with_defaults(section: str, cfg: dict) -> dict:
    """A copy of one run section (`train`, `ascent`...) with the schema's defaults filled in, as
    snakemake.utils.validate fills them for the workflow: a verb given part of a section runs with
    the same values the workflow would (no second copy of the defaults)."""
    out = copy.deepcopy(cfg)
    schema = load_schema()
    if schema is not None:
        _fill(out, schema["properties"]["runs"]["items"]["properties"][section])
    return out


def check_sections(dataset: str = "imagefolder", **sections) -> None:
    """A verb's config sections (`data`, `model`, `train`, `ascent` of one run, as the workflow
    passes them) checked as the DAG checks them: against the schema's runs[i] sections, then the
    model's naming rules. Raises FeatvizError naming the key (`train.epochs: 0 is less than the
    minimum of 1`)."""
    schema = load_schema()
    if schema is not None:
        problem = schema_error({"runs": [{"dataset": dataset, **sections}]}, schema)
        if problem:
            raise FeatvizError(problem.removeprefix("runs[0]."))
    if sections.get("model") is not None:
        try:
            _check_model("", sections["model"])
        except FeatvizError as exc:
            raise FeatvizError(str(exc).removeprefix(".")) from None


def schema_error(config: dict, schema: dict) -> str | None:
    """The most relevant JSON-schema violation of `config`, as one line naming the key
    (e.g. "runs[0].train.epochs: 0 is less than the minimum of 1"), or None."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    path = list(error.absolute_path)
    message = error.message
    if error.validator == "required" and isinstance(error.instance, dict):
        # name the missing key itself: "model.layers[0].out: required ..." rather than the object holding it
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            path.append(missing[0])
            message = "required" + (f" for type {error.instance['type']!r}" if "type" in error.instance else "")
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                    for i, p in enumerate(path)) or "config"
    if error.validator == "additionalProperties":
        return f"{where}: {message} (see config/README.md for the known keys)"
    return f"{where}: {message}"


def _check_model(where: str, model: dict) -> None:
    """One way to name the network: a preset, a layer list or a torchvision architecture."""
    from .model import PRESETS
    from .model.torchvision_archs import build_kwargs, check_name

    given = [k for k in ("preset", "layers", "torchvision") if model.get(k)]
    if len(given) > 1:
        raise FeatvizError(f"{where}.model: give one of preset, layers or torchvision, not {' and '.join(given)}")
    if model.get("torchvision"):
        check_name(model["torchvision"], f"{where}.model.torchvision")
        try:
            build_kwargs(model["torchvision"], model.get("kwargs"))
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.{exc}") from None
    else:
        for key in ("kwargs", "weights"):
            if model.get(key):
                raise FeatvizError(f"{where}.model.{key}: only for a torchvision architecture (model.torchvision)")
        if model.get("class_names", "auto") == "imagenet":
            raise FeatvizError(f"{where}.model.class_names: imagenet is for torchvision architectures")
    if model.get("weights") and model.get("import"):
        raise FeatvizError(f"{where}.model: give weights (torchvision's pretrained) or import (your file), not both")
    if not model.get("import") and not model.get("layers") and not model.get("torchvision") \
            and model.get("preset") not in PRESETS:
        raise FeatvizError(f"{where}.model.preset: unknown preset '{model.get('preset')}' (known: {', '.join(PRESETS)})")
