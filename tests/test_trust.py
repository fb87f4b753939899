"""How far to trust a picture (featviz/trust.py, `featviz trust`, docs/ascent.md): the score's
arithmetic, the paths it reads, a planted net where the answer is known (a colour path no grey
training image uses), the stage on the synthetic run, and the report's pages and search index."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from planted import PATHS_UNNATURAL, build_planted_paths, paths_images  # noqa: E402

from featviz.cli import main  # noqa: E402
from featviz.errors import FeatvizError  # noqa: E402
from featviz.model import LoadedModel, load_model  # noqa: E402
from featviz.results import read_trust  # noqa: E402
from featviz.trust import (  # noqa: E402
    MIN_SPREAD,
    contributions,
    layer_similarities,
    layers_below,
    trust_config,
    trust_scores,
    unit_record,
)
from tests.synthetic_run import make_run  # noqa: E402


def test_layers_below_are_the_previous_layers_nearest_first_never_the_classes():
    units = {"layers": [{"name": n, "kind": k} for n, k in
                        (("a", "conv"), ("b", "conv"), ("c", "dense"), ("d", "dense"), ("classes", "class"))]}
    assert layers_below(units, 2) == {"a": [], "b": ["a"], "c": ["b", "a"], "d": ["c", "b"], "classes": ["d", "c"]}
    assert layers_below(units, 9)["classes"] == ["d", "c", "b", "a"]


def _sim(picture, top, random):
    return layer_similarities(np.asarray(picture, float), np.asarray(top, float), np.asarray(random, float))


# paths in a layer of four units: random test images drive the unit through one or two of them,
# the top images through the first
RANDOM = [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]]
TOP = [[3.0, 0.1, 0.0, 0.0], [2.8, 0.0, 0.1, 0.0], [3.3, 0.0, 0.0, 0.1]]


def test_the_score_runs_from_a_random_test_image_to_a_top_image():
    natural = unit_record(3, {"b": _sim([9.0, 0.0, 0.0, 0.0], TOP, RANDOM)}, 0.5, False, 3)
    assert natural["score"] == 1.0 and natural["unnatural"] is False and natural["percentile"] == 1.0
    assert natural["random"] < 0.5 < natural["top"] <= 1.0
    # a picture driving the unit through the fourth unit below, which its top images leave silent
    other = unit_record(3, {"b": _sim([0.0, 0.0, 0.0, 6.0], TOP, RANDOM)}, 0.5, False, 3)
    assert other["score"] < 0 and other["unnatural"] is True
    assert other["picture"] < other["random"] < other["top"]
    # halfway between a random test image and the top images in r: 0.5; a random image's r: 0
    c = _sim([3.0, 0.0, 0.0, 0.0], TOP, RANDOM)
    r_rand = float(np.mean(c["random_each"]))
    for r, want in (((c["top"] + r_rand) / 2, 0.5), (r_rand, 0.0), (r_rand - 3 * (c["top"] - r_rand), -1.0)):
        c["picture"] = r
        assert unit_record(0, {"b": c}, 0.5, False, 3)["score"] == pytest.approx(want, abs=1e-3)  # -1: clipped
    # two layers below: r is their mean, each kept
    two = unit_record(3, {"b": _sim([9.0, 0.0, 0.0, 0.0], TOP, RANDOM), "a": _sim([0.0, 0.0, 0.0, 6.0], TOP, RANDOM)},
                      0.5, False, 3)
    assert set(two["layers"]) == {"a", "b"} and two["picture"] == pytest.approx(
        (two["layers"]["a"]["picture"] + two["layers"]["b"]["picture"]) / 2, abs=1e-3)


def test_where_every_image_takes_the_same_path_the_least_scale_decides():
    top = [[1.0, 0.0], [1.0, 0.01]]
    random = [[1.0, 0.02], [1.0, 0.0]]
    same = unit_record(0, {"b": _sim([5.0, 0.0], top, random)}, 0.5, False, 2)
    assert same["score"] == 1.0 and not same["unnatural"]  # like every test image: natural
    c = _sim([5.0, 0.0], top, random)
    for below, flagged in ((0.6 * MIN_SPREAD, True), (0.4 * MIN_SPREAD, False)):
        c["picture"] = c["top"] - below
        assert unit_record(0, {"b": c}, 0.5, False, 2)["unnatural"] is flagged
    assert unit_record(0, {"b": _sim([0.0, 1.0], top, random)}, 0.5, False, 2)["score"] == -1.0


def test_units_without_a_score_say_why():
    sim = {"b": _sim([9.0, 0.0, 0.0, 0.0], TOP[:2], RANDOM)}
    assert "no layer below" in unit_record(0, {}, 0.5, False, 3)["why"]
    dead = unit_record(0, sim, 0.5, True, 2)
    assert dead["score"] is None and dead["unnatural"] is None and "dead" in dead["why"] and dead["picture"] is not None
    one = unit_record(0, {"b": _sim([9.0, 0.0, 0.0, 0.0], TOP[:1], RANDOM)}, 0.5, False, 1)
    assert one["score"] is None and "fewer than two" in one["why"]


class _TwoBranches(nn.Module):
    """fc reads `a` only; `b` is computed beside it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(3, 2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = x.flatten(1)
        self.b(x)
        return self.fc(self.relu(self.a(x)))


def test_contributions_are_gradient_times_activation_and_skip_what_the_unit_does_not_read():
    torch.manual_seed(0)
    net = _TwoBranches().eval()
    model = LoadedModel(net, ["x", "y"], (1, 1, 3), [0.0], [1.0])
    x = torch.rand(5, 1, 1, 3)
    layers = {n: {"name": n, "kind": "dense", "units": m.out_features} for n, m in (("a", net.a), ("b", net.b))}
    fc = {"name": "fc", "kind": "dense", "units": 2}
    a, b = contributions(model, fc, [layers["a"], layers["b"]], x, [0, 1, 1, 0, 1], "cpu")
    assert b is None
    with torch.no_grad():
        h = net.a(x.flatten(1))
    for i, u in enumerate([0, 1, 1, 0, 1]):
        want = net.fc.weight[u] * h[i] * (h[i] > 0)  # d fc_u / d a_j = W[u, j] where a_j > 0
        assert np.allclose(a[i], want.detach().numpy(), atol=1e-6)


def test_contributions_of_a_conv_unit_sum_over_positions():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(1, 3, 3, padding=1))
    net.add_module("conv2", nn.Conv2d(3, 2, 1))
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flatten", nn.Flatten())
    net.add_module("fc", nn.Linear(2, 2))
    model = LoadedModel(net.eval(), ["x", "y"], (1, 6, 6), [0.0], [1.0])
    x = torch.rand(4, 1, 6, 6)
    (c,) = contributions(model, {"name": "conv2", "kind": "conv", "units": 2},
                         [{"name": "conv1", "kind": "conv", "units": 3}], x, [1, 0, 1, 1], "cpu")
    with torch.no_grad():
        h = net.conv1(x)
    for i, u in enumerate([1, 0, 1, 1]):  # a 1x1 conv's spatial mean: W[u, j] * mean of channel j
        want = net.conv2.weight[u, :, 0, 0] * h[i].mean((1, 2))
        assert np.allclose(c[i], want.detach().numpy(), atol=1e-5)


# ------------------------------------------------------------------ the planted answer

@pytest.fixture(scope="module")
def paths_net(tmp_path_factory):
    from featviz.probe import probe
    from featviz.units import enumerate_units

    root = tmp_path_factory.mktemp("paths")
    info = build_planted_paths(root / "model", root / "data", n_test=300)
    model = load_model(root / "model")
    units = enumerate_units(model.net, model.input_shape, model.classes)
    summary = probe(model, units, root / "data", root / "probe", "cpu", top_k=9, samples=2, prune_passes=0)
    return model, units, summary, torch.load(root / "data" / "test.pt")["images"], info


def test_the_planted_data_never_use_the_colour_path(paths_net):
    model, *_ = paths_net
    x, _ = paths_images(50, 5)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey
    with torch.no_grad():
        colour = model.net.conv1(model.to_input(x, "cpu"))[:, 5:]
    assert float(colour.abs().max()) < 1e-4


def test_the_score_separates_a_colour_path_from_the_natural_one(paths_net):
    """Units 0 and 2 read a colour opponent that no grey test image drives: the default recipe's
    pictures turn coloured and reach them that way (flagged); units 1 and 3 (colour inhibits) and 4
    and 5 (colour ignored) are reached through grey strokes, as their top test images are."""
    from featviz.ascent import visualize

    model, units, summary, test, info = paths_net
    us = list(range(len(PATHS_UNNATURAL)))
    res = visualize(model.net, "conv2", us, "conv", tuple(model.input_shape), normalize=model.normalize,
                    recipe="lucid-scaled", overrides={"snapshots": 0, "robustness_samples": 0, "steps": 48}, seed=0)
    colourful = res.images.std(1).mean((1, 2))  # how far a pixel is from grey
    assert all(colourful[u] > 0.05 for u in (0, 2)) and all(colourful[u] < 0.02 for u in (1, 3)), colourful
    rec = trust_scores(model, units, summary, test, {"conv2": (us, res.images)}, images=32, layers_below_n=3,
                       threshold=0.5)
    rows = rec["layers"][0]["units"]
    assert rec["layers"][0]["below"] == ["conv1"]
    assert [r["unnatural"] for r in rows] == info["unnatural"], rows
    assert all(r["score"] <= -0.5 for r in rows if info["unnatural"][r["unit"]])  # (a random test image: 0)
    assert all(r["score"] >= 0.8 for r in rows if not info["unnatural"][r["unit"]])
    # each top image itself as the picture: natural by construction
    tops = np.stack([test[summary["layers"][1]["per_unit"][u]["top_index"][0]].numpy() / 255.0 for u in us])
    own = trust_scores(model, units, summary, test, {"conv2": (us, tops.astype(np.float32))}, images=32,
                       layers_below_n=3, threshold=0.5)
    assert not any(r["unnatural"] for r in own["layers"][0]["units"])


# ------------------------------------------------------------------ the stage on the synthetic run

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    run = make_run(root, steps=20)
    return run, root / "results" / "data" / run.name


def _cli(run, data, out, *extra):
    return main(["trust", "--results", str(run), "--data", str(data), "--device", "cpu", "--out", str(out), *extra])


def test_cli_writes_trust_json(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    out = tmp_path / "trust.json"
    assert _cli(run, data, out, "--config", '{"images": 16, "layers_below": 2}') == 0
    assert "take an unnatural path" in capsys.readouterr().out
    rec = read_trust(out)
    assert rec["images"] == 16 and rec["layers_below"] == 2 and rec["threshold"] == 0.5
    assert [(e["name"], e["below"]) for e in rec["layers"]] == [
        ("conv1", []), ("conv2", ["conv1"]), ("fc1", ["conv2", "conv1"]), ("classes", ["fc1", "conv2"])]
    assert all(r["score"] is None and "no layer below" in r["why"] for r in rec["layers"][0]["units"])
    probe = json.loads((run / "probe" / "probe.json").read_text())
    for e, pe in zip(rec["layers"][1:], probe["layers"][1:]):
        assert [r["unit"] for r in e["units"]] == list(range(len(pe["per_unit"])))
        for r, base in zip(e["units"], pe["per_unit"]):
            assert (r["score"] is None) == bool(base["dead"]), r
            if r["score"] is not None:
                assert -1.0 <= r["score"] <= 1.0 and r["unnatural"] == (r["score"] < 0.5)
                assert 0.0 <= r["percentile"] <= 1.0 and set(r["layers"]) == set(e["below"])
    assert rec["summary"]["unnatural"] == sum(bool(r["unnatural"]) for e in rec["layers"] for r in e["units"])
    again = tmp_path / "again.json"
    assert _cli(run, data, again, "--config", '{"images": 16, "layers_below": 2}') == 0
    assert again.read_text() == out.read_text()  # deterministic


def test_cli_refuses_bad_input_before_any_compute(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    out = tmp_path / "trust.json"
    bare = tmp_path / "results" / run.name
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("probe"))
    capsys.readouterr()
    for args, needle in (((run, data, "--config", '{"images": 1}'), "trust.images: 1 is less than the minimum of 2"),
                         ((run, data, "--config", '{"layers": 2}'), "trust: Additional properties"),
                         ((run, tmp_path / "nodata"), "nodata"),
                         ((bare, data), "probe.json is missing")):
        assert _cli(args[0], args[1], out, *args[2:]) == 2
        err = capsys.readouterr().err
        assert err.startswith("featviz: error:") and err.count("\n") == 1 and needle in err, err
        assert not out.exists()


def test_config_switch():
    from featviz.config import resolve_runs

    assert trust_config(None) is None
    assert trust_config({"threshold": 0.3}) == {"images": 32, "layers_below": 3, "threshold": 0.3}
    with pytest.raises(FeatvizError, match="trust.layers_below"):
        trust_config({"layers_below": 0})
    base = {"data_root": ".", "device": "cpu", "seed": 0,
            "runs": [{"name": "a", "dataset": "mnist", "model": {"preset": "hvass-mnist"}}]}
    assert resolve_runs(base)[0].trust == {}
    base["runs"][0]["trust"] = None
    assert resolve_runs(base)[0].trust is None


def test_a_corrupt_trust_file_is_one_error(tmp_path):
    bad = tmp_path / "trust.json"
    bad.write_text(json.dumps({"threshold": 0.5, "layers": [{"name": "x", "below": [], "units": [{"unit": 0}]}]}))
    with pytest.raises(FeatvizError, match="trust score file .* re-run `featviz trust`"):
        read_trust(bad)
    assert read_trust(tmp_path / "none.json") is None


# ------------------------------------------------------------------ the report

@pytest.fixture(scope="module")
def site(tiny_run, tmp_path_factory):
    from featviz.report.render import render_run

    run, data = tiny_run
    assert _cli(run, data, run / "trust.json", "--config", '{"images": 16}') == 0
    out = tmp_path_factory.mktemp("site") / "site"
    render_run(run, out)
    yield run, out
    (run / "trust.json").unlink()


def test_unit_pages_show_the_score_its_baseline_and_the_flag(site):
    run, out = site
    rec = read_trust(run / "trust.json")
    flagged = [(e["name"], r) for e in rec["layers"] for r in e["units"] if r["unnatural"]]
    fine = [(e["name"], r) for e in rec["layers"] for r in e["units"] if r["unnatural"] is False]
    assert flagged and fine
    for name, r in flagged[:2] + fine[:2]:
        html = (out / "units" / name / f"{r['unit']}.html").read_text()
        card = html[html.find('id="trust"'):]
        assert f">{r['score']:.2f}</div>" in card and f"<td>{r['random']:.3f}</td>" in card
        assert ('class="tag unnatural"' in html) == r["unnatural"]
        assert ("<b>unnatural path</b>" in card) == r["unnatural"]
        assert 'href="../../trust.html"' in card
    first = (out / "units" / "conv1" / "0.html").read_text()
    assert "No score: no layer below it" in first
    page = (out / "trust.html").read_text()
    assert "How far to trust a picture" in page and f"<b>{rec['summary']['unnatural']}</b> flagged" in page
    for name, r in flagged:
        assert f'href="units/{name}/{r["unit"]}.html#trust"' in page
    for ref in re.findall(r'(?:src|href)="([^"#]+)', page):
        assert ref == "../index.html" or (out / ref).resolve().exists(), ref  # (the all-runs page is beside the site)


def test_layer_and_run_pages_mark_the_flag_and_search_has_it(site):
    run, out = site
    rec = read_trust(run / "trust.json")
    conv2 = next(e for e in rec["layers"] if e["name"] == "conv2")
    n = sum(bool(r["unnatural"]) for r in conv2["units"])
    layer = (out / "layer-conv2.html").read_text()
    assert '<option value="unnatural">unnatural path</option>' in layer and '<option value="trust_score">' in layer
    assert layer.count('data-flags="') == 6 and len(re.findall(r'data-flags="[^"]*unnatural', layer)) == n
    index = (out / "index.html").read_text()
    assert 'id="trust-link"' in index and len(re.findall(r'class="cell[^"]* unnatural"', index)) == sum(
        bool(r["unnatural"]) for e in rec["layers"] if e["name"] in ("conv1", "conv2", "classes") for r in e["units"])
    rows = json.loads((out / "units-index.js").read_text().split("=", 1)[1].strip().rstrip(";"))
    by = {(r["l"], r["u"]): r for r in rows}
    for e in rec["layers"]:
        for r in e["units"]:
            row = by[(e["name"], r["unit"])]
            assert ("p" in row.get("f", "")) == bool(r["unnatural"])
            assert row.get("v") == (None if r["score"] is None else pytest.approx(r["score"], abs=1e-3))
    search = (out / "index.html").read_text()
    assert 'class="q-flag" value="p"' in search


def test_a_report_without_trust_json_has_no_trust_parts(tmp_path):
    from featviz.report.render import render_run

    run = make_run(tmp_path, steps=5)
    render_run(run, tmp_path / "site")
    html = (tmp_path / "site" / "units" / "conv2" / "0.html").read_text()
    assert 'id="trust"' not in html and not (tmp_path / "site" / "trust.html").exists()
    assert 'value="unnatural"' not in (tmp_path / "site" / "layer-conv2.html").read_text()
