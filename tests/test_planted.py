"""Planted features (issue 13 item 3): networks whose units have a known best input
(benchmarks/planted.py) load through featviz's model path, and the real recipes recover them.
The figures for every recipe: benchmarks/bench_planted.py, docs/ascent.md "Planted features"."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from planted import (
    best_window,
    build_planted,
    ceiling,
    conv_patterns,
    magnitude_ceiling,
    pearson,
    recovery,
    templates,
    transform_ceiling,
)

from featviz.ascent import get_recipe, visualize
from featviz.model import load_model
from featviz.units import enumerate_units

FAST = {"snapshots": 0, "robustness_samples": 0}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    out = {}
    for kind in ("conv", "dense", "class"):
        info = build_planted(kind, root / kind)
        out[kind] = (load_model(root / kind), info)
    return out


def _run(nets, kind, recipe, overrides, units=None):
    model, info = nets[kind]
    units = list(range(len(info["patterns"]))) if units is None else units
    res = visualize(model.net, info["layer"], units, info["kind"], tuple(model.input_shape),
                    normalize=model.normalize, recipe=recipe, overrides={**FAST, **overrides}, seed=0)
    return [recovery(img, info["patterns"][u]) for img, u in zip(res.images, units)]


def test_the_patterns_and_the_scorer():
    for p in list(conv_patterns().values()) + list(templates().values()):
        assert abs(float(p.mean())) < 1e-6 and np.linalg.norm(p) == pytest.approx(1.0, rel=1e-5)
    t = templates()
    assert ceiling(t["T"]) == pytest.approx(1.0) and ceiling(t["blob"]) < 0.8
    # affine invariant, and it tells different templates apart
    assert pearson(0.3 + 2 * t["T"], t["T"]) == pytest.approx(1.0)
    assert abs(pearson(t["T"], t["O"])) < 0.3
    img = np.full((20, 20), 0.5)
    img[5:12, 9:16] = conv_patterns()["checker"] + 0.5
    r, where = best_window(img, conv_patterns()["checker"])
    assert r == pytest.approx(1.0) and where == (5, 9)


def test_planted_nets_load_as_ordinary_models(nets):
    model, info = nets["dense"]
    units = enumerate_units(model.net, model.input_shape, model.classes)
    names = [layer["name"] for layer in units["layers"]]
    assert "fc1" in names and "classes" in names
    w = model.net.fc1.weight.detach().numpy()
    assert np.allclose(w[0].reshape(28, 28), info["patterns"][0])
    model, info = nets["conv"]
    assert info["layer"] == "conv1" and model.net.conv1.weight.shape[-1] == 7


def test_hvass_recovers_the_planted_templates(nets):
    """Seed 000's step rule on a linear template unit goes straight to the box optimum, which for a
    binary template is the template itself."""
    for kind in ("dense", "class"):
        scores = _run(nets, kind, "hvass", {}, units=[0, 1, 2, 3])   # T X O L, 30 / 10 steps
        assert min(scores) > 0.99, (kind, scores)


def test_a_centre_neuron_recovers_its_filter(nets):
    scores = _run(nets, "conv", "hvass", {"conv_objective": "neuron"}, units=[2, 3, 4])  # checker, stroke, L
    assert min(scores) > 0.99, scores


def test_the_default_recipe_recovers_the_templates(nets):
    """The schema's default recipe (`auto`, at a 28 px input lucid-scaled: Lucid's transforms sized to
    the input, fading out over the last half; 256 steps on small gray inputs) recovers the planted
    letters T, O and L at >= 0.9."""
    from featviz.ascent.recipes import auto_recipe
    from featviz.schema import with_defaults

    default = with_defaults(("ascent", "recipe"), {})
    assert default["class"] == default["dense"] == "auto"
    name, settings = auto_recipe("dense", tuple(nets["dense"][0].input_shape))
    assert (name, settings) == ("lucid-scaled", {"steps": 256})
    scores = _run(nets, "dense", name, settings, units=[0, 2, 3])  # T, O, L
    assert min(scores) >= 0.9, scores


def test_lucid_is_bounded_by_its_transforms(nets):
    """lucid maximizes the template's objective averaged over its random
    transforms; on 28 px templates with 2-4 px strokes that optimum is a smeared template. Without
    the transforms it recovers the template at >= 0.9; with them it reaches its transform ceiling."""
    info = nets["class"][1]
    few = {"class_steps": 64}
    plain = _run(nets, "class", "lucid", {**few, "transforms": "none"}, units=[0, 2])  # T, O
    assert min(plain) >= 0.9, plain
    full = _run(nets, "class", "lucid", few, units=[0, 2])
    bounds = [transform_ceiling(get_recipe("lucid", few), info["patterns"][u]) for u in (0, 2)]
    assert max(bounds) < 0.7
    assert all(abs(s - b) < 0.1 for s, b in zip(full, bounds)), (full, bounds)


def test_a_broken_recipe_fails_the_recovery(nets):
    """The threshold means something: with steps too small to move it the image is its noise init."""
    scores = _run(nets, "dense", "hvass", {"lr": 1e-9}, units=[0, 1])
    assert max(scores) < 0.3, scores


def test_maco_recovers_the_templates_up_to_its_magnitude_ceiling(nets):
    """MACO's image has a fixed Fourier magnitude (here the 1/f power law), so its closest approach to
    a template is about the template's own phase with that magnitude (`magnitude_ceiling`: T 0.84,
    O 0.82, L 0.80). Its phase ascent alone reaches that ceiling; the recipe (its crops and noise sized
    to the 28 px input) recovers the letters less closely; the published crop geometry at 28 px (a
    twentieth of a 64 px canvas at the end) cannot: a template unit is not translation invariant."""
    from featviz.ascent.spectrum import power_law

    info = nets["dense"][1]
    letters = [0, 2, 3]  # T, O, L
    bounds = [magnitude_ceiling(info["patterns"][u], power_law(1, 28, 28)) for u in letters]
    alone = _run(nets, "dense", "maco", {"transforms": "none", "canvas_scale": 1.0}, units=letters)
    assert all(abs(s - b) < 0.05 for s, b in zip(alone, bounds)), (alone, bounds)
    recipe = _run(nets, "dense", "maco", {}, units=letters)
    assert min(recipe) > 0.5 and np.mean(recipe) > 0.6, recipe
    published = _run(nets, "dense", "maco", {"transforms_size": 0, "steps": 64}, units=letters)
    assert max(published) < 0.3, published
