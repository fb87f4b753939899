"""Per-layer recipes and overrides (issue 13 item 4): `ascent.recipe.layers` and
`ascent.overrides.layers` beside the per-kind entries, every value checked before any job."""
from __future__ import annotations

import copy

import pytest

from featviz.ascent_job import recipe_for, run_chunk
from featviz.errors import FeatvizError

CFG = {"recipe": {"conv": "lucid", "dense": "lucid", "class": "lucid", "layers": {"conv1": "hvass"}},
       "overrides": {"conv": {"steps": 9}, "layers": {"conv1": {"lr": 2}, "conv2": {"lr": 0.1}}}}


def test_layer_entries_beside_the_kinds():
    assert recipe_for("conv", CFG, "conv1") == ("hvass", {"steps": 9, "lr": 2})
    assert recipe_for("conv", CFG, "conv2") == ("lucid", {"steps": 9, "lr": 0.1})
    assert recipe_for("dense", CFG, "fc1") == ("lucid", {})
    assert recipe_for("conv", CFG) == ("lucid", {"steps": 9})


@pytest.mark.parametrize("change, message", [
    ({"recipe": {"layers": {"conv1": "hvazz"}}}, "runs[0].ascent.recipe.layers.conv1: unknown recipe 'hvazz'"),
    ({"recipe": {"layers": {"conv9": "hvass"}}}, "runs[0].ascent.recipe.layers: unknown layer 'conv9'"),
    ({"overrides": {"layers": {"conv2": {"lrr": 2}}}}, "runs[0].ascent.overrides.layers.conv2: unknown recipe parameter 'lrr'"),
    ({"overrides": {"layers": {"fc1": {"steps": 0}}}}, "runs[0].ascent.overrides.layers.fc1: recipe parameter"),
    ({"overrides": {"layers": {"conv2": {"neuron_pos": [50, 50]}}}},
     "runs[0].ascent.overrides.layers.conv2.neuron_pos: [50, 50] is outside layer conv2"),
])
def test_bad_layer_settings_stop_the_dag(tmp_path, change, message):
    from tests.synthetic import make_imagefolder
    from tests.test_config_errors import GOOD, dry_run

    make_imagefolder(tmp_path / "shapes", per_class=2, test_per_class=1)
    cfg = copy.deepcopy(GOOD)
    cfg["runs"][0]["ascent"].update(change)
    r = dry_run(tmp_path, cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and message in out, out
    assert out.count("featviz config error") == 1 and not (tmp_path / "results").exists()


def test_the_ascent_job_uses_the_layer_recipe(tmp_path):
    from tests.synthetic_run import make_run

    run = make_run(tmp_path, steps=6)
    cfg = {"recipe": {"layers": {"conv2": "hvass"}}, "overrides": {"conv": {"steps": 3}, "layers": {"conv2": {"lr": 0.5}}},
           "chunk_size": 8}
    rec = run_chunk(run / "model", run / "units.json", "conv2", 0, cfg, tmp_path / "c.npz", tmp_path / "c.json", "cpu")
    assert rec["recipe"]["name"] == "hvass" and rec["recipe"]["steps"] == 3 and rec["recipe"]["lr"] == 0.5
    rec = run_chunk(run / "model", run / "units.json", "conv1", 0, dict(cfg, overrides={"conv": {"steps": 3}}),
                    tmp_path / "d.npz", tmp_path / "d.json", "cpu")
    assert rec["recipe"]["name"] == "lucid-scaled" and rec["recipe"]["steps"] == 3
    with pytest.raises(FeatvizError, match=r"ascent.overrides.layers.conv2: unknown recipe parameter 'lrr'"):
        run_chunk(run / "model", run / "units.json", "conv2", 0, {"overrides": {"layers": {"conv2": {"lrr": 1}}}},
                  tmp_path / "e.npz", tmp_path / "e.json", "cpu")
