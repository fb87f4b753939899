"""The checks a verb runs on its own config sections before any work, as the DAG runs them: the
schema's rules for the section (featviz.schema), then the network's naming rules."""
from __future__ import annotations

from pathlib import Path

from .errors import FeatvizError
from .schema import load_schema, schema_error


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


def _check_model(where: str, model: dict) -> None:
    """One way to name the network: a preset, a layer list or a torchvision or timm architecture."""
    from .model import PRESETS
    from .model.architecture import ZOOS

    given = [k for k in ("preset", "layers", "torchvision", "timm") if model.get(k)]
    if len(given) > 1:
        raise FeatvizError(f"{where}.model: give one of preset, layers, torchvision or timm, not {' and '.join(given)}")
    zoo = next((z for z in ZOOS if model.get(z)), None)
    if zoo:
        ZOOS[zoo].check_name(model[zoo], f"{where}.model.{zoo}")
        try:
            ZOOS[zoo].build_kwargs(model[zoo], model.get("kwargs"))
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.{exc}") from None
    else:
        for key in ("kwargs", "weights"):
            if model.get(key):
                raise FeatvizError(f"{where}.model.{key}: only for an architecture by name (model.torchvision or "
                                   f"model.timm)")
    imported = bool(model.get("import") or model.get("weights"))
    if isinstance(model.get("class_names"), list) and not imported:
        raise FeatvizError(f"{where}.model.class_names: a list of output names is for an imported network "
                           f"(a network featviz trains has one output per dataset class)")
    _check_normalization(where, model.get("import") or {})
    if model.get("weights") and model.get("import"):
        raise FeatvizError(f"{where}.model: give weights (the zoo's pretrained) or import (your file), not both")
    if not model.get("import") and not model.get("layers") and not zoo and model.get("preset") not in PRESETS:
        raise FeatvizError(f"{where}.model.preset: unknown preset '{model.get('preset')}' (known: {', '.join(PRESETS)})")


def _check_normalization(where: str, imp: dict) -> None:
    """model.import.mean/std are in [0, 1] units (featviz feeds images as x in [0, 1], then
    (x - mean) / std): values of the 0-255 scale would make every input near zero."""
    for key in ("mean", "std"):
        values = imp.get(key) or []
        if any(not 0 <= float(v) <= 1 for v in values):
            scaled = [round(float(v) / 255, 3) for v in values]
            hint = f" (divided by 255: {scaled})" if all(0 <= v <= 1 for v in scaled) else ""
            raise FeatvizError(f"{where}.model.import.{key}: {list(values)} is not in [0, 1] units: featviz feeds "
                               f"images as x in [0, 1], then (x - mean) / std{hint}")


_BUILTIN_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32)}


def expected_input(r: dict) -> tuple[tuple[int, int, int], int] | None:
    """(input shape, number of classes) a run's network will see, known before any data is
    prepared; None where only the data can tell (an image folder without image files)."""
    if r["dataset"] in _BUILTIN_SHAPES:
        return _BUILTIN_SHAPES[r["dataset"]], 10
    data = r.get("data") or {}
    train = Path(data["path"]) / "train"
    if not train.is_dir():
        train = Path(data["path"]) / "test"  # a folder for an imported network may have test/ only
    if not train.is_dir():
        return None
    classes = sorted(d for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
    first = next((f for c in classes for f in sorted(c.iterdir()) if f.is_file()), None)
    if not classes or first is None:
        return None
    channels, size = data.get("channels"), data.get("image_size")
    if channels is None or size is None:
        from PIL import Image

        try:
            with Image.open(first) as im:
                channels = channels or (1 if im.mode in ("1", "L", "I", "I;16", "F") else 3)
                size = size or (im.size[1], im.size[0])
        except OSError:
            return None
    return (int(channels), int(size[0]), int(size[1])), len(classes)
