"""A verb's flags checked before any work, as the workflow checks the same values: a flag that
stands for a config key (`--top-k` is `probe.top_k`, `--seed` the config's `seed`) is checked
against the workflow's schema (featviz.config.check_sections: one copy of the rules); a flag
without a config key gets its range here. One FeatvizError naming the flag and the value.
"""
from __future__ import annotations

import math
import re

from .errors import FeatvizError


def _renamed(exc: FeatvizError, names: dict[str, str]) -> FeatvizError:
    """The schema's message with the config key replaced by the flag that gave it."""
    text = str(exc)
    for key, flag in names.items():
        text = re.sub(rf"^{re.escape(key)}(?=[:.\[ ])", flag, text)
    return FeatvizError(text)


def check_schema_flags(section: str | None, flags: dict[str, tuple[str, object]]) -> None:
    """`flags`: {flag: (config key, value)}; values that are None (left out) are not checked.
    `section` is a run section (`probe`, `ascent`...), or None for the config's top level."""
    from .checks import check_sections
    from .schema import load_schema, schema_error

    given = {key: value for key, value in flags.values() if value is not None}
    if not given:
        return
    names = {(f"{section}.{key}" if section else key): flag for flag, (key, _) in flags.items()}
    try:
        if section is not None:
            check_sections(**{section: given})
        else:
            schema = load_schema()
            problem = schema and schema_error({"runs": [{"dataset": "imagefolder"}], **given}, schema)
            if problem:
                raise FeatvizError(problem)
    except FeatvizError as exc:
        raise _renamed(exc, names) from None


def check_number(flag: str, value, lo: float | None = None, hi: float | None = None, integer: bool = False,
                 lo_open: bool = False) -> None:
    """A flag without a config key: a finite number (an integer where `integer`) within [lo, hi]
    (lo excluded where `lo_open`)."""
    if value is None:
        return
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        bounds = [f"{'>' if lo_open else '>='} {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
        what = "an integer" if integer else "a number"
        raise FeatvizError(f"{flag}: {value!r} is not {what} {' and '.join(b for b in bounds if b)}".rstrip())


def check_probe_args(a) -> None:
    """`featviz probe`'s flags: those of the config's `probe` section against the schema."""
    check_schema_flags("probe", {"--top-k": ("top_k", a.top_k), "--samples": ("samples", a.samples),
                                 "--histogram-images": ("histogram_images", a.histogram_images),
                                 "--prune-images": ("prune_images", a.prune_images),
                                 "--prune-passes": ("prune_passes", a.prune_passes),
                                 "--prune-precision": ("prune_precision", a.prune_precision),
                                 "--precision": ("precision", a.precision)})
    check_number("--corr-threshold", a.corr_threshold, -1, 1)
    check_number("--prune-tolerance", a.prune_tolerance, 0, 1)


def check_search_args(a) -> None:
    """`featviz search`'s flags: --seed as the config's `seed`, counts >= 1, unit indices >= 0
    (their upper bound is the layer's, checked once the model is loaded)."""
    check_schema_flags(None, {"--seed": ("seed", a.seed)})
    check_number("--trials", a.trials, 1, integer=True)
    check_number("--max-steps", a.max_steps, 1, integer=True)
    for u in a.units or []:
        check_number("--units", u, 0, integer=True)


def check_transfer_args(a) -> None:
    """`featviz transfer`'s flags: --seed as the config's `seed`, --samples >= 1."""
    check_schema_flags(None, {"--seed": ("seed", a.seed)})
    check_number("--samples", a.samples, 1, integer=True)


def check_train_args(a) -> None:
    """`featviz train`'s flags beside its config sections: --seed as the config's `seed`, --threads >= 1."""
    check_schema_flags(None, {"--seed": ("seed", a.seed)})
    check_number("--threads", a.threads, 1, integer=True)


COMPARE_KEYS = ("recipe", "overrides", "label", "units_per_layer", "units", "explicit", "seed", "precision", "channels_last")


def check_compare_config(cfg: dict, layer: str) -> None:
    """`featviz compare --config`: the keys the workflow writes (featviz.compare.job_config), each
    checked against the schema where the config has it (`ascent.seed`, `ascent.precision`,
    `ascent.channels_last`, `ascent.units.<layer>`, `ascent.compare`'s entry and units_per_layer)."""
    unknown = [k for k in cfg if k not in COMPARE_KEYS]
    if unknown:
        raise FeatvizError(f"compare --config: unknown key {unknown[0]!r} (known: {', '.join(COMPARE_KEYS)})")
    for key in ("recipe", "label", "units_per_layer"):
        if key not in cfg:
            raise FeatvizError(f"compare --config: `{key}` is missing (a job's settings, as the workflow writes them)")
    # the label: any non-empty text (the workflow's default label, recipe+overrides, may be longer
    # than the 60 characters the schema allows a label the user writes)
    if not isinstance(cfg["label"], str) or not cfg["label"]:
        raise FeatvizError(f"compare --config label: {cfg['label']!r} is not a non-empty text")
    entry = {k: cfg[k] for k in ("recipe", "overrides") if cfg.get(k) is not None}
    ascent = {k: cfg[k] for k in ("seed", "precision", "channels_last") if cfg.get(k) is not None}
    if cfg.get("units") is not None:
        ascent["units"] = {layer: cfg["units"]}
    ascent["compare"] = {"recipes": [entry], "units_per_layer": cfg["units_per_layer"]}
    names = {"ascent.compare.recipes[0]": "compare --config", "ascent.compare": "compare --config",
             f"ascent.units.{layer}": "compare --config units", "ascent": "compare --config"}
    from .checks import check_sections

    try:
        check_sections(ascent=ascent)
    except FeatvizError as exc:
        text = str(exc)
        for key in sorted(names, key=len, reverse=True):
            rest = text[len(key):] if text.startswith(key) else None
            if rest and rest[0] in ".:[":
                text = names[key] + (f" {rest[1:]}" if rest[0] == "." else rest)
                break
        raise FeatvizError(text) from None


REPORT_SECTIONS = ("data", "model", "train", "ascent", "probe", "circuits")


def check_report_config(cfg: dict) -> None:
    """`featviz report --config`: the run's config as the workflow passes it (its `dataset` and
    sections, beside the run's id, name and seed); each section present is checked against the
    schema's runs[i] section, without torch (the report never imports it)."""
    from .schema import load_schema, schema_error

    schema = load_schema()
    if schema is None:
        return
    run = {k: cfg[k] for k in REPORT_SECTIONS if k in cfg}
    run["dataset"] = cfg.get("dataset", "imagefolder")
    problem = schema_error({"runs": [run]}, schema)
    if problem:
        raise FeatvizError(f"report --config {problem.removeprefix('runs[0].')}")
