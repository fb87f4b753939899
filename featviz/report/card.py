"""What the run page says about the network itself: where it came from (for a network featviz did
not train, a model card: file, checksum, format, architecture, what was adapted) and how it did on
the test set (per class, with the classes that have no test images hidden by default, and its
strongest confusions).

Reads model/model.json's and model/metrics.json's `imported` record defensively: older model
folders have only path, sha256, format and how.
"""
from __future__ import annotations

from pathlib import PurePath

from ..confusion import MATRIX_CLASSES, confusions_of, images_of, matrix_of

SHA_SHORT = 12  # hex digits of the checksum shown (the whole one is in the tooltip)
CONFUSION_TABLE = 50  # classes up to which the run page also shows the whole matrix as a table


def _architecture(meta: dict, imported: dict) -> str | None:
    """The class or architecture the network was built as, from the richest record there is."""
    if imported.get("architecture"):
        return str(imported["architecture"])
    imp = meta.get("import") or {}
    if imp.get("class"):
        return f"class {imp['class']}"
    model = meta.get("model") or {}
    for key in ("torchvision", "timm"):
        name = meta.get(key) or model.get(key)
        if isinstance(name, str) and name:
            return f"{key} {name}"
    return None


def origin(meta: dict, train: dict | None) -> dict | None:
    """The run card of an imported network, or None for a network featviz trained."""
    train = train or {}
    imported = meta.get("imported") or train.get("imported")
    if not isinstance(imported, dict):
        return None
    path = imported.get("path")
    sha = imported.get("sha256")
    adapted = imported.get("adapted")
    params = imported.get("parameters", train.get("parameters"))
    classes = meta.get("classes") or []
    dataset_classes = meta.get("dataset_classes")
    return {
        "file": PurePath(path).name if path else None,
        "path": path,
        "sha256": sha,
        "sha_short": sha[:SHA_SHORT] if isinstance(sha, str) else None,
        "format": imported.get("format"),
        "file_format": imported.get("file_format"),
        "entry": imported.get("entry"),
        "how": imported.get("how"),
        "architecture": _architecture(meta, imported),
        "adapted": [str(a) for a in adapted] if isinstance(adapted, list) else [],
        "adapted_known": isinstance(adapted, list),
        "parameters": params if isinstance(params, int) else None,
        "import_wall_s": train.get("import_wall_s"),
        "device": train.get("device"),
        "outputs": len(classes),
        "dataset_classes": len(dataset_classes) if isinstance(dataset_classes, list) else None,
        "class_names": meta.get("class_names"),
    }


def evaluation(ev: dict) -> dict:
    """The run page's evaluation: per-class rows (name, accuracy, test images), the strongest
    confusions, and the matrix where the evaluation kept it."""
    images = images_of(ev)
    acc = ev["per_class_accuracy"]
    rows = [{"name": c, "accuracy": acc.get(c), "images": images.get(c) if images else None}
            for c in ev["classes"]]
    without = sum(1 for r in rows if r["images"] == 0)
    matrix = matrix_of(ev)
    confusions = confusions_of(ev)
    return {
        "per_class": rows,
        "without_images": without,
        "confusions": confusions,
        "n_confusions": ev.get("n_confusions", len(confusions)),
        "matrix": matrix.tolist() if matrix is not None and len(matrix) <= CONFUSION_TABLE else None,
        "matrix_max": int(matrix.max()) if matrix is not None and matrix.size else 0,
        # confusion.png draws the matrix only where it is readable (an older evaluation drew it always)
        "picture": matrix is not None and len(matrix) <= MATRIX_CLASSES,
        "classes": len(rows),
        "warnings": [str(w) for w in ev.get("warnings") or []],
    }
