"""The probe stage on a tiny synthetic model: baselines, top-k, receptive fields, dead units,
redundancy, pruning, saliency, first-layer analytic optimum."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from featviz.attribution import saliency
from featviz.errors import FeatvizError
from featviz.model import load_model
from featviz.probe import _receptive_field_empirical, module_of, probe, receptive_field
from featviz.report.synthetic import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("probe"), steps=30)


def test_outputs_and_baselines(run):
    s = json.loads((run / "probe/probe.json").read_text())
    z = np.load(run / "probe/probe.npz")
    units = json.loads((run / "units.json").read_text())
    assert [layer["name"] for layer in s["layers"]] == [layer["name"] for layer in units["layers"]]
    for j, layer in enumerate(s["layers"]):
        acts = z[f"act_{j}"].astype(np.float32)
        assert acts.shape == (s["n_test"], layer["units"]) and z[f"act_{j}"].dtype == np.float16
        for u in layer["per_unit"]:
            assert u["max"] == pytest.approx(acts[:, u["unit"]].max(), rel=1e-2, abs=1e-2)
            assert 0.0 <= u["frac_active"] <= 1.0
            assert u["dead"] == (u["frac_active"] == 0.0)
            assert u["top_value"] == sorted(u["top_value"], reverse=True)
        assert z[f"hist_{j}"].sum(1).tolist() == [s["n_test"]] * layer["units"]
    # evaluate's accuracy and the probe's agree
    ev = json.loads((run / "eval/metrics.json").read_text())
    assert s["test_accuracy"] == pytest.approx(ev["test_accuracy"])


def test_topk_and_crops_match_a_direct_forward(run):
    s = json.loads((run / "probe/probe.json").read_text())
    z = np.load(run / "probe/probe.npz")
    model = load_model(run / "model")
    test = torch.load(run.parent / "data" / run.name / "test.pt", weights_only=True)
    layer = s["layers"][1]  # conv2
    out = {}
    h = model.net.conv2.register_forward_hook(lambda m, i, o: out.__setitem__("a", o))
    with torch.no_grad():
        model.net(model.normalize(test["images"].float() / 255))
    h.remove()
    smax = out["a"].flatten(2).amax(2)  # (N, U)
    for u in layer["per_unit"]:
        best = torch.topk(smax[:, u["unit"]], len(u["top_index"])).values
        assert np.allclose(u["top_value"], best.numpy(), atol=1e-4)
    rf = layer["receptive_field"]
    assert rf == {"size": 8, "stride": 2, "offset": -3, "method": "analytic"}
    crops = z["crops_1"]
    assert crops.shape[-2:] == (8, 8)
    # the crop is the input window around the argmax position
    u, t = 2, 0
    idx, pos = layer["per_unit"][u]["top_index"][t], layer["top_pos"][u][t]
    py, px = divmod(pos, 6)  # conv2's output is 6x6
    img = np.pad(test["images"][idx, 0].numpy(), 8)
    y0, x0 = py * 2 - 3 + 8, px * 2 - 3 + 8
    assert np.array_equal(crops[u, t, 0], img[y0:y0 + 8, x0:x0 + 8])


def test_receptive_field_analytic_matches_gradients():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(2, 3, 3, padding=1),
                        nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(3, 2, 3, padding=1))
    for name in ("0", "3", "6"):
        a = receptive_field(net, name, (1, 32, 32))
        e = _receptive_field_empirical(net, name, (1, 32, 32))
        assert (a["size"], a["stride"]) == (e["size"], e["stride"]), name
    assert receptive_field(net, "6", (1, 32, 32))["size"] == 5 + 1 + 2 * 2 + 2 + 4 * 2


def test_dead_unit_redundancy_and_pruning(run, tmp_path):
    model = load_model(run / "model")
    with torch.no_grad():
        model.net.fc1.bias[3] = -1e4  # nothing can switch it on
        model.net.fc1.weight[5] = model.net.fc1.weight[4]  # an exact duplicate
        model.net.fc1.bias[5] = model.net.fc1.bias[4]
    units = json.loads((run / "units.json").read_text())
    s = probe(model, units, run.parent / "data" / run.name, tmp_path / "p", "cpu", top_k=3, samples=2)
    fc1 = next(layer for layer in s["layers"] if layer["name"] == "fc1")
    assert fc1["per_unit"][3]["dead"] and fc1["per_unit"][3]["frac_active"] == 0
    assert (4, 5, 1.0) in [(a, b, round(c, 3)) for a, b, c in fc1["redundant_pairs"]]
    p = fc1["pruning"]
    dead = {u["unit"] for u in fc1["per_unit"] if u["dead"]}
    assert set(p["order"][:len(dead)]) == dead  # dead units go first
    assert p["order"][len(dead)] in (4, 5)  # then one of the duplicates, not both
    assert p["order"][len(dead) + 1] not in (4, 5)
    assert p["removed"][0] == 0 and p["accuracy"][0] == pytest.approx(p["base_accuracy"])
    assert 1 <= p["removable"] <= p["units"]
    ok = [a for k, a in zip(p["removed"], p["accuracy"]) if k <= p["removable"]]
    assert min(ok) >= p["base_accuracy"] - p["tolerance"]
    assert (tmp_path / "p/pruning.png").stat().st_size > 0


def test_saliency_and_first_layer(run):
    z = np.load(run / "probe/probe.npz")
    s = json.loads((run / "probe/probe.json").read_text())
    w = z["conv1_weights"]
    assert np.array_equal(z["conv1_optimal"], (w > 0).astype(np.float32))
    # the analytic optimum is reached by the optimal input placed in the image interior
    model = load_model(run / "model")
    out = {}
    h = model.net.conv1.register_forward_hook(lambda m, i, o: out.__setitem__("a", o))
    x = torch.zeros(4, 1, 12, 12)
    x[:, :, 4:7, 4:7] = torch.from_numpy(z["conv1_optimal"])
    with torch.no_grad():
        model.net(model.normalize(x))
    h.remove()
    got = out["a"][torch.arange(4), torch.arange(4), 5, 5]
    assert np.allclose(got.numpy(), s["first_layer"]["analytic_max"], atol=1e-3)
    sal = z["saliency"]
    assert sal.shape == (len(s["samples"]), 12, 12) and sal.max() == pytest.approx(1.0)
    maps, cls = saliency(model, torch.from_numpy(z["sample_images"]), "cpu")
    assert np.allclose(maps, sal)


def test_unknown_module_is_a_user_error(run):
    model = load_model(run / "model")
    with pytest.raises(FeatvizError, match="no module 'nope'"):
        module_of(model.net, {"name": "nope"})
