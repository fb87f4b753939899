"""Transfer score (featviz/transfer.py, `featviz transfer`) on tiny synthetic nets."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from featviz.ascent_job import run_chunk
from featviz.cli import main
from featviz.io import read_json, write_json
from featviz.model import build, load_model, save_model
from featviz.transfer import (SMALL_TRANSFER_LAYERS, check_transfer_config, read_class_images, run_transfer,
                              score_images, summarize, transfer_model_config, transfer_train_config)
from featviz.units import enumerate_units
from featviz.errors import FeatvizError
from tests.synthetic import MICRO_LAYERS

SHAPE = (1, 8, 8)
CLASSES = ["a", "b", "c"]
LAYERS = MICRO_LAYERS


def _save(path, net, layers=LAYERS, accuracy=0.9):
    meta = {"format": "featviz-spec", "classes": CLASSES, "input_shape": list(SHAPE), "mean": [0.5],
            "std": [0.25], "layers": layers, "model": {"layers": layers}, "seed": 7}
    save_model(path, net, meta)
    write_json(path / "metrics.json", {"final_test_accuracy": accuracy})


def _net(seed, layers=LAYERS):
    torch.manual_seed(seed)
    return build(copy.deepcopy(layers), SHAPE, len(CLASSES)).eval()


def _permuted(net, perm):
    """The same net with its class logits permuted: class k's logit becomes logit perm[k]."""
    other = copy.deepcopy(net)
    fc = other[-1]
    with torch.no_grad():
        fc.weight.copy_(net[-1].weight[perm])
        fc.bias.copy_(net[-1].bias[perm])
    return other


@pytest.fixture()
def run_dir(tmp_path):
    """results/<run> with a model, units.json and one class ascent chunk (3 classes, 2 chunks of 2+1)."""
    run = tmp_path / "run"
    net = _net(0)
    _save(run / "model", net)
    model = load_model(run / "model")
    write_json(run / "units.json", enumerate_units(model.net, model.input_shape, model.classes))
    cfg = {"chunk_size": 2, "seed": 0, "recipe": {"class": "hvass"},
           "overrides": {"class": {"class_steps": 40, "lr": 0.2, "robustness_samples": 0, "snapshots": 0}}}
    for chunk in (0, 1):
        run_chunk(run / "model", run / "units.json", "classes", chunk, cfg,
                  run / "ascent" / "classes" / f"{chunk}.npz", run / "ascent" / "classes" / f"{chunk}.json",
                  device="cpu")
    return run, net


def test_read_class_images_in_unit_order(run_dir):
    run, _ = run_dir
    images, units, stats, recipe = read_class_images(run)
    assert units == [0, 1, 2]
    assert images.shape == (3, *SHAPE)
    assert [s["unit"] for s in stats] == units
    assert recipe["name"] == "hvass"


def test_transfer_same_and_permuted_model(run_dir, tmp_path):
    run, net = run_dir
    model = load_model(run / "model")
    images, units, _, _ = read_class_images(run)
    with torch.no_grad():
        own = torch.softmax(model.net(model.normalize(torch.as_tensor(images))), 1).numpy()
    assert (own.argmax(1) == np.arange(3)).all(), "precondition: the ascent reached every class"

    # a second model that is the same net: recognizes every image, same softmax
    _save(tmp_path / "same", net)
    rec = run_transfer(run, tmp_path / "same.json", tmp_path / "same", device="cpu")
    rows = rec["images"]
    assert [r["unit"] for r in rows] == [0, 1, 2]
    assert [r["class"] for r in rows] == CLASSES
    for i, r in enumerate(rows):
        assert r["target_softmax"] == pytest.approx(float(own[i, i]), abs=1e-5)
        assert r["transfer_softmax"] == pytest.approx(float(own[i, i]), abs=1e-5)
        assert r["transfer_predicted"] == i and r["transfer_recognized"] is True
    assert rec["summary"]["n_transfer_recognized"] == 3
    assert rec["transfer_model"]["seed"] == 7 and rec["transfer_model"]["test_accuracy"] == 0.9
    assert read_json(tmp_path / "same.json") == json.loads(json.dumps(rec))

    # a second model whose classes are rotated: it calls image k class perm^-1(argmax) != k
    perm = [1, 2, 0]
    _save(tmp_path / "rot", _permuted(net, perm))
    rec = run_transfer(run, tmp_path / "rot.json", tmp_path / "rot", device="cpu")
    rows = rec["images"]
    for i, r in enumerate(rows):
        assert r["transfer_recognized"] is False
        assert r["transfer_predicted"] != i
        # rotated logits: new logit k = old logit perm[k]; the target's softmax is old softmax of perm[i]
        assert r["transfer_softmax"] == pytest.approx(float(own[i, perm[i]]), abs=1e-5)
        assert r["target_softmax"] == pytest.approx(float(own[i, i]), abs=1e-5)
    assert rec["summary"]["n_transfer_recognized"] == 0


def test_no_transfer_model_writes_null_fields(run_dir, tmp_path):
    run, _ = run_dir
    rec = run_transfer(run, tmp_path / "t.json", None, device="cpu")
    assert rec["transfer_model"] is None
    for r in rec["images"]:
        assert r["transfer_softmax"] is None and r["transfer_predicted"] is None
        assert r["target_softmax"] > 0
    assert rec["summary"]["n_transfer_recognized"] is None
    assert rec["summary"]["n"] == 3


def test_robustness_is_fraction_of_logit_kept():
    # a net whose logit 0 is the pixel at (4, 4)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0, 4 * 8 + 4] = 1.0
        net[1].bias.zero_()

    from featviz.model import LoadedModel

    m = LoadedModel(net, list(CLASSES), (1, 8, 8), [0.0], [1.0])
    flat = np.full((1, 1, 8, 8), 0.7, np.float32)   # any shift / small rotation keeps the pixel
    spot = np.zeros((1, 1, 8, 8), np.float32)        # a lone bright pixel moves away
    spot[0, 0, 4, 4] = 1.0
    rows = score_images(m, None, np.concatenate([flat, spot]), [0, 0], samples=8)
    assert rows[0]["robustness"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= rows[1]["robustness"] < 0.6
    # logit <= 0: no robustness
    rows = score_images(m, None, np.zeros((1, 1, 8, 8), np.float32), [0], samples=2)
    assert rows[0]["robustness"] is None


def test_summary_counts():
    rows = [{"unit": 0, "target_softmax": 0.995, "predicted": 0, "transfer_softmax": 0.9, "transfer_recognized": True,
             "robustness": 0.5},
            {"unit": 1, "target_softmax": 0.5, "predicted": 0, "transfer_softmax": 0.1, "transfer_recognized": False,
             "robustness": None}]
    s = summarize(rows)
    assert s["n_target_softmax_ge_0.99"] == 1
    assert s["n_predicted_as_target"] == 1
    assert s["n_transfer_recognized"] == 1
    assert s["transfer_softmax_mean"] == pytest.approx(0.5)
    assert s["target_softmax_min"] == pytest.approx(0.5)
    assert s["robustness_mean"] == pytest.approx(0.5)


def test_transfer_model_config_auto():
    cfg = {"preset": "auto", "seed": 1, "epochs": None}
    assert transfer_model_config(cfg, {"preset": "hvass-mnist"}, (1, 28, 28)) == {"preset": "allibhai-mnist"}
    assert transfer_model_config(cfg, {"preset": "allibhai-mnist"}, (1, 28, 28)) == {"preset": "hvass-mnist"}
    assert transfer_model_config(cfg, {}, (3, 32, 32)) == {"preset": "allibhai-mnist"}
    small = transfer_model_config(cfg, {}, (1, 12, 12))
    assert small == {"layers": SMALL_TRANSFER_LAYERS}
    build(small["layers"], (1, 12, 12), 3)  # it fits a 12 px input
    build(small["layers"], (3, 4, 4), 3)
    assert transfer_model_config(None) is None
    assert transfer_model_config({"preset": None}) is None
    assert transfer_model_config({"preset": "tf-cifar10"}) == {"preset": "tf-cifar10"}
    assert transfer_model_config({"preset": "auto", "layers": LAYERS}) == {"layers": LAYERS}
    # the run's epochs, batch size and augmentation; the transfer model's own optimizer settings
    run_train = {"epochs": 2, "lr": 0.2, "optimizer": "sgd", "batch_size": 64, "augment": {"flip": True}}
    assert transfer_train_config({"epochs": 5}, run_train) == {
        **OWN_TRAIN, "epochs": 5, "batch_size": 64, "augment": {"flip": True}}
    assert transfer_train_config({"epochs": None, "train": {"lr": 0.01}}, {"epochs": 2})["lr"] == 0.01
    assert transfer_train_config({"epochs": None}, {"epochs": 2})["epochs"] == 2


# the transfer model's optimizer settings, as the schema's defaults give them
OWN_TRAIN = {"optimizer": "adam", "lr": 0.001, "schedule": "onecycle", "warmup_fraction": 0.25,
             "weight_decay": 0.0, "label_smoothing": 0.0}


def test_transfer_train_defaults_are_the_schemas():
    from featviz.transfer import transfer_train_defaults

    assert transfer_train_defaults() == OWN_TRAIN
    # train: null takes them too
    assert transfer_train_config({"epochs": None, "train": None}, {"epochs": 2}) == {"epochs": 2, **OWN_TRAIN}


def test_check_transfer_config():
    check_transfer_config("w", {"preset": "auto"})
    check_transfer_config("w", None)
    with pytest.raises(FeatvizError, match=r"w\.preset: unknown preset 'nope'"):
        check_transfer_config("w", {"preset": "nope"})
    with pytest.raises(FeatvizError, match=r"w\.layers"):
        check_transfer_config("w", {"layers": [{"type": "conv", "out": 2, "kernel": 3}]}, (1, 8, 8), 3)


def test_cli_transfer(run_dir, tmp_path, capsys):
    run, net = run_dir
    _save(tmp_path / "same", net)
    out = tmp_path / "cli.json"
    assert main(["transfer", "--results", str(run), "--transfer-model", str(tmp_path / "same"),
                 "--samples", "2", "--device", "cpu", "--out", str(out)]) == 0
    assert "recognizes 3/3" in capsys.readouterr().out
    d = read_json(out)
    assert set(d) == {"recipe", "transfer_model", "robustness_samples", "summary", "images"}
    assert set(d["images"][0]) == {"unit", "class", "target_softmax", "predicted", "transfer_softmax",
                                   "transfer_predicted", "transfer_predicted_softmax", "transfer_recognized",
                                   "robustness"}
    # a transfer model with other classes is an error naming the folder
    other = _net(1)
    meta = read_json(tmp_path / "same" / "model.json")
    meta["classes"] = ["x", "y", "z"]
    save_model(tmp_path / "other", other, meta)
    assert main(["transfer", "--results", str(run), "--transfer-model", str(tmp_path / "other"),
                 "--device", "cpu", "--out", str(out)]) == 2
    assert "classes differ" in capsys.readouterr().err


def test_resolve_transfer_defaults_and_schema():
    """featviz fills a transfer section's missing keys from the schema exactly as snakemake's
    validate does (one source of the defaults)."""
    from pathlib import Path

    from snakemake.utils import validate

    from featviz.transfer import resolve_transfer

    default = {"preset": "auto", "layers": None, "seed": 1, "epochs": None, "train": OWN_TRAIN}
    assert resolve_transfer(None) is None
    assert resolve_transfer({"seed": 3}) == {**default, "seed": 3}
    schema = str(Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml")
    for transfer in (None, {"epochs": 1}, {"train": {"lr": 0.5}}, {"train": None}, {}):
        cfg = {"runs": [{"dataset": "mnist", "ascent": {"transfer": copy.deepcopy(transfer)}}]}
        validate(cfg, schema)  # null must not break snakemake's default filling
        assert cfg["runs"][0]["ascent"]["transfer"] == resolve_transfer(transfer)
        assert cfg["runs"][0]["ascent"]["recipe"]["class"] == "auto"
    cfg = {"runs": [{"dataset": "mnist"}]}
    validate(cfg, schema)
    assert cfg["runs"][0]["ascent"]["transfer"] == "auto"
    assert resolve_transfer("auto") == resolve_transfer({}) == default
    assert resolve_transfer("auto", imported=True) is None  # an imported network: only when asked


def test_a_transfer_model_at_chance_is_not_used(run_dir, tmp_path):
    run, net = run_dir
    _save(tmp_path / "weak", net, accuracy=0.34)  # 3 classes: chance is 0.333
    rec = run_transfer(run, tmp_path / "weak.json", tmp_path / "weak", device="cpu")
    assert rec["transfer_model"]["valid"] is False
    assert "not well above chance" in rec["transfer_model"]["invalid_reason"]
    assert all(r.get("transfer_softmax") is None for r in rec["images"])


def test_robustness_is_the_ascents_copied_not_measured_again(run_dir, tmp_path):
    """Robustness is measured once, by the ascent job: transfer.json copies each class image's
    value (and the recipe's number of draws) from the chunk records."""
    run, _ = run_dir
    for chunk, values in ((0, [0.25, 0.5]), (1, [0.75])):
        path = run / "ascent" / "classes" / f"{chunk}.json"
        rec = read_json(path)
        for st, v in zip(rec["stats"], values):
            st["robustness"] = v
        rec["recipe"]["robustness_samples"] = 5
        write_json(path, rec)
    rec = run_transfer(run, tmp_path / "t.json", None, device="cpu")
    assert [r["robustness"] for r in rec["images"]] == [0.25, 0.5, 0.75]
    assert rec["robustness_samples"] == 5
    assert rec["summary"]["robustness_mean"] == pytest.approx(0.5)
