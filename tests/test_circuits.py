"""Circuits (featviz/circuits.py, `featviz circuits`, the unit pages' block): the weight measure and
the data measure on tiny hand-built nets whose answer is known, their agreement in sign, the
fallback to data where layers are not directly connected, bad input as one error line, and the
report's circuit links and thumbnails."""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from featviz.circuits import circuits, run_circuits
from featviz.cli import main
from featviz.errors import FeatvizError
from featviz.model import LoadedModel
from featviz.report import render_run
from featviz.report.circuits import thumb_path
from tests.synthetic_run import make_run

SHAPE = (1, 8, 8)


def _units(*layers) -> dict:
    return {"input_shape": list(SHAPE), "classes": ["a", "b", "c"], "layers": [dict(x) for x in layers]}


def _conv_net(norm: nn.Module | None = None) -> nn.Sequential:
    """conv1 (4 channels, positive outputs) -> [norm] -> relu -> conv2 (2 channels): conv2's unit 0 reads
    channel 3 with +1 everywhere and channel 1 with -1, nothing else; unit 1 reads channel 0 with +0.5."""
    torch.manual_seed(0)
    conv1 = nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv1.weight.uniform_(0.0, 0.3)
        conv1.bias.fill_(0.5)  # every activation positive: ReLU passes everything
    conv2 = nn.Conv2d(4, 2, 3, padding=1)
    with torch.no_grad():
        conv2.weight.zero_()
        conv2.bias.zero_()
        conv2.weight[0, 3] = 1.0
        conv2.weight[0, 1] = -1.0
        conv2.weight[1, 0] = 0.5
    mods = [("conv1", conv1)] + ([("bn", norm)] if norm is not None else []) + [("relu", nn.ReLU()), ("conv2", conv2),
            ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(2, 3))]
    return nn.Sequential(OrderedDict(mods)).eval()


def _model(net) -> LoadedModel:
    return LoadedModel(net, ["a", "b", "c"], SHAPE, [0.0], [1.0])


CONV_UNITS = _units({"name": "conv1", "kind": "conv", "units": 4, "output_shape": [4, 8, 8]},
                    {"name": "conv2", "kind": "conv", "units": 2, "output_shape": [2, 8, 8]})


def _images(n=16):
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_weight_measure_finds_the_known_drivers():
    r = circuits(_model(_conv_net()), CONV_UNITS, _images(), top=3)
    (pair,) = r["pairs"]
    assert (pair["from"], pair["to"], pair["measure"]) == ("conv1", "conv2", "weights")
    assert "kernel slice W[j, i]" in pair["how"] and "relu" in pair["how"]
    unit0 = pair["in"]["0"]
    assert unit0["pos"] == [[3, 9.0]] and unit0["neg"] == [[1, -9.0]]  # the 3x3 slice summed
    assert pair["in"]["1"] == {"pos": [[0, 4.5]], "neg": []}
    assert pair["out"]["3"] == {"pos": [[0, 9.0]], "neg": []}
    assert pair["out"]["1"] == {"pos": [], "neg": [[0, -9.0]]}
    assert pair["out"]["2"] == {"pos": [], "neg": []}
    assert pair["measured"] == 2 and r["version"] == 2
    assert r["images"] == 0  # no data needed


def test_data_measure_agrees_in_sign_with_the_weights():
    model = _model(_conv_net())
    w = circuits(model, CONV_UNITS, _images(), top=3)["pairs"][0]
    d = circuits(model, CONV_UNITS, _images(), top=3, measure="data", images=10)["pairs"][0]
    assert d["measure"] == "data" and "gradient × activation" in d["how"] and "10 test images" in d["how"]
    for j in range(2):
        for sign in ("pos", "neg"):
            assert [u for u, _ in d["in"][str(j)][sign]] == [u for u, _ in w["in"][str(j)][sign]], (j, sign)
    # grad x act of a linear path: the kernel sum times the channel's mean activation (positive here)
    model.net.eval()
    with torch.no_grad():
        act = model.net.conv1(model.to_input(_images()[torch.linspace(0, 15, 10).round().long()], "cpu"))
    assert act.min() > 0
    (u, v), = d["in"]["0"]["pos"]
    assert u == 3 and v > 0


class _InplaceBlock(nn.Module):
    """out = relu(x + conv(x)), the add in place on the conv's output (torchvision's `out += identity`)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y += x
        return torch.relu(y)


def _residual_net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn=nn.BatchNorm2d(4), relu=nn.ReLU6(), block=_InplaceBlock(4),
        pool=nn.MaxPool2d(2), conv2=nn.Conv2d(4, 5, 3, padding=1), gap=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(), fc=nn.Linear(5, 3))).eval()


def _per_unit_reference(net, pairs, x) -> dict:
    """The former measure: one forward pass recording the whole graph from the input, then one
    backward pass per unit of b, gradient x activation summed over images and positions."""
    from featviz.circuits_data import _reduce

    mods, outs = dict(net.named_modules()), {}
    handles = [mods[n].register_forward_hook(lambda _m, _i, o, n=n: outs.setdefault(n, o.clone()))
               for n in {p.a for p in pairs} | {p.b for p in pairs}]
    try:
        with torch.enable_grad():
            net(x.clone().requires_grad_(True))
    finally:
        for h in handles:
            h.remove()
    got = {}
    for p in pairs:
        later, act = _reduce(outs[p.b]), outs[p.a]
        rows = [torch.autograd.grad(later[:, j].sum(), act, retain_graph=True)[0] * act for j in p.rows]
        got[(p.a, p.b)] = np.stack([r.detach().flatten(2).sum(2).sum(0).double().numpy() if r.dim() > 2
                                    else r.detach().sum(0).double().numpy() for r in rows]) / len(x)
    return got


def test_data_measure_equals_the_per_unit_measure_at_any_batch_size():
    """The hooks' measure (a leaf at each a, pairs measured at b, the pass stopped after the last b)
    gives the whole-graph per-unit answer, whatever the memory budget makes the batch; only the
    rows asked for are measured."""
    from featviz.circuits_data import Pair, data_strengths

    net = _residual_net()
    model = _model(net)
    images = _images(13)
    with torch.no_grad():
        x = model.to_input(images, "cpu")
    def pairs():
        return [Pair("conv1", "block", 4, 4, [0, 1, 2, 3]), Pair("block", "conv2", 4, 5, [1, 4]),
                Pair("conv2", "fc", 5, 3, [2])]
    want = _per_unit_reference(net, pairs(), x)
    lines = []
    for memory in (1, 2 ** 30):
        got = data_strengths(model, pairs(), images, "cpu", memory, log=lines.append)
        for key, s in want.items():
            assert got[key].shape == s.shape
            np.testing.assert_allclose(got[key], s, rtol=1e-5, atol=1e-6 * np.abs(s).max(), err_msg=str(key))
    per_batch = [line for line in lines if "images per batch" in line]
    assert ": 1 images per batch" in per_batch[0] and ": 12 images per batch" in per_batch[1], per_batch


def test_a_later_layer_computed_first_is_unconnected_and_a_missing_call_is_an_error():
    from featviz.circuits_data import Pair, data_strengths

    model = _model(_residual_net())
    got = data_strengths(model, [Pair("conv2", "conv1", 5, 4, [0])], _images(4), "cpu", 2 ** 20)
    assert got[("conv2", "conv1")] is None

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.unused = nn.Conv2d(2, 2, 1)
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    with pytest.raises(FeatvizError, match="'unused' was not called"):
        data_strengths(_model(Skips().eval()), [Pair("conv", "unused", 2, 2, [0])], _images(4), "cpu", 2 ** 20)


def test_batchnorm_scale_flips_the_sign():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 1.0, 1.0, -2.0]))
        bn.running_var.fill_(4.0)
    bn.eps = 0.0
    pair = circuits(_model(_conv_net(bn)), CONV_UNITS, _images())["pairs"][0]
    assert pair["measure"] == "weights" and "BatchNorm scale" in pair["how"] and "bn" in pair["how"]
    assert pair["in"]["0"]["neg"] == [[3, -9.0], [1, -4.5]]  # 9 * (-2 / 2), -9 * (1 / 2)


def test_conv_to_dense_through_flatten_sums_each_channels_positions():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3, padding=1), relu=nn.ReLU(), pool=nn.MaxPool2d(2),
                                    flatten=nn.Flatten(), fc1=nn.Linear(2 * 16, 5), fc2=nn.Linear(5, 3))).eval()
    units = _units({"name": "conv", "kind": "conv", "units": 2, "output_shape": [2, 8, 8]},
                   {"name": "fc1", "kind": "dense", "units": 5, "output_shape": [5]},
                   {"name": "classes", "kind": "class", "units": 3, "output_shape": [3], "module": "fc2"})
    r = circuits(_model(net), units, _images(), top=2)
    p1, p2 = r["pairs"]
    assert p1["measure"] == p2["measure"] == "weights" and "after flatten" in p1["how"]
    w = net.fc1.weight.detach().view(5, 2, 16).sum(2)
    for j in range(5):
        best = int(w[j].argmax())
        if w[j, best] > 0:
            assert p1["in"][str(j)]["pos"][0][0] == best
            assert p1["in"][str(j)]["pos"][0][1] == pytest.approx(float(w[j, best]), rel=1e-3)
    w2 = net.fc2.weight.detach()
    assert p2["in"]["1"]["pos"][0][0] == int(w2[1].argmax()) and (p2["from"], p2["to"]) == ("fc1", "classes")


class _ViewNet(nn.Module):
    """A user's class: torch.relu and x.view(x.size(0), -1) between the conv and the dense layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 64, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def test_functional_relu_and_view_are_a_weights_chain():
    torch.manual_seed(0)
    net = _ViewNet().eval()
    units = _units({"name": "conv", "kind": "conv", "units": 2, "output_shape": [2, 8, 8]},
                   {"name": "classes", "kind": "class", "units": 3, "output_shape": [3], "module": "fc"})
    (pair,) = circuits(_model(net), units, _images())["pairs"]
    assert pair["measure"] == "weights" and "after flatten" in pair["how"] and "relu" in pair["how"]
    w = net.fc.weight.detach().view(3, 2, 64).sum(2)
    j = int(w.max(1).values.argmax())
    assert pair["in"][str(j)]["pos"][0] == [int(w[j].argmax()), pytest.approx(float(w[j].max()), rel=1e-3)]


class _Block(nn.Module):
    """out = x + conv(relu(x)): a residual add, so no weight slice alone says what drives what."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 3] = 1.0
            self.conv.weight[0, 1] = -3.0

    def forward(self, x):
        return x + self.conv(self.relu(x))


def test_residual_block_falls_back_to_data():
    net = _conv_net()
    net = nn.Sequential(OrderedDict(conv1=net.conv1, block=_Block(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                    fc=nn.Linear(4, 3))).eval()
    units = _units({"name": "conv1", "kind": "conv", "units": 4, "output_shape": [4, 8, 8]},
                   {"name": "block", "kind": "conv", "units": 4, "output_shape": [4, 8, 8]},
                   {"name": "classes", "kind": "class", "units": 3, "output_shape": [3], "module": "fc"})
    pair, after = circuits(_model(net), units, _images(), images=8)["pairs"]
    assert pair["measure"] == "data"
    # the block's output, kept whole when traced, reaches fc through pool and flatten: weights
    assert after["measure"] == "weights" and "through pool → flatten" in after["how"]
    assert after["in"]["0"]["pos"][0][0] == int(net.fc.weight[0].argmax())
    # block unit 0 = x0 + x3 - 3 x1 (all positive): 1 the strongest negative, 0 and 3 positive
    assert pair["in"]["0"]["neg"][0][0] == 1 and {u for u, _ in pair["in"]["0"]["pos"]} == {0, 3}
    assert pair["in"]["2"] == {"pos": [[2, pair["in"]["2"]["pos"][0][1]]], "neg": []}  # identity only


def test_layers_subset_and_bad_settings():
    model = _model(_conv_net())
    assert circuits(model, CONV_UNITS, _images(), layers=["conv2"])["pairs"] == []
    with pytest.raises(FeatvizError, match="circuits.images"):
        circuits(model, CONV_UNITS, _images(), images=0)
    with pytest.raises(FeatvizError, match="circuits.measure"):
        circuits(model, CONV_UNITS, _images(), measure="magic")
    with pytest.raises(FeatvizError, match="layer 'nope'"):
        circuits(model, CONV_UNITS, _images(), layers=["nope"])
    bad = _units({"name": "conv1", "kind": "conv", "units": 4}, {"name": "missing", "kind": "conv", "units": 2})
    with pytest.raises(FeatvizError, match="no module 'missing'"):
        circuits(model, bad, _images(), measure="data")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuits")
    run = make_run(root, steps=20)
    run_circuits(run / "model", run / "units.json", root / "results" / "data" / run.name,
                 run / "circuits" / "circuits.json", images=64, top=3, measure="auto", layers=None, device="cpu")
    return run


def test_cli_writes_circuits_and_refuses_bad_input(tiny_run, tmp_path, capsys):
    data = tiny_run.parent / "data" / tiny_run.name
    out = tmp_path / "c.json"
    args = ["circuits", "--model", str(tiny_run / "model"), "--units", str(tiny_run / "units.json"),
            "--device", "cpu", "--out", str(out)]
    assert main([*args, "--data", str(data), "--measure", "data", "--images", "20"]) == 0
    r = json.loads(out.read_text())
    assert [(p["from"], p["to"], p["measure"]) for p in r["pairs"]] == [
        ("conv1", "conv2", "data"), ("conv2", "fc1", "data"), ("fc1", "classes", "data")]
    assert r["images"] == 20
    capsys.readouterr()
    out.unlink()
    for extra, needle in ((["--data", str(tmp_path / "nodata")], "nodata"),
                          (["--data", str(data), "--top", "0"], "circuits.top"),
                          (["--data", str(data), "--measure", "bogus"], "circuits.measure")):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("featviz: error:") and err.count("\n") == 1 and needle in err, err
        assert not out.exists()


def test_thumb_path_names_what_the_report_writes(tmp_path):
    from featviz.report.site import THUMB, _unit_pictures

    for h in (12, 64, 224):
        site = tmp_path / f"s{h}"
        site.mkdir()
        _hero, thumb = _unit_pictures(site, "units/x", 3, np.random.default_rng(0).random((1, h, h), np.float32))
        assert thumb == thumb_path("units/x", 3, h, THUMB) and (site / thumb).is_file(), h


def test_unit_pages_show_circuits_with_working_links(tiny_run, tmp_path):
    site = tmp_path / "site"
    render_run(tiny_run, site)
    page = (site / "units" / "conv2" / "0.html").read_text()
    assert 'id="circuits"' in page and "Driven most by" in page and "Drives most" in page
    assert "weights: the sum of conv2&#39;s kernel slice" in page  # the measure is stated
    assert page.count('<span class="tag">weights</span>') == 2
    first = (site / "units" / "conv1" / "0.html").read_text()
    assert "Driven most by" not in first and "Drives most" in first  # no earlier layer
    cls = (site / "units" / "classes" / "1.html").read_text()
    assert "Driven most by" in cls and "Drives most" not in cls
    pages = sorted(site.glob("units/*/*.html"))
    links = 0
    for p in pages:
        html = p.read_text()
        block = html[html.find('id="circuits"'):] if 'id="circuits"' in html else ""
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', block):
            assert (p.parent / ref).resolve().is_file(), (p, ref)
            links += 1
    assert links > 50


def test_report_refuses_a_stale_circuits_file(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "results" / tiny_run.name
    shutil.copytree(tiny_run, run)
    c = json.loads((run / "circuits" / "circuits.json").read_text())
    c["pairs"][0]["to_units"] = 99
    (run / "circuits" / "circuits.json").write_text(json.dumps(c))
    with pytest.raises(FeatvizError, match=r"circuits file .*pairs\[0\].*re-run `featviz circuits`"):
        render_run(run, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_report_without_circuits_has_no_block(tmp_path):
    run = make_run(tmp_path, steps=5)
    render_run(run, tmp_path / "site")
    assert 'id="circuits"' not in (tmp_path / "site" / "units" / "conv2" / "0.html").read_text()
    assert Path(tmp_path / "site" / "units" / "conv2" / "0.html").is_file()


# ------------------------------------------------------------------ the units the report shows

def test_only_the_shown_units_are_measured_and_ranked():
    """shown (ascent.units): `in` for the shown units of b only (every unit of a ranked), `out` ranks
    the measured units of b; the data measure's strengths are those of the full measure's rows."""
    model = _model(_residual_net())
    units = _units({"name": "conv1", "kind": "conv", "units": 4, "output_shape": [4, 8, 8]},
                   {"name": "block", "kind": "conv", "units": 4, "output_shape": [4, 8, 8]},
                   {"name": "conv2", "kind": "conv", "units": 5, "output_shape": [5, 4, 4]},
                   {"name": "classes", "kind": "class", "units": 3, "output_shape": [3], "module": "fc"})
    full = circuits(model, units, _images(), images=8, top=5, measure="data")
    part = circuits(model, units, _images(), images=8, top=5, measure="data", shown={"conv2": [1, 3], "classes": [2]})
    f, p = full["pairs"][1], part["pairs"][1]  # block -> conv2
    assert (p["from"], p["to"], p["measured"], f["measured"]) == ("block", "conv2", 2, 5)
    assert sorted(p["in"]) == ["1", "3"] and sorted(p["out"]) == ["0", "1", "2", "3"]
    assert p["in"]["1"] == f["in"]["1"] and p["in"]["3"] == f["in"]["3"]
    for i in range(4):  # the full ranking restricted to units 1 and 3
        for sign in ("pos", "neg"):
            assert p["out"][str(i)][sign] == [e for e in f["out"][str(i)][sign] if e[0] in (1, 3)][:5], (i, sign)
    last = part["pairs"][2]
    assert sorted(last["in"]) == ["2"] and sorted(last["out"]) == ["1", "3"] and last["measured"] == 1
    weights = circuits(model, units, _images(), top=5, shown={"conv2": [1, 3], "classes": [2]})["pairs"][2]
    assert weights["measure"] == "weights" and weights["measured"] == 3  # free: every class ranked


def test_selection_settings_for_the_workflow():
    from featviz.circuits import resolve_circuits, selection_args, shown_selection

    assert resolve_circuits(None) is None
    assert resolve_circuits({"images": 9}) == {"images": 9, "top": 6, "measure": "auto", "memory_mb": 1536}
    ascent = {"layers": ["conv2", "classes"], "units": {"conv2": [3, 1, 3], "fc1": [0]}, "steps": 5,
              "recipe": {"conv": "hvass"}}
    assert shown_selection(ascent) == {"layers": ["conv2", "classes"], "units": {"conv2": [1, 3], "fc1": [0]}}
    assert selection_args(ascent) == "--layers conv2 classes --shown '{\"conv2\": [1, 3], \"fc1\": [0]}'"
    named = {"layers": ["layer4", "classes"], "units": {"classes": ["goldfish", 130, 7, "goldfish"]}}
    assert shown_selection(named)["units"] == {"classes": [7, 130, "goldfish"]}  # names resolved by the job
    assert selection_args({"layers": None, "units": {}}) == ""
    model = _model(_conv_net())
    with pytest.raises(FeatvizError, match=r"circuits.units.conv2: unit 7 is out of range"):
        circuits(model, CONV_UNITS, _images(), shown={"conv2": [7]})
    with pytest.raises(FeatvizError, match="circuits.memory_mb"):
        circuits(model, CONV_UNITS, _images(), memory_mb=0)


def test_cli_shown_units_and_memory(tiny_run, tmp_path, capsys):
    data = tiny_run.parent / "data" / tiny_run.name
    out = tmp_path / "c.json"
    args = ["circuits", "--model", str(tiny_run / "model"), "--units", str(tiny_run / "units.json"),
            "--data", str(data), "--device", "cpu", "--out", str(out), "--measure", "data", "--images", "12"]
    assert main([*args, "--shown", '{"fc1": [2, 5]}', "--layers", "conv2", "fc1", "--memory-mb", "64"]) == 0
    (pair,) = json.loads(out.read_text())["pairs"]
    assert (pair["from"], pair["to"], sorted(pair["in"]), pair["measured"]) == ("conv2", "fc1", ["2", "5"], 2)
    assert "images per batch in 64 MB" in capsys.readouterr().out
    out.unlink()
    for extra, needle in ((["--shown", "{nope"], "--shown: not JSON"), (["--shown", '{"fc1": []}'], "--shown: expected"),
                          (["--shown", '{"fc9": [1]}'], "unknown layer 'fc9'"), (["--memory-mb", "0"], "circuits.memory_mb")):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("featviz: error:") and err.count("\n") == 1 and needle in err, err
        assert not out.exists()


def test_pages_name_classes_without_pages_and_say_what_was_ranked(tmp_path):
    """A report showing some units: partners without a page are listed by index, classes by name;
    `Drives most` says among how many units of the next layer (the data measure's measured ones)."""
    run = make_run(tmp_path, steps=10, classes=["zero", "one", "two"], shown={"fc1": [1, 4], "classes": [2]})
    shown = {"fc1": [1, 4], "classes": [2]}
    run_circuits(run / "model", run / "units.json", tmp_path / "results" / "data" / run.name,
                 run / "circuits" / "circuits.json", images=16, top=3, measure="data", layers=None, device="cpu",
                 shown=shown)
    site = tmp_path / "site"
    render_run(run, site, {"circuits": {}})
    assert not (site / "units" / "classes" / "0.html").exists()
    fc1 = (site / "units" / "fc1" / "1.html").read_text()
    block = fc1[fc1.find('id="circuits"'):]
    assert "among the 1 of its 3 units this report shows" in block  # fc1 -> classes: class 2 measured
    conv2 = (site / "units" / "conv2" / "0.html").read_text()
    assert "among the 2 of its 8 units this report shows" in conv2[conv2.find('id="circuits"'):]
    cls = (site / "units" / "classes" / "2.html").read_text()
    assert 'id="circuits"' in cls and "Driven most by" in cls
    # fc1 -> classes measured class 2 only: fc1's "Drives most" names it; with weights, every class is ranked
    run_circuits(run / "model", run / "units.json", tmp_path / "results" / "data" / run.name,
                 run / "circuits" / "circuits.json", images=16, top=3, measure="auto", layers=None, device="cpu",
                 shown=shown)
    render_run(run, site, {})
    fc1 = (site / "units" / "fc1" / "4.html").read_text()
    out = fc1[fc1.find('data-direction="out"'):]
    named = re.findall(r"#(\d) (zero|one|two)", out)
    assert named and all(["zero", "one", "two"][int(u)] == name for u, name in named), out[:2000]
    assert any(u != "2" for u, _ in named)  # a class without a page, named


def test_circuits_off_shows_no_block_even_with_an_old_file(tiny_run, tmp_path):
    site = tmp_path / "site"
    render_run(tiny_run, site, {"circuits": None})  # `circuits: null`: circuits.json left by an earlier run
    assert (tiny_run / "circuits" / "circuits.json").is_file()
    assert not any('id="circuits"' in p.read_text() for p in site.glob("units/*/*.html"))
    from featviz.verb_args import check_report_config

    check_report_config({"circuits": None})  # the schema allows null


def test_report_refuses_a_circuits_file_of_the_former_layout(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "results" / tiny_run.name
    shutil.copytree(tiny_run, run)
    c = json.loads((run / "circuits" / "circuits.json").read_text())
    c["version"] = 1
    (run / "circuits" / "circuits.json").write_text(json.dumps(c))
    with pytest.raises(FeatvizError, match=r"older featviz .*re-run `featviz circuits`"):
        render_run(run, tmp_path / "site")


def test_the_report_reads_the_layout_circuits_writes():
    from featviz.circuits import VERSION
    from featviz.report.circuits import VERSION as READ

    assert VERSION == READ


# ------------------------------------------------------------------------------------------ workflow

@pytest.mark.workflow
def test_workflow_reruns_circuits_only_when_what_it_measures_changes(tmp_path, monkeypatch):
    """On the tiny .test config: circuits measures the shown units (ascent.units); a changed ascent
    recipe or step count reruns no circuits, a changed selection does; `circuits: null` leaves no
    circuits job in the DAG (the report and archive still run)."""
    import copy

    import yaml
    from snakemake.utils import validate

    from featviz.config import resolve_runs
    from tests.snakemake_run import snakemake
    from tests.synthetic import make_imagefolder

    root = Path(__file__).resolve().parents[1]
    make_imagefolder(tmp_path / "shapes", per_class=8, test_per_class=2)
    cfg = yaml.safe_load((root / ".test" / "config.yaml").read_text())
    cfg["runs"][0]["train"]["epochs"] = 1
    cfg["runs"][0]["ascent"]["units"] = {"conv2": [1, 3]}
    cfg["runs"][0]["circuits"] = {"measure": "data", "images": 4}
    path = tmp_path / "config.yaml"

    def run(*args, **kw):
        path.write_text(yaml.safe_dump(cfg))
        return snakemake(tmp_path, *args, configfile=path, timeout=300)

    monkeypatch.chdir(tmp_path)
    filled = copy.deepcopy(cfg)
    validate(filled, str(root / "workflow" / "schemas" / "config.schema.yaml"))
    target = f"results/{resolve_runs(filled)[0].id}/circuits/circuits.json"
    r = run(target)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pairs = json.loads((tmp_path / target).read_text())["pairs"]
    assert [sorted(p["in"]) for p in pairs] == [["1", "3"], [str(u) for u in range(8)], ["0", "1", "2"]]
    cfg["runs"][0]["ascent"]["recipe"] = {"conv": "hvass"}
    cfg["runs"][0]["ascent"]["overrides"] = {"conv": {"steps": 7}}
    r = run(target, "--dry-run")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
    cfg["runs"][0]["ascent"]["units"] = {"conv2": [2]}
    r = run(target, "--dry-run")
    assert r.returncode == 0 and re.search(r"^circuits\s+1\b", r.stdout, re.M), r.stdout[-2000:]
    cfg["runs"][0]["circuits"] = None
    r = run("--dry-run")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and re.search(r"^report_run\s+1\b", r.stdout, re.M), out[-3000:]
    assert re.search(r"^archive\s+1\b", r.stdout, re.M) and not re.search(r"^circuits\s", r.stdout, re.M), out[-3000:]
