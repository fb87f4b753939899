"""Random recipe search (featviz/search.py, `featviz search`) on tiny synthetic nets."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from featviz.ascent import get_recipe
from featviz.cli import main
from featviz.io import read_json, save_torch
from featviz.model import build, save_model
from featviz.search import (BLUR_SIGMA, DECAY, JITTERS, LR_FACTOR, MEDIAN_SIZES, run_search, sample_overrides,
                            score_trial)
from tests.synthetic import MICRO_LAYERS

SHAPE = (1, 8, 8)
CLASSES = ["a", "b", "c"]
LAYERS = MICRO_LAYERS


def _save(path, seed):
    torch.manual_seed(seed)
    net = build(copy.deepcopy(LAYERS), SHAPE, len(CLASSES)).eval()
    save_model(path, net, {"format": "featviz-spec", "classes": CLASSES, "input_shape": list(SHAPE),
                           "mean": [0.5], "std": [0.25], "layers": LAYERS, "model": {"layers": LAYERS}})
    return path


def test_sample_overrides_ranges_and_determinism():
    rec = get_recipe("hvass")
    a = [sample_overrides(rec, "class", np.random.default_rng(3)) for _ in range(1)]
    b = [sample_overrides(rec, "class", np.random.default_rng(3)) for _ in range(1)]
    assert a == b
    rng = np.random.default_rng(0)
    seen_median = set()
    for _ in range(60):
        ov = sample_overrides(rec, "conv", rng, max_steps=50)
        assert set(ov) == {"lr", "steps", "decay", "blur_sigma", "median_size", "jitter"}
        assert LR_FACTOR[0] * rec["lr"] <= ov["lr"] <= LR_FACTOR[1] * rec["lr"]
        assert 5 <= ov["steps"] <= 60 and isinstance(ov["steps"], int)
        assert DECAY[0] <= ov["decay"] <= DECAY[1]
        assert BLUR_SIGMA[0] <= ov["blur_sigma"] <= BLUR_SIGMA[1]
        assert ov["median_size"] in MEDIAN_SIZES and ov["jitter"] in JITTERS
        seen_median.add(ov["median_size"])
        get_recipe("hvass", ov)  # every sample is a valid override set
    assert seen_median == set(MEDIAN_SIZES)
    ov = sample_overrides(rec, "class", rng)
    assert "class_lr" in ov and "class_steps" in ov and "lr" not in ov
    # Fourier parameterization: no pixel projections sampled
    ov = sample_overrides(get_recipe("lucid"), "class", rng)
    assert not {"decay", "blur_sigma", "median_size"} & set(ov)


def test_score_trial_normalizes_and_counts_dead():
    stats = [{"dead": False, "nonfinite": False, "robustness": 0.5},
             {"dead": True, "nonfinite": False, "robustness": None}]
    score, m = score_trial("conv", stats, np.array([4.0, 100.0]), np.array([2.0, 1.0]), None)
    assert score == pytest.approx(1.0)  # (4/2 + 0/1) / 2: the dead unit counts 0
    assert m["dead"] == 1
    score, _ = score_trial("conv", stats, np.array([4.0, 100.0]), None, None)
    assert score == pytest.approx(2.0)
    cstats = [dict(s, target_softmax=t) for s, t in zip(stats, (0.9, 0.5))]
    score, m = score_trial("class", cstats, np.array([1.0, 1.0]), None, np.array([0.2, 0.4]))
    assert score == pytest.approx(0.7 + 0.3)
    assert m["target_softmax_min"] == pytest.approx(0.5)


def test_run_search_classes_with_transfer(tmp_path):
    m = _save(tmp_path / "m", 0)
    t = _save(tmp_path / "t", 1)
    out = tmp_path / "s.json"
    rec = run_search(m, "classes", "hvass", 4, [0, 2], out, transfer_model_dir=t, seed=5, max_steps=30,
                     device="cpu")
    assert read_json(out) == rec
    assert rec["kind"] == "class" and rec["units"] == [0, 2]
    trials = rec["trials"]
    assert len(trials) == 4 and [r["rank"] for r in trials] == [1, 2, 3, 4]
    scores = [r["score"] for r in trials]
    assert scores == sorted(scores, reverse=True)
    assert {r["trial"] for r in trials} == {0, 1, 2, 3}
    t0 = next(r for r in trials if r["trial"] == 0)
    assert t0["overrides"] == {}
    for r in trials:
        mm = r["metrics"]
        assert r["score"] == pytest.approx(mm["target_softmax_mean"] + mm["transfer_softmax_mean"])
        assert 0 <= mm["transfer_recognized"] <= 2
    assert rec["best"]["overrides"] == trials[0]["overrides"]
    assert rec["best"]["score"] == trials[0]["score"] >= t0["score"]
    # the sampled trials differ from each other
    assert len({str(r["overrides"]) for r in trials}) == 4
    # same seed: same trials
    rec2 = run_search(m, "classes", "hvass", 4, [0, 2], tmp_path / "s2.json", transfer_model_dir=t, seed=5,
                      max_steps=30, device="cpu")
    assert [r["overrides"] for r in rec2["trials"]] == [r["overrides"] for r in trials]


def test_cli_search_conv_with_baseline(tmp_path, capsys):
    m = _save(tmp_path / "m", 0)
    data = tmp_path / "data"
    g = torch.Generator().manual_seed(0)
    save_torch(data / "test.pt", {"images": torch.randint(0, 256, (6, *SHAPE), dtype=torch.uint8, generator=g),
                                  "labels": torch.zeros(6, dtype=torch.long), "classes": CLASSES})
    out = tmp_path / "conv.json"
    assert main(["search", "--model", str(m), "--layer", "conv1", "--recipe", "hvass", "--trials", "3",
                 "--units", "0", "1", "--data", str(data), "--max-steps", "20", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "best of 3 trials" in capsys.readouterr().out
    d = read_json(out)
    assert d["kind"] == "conv" and len(d["baseline"]) == 2
    # the baseline is each unit's largest channel mean over the real images
    from featviz.model import load_model
    model = load_model(m)
    with torch.no_grad():
        imgs = torch.load(data / "test.pt")["images"].float() / 255
        acts = model.net[0](model.normalize(imgs)).mean((2, 3))
    assert d["baseline"] == pytest.approx(acts.max(0).values[:2].tolist(), rel=1e-5)
    for r in d["trials"]:
        assert r["score"] == pytest.approx(r["metrics"]["normalized_objective_mean"])
    # trial 0 = the recipe unchanged: its score is the mean of objective / baseline per unit
    from featviz.ascent import visualize
    t0 = next(r for r in d["trials"] if r["trial"] == 0)
    res = visualize(model.net, "conv1", [0, 1], "conv", SHAPE, normalize=model.normalize, recipe="hvass",
                    overrides={"snapshots": 0}, seed=0)
    alive = [0.0 if s["dead"] else o for s, o in zip(res.stats, res.objective)]
    assert t0["score"] == pytest.approx(float(np.mean(np.array(alive) / np.abs(d["baseline"]))), rel=1e-4)
    assert "baseline" in d["score"]
    # errors: unknown layer / recipe, out-of-range unit
    assert main(["search", "--model", str(m), "--layer", "nope", "--trials", "1", "--out", str(out)]) == 2
    assert main(["search", "--model", str(m), "--layer", "conv1", "--recipe", "nope", "--trials", "1",
                 "--out", str(out)]) == 2
    assert main(["search", "--model", str(m), "--layer", "conv1", "--units", "9", "--trials", "1",
                 "--out", str(out)]) == 2
