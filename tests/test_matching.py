"""Cross-network comparison (featviz/matching.py): on two tiny nets where the answer is known (B is
A with every layer's units permuted and scaled: the matching recovers the permutation with r = 1),
against an unrelated network (few close matches), the CLI's outputs, and the config check of
`runs[i].match.with`."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from featviz.cli import main
from featviz.errors import FeatvizError
from featviz.io import read_json
from featviz.matching import (
    compare_layers,
    correlation,
    model_side,
    partners,
    run_match,
)
from featviz.model import build, save_model
from tests.synthetic_run import make_run

# conv -> relu -> pool -> conv -> relu -> global pool -> fc: each layer's units can be permuted
# and scaled by a positive factor without changing what the next layer computes
LAYERS = [
    {"type": "conv", "out": 4, "kernel": 3, "padding": "same"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
    {"type": "conv", "out": 6, "kernel": 3, "padding": "same"}, {"type": "relu"}, {"type": "globalavgpool"},
    {"type": "flatten"}, {"type": "fc"},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("match"), steps=40)


def _data(run: Path) -> Path:
    return run.parent / "data" / run.name


def _net(seed: int):
    torch.manual_seed(seed)
    return build(copy.deepcopy(LAYERS), (1, 12, 12), 3)


def _permuted(net, perms, scales):
    """A copy of net with conv1's and conv2's channels permuted (perms) and scaled (scales > 0)."""
    b = copy.deepcopy(net)
    convs = [m for m in b.modules() if isinstance(m, torch.nn.Conv2d)]
    fc = next(m for m in b.modules() if isinstance(m, torch.nn.Linear))
    nxt = [convs[1], fc]
    with torch.no_grad():
        for conv, after, p, s in zip(convs, nxt, perms, scales):
            p, s = torch.as_tensor(p), torch.as_tensor(s, dtype=torch.float32)
            conv.weight.copy_(conv.weight[p] * s[:, None, None, None])
            conv.bias.copy_(conv.bias[p] * s)
            after.weight.copy_(after.weight[:, p] / s[None, :].view(1, -1, *([1] * (after.weight.dim() - 2))))
    return b


def _model_dir(path: Path, net, like: Path) -> Path:
    meta = read_json(like / "model" / "model.json")
    meta = dict(meta, layers=copy.deepcopy(LAYERS), model={"layers": copy.deepcopy(LAYERS)})
    save_model(path, net, meta)
    return path


def test_correlation_of_independent_noise_is_low_and_of_a_scaled_copy_is_one():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    assert np.abs(correlation(a, rng.normal(size=(2000, 5)))).max() < 0.15
    r = correlation(a, -3 * a[:, ::-1] + 1)
    assert np.allclose(np.abs(r[np.arange(8), 7 - np.arange(8)]), 1) and np.allclose(r.diagonal()[:1], r[0, 0])
    const = np.ones((2000, 1))
    assert correlation(a, const).tolist() == [[0.0]] * 8  # a dead unit matches nothing


def test_permuted_and_scaled_copy_is_recovered(run, tmp_path):
    net = _net(1)
    perms = [[2, 0, 3, 1], [5, 3, 1, 0, 4, 2]]
    scales = [[0.5, 2.0, 3.0, 1.5], [1.0, 0.25, 4.0, 2.0, 0.7, 1.3]]
    a_dir = _model_dir(tmp_path / "a", net, run)
    b_dir = _model_dir(tmp_path / "b", _permuted(net, perms, scales), run)
    a, b = model_side(a_dir, False, "a"), model_side(b_dir, False, "b")
    assert [la["name"] for la in a.layers] == ["conv1", "conv2", "classes"]
    rec = run_match(a, b, _data(run), {"images": 150, "close": 0.8}, tmp_path / "out.json", device="cpu")
    by = {e["name"]: e for e in rec["layers"]}
    for name, perm in (("conv1", perms[0]), ("conv2", perms[1])):
        e = by[name]
        assert e["best"] == name and e["close_share"] == 1.0 and e["matched_close_share"] == 1.0
        # B's unit j is A's unit perm[j]: A's unit perm[j] is matched to j
        assert [m["partner"] for m in sorted(e["matches"], key=lambda m: m["unit"])] == \
            [perm.index(u) for u in range(len(perm))]
        assert all(m["r"] > 0.999 for m in e["matches"])
    assert by["classes"]["best"] == "classes" and by["classes"]["mean_best"] > 0.999
    assert all(p["a"] != "classes" or p["b"] == "classes" for p in rec["pairs"])  # classes only with classes
    assert rec["images"] == 150 and json.loads((tmp_path / "out.json").read_text())["layers"] == rec["layers"]
    with np.load(tmp_path / "out.npz") as z:
        assert z["bank"].dtype == np.uint8 and z["top_a_0"].shape == (4, 4) and z["top_b_1"].shape == (6, 4)
        assert int(z["top_a_0"].max()) < len(z["bank"]) == len(z["bank_index"])
        # a conv unit's strongest position in each top image (for its receptive-field crops)
        assert z["pos_a_0"].shape == (4, 4) and 0 <= int(z["pos_a_0"].min()) and int(z["pos_a_0"].max()) < 12 * 12


def test_unrelated_units_have_few_close_matches():
    """Independent activations (an unrelated network): no close match. (Two real networks on one tiny
    dataset are not unrelated: their units follow the same few classes.)"""
    rng = np.random.default_rng(1)
    a = [rng.normal(size=(500, 6)), rng.normal(size=(500, 3))]
    b = [rng.normal(size=(500, 8)), rng.normal(size=(500, 3))]
    layers_a = [{"name": "x", "kind": "conv", "units": 6}, {"name": "classes", "kind": "class", "units": 3}]
    layers_b = [{"name": "y", "kind": "dense", "units": 8}, {"name": "classes", "kind": "class", "units": 3}]
    pairs, per_layer = compare_layers(a, b, layers_a, layers_b, 0.8)
    assert [(p["a"], p["b"]) for p in pairs] == [("x", "y"), ("classes", "classes")]
    assert per_layer[0]["close_share"] == 0.0 and per_layer[0]["mean_best"] < 0.25


def test_cli_writes_both_files_and_a_bad_config_is_one_line(run, tmp_path, capsys):
    out = tmp_path / "match" / "transfer.json"
    other = _model_dir(tmp_path / "t", _net(3), run)
    code = main(["match", "--results", str(run), "--other-model", str(other), "--data", str(_data(run)),
                 "--config", '{"images": 100}', "--device", "cpu", "--out", str(out)])
    assert code == 0 and out.is_file() and out.with_suffix(".npz").is_file()
    assert "conv1 ~" in capsys.readouterr().out
    code = main(["match", "--results", str(run), "--other-model", str(other), "--data", str(_data(run)),
                 "--config", '{"close": 2}', "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "match.close" in err and not (tmp_path / "x.json").exists()


class _Run:
    def __init__(self, name, data_key, match=None):
        self.id, self.name, self.dataset, self.data_key, self.match = f"{name}-0000000a", name, "mnist", data_key, match


def test_partners_and_their_config_errors():
    runs = [_Run("a", "d1", {"with": ["b"]}), _Run("b", "d1"), _Run("c", "d2", {"transfer": False})]
    assert partners(runs, {"a-0000000a": True, "b-0000000a": False, "c-0000000a": True}) == {
        "a-0000000a": ["transfer", "b-0000000a"], "b-0000000a": [], "c-0000000a": []}
    for with_, want in ((["nope"], "runs[0].match.with: no run named 'nope'"),
                        (["a"], "runs[0].match.with: 'a' is this run itself"),
                        (["c"], "runs[0].match.with: run 'c' is on another dataset")):
        with pytest.raises(FeatvizError, match=want.replace("[", r"\[").replace("]", r"\]")):
            partners([_Run("a", "d1", {"with": with_}), _Run("b", "d1"), _Run("c", "d2")], {})


# --------------------------------------------------------------------------- the workflow's config check
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from tests.synthetic import make_imagefolder

    d = tmp_path_factory.mktemp("matchcfg")
    make_imagefolder(d / "shapes", per_class=2, test_per_class=1)
    make_imagefolder(d / "shapes2", per_class=2, test_per_class=1, seed=1)
    return d


def _two_runs(with_, second_path="shapes"):
    from tests.test_config_errors import GOOD

    cfg = copy.deepcopy(GOOD)
    second = copy.deepcopy(cfg["runs"][0])
    second.update(name="other", data={"path": second_path})
    second["model"]["layers"][0]["out"] = 5
    cfg["runs"][0]["match"] = {"with": with_}
    cfg["runs"].append(second)
    return cfg


def test_dag_has_one_match_job_per_pair(workdir):
    from tests.test_config_errors import dry_run

    r = dry_run(workdir, _two_runs(["other"]))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # shapes: its transfer model and the run `other`; other: its transfer model
    assert re.search(r"^match\s+3$", out, re.MULTILINE), out
    assert re.search(r"results/shapes-[0-9a-f]{8}/match/other-[0-9a-f]{8}\.json", out)


@pytest.mark.parametrize("with_,path,message", [
    (["nope"], "shapes", "runs[0].match.with: no run named 'nope' (runs: shapes, other)"),
    (["shapes"], "shapes", "runs[0].match.with: 'shapes' is this run itself"),
    (["other"], "shapes2", "runs[0].match.with: run 'other' is on another dataset"),
])
def test_bad_match_config_fails_before_any_job(workdir, with_, path, message):
    from tests.test_config_errors import dry_run

    r = dry_run(workdir, _two_runs(with_, path))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and message in out, out
    assert out.count("featviz config error") == 1 and "Job stats" not in out
