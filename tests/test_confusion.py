"""What eval/metrics.json keeps of the confusion (featviz/confusion.py): the matrix only up to
MATRIX_CLASSES classes, always the strongest off-diagonal pairs (sorted, capped, with their share of
the true class's images) and the test images per class; older files (a matrix, no `confusions`)
read the same way."""
from __future__ import annotations

import numpy as np

from featviz import confusion as C


def test_small_network_keeps_its_matrix_and_its_confusions():
    classes = ["a", "b", "c", "d"]
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 0, 0, 0])
    out = C.summarize(true, pred, classes)
    assert out["confusion"] == [[1, 2, 0, 0], [0, 1, 1, 0], [3, 0, 1, 0], [0, 0, 0, 0]]
    assert out["per_class_images"] == {"a": 3, "b": 2, "c": 4, "d": 0}
    assert out["confusions"] == [
        {"true": "c", "predicted": "a", "count": 3, "share": 0.75},
        {"true": "a", "predicted": "b", "count": 2, "share": 0.6667},
        {"true": "b", "predicted": "c", "count": 1, "share": 0.5},
    ]
    assert out["n_confusions"] == 3


def test_a_thousand_classes_keep_no_matrix_and_a_capped_list():
    k = C.MATRIX_CLASSES * 10
    rng = np.random.default_rng(0)
    true = rng.integers(0, k, 5000)
    pred = rng.integers(0, k, 5000)
    out = C.summarize(true, pred, [f"c{i}" for i in range(k)])
    assert "confusion" not in out
    assert len(out["confusions"]) == C.CONFUSIONS < out["n_confusions"]
    counts = [c["count"] for c in out["confusions"]]
    assert counts == sorted(counts, reverse=True) and counts[0] >= 2
    assert sum(out["per_class_images"].values()) == 5000
    # the boundary: the matrix is kept at exactly MATRIX_CLASSES classes
    k = C.MATRIX_CLASSES
    assert "confusion" in C.summarize(np.arange(k), np.arange(k)[::-1], [str(i) for i in range(k)])


def test_older_metrics_files_read_the_same_way():
    classes = ["a", "b", "c", "d"]
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 0, 0, 0])
    new = C.summarize(true, pred, classes)
    old = {"classes": classes, "confusion": new["confusion"]}  # before `confusions` was written
    assert C.confusions_of(old) == new["confusions"]
    assert C.images_of(old) == new["per_class_images"]
    assert C.confusions_of({"classes": classes}) == [] and C.images_of({"classes": classes}) is None
    assert C.confusions_of(new, cap=1) == new["confusions"][:1]


def test_no_test_images():
    out = C.summarize(np.zeros(0, np.int64), np.zeros(0, np.int64), ["a", "b"])
    assert out["confusions"] == [] and out["n_confusions"] == 0 and out["confusion"] == [[0, 0], [0, 0]]
    assert out["per_class_images"] == {"a": 0, "b": 0}
