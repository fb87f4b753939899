"""The probe stage on a tiny synthetic model: baselines, top-k and its image bank, receptive fields
and their crops, dead units, redundancy, pruning and its budget, histogram subset, saliency,
first-layer analytic optimum."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from featviz.attribution import saliency
from featviz.errors import FeatvizError
from featviz.io import Chunks, write_npz
from featviz.model import load_model
from featviz.model.spec import Residual
from featviz.crops import top_crops
from featviz.probe import module_of, probe
from featviz.pruning import curve_passes
from featviz.receptive_field import _receptive_field_empirical, receptive_field
from tests.synthetic_run import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("probe"), steps=30)


def test_outputs_and_baselines(run):
    s = json.loads((run / "probe/probe.json").read_text())
    z = np.load(run / "probe/probe.npz")
    units = json.loads((run / "units.json").read_text())
    assert [layer["name"] for layer in s["layers"]] == [layer["name"] for layer in units["layers"]]
    assert s["histogram_images"] == s["n_test"]  # make_run sets no limit
    assert not [key for key in z.files if key.startswith(("topimg_", "crops_"))]
    for j, layer in enumerate(s["layers"]):
        acts = z[f"act_{j}"].astype(np.float32)
        assert acts.shape == (s["n_test"], layer["units"]) and z[f"act_{j}"].dtype == np.float16
        for u in layer["per_unit"]:
            assert u["max"] == pytest.approx(acts[:, u["unit"]].max(), rel=1e-2, abs=1e-2)
            assert u["mean"] == pytest.approx(acts[:, u["unit"]].mean(), rel=1e-2, abs=1e-2)
            assert 0.0 <= u["frac_active"] <= 1.0
            assert u["dead"] == (u["frac_active"] == 0.0)
            assert u["top_value"] == sorted(u["top_value"], reverse=True)
        assert z[f"hist_{j}"].sum(1).tolist() == [s["n_test"]] * layer["units"]
    # evaluate's accuracy and the probe's agree
    ev = json.loads((run / "eval/metrics.json").read_text())
    assert s["test_accuracy"] == pytest.approx(ev["test_accuracy"])


def _test_set(run):
    return torch.load(run.parent / "data" / run.name / "test.pt", weights_only=True)


def test_bank_rows_point_at_the_top_images(run):
    s = json.loads((run / "probe/probe.json").read_text())
    z = np.load(run / "probe/probe.npz")
    images = _test_set(run)["images"].numpy()
    assert "topk_bank" not in z.files  # the full-resolution bank is a file of its own (archives leave it out)
    bank, index = np.load(run / "probe/bank.npz")["topk_bank"], z["topk_bank_index"]
    assert bank.dtype == np.uint8 and index.dtype == np.int64 and z["topk_0"].dtype == np.int32
    everywhere = sorted({i for layer in s["layers"] for u in layer["per_unit"] for i in u["top_index"]})
    assert index.tolist() == everywhere  # each top image once, in test-set order
    assert np.array_equal(bank, images[index])
    for j, layer in enumerate(s["layers"]):
        rows = z[f"topk_{j}"]
        assert rows.shape == (layer["units"], s["top_k"])
        for u in layer["per_unit"]:
            assert index[rows[u["unit"]]].tolist() == u["top_index"]  # rank order
            assert np.array_equal(bank[rows[u["unit"]]], images[u["top_index"]])


def test_a_chunked_array_is_written_as_numpy_writes_it_whole(tmp_path):
    rng = np.random.default_rng(0)
    bank, other = rng.integers(0, 256, (37, 3, 5, 5), dtype=np.uint8), rng.random((4, 3)).astype(np.float16)
    write_npz(tmp_path / "whole.npz", a=other, topk_bank=bank, b=np.arange(3))
    pieces = (bank[i:i + 10] for i in range(0, 37, 10))
    write_npz(tmp_path / "chunked.npz", a=other, topk_bank=Chunks(bank.shape, np.uint8, pieces), b=np.arange(3))
    assert (tmp_path / "chunked.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()
    with pytest.raises(ValueError, match="hold 30 rows"):
        write_npz(tmp_path / "short.npz", topk_bank=Chunks(bank.shape, np.uint8, (bank[i:i + 10] for i in range(0, 30, 10))))
    assert not (tmp_path / "short.npz").exists()


def test_topk_and_crops_match_a_direct_forward(run):
    s = json.loads((run / "probe/probe.json").read_text())
    z = np.load(run / "probe/probe.npz")
    bank = np.load(run / "probe/bank.npz")["topk_bank"]
    model = load_model(run / "model")
    test = _test_set(run)
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
    # the crop is the input window around the argmax position, zero-padded at the borders
    for u in range(layer["units"]):
        crops = top_crops(bank, z["topk_1"][u], layer["top_pos"][u], 6, rf)  # conv2's output is 6x6
        assert crops.shape == (s["top_k"], 1, 8, 8) and crops.dtype == np.uint8
        for t, (idx, pos) in enumerate(zip(layer["per_unit"][u]["top_index"], layer["top_pos"][u])):
            py, px = divmod(pos, 6)
            img = np.pad(test["images"][idx, 0].numpy(), 8)
            y0, x0 = py * 2 - 3 + 8, px * 2 - 3 + 8
            assert np.array_equal(crops[t, 0], img[y0:y0 + 8, x0:x0 + 8])


def test_top_crops_clip_a_receptive_field_larger_than_the_image():
    bank = (np.arange(2 * 3 * 10 * 10) % 251 + 1).astype(np.uint8).reshape(2, 3, 10, 10)
    rf = {"size": 31, "stride": 4, "offset": -15, "method": "analytic"}  # centre of position p: 4p
    crops = top_crops(bank, np.array([1, 0]), [0, 3], 2, rf)  # positions (0, 0) and (1, 1)
    assert crops.shape == (2, 3, 10, 10)  # the image's size, not 31x31
    padded = np.pad(bank, ((0, 0), (0, 0), (10, 10), (10, 10)))
    # a 10-px window centred on the receptive field's centre (31 - 10) // 2 = 10 px into it
    assert np.array_equal(crops[0], padded[1, :, 10 - 5:10 + 5, 10 - 5:10 + 5])
    assert np.array_equal(crops[1], padded[0, :, 10 - 1:10 + 9, 10 - 1:10 + 9])
    assert (crops[0, :, :5] == 0).all() and (crops[0, :, 5:, 5:] > 0).all()
    small = top_crops(bank, np.array([0]), [0], 2, {"size": 3, "stride": 4, "offset": -1})
    assert np.array_equal(small[0], padded[0, :, 9:12, 9:12])  # zero row and column at the border


def test_histogram_subset_and_pruning_budget(run, tmp_path):
    model = load_model(run / "model")
    units = json.loads((run / "units.json").read_text())
    # conv1 (4 units): curve_passes(4) (+ 1: room for an unpruned pass); conv2 and fc1 would need more
    budget = 1 + curve_passes(4)
    assert curve_passes(6) > 0
    s = probe(model, units, run.parent / "data" / run.name, tmp_path / "p", "cpu", top_k=2, samples=1,
              prune_images=100, histogram_images=50, prune_passes=budget)
    z = np.load(tmp_path / "p/probe.npz")
    full = json.loads((run / "probe/probe.json").read_text())
    assert s["histogram_images"] == 50 and s["n_test"] == 200 and s["prune_images"] == 100
    for j, layer in enumerate(s["layers"]):
        assert z[f"act_{j}"].shape == (50, layer["units"])
        assert z[f"hist_{j}"].sum(1).tolist() == [50] * layer["units"]
        # baselines still over every test image
        for u, v in zip(layer["per_unit"], full["layers"][j]["per_unit"]):
            assert (u["max"], u["frac_active"]) == pytest.approx((v["max"], v["frac_active"]), abs=1e-4)
    by_name = {layer["name"]: layer for layer in s["layers"]}
    assert by_name["conv1"]["pruning"]["units"] == 4 and "pruning_skipped" not in by_name["conv1"]
    for name in ("conv2", "fc1"):  # past the budget, in units.json order
        assert by_name[name]["pruning"] is None
        assert by_name[name]["pruning_skipped"] == f"budget of {budget} passes spent"
    assert "pruning" not in by_name["classes"]
    # the unpruned accuracy is the activation pass's (same precision): no pass of its own
    assert s["prune_mode"]["base_from_activation_pass"]
    assert s["prune_passes"] == {"budget": budget, "used": len(by_name["conv1"]["pruning"]["removed"]) - 1}
    assert s["prune_passes"]["used"] <= budget


def test_pruning_passes_in_bf16_and_channels_last(run, tmp_path):
    """probe.prune_precision: the curves' passes under bf16 autocast on channels_last inputs give
    a curve of the same shape from the same base within bf16's noise; the network is handed back
    contiguous (saliency and anything after it run as before), and probe.json says which mode ran."""
    model = load_model(run / "model")
    units = json.loads((run / "units.json").read_text())
    kw = dict(top_k=2, samples=1, prune_images=100, histogram_images=50)
    fp32 = probe(model, units, run.parent / "data" / run.name, tmp_path / "a", "cpu", **kw)
    bf16 = probe(model, units, run.parent / "data" / run.name, tmp_path / "b", "cpu", prune_precision="bf16", **kw)
    assert fp32["prune_mode"] == {"precision": "fp32", "channels_last": True, "base_from_activation_pass": True}
    assert bf16["prune_mode"] == {"precision": "bf16", "channels_last": True, "base_from_activation_pass": False}
    assert bf16["prune_passes"]["used"] == fp32["prune_passes"]["used"] + 1  # its own unpruned pass
    assert all(p.is_contiguous() for p in model.net.parameters())
    assert bf16["test_accuracy"] == fp32["test_accuracy"]  # the activation pass stays fp32
    for a, b in zip(fp32["layers"], bf16["layers"]):
        assert (a["per_unit"], a.get("receptive_field")) == (b["per_unit"], b.get("receptive_field"))
        if a.get("pruning"):
            pa, pb = a["pruning"], b["pruning"]
            assert pa["units"] == pb["units"] and pb["accuracy"][0] == pytest.approx(pa["accuracy"][0], abs=0.03)
    with pytest.raises(FeatvizError, match="probe.prune_precision: unknown precision 'fp16'"):
        probe(model, units, run.parent / "data" / run.name, tmp_path / "c", "cpu", prune_precision="fp16", **kw)
    assert not (tmp_path / "c").exists()


def test_the_default_budget_covers_the_quick_mnist_network():
    import yaml

    from featviz.model.spec import PRESETS, build

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    default = schema["properties"]["runs"]["items"]["properties"]["probe"]["properties"]["prune_passes"]["default"]
    net = build(PRESETS["hvass-mnist"]["layers"], (1, 28, 28), 10)  # config/quick.yaml's network
    widths = [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
              for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]  # conv1, conv2, fc1
    assert widths == [16, 36, 128]
    assert 1 + sum(curve_passes(w) for w in widths) <= default  # every curve, as before the budget


def test_receptive_field_analytic_matches_gradients():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(2, 3, 3, padding=1),
                        nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(3, 2, 3, padding=1))
    for name in ("0", "3", "6"):
        a = receptive_field(net, name, (1, 32, 32))
        e = _receptive_field_empirical(net, name, (1, 32, 32))
        assert (a["size"], a["stride"]) == (e["size"], e["stride"]), name
    assert receptive_field(net, "6", (1, 32, 32))["size"] == 5 + 1 + 2 * 2 + 2 + 4 * 2


def test_receptive_field_of_residual_networks_is_measured():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Residual(2), nn.Conv2d(2, 2, 3, padding=1)).eval()
    # before the skip connection merges, the chain is plain: analytic, and the gradients agree
    inner = receptive_field(net, "1.conv2", (1, 24, 24))
    assert inner["method"] == "analytic" and inner["size"] == 7
    assert inner["size"] == _receptive_field_empirical(net, "1.conv2", (1, 24, 24))["size"]
    assert receptive_field(net, "2", (1, 24, 24))["method"] == "empirical"
    torchvision = pytest.importorskip("torchvision")
    r18 = torchvision.models.resnet18(num_classes=3).eval()
    assert receptive_field(r18, "conv1", (3, 32, 32))["method"] == "analytic"
    assert receptive_field(r18, "layer1.0.conv1", (3, 32, 32))["method"] == "analytic"
    for name in ("layer1.1.conv1", "layer2.0.downsample.0", "layer2"):
        assert receptive_field(r18, name, (3, 32, 32))["method"] == "empirical", name


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
    assert sal.dtype == np.float16 and np.allclose(maps, sal, rtol=1e-3, atol=1e-4)  # float16: what a colour map draws


def test_unknown_module_is_a_user_error(run):
    model = load_model(run / "model")
    with pytest.raises(FeatvizError, match="no module 'nope'"):
        module_of(model.net, {"name": "nope"})
