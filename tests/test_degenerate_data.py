"""Degenerate image folders a user could plausibly give (issue 14, item 5): each gets a decision
and a message: refused with one line naming what to change, or prepared with a note."""
from __future__ import annotations

import shutil

import pytest

from featviz.data import prepare
from featviz.errors import FeatvizError
from tests.synthetic import make_imagefolder


def _folder(tmp_path, per_class, test_per_class, keep_test=True, classes=("a", "b")):
    root = make_imagefolder(tmp_path / "f", per_class=per_class, test_per_class=test_per_class, classes=classes)
    if not keep_test:
        shutil.rmtree(root / "test", ignore_errors=True)
    return root


def test_one_image_per_class_is_prepared_with_a_note(tmp_path, capsys):
    root = _folder(tmp_path, 1, 1)
    info = prepare({"dataset": "imagefolder", "path": str(root)}, tmp_path, tmp_path / "prep")
    assert info["n_train"] == 2
    assert "2 class(es) have a single training image (a, b)" in capsys.readouterr().out


@pytest.mark.parametrize("per_class, test_per_class, keep_test, message", [
    (1, 0, False, "class 'a' has no training images after holding out data.test_fraction"),
    (4, 0, True, "test has no images"),
])
def test_an_empty_split_is_refused(tmp_path, per_class, test_per_class, keep_test, message):
    root = _folder(tmp_path, per_class, test_per_class, keep_test)
    with pytest.raises(FeatvizError, match=message):
        prepare({"dataset": "imagefolder", "path": str(root)}, tmp_path, tmp_path / "prep")
    assert not (tmp_path / "prep").exists()


def test_a_class_without_test_images_is_noted(tmp_path, capsys):
    root = _folder(tmp_path, 2, 0, keep_test=False)
    info = prepare({"dataset": "imagefolder", "path": str(root)}, tmp_path, tmp_path / "prep")
    assert info["n_test"] == 1
    assert "1 class(es) have no test images (b)" in capsys.readouterr().out


def test_one_class_is_refused(tmp_path):
    root = _folder(tmp_path, 3, 1, classes=("only",))
    with pytest.raises(FeatvizError, match="at least two classes"):
        prepare({"dataset": "imagefolder", "path": str(root)}, tmp_path, tmp_path / "prep")
