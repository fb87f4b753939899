"""Checked readers for the files one stage hands to the next: a missing, truncated or corrupt
artifact becomes one FeatvizError naming the file and the stage that remakes it, never a
JSONDecodeError, a KeyError or torch's RuntimeError from deep inside a verb.

Each reader checks the shape of what it read (the keys and types later code relies on), not
its meaning: whether a layer exists, or a unit is in range, is the business of the verb.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import FeatvizError, why

REMAKE_DATA = "delete it and re-run `featviz data` (or the workflow, which remakes it)"
REMAKE_MODEL = "re-run `featviz train` or `featviz import-model` into that folder (or the workflow)"
REMAKE_UNITS = "re-run `featviz units --model <model folder> --out <units.json>` (or the workflow)"


def read_json_file(path: str | Path, what: str, remedy: str) -> Any:
    """The JSON in `path`; one FeatvizError naming `what` (e.g. "units file") and the file, and
    saying what to do (`remedy`), when it is missing, unreadable or not valid JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FeatvizError(f"{what} {path} does not exist: {remedy}") from None
    except IsADirectoryError:
        raise FeatvizError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise FeatvizError(f"{what} {path} is corrupt (not UTF-8 text): {remedy}") from None
    except OSError as exc:
        raise FeatvizError(f"{what} {path} cannot be read ({exc.strerror or why(exc)})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeatvizError(f"{what} {path} is truncated or corrupt (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}): {remedy}") from None
    except RecursionError:
        raise FeatvizError(f"{what} {path} is corrupt (nested too deeply): {remedy}") from None


def _bad(what: str, path: Path, problem: str, remedy: str) -> FeatvizError:
    return FeatvizError(f"{what} {path} is not what featviz wrote ({problem}): {remedy}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_input(d: dict, what: str, path: Path, remedy: str) -> None:
    """classes, input_shape (and mean/std where present) as every reader of the file uses them."""
    classes = d.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _bad(what, path, "`classes` is not a list of class names", remedy)
    shape = d.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) and s >= 1 for s in shape):
        raise _bad(what, path, "`input_shape` is not [channels, height, width]", remedy)
    for key in ("mean", "std"):
        if key in d:
            v = d[key]
            if not isinstance(v, list) or len(v) != shape[0] or not all(_is_number(x) for x in v) \
                    or (key == "std" and not all(x > 0 for x in v)):
                raise _bad(what, path, f"`{key}` is not {shape[0]} number(s), one per channel", remedy)


def read_json_object(path: str | Path, what: str, remedy: str, required: tuple[str, ...] = ()) -> dict:
    """read_json_file, and the result is an object holding the `required` keys."""
    d = read_json_file(path, what, remedy)
    if not isinstance(d, dict):
        raise _bad(what, Path(path), f"a JSON {type(d).__name__} instead of an object", remedy)
    missing = [k for k in required if k not in d]
    if missing:
        raise _bad(what, Path(path), f"no {', '.join(repr(k) for k in missing)}", remedy)
    return d


def read_model_json(model_dir: str | Path) -> dict:
    """model.json of a model folder (written by `featviz train` / `featviz import-model`)."""
    path = Path(model_dir) / "model.json"
    what = "model file"
    if not Path(model_dir).is_dir():
        raise FeatvizError(f"model folder {model_dir} does not exist: {REMAKE_MODEL}")
    meta = read_json_object(path, what, REMAKE_MODEL, ("classes", "input_shape", "mean", "std"))
    _check_input(meta, what, path, REMAKE_MODEL)
    if meta.get("format", "featviz-spec") == "featviz-spec":
        layers = meta.get("layers")
        if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
            raise _bad(what, path, "`layers` is not a list of layer specs", REMAKE_MODEL)
    elif not isinstance(meta.get("format"), str):
        raise _bad(what, path, "`format` is not a string", REMAKE_MODEL)
    return meta


def read_units(path: str | Path) -> dict:
    """units.json (written by `featviz units`): the layers that can be visualized and the classes."""
    path = Path(path)
    what = "units file"
    units = read_json_object(path, what, REMAKE_UNITS, ("layers", "classes", "input_shape"))
    _check_input(units, what, path, REMAKE_UNITS)
    layers = units["layers"]
    if not isinstance(layers, list) or not layers:
        raise _bad(what, path, "`layers` is not a non-empty list", REMAKE_UNITS)
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) \
                or not isinstance(layer.get("kind"), str) or not _is_int(layer.get("units")) or layer["units"] < 1:
            raise _bad(what, path, f"layers[{i}] has no name, kind and unit count", REMAKE_UNITS)
    return units


def _prepared_file(data_dir: Path, name: str) -> Path:
    if not data_dir.is_dir():
        raise FeatvizError(f"prepared dataset folder {data_dir} does not exist: run `featviz data --out {data_dir}` "
                           f"first (or the workflow)")
    path = data_dir / name
    if not path.exists():
        raise FeatvizError(f"{data_dir} is not a prepared dataset (no {name}): run `featviz data --out "
                           f"{data_dir}` first (or the workflow)")
    return path


def read_info(data_dir: str | Path) -> dict:
    """info.json of a prepared dataset folder (written by `featviz data`)."""
    data_dir = Path(data_dir)
    path = _prepared_file(data_dir, "info.json")
    info = read_json_object(path, "dataset info file", REMAKE_DATA,
                            ("dataset", "classes", "input_shape", "mean", "std"))
    _check_input(info, "dataset info file", path, REMAKE_DATA)
    return info


def check_prepared_file(data_dir: str | Path, split: str) -> Path:
    """A cheap check of a prepared split without loading it: the file exists and its zip directory
    (torch.save's format) is intact, which a truncated or half-copied file's is not. Byte flips
    inside are only found by reading it (read_prepared)."""
    import zipfile

    data_dir = Path(data_dir)
    path = _prepared_file(data_dir, f"{split}.pt")
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise FeatvizError(f"prepared dataset file {path} is truncated or corrupt ({why(exc)}): {REMAKE_DATA}") from None
    return path


def read_prepared(data_dir: str | Path, split: str, **load_kwargs):
    """One split ("train" or "test") of a prepared dataset as a featviz.data.Split, checked
    (against its info.json where there is one): a missing, truncated or corrupt .pt file is one
    FeatvizError saying to re-run `featviz data`. `load_kwargs` go to featviz.data.load_prepared."""
    import torch

    from .data import load_prepared

    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, not {split!r}")
    data_dir = Path(data_dir)
    path = _prepared_file(data_dir, f"{split}.pt")
    info = read_info(data_dir) if (data_dir / "info.json").exists() else None
    try:
        s = load_prepared(Path(data_dir), train=split == "train", **load_kwargs)
    except FeatvizError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load's errors: RuntimeError, UnpicklingError, EOFError, ...
        raise FeatvizError(f"prepared dataset file {path} is truncated or corrupt ({why(exc)}): {REMAKE_DATA}") from None
    images, labels = s.images, s.labels
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
            and isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.dim() == 1
            and len(labels) == len(images)):
        raise _bad("prepared dataset file", path, "not uint8 images (N, C, H, W) with N int64 labels", REMAKE_DATA)
    if info is not None and (list(images.shape[1:]) != list(info["input_shape"])
                             or list(s.classes) != list(info["classes"])):
        raise _bad("prepared dataset file", path, "its images or classes differ from info.json's", REMAKE_DATA)
    if not isinstance(s.classes, list) or not s.classes:
        raise _bad("prepared dataset file", path, "no class names", REMAKE_DATA)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(s.classes)):
        raise _bad("prepared dataset file", path, "a label is not a class index", REMAKE_DATA)
    if len(labels) == 0 and split == "train" and info is not None and info.get("n_train") == 0:
        raise FeatvizError(f"the dataset of {data_dir} has no training images (its image folder has test/ only): "
                           f"a network can be imported for it, not trained")
    if len(labels) == 0:
        raise FeatvizError(f"prepared dataset file {path} holds no images: {REMAKE_DATA}")
    return s


def read_npz(path: str | Path, what: str, remedy: str, keys: tuple[str, ...] | None) -> dict:
    """The arrays `keys` (None: all) of an .npz file, read now; one FeatvizError when it is missing
    or corrupt (a flipped byte in an array fails its zip CRC check here)."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FeatvizError(f"{what} {path} does not exist: {remedy}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys or () if k not in z.files]
            if missing:
                raise _bad(what, path, f"no array {', '.join(missing)}", remedy)
            return {k: z[k] for k in (z.files if keys is None else keys)}
    except FeatvizError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise FeatvizError(f"{what} {path} is truncated or corrupt ({why(exc)}): {remedy}") from None


def npz_names(path: str | Path, what: str, remedy: str) -> list[str]:
    """The array names of an .npz file from its zip directory alone (no array is read): a missing
    or truncated file is one FeatvizError; flipped bytes inside an array are found by read_npz."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FeatvizError(f"{what} {path} does not exist: {remedy}")
    try:
        with zipfile.ZipFile(path) as z:
            return [n.removesuffix(".npy") for n in z.namelist()]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise FeatvizError(f"{what} {path} is truncated or corrupt ({why(exc)}): {remedy}") from None


# ------------------------------------------------------------------ what the report reads (issue 14)

REMAKE_ASCENT = "delete it and re-run its ascent job (`featviz ascend`, or the workflow)"
REMAKE_PROBE = "re-run `featviz probe` (or the workflow)"
REMAKE_EVAL = "re-run `featviz evaluate` (or the workflow)"
REMAKE_TRANSFER = "re-run `featviz transfer` (or the workflow)"
REMAKE_COMPARE = "delete it and re-run its comparison job (`featviz compare`, or the workflow)"


def _unit_rows(rows, what: str, path: Path, remedy: str, key: str) -> None:
    """`key` of a record is a list of objects, each with an integer `unit` >= 0."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) and _is_int(r.get("unit")) and r["unit"] >= 0
                                             for r in rows):
        raise _bad(what, path, f"`{key}` is not a list of per-unit objects with a `unit` index", remedy)


def read_chunk_record(path: str | Path) -> dict:
    """One ascent chunk's .json (featviz/ascent_job.py): its per-unit `stats` and job settings."""
    path = Path(path)
    what = "ascent chunk record"
    rec = read_json_object(path, what, REMAKE_ASCENT, ("layer", "units", "stats"))
    _unit_rows(rec["stats"], what, path, REMAKE_ASCENT, "stats")
    if not isinstance(rec.get("recipe"), (dict, type(None))):
        raise _bad(what, path, "`recipe` is not an object", REMAKE_ASCENT)
    return rec


def read_transfer_file(path: str | Path) -> dict:
    """transfer.json (featviz/transfer.py): per class image its transfer scores."""
    path = Path(path)
    what = "transfer score file"
    rec = read_json_object(path, what, REMAKE_TRANSFER, ("images",))
    _unit_rows(rec["images"], what, path, REMAKE_TRANSFER, "images")
    if not isinstance(rec.get("transfer_model"), (dict, type(None))):
        raise _bad(what, path, "`transfer_model` is not an object", REMAKE_TRANSFER)
    return rec


def read_probe_summary(path: str | Path) -> dict:
    """probe.json (featviz/probe.py): the per-layer summaries, the samples and the first layer."""
    path = Path(path)
    what = "probe summary"
    rec = read_json_object(path, what, REMAKE_PROBE, ("layers",))
    layers = rec["layers"]
    if not isinstance(layers, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                               and isinstance(e.get("per_unit"), list) for e in layers):
        raise _bad(what, path, "`layers` is not a list of per-layer summaries with `per_unit`", REMAKE_PROBE)
    unit_keys = ("dead", "max", "mean", "frac_active")  # what every reader of a unit's summary uses
    for e in layers:
        for row in e["per_unit"]:
            if not isinstance(row, dict) or any(k not in row for k in unit_keys):
                raise _bad(what, path, f"layer {e['name']!r}: a `per_unit` entry lacks one of "
                                       f"{', '.join(unit_keys)}", REMAKE_PROBE)
        if e["per_unit"] and not _is_number(e.get("corr_threshold")):
            raise _bad(what, path, f"layer {e['name']!r}: `corr_threshold` is not a number", REMAKE_PROBE)
    for key, types in (("samples", list), ("first_layer", (dict, type(None)))):
        if key in rec and not isinstance(rec[key], types):
            raise _bad(what, path, f"`{key}` has the wrong type", REMAKE_PROBE)
    return rec


def read_eval_metrics(path: str | Path) -> dict:
    """eval/metrics.json (featviz/evaluate.py)."""
    path = Path(path)
    what = "evaluation file"
    ev = read_json_object(path, what, REMAKE_EVAL, ("classes", "test_accuracy", "per_class_accuracy"))
    if not isinstance(ev["classes"], list) or not isinstance(ev["per_class_accuracy"], dict) \
            or not _is_number(ev["test_accuracy"]):
        raise _bad(what, path, "`classes`, `test_accuracy` or `per_class_accuracy` has the wrong type", REMAKE_EVAL)
    for key in ("confusion", "confusions", "misclassified", "warnings"):
        if key in ev and not isinstance(ev[key], list) and not (key == "confusion" and ev[key] is None):
            raise _bad(what, path, f"`{key}` is not a list", REMAKE_EVAL)
    if "per_class_images" in ev and not isinstance(ev["per_class_images"], dict):
        raise _bad(what, path, "`per_class_images` is not an object", REMAKE_EVAL)
    return ev


def read_compare_record(path: str | Path) -> dict:
    """One comparison job's .json (featviz/compare.py)."""
    path = Path(path)
    what = "comparison record"
    rec = read_json_object(path, what, REMAKE_COMPARE, ("layer", "label", "entry", "units", "stats"))
    _unit_rows(rec["stats"], what, path, REMAKE_COMPARE, "stats")
    if not isinstance(rec["layer"], str) or not isinstance(rec["entry"], dict):
        raise _bad(what, path, "`layer` or `entry` has the wrong type", REMAKE_COMPARE)
    return rec
