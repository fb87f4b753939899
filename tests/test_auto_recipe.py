"""`auto`, the default recipe of a unit kind: the recipe the benchmarks rank first at the input's size
(docs/ascent.md, "Default recipes"), resolved where the input size is known."""
from __future__ import annotations

import pytest

from featviz.ascent.recipes import AUTO_LARGE, AUTO_RECIPES, auto_recipe
from featviz.ascent_job import recipe_for
from featviz.errors import FeatvizError
from featviz.spectrum import needs_spectrum

AUTO = {"recipe": {"conv": "auto", "dense": "auto", "class": "auto"}}


def test_auto_by_input_size():
    maco = ("maco", {"canvas_view": 0.5, "class_steps": 64, "crops": 8})
    assert auto_recipe("class", (3, 32, 32)) == maco and auto_recipe("class", (3, 224, 224)) == maco  # colour
    assert auto_recipe("class", (1, 28, 28)) == ("lucid-scaled", {"class_steps": 256})  # small gray inputs (MNIST)
    assert auto_recipe("class", (1, 224, 224)) == maco  # large gray ones
    assert auto_recipe("class", (28, 28)) == maco  # channels not known: colour
    assert auto_recipe("conv", (3, AUTO_LARGE, 300)) == ("lucid-scaled", {"steps": 256})
    assert auto_recipe("conv", (3, AUTO_LARGE - 1, 300)) == ("lucid-scaled", {})  # the shorter side decides
    assert auto_recipe("dense", (1, 28, 28)) == ("lucid-scaled", {"steps": 256})
    name, settings = auto_recipe("class", (224, 224))
    assert recipe_for("class", AUTO, None, (224, 224)) == (name, settings)
    assert recipe_for("class", {**AUTO, "overrides": {"class": {"crops": 3}}}, None, (224, 224)) == \
        (name, {**settings, "crops": 3})  # the config's overrides win over auto's settings
    assert recipe_for("class", AUTO, None, (3, 32, 32)) == maco
    assert recipe_for("class", AUTO, None, (1, 28, 28)) == ("lucid-scaled", {"class_steps": 256})
    assert recipe_for("conv", AUTO, None, (3, 32, 32)) == ("lucid-scaled", {})
    assert recipe_for("class", AUTO) == ("auto", {})  # no size: left for the job to resolve


def test_overrides_checked_against_what_auto_becomes():
    cfg = {**AUTO, "overrides": {"class": {"steps": 0}}}
    with pytest.raises(FeatvizError, match="ascent.overrides.class"):
        recipe_for("class", cfg, None, (224, 224))


def test_spectrum_only_where_auto_is_maco():
    assert needs_spectrum(AUTO, (3, 224, 224)) and needs_spectrum(AUTO, (3, 32, 32))  # the classes' maco
    assert not needs_spectrum(AUTO, (1, 28, 28))  # MNIST's classes: lucid-scaled
    assert not needs_spectrum({"recipe": {"conv": "auto", "dense": "auto", "class": "lucid-scaled"}}, (224, 224))
    assert needs_spectrum(AUTO) == any(AUTO_RECIPES[k][i][0] == "maco" for k in AUTO_RECIPES for i in (0, 1, 2))
    assert not needs_spectrum({"recipe": {"conv": "lucid", "dense": "lucid", "class": "lucid"}}, (224, 224))
