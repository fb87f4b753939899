"""What eval/metrics.json keeps of the confusion between classes, at any number of classes.

The full matrix is kept (and drawn) only where it can be read: up to MATRIX_CLASSES classes. A
1000-class network's matrix is a million cells (9 MB of JSON, a picture of noise); what a reader
wants of it is its strongest confusions, which every evaluation keeps:

    confusions: [{"true", "predicted", "count", "share"}, ...]   # off-diagonal, strongest first
    n_confusions: how many (true, predicted) pairs were confused in all (confusions holds at most
                  CONFUSIONS of them)
    per_class_images: {class: test images of that class}

`share` is the count over the true class's test images. Counting goes over (true, predicted) pairs,
so no k × k matrix is ever built beyond MATRIX_CLASSES. numpy only (the report reads older files
through `confusions_of` without torch).
"""
from __future__ import annotations

import numpy as np

# Not settings a user chooses: the limits of what a page and a JSON file can show readably.
MATRIX_CLASSES = 100  # classes up to which metrics.json keeps the matrix and confusion.png draws it
CONFUSIONS = 200  # strongest off-diagonal entries kept


def pair_counts(true: np.ndarray, pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (true, predicted) pairs of the test set and how often each occurs."""
    true, pred = np.asarray(true, np.int64), np.asarray(pred, np.int64)
    keys, counts = np.unique(true * k + pred, return_counts=True)
    return keys // k, keys % k, counts


def summarize(true, pred, classes: list[str]) -> dict:
    """The confusion entries of eval/metrics.json: `per_class_images`, `confusions`,
    `n_confusions`, and `confusion` (the matrix) up to MATRIX_CLASSES classes."""
    k = len(classes)
    t, p, n = pair_counts(true, pred, k)
    images = np.bincount(np.asarray(true, np.int64), minlength=k) if len(t) else np.zeros(k, np.int64)
    off = t != p
    # strongest first; ties by true then predicted class index (a stable, readable order)
    order = np.lexsort((p[off], t[off], -n[off]))
    to, po, no = t[off][order], p[off][order], n[off][order]
    out = {
        "per_class_images": {c: int(images[i]) for i, c in enumerate(classes)},
        "confusions": [{"true": classes[a], "predicted": classes[b], "count": int(c),
                        "share": round(float(c) / float(images[a]), 4)}
                       for a, b, c in zip(to[:CONFUSIONS], po[:CONFUSIONS], no[:CONFUSIONS])],
        "n_confusions": int(off.sum()),
    }
    if k <= MATRIX_CLASSES:
        matrix = np.zeros((k, k), np.int64)
        matrix[t, p] = n
        out["confusion"] = matrix.tolist()
    return out


def matrix_of(ev: dict) -> np.ndarray | None:
    """eval/metrics.json's confusion matrix, or None where it was not kept."""
    m = ev.get("confusion")
    return np.asarray(m, np.int64) if m else None


def confusions_of(ev: dict, cap: int = CONFUSIONS) -> list[dict]:
    """The strongest confusions of an eval/metrics.json, also of files written before `confusions`
    (from their matrix)."""
    if isinstance(ev.get("confusions"), list):
        return ev["confusions"][:cap]
    m = matrix_of(ev)
    if m is None:
        return []
    classes = ev["classes"]
    t, p = np.nonzero(m)
    true = np.repeat(t, m[t, p])
    pred = np.repeat(p, m[t, p])
    return summarize(true, pred, classes)["confusions"][:cap]


def images_of(ev: dict) -> dict[str, int] | None:
    """Test images per class, also of older files (the matrix's row sums); None where unknown."""
    if isinstance(ev.get("per_class_images"), dict):
        return ev["per_class_images"]
    m = matrix_of(ev)
    if m is None:
        return None
    return {c: int(n) for c, n in zip(ev["classes"], m.sum(1))}
