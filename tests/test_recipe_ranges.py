"""Every recipe parameter has a range, every recipe lies inside it, and a value just past a
boundary is refused with a message naming the parameter and the value (issue 14)."""
from __future__ import annotations

import math

import pytest

from featviz.ascent.recipes import (
    PARAMS,
    RECIPES,
    Range,
    RecipeError,
    check_overrides,
    get_recipe,
)


def test_every_numeric_or_list_parameter_has_a_range():
    """(`transforms`, a preset name or a list of transform objects, is checked by
    featviz.ascent.transforms and featviz.ascent_job.check_recipe_values.)"""
    for key, (types, allowed, _default, _doc) in PARAMS.items():
        types = types if isinstance(types, tuple) else (types,)
        if key == "transforms":
            continue
        if any(t in (int, float, list) for t in types):
            assert isinstance(allowed, Range), key
        elif str in types:
            assert isinstance(allowed, tuple), key


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_lies_inside_the_ranges(name):
    check_overrides({k: v for k, v in RECIPES[name].items()})
    get_recipe(name)


@pytest.mark.parametrize("overrides, message", [
    ({"lr": 0}, "'lr' must be > 0, got 0"),
    ({"lr": -1e-3}, "'lr' must be > 0"),
    ({"lr": math.nan}, "'lr' must be > 0, got nan"),
    ({"class_lr": 0.0}, "'class_lr' must be > 0"),
    ({"steps": 0}, "'steps' must be >= 1"),
    ({"class_steps": 0}, "'class_steps' must be >= 1"),
    ({"blur_sigma": -0.1}, "'blur_sigma' must be >= 0"),
    ({"blur_ksize": 4}, "'blur_ksize' must be 0 (off) or odd and >= 1, got 4"),
    ({"median_size": 2}, "'median_size' must be 0 (off) or odd"),
    ({"median_every": 0}, "'median_every' must be >= 1"),
    ({"decay": 1}, "'decay' must be >= 0 and < 1, got 1"),
    ({"center": 1.01}, "'center' must be >= 0 and <= 1"),
    ({"clip_norm_pct": 100.5}, "'clip_norm_pct' must be >= 0 and <= 100"),
    ({"standardize_std": 0}, "'standardize_std' must be > 0"),
    ({"lp_p": 0.5}, "'lp_p' must be >= 1"),
    ({"adam_betas": [0.9, 1.0]}, "'adam_betas'[1] must be >= 0 and < 1, got 1.0"),
    ({"adam_betas": [0.9]}, "'adam_betas' must be a list of 2"),
    ({"init_scales": [3, 0], "init_weights": [1, 1]}, "'init_scales'[1] must be >= 1"),
    ({"init_scales": [2.5]}, "'init_scales'[0] must be int, got 2.5"),
    ({"init_scales": []}, "'init_scales' must not be empty"),
    ({"init_scales": [3, 7]}, "'init_scales' and 'init_weights' must have the same length"),
    ({"neuron_pos": [0, -1]}, "'neuron_pos'[1] must be >= 0"),
    ({"retry_noise_mult": 0}, "'retry_noise_mult' must be > 0"),
    ({"restarts": -1}, "'restarts' must be >= 0"),
    ({"jitter": True}, "'jitter' must be int, got bool"),
    ({"step": "sgd"}, "'step' must be one of"),
])
def test_values_past_a_boundary_are_refused(overrides, message):
    with pytest.raises(RecipeError) as exc:
        get_recipe("hvass", overrides)
    assert message in str(exc.value)


@pytest.mark.parametrize("overrides", [
    {"lr": 1e-9}, {"steps": 1}, {"blur_ksize": 0}, {"blur_ksize": 3}, {"median_size": 1}, {"decay": 0.999},
    {"center": 0}, {"clip_norm_pct": 100}, {"lp_p": 1}, {"adam_betas": [0, 0.999]}, {"neuron_pos": [0, 0]},
    {"neuron_pos": None}, {"class_lr": None}, {"init_offset": -0.5}, {"snapshots": 0}, {"restarts": 0},
])
def test_values_at_a_boundary_are_accepted(overrides):
    assert get_recipe("hvass", overrides)[next(iter(overrides))] == next(iter(overrides.values()))


def test_check_overrides_needs_no_recipe():
    check_overrides({"lr": 0.5, "median_size": 3})
    with pytest.raises(RecipeError, match="unknown recipe parameter 'lrr'"):
        check_overrides({"lrr": 1})
    with pytest.raises(RecipeError, match="'lr' must be > 0"):
        check_overrides({"lr": 0})
