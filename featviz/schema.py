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


def object_schema(sub: dict) -> dict:
    """The schema of an object-valued key: itself, or the object branch of its anyOf (a section
    that may be null, like `ascent.compare`, keeps its keys and their defaults there)."""
    if sub.get("properties") is not None:
        return sub
    for branch in sub.get("anyOf") or ():
        if branch.get("type") == "object" and branch.get("properties") is not None:
            return branch
    return sub


def fill_defaults(obj: dict, schema: dict) -> None:
    """Fill, in place, every key `obj` leaves out that has a default in `schema` (an object
    schema), recursively into the objects it holds: what snakemake.utils.validate does."""
    for key, sub in (schema.get("properties") or {}).items():
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        if isinstance(obj.get(key), dict):
            fill_defaults(obj[key], object_schema(sub))


def section_schema(*path: str) -> dict | None:
    """The object schema of one run section, e.g. ("ascent", "transfer", "train"); None when the
    schema file is not there (an installed featviz without its checkout)."""
    schema = load_schema()
    if schema is None:
        return None
    node = schema["properties"]["runs"]["items"]
    for key in path:
        node = object_schema(node["properties"][key])
    return node


def with_defaults(section: str | tuple[str, ...], cfg: dict) -> dict:
    """A copy of one run section (`train`, `ascent`, or a path like ("ascent", "transfer")) with
    the schema's defaults filled in, as snakemake.utils.validate fills them for the workflow: a verb
    given part of a section runs with the same values the workflow would (no second copy of the
    defaults)."""
    out = copy.deepcopy(cfg)
    schema = section_schema(*((section,) if isinstance(section, str) else section))
    if schema is not None:
        fill_defaults(out, schema)
    return out


def defaults_of(*path: str) -> dict:
    """What the schema's defaults make of an empty section at `path` (e.g. the transfer model's
    training settings); one FeatvizError where the schema file is missing."""
    if section_schema(*path) is None:
        raise FeatvizError(f"the config schema {SCHEMA_PATH} is missing: featviz reads its defaults from it "
                           f"(run featviz from its checkout, e.g. `pip install -e .`)")
    return with_defaults(path, {})


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
    if error.validator == "pattern" and isinstance(error.schema, dict) and error.schema.get("description"):
        message = f"{error.instance!r} is not of the form {error.schema['description']}"
    if error.validator == "additionalProperties":
        return f"{where}: {message} (see config/README.md for the known keys)"
    return f"{where}: {message}"
