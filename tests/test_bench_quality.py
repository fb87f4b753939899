"""benchmarks/bench_quality.py (issue 26 item 2, first version): it skips cleanly without the real
ImageNet networks and, where they are beside the checkout (../shared/models), makes a class image
with each recipe on one and scores it with the other."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_quality  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def test_skips_cleanly_without_the_networks(tmp_path, capsys):
    assert bench_quality.main(["--models", str(tmp_path), "--classes", "1"]) == 0
    out = capsys.readouterr().out
    assert "is absent" in out and "nothing to measure" in out


def test_the_class_list_is_fixed_and_distinct():
    assert len(bench_quality.CLASSES) >= 50 and len(set(bench_quality.CLASSES)) == len(bench_quality.CLASSES)
    assert bench_quality.CLASSES[:8] == [1, 94, 130, 207, 291, 417, 949, 963]  # the eight first


def test_spectrum_of_no_images_is_the_power_law(tmp_path):
    mag, source = bench_quality.imagenet_spectrum(tmp_path)
    assert mag.shape == (3, 224, 113) and "power law" in source


@pytest.mark.slow
def test_one_class_each_way_on_the_real_networks():
    models = SHARED / "models"
    if not all((models / f).is_file() for f in bench_quality.MODELS.values()):
        pytest.skip(f"the ImageNet networks are not at {models}")
    import torch

    torch.set_num_threads(2)
    nets = bench_quality.load_networks(models)
    spectrum, _ = bench_quality.imagenet_spectrum(SHARED / "data" / "foolbox-samples")
    rows = bench_quality.run(nets, ["lucid", "maco"], [1], steps=2, crops=2, seed=0, spectrum=spectrum,
                             extra={"dead_retries": 0, "robustness_samples": 0})
    assert [(r["maker"], r["recipe"]) for r in rows] == [(m, n) for m in nets for n in ("lucid", "maco")]
    for r in rows:
        (judge, sc), = r["judges"].items()
        assert judge != r["maker"] and 0 <= sc[0]["softmax"] <= 1 and sc[0]["top5"] in (True, False)
        assert 0 <= r["own_softmax"][0] <= 1 and r["s_per_unit"] > 0
    assert "| mobilenet_v2 | `maco` | 2 × 2 crops |" in bench_quality.table(rows)
    assert np.isfinite(spectrum).all()


def test_feature_units_are_scored_against_real_activations():
    """The feature part on a tiny conv net: units spread over the layer, each picture's `reached`
    against the real images' channel means (1 = the strongest real image), one row per recipe."""
    import torch
    from torch import nn

    assert bench_quality.spread_units(64, 4) == [0, 16, 32, 48] and bench_quality.spread_units(3, 4) == [0, 1, 2]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=4)).eval()
    real = np.random.default_rng(0).integers(0, 256, (5, 3, 224, 224), dtype=np.uint8)
    acts = bench_quality.channel_means(net, "2", real)
    assert acts.shape == (5, 4)
    rows = bench_quality.run_features({"tiny": net}, ['lucid:{"steps": 3, "dead_retries": 0}'], 2, real, seed=0,
                                      spectrum=None, layers={"tiny": ["2"]})
    (row,) = rows
    assert row["units"] == [0, 2] and row["steps"] == 3 and row["real_images"] == 5 and row["s_per_unit"] > 0
    top, mean = acts.max(0), acts.mean(0)
    assert np.allclose(row["real_max"], top[[0, 2]]) and np.allclose(row["real_mean"], mean[[0, 2]])
    for u, r, a in zip(row["units"], row["reached"], row["activation"]):
        if top[u] > mean[u]:
            assert np.isclose(r, (a - mean[u]) / (top[u] - mean[u]), rtol=1e-5)
        else:
            assert r is None
    assert "| tiny | 2 | `lucid:" in bench_quality.feature_table(rows)
