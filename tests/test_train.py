"""Training: augmentation is what it claims, a tiny run learns and writes the files and curves the
report reads, and the speed options (bf16, channels_last) give the same kind of model."""
from __future__ import annotations

import pytest
import torch

from featviz.data import prepare
from featviz.io import read_json
from featviz.model import load_model
from featviz.train import augment, train
from tests.test_data_fixtures import image_folder


def test_augment_crop_is_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 6, 5), dtype=torch.uint8)
    out = augment(x, {"crop_padding": 2}, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[i, :, dy:dy + 6, dx:dx + 5], out[i])]
        assert hits, f"image {i} is not a crop"
        shifts.add(hits[0])
    assert len(shifts) > 10  # shifts are drawn per image


def test_augment_flip_and_identity():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (200, 1, 4, 4), dtype=torch.uint8)
    assert torch.equal(augment(x, {}, g), x)
    before = x.clone()
    out = augment(x, {"flip": True}, g)
    assert torch.equal(x, before)  # the input is not modified
    flipped = [torch.equal(out[i], x[i].flip(2)) and not torch.equal(x[i], x[i].flip(2)) for i in range(len(x))]
    same = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or s for f, s in zip(flipped, same)) and 60 < sum(flipped) < 140


def test_augment_is_seeded():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    cfg = {"crop_padding": 3, "flip": True}
    a = augment(x, cfg, torch.Generator().manual_seed(5))
    b = augment(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    root = image_folder(tmp / "imgs", classes=("a", "b"), size=(8, 8), n_train=24, n_test=8)
    prepare({"dataset": "imagefolder", "path": str(root)}, tmp, tmp / "prepared")
    return tmp / "prepared"


LAYERS = [{"type": "conv", "out": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool"}, {"type": "fc"}]


@pytest.mark.parametrize("options", [
    {"precision": "fp32"},
    {"precision": "bf16", "channels_last": True, "augment": {"crop_padding": 1, "flip": True}},
])
def test_tiny_training_run(data_dir, tmp_path, options):
    cfg = {"epochs": 3, "batch_size": 8, "lr": 0.02, **options}
    metrics = train(data_dir, {"layers": LAYERS}, cfg, tmp_path / "m", seed=0, progress=False, threads=1)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    for e in metrics["epochs"]:
        assert set(e) >= {"epoch", "train_loss", "train_accuracy", "test_accuracy", "elapsed_s"}
    assert metrics["final_test_accuracy"] >= 0.75  # the classes are trivially separable
    assert metrics["precision"] == options["precision"]
    assert read_json(tmp_path / "m/metrics.json") == metrics
    model = load_model(tmp_path / "m")
    meta = read_json(tmp_path / "m/model.json")
    assert meta["mean"] == read_json(data_dir / "info.json")["mean"]  # normalization travels with the model
    assert model.net(torch.zeros(2, 3, 8, 8)).shape == (2, 2)


def test_training_is_deterministic(data_dir, tmp_path):
    cfg = {"epochs": 1, "batch_size": 8, "precision": "fp32", "augment": {"crop_padding": 1, "flip": True}}
    a = train(data_dir, {"layers": LAYERS}, cfg, tmp_path / "a", seed=3, progress=False, threads=1)
    b = train(data_dir, {"layers": LAYERS}, cfg, tmp_path / "b", seed=3, progress=False, threads=1)
    assert a["epochs"][0]["train_loss"] == b["epochs"][0]["train_loss"]
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 9])
def test_onecycle_with_very_few_steps(steps):
    from featviz.train import make_optimizer

    net = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(net, {"lr": 0.1, "schedule": "onecycle", "warmup_fraction": 0.25}, steps)
    for _ in range(steps):
        opt.step()
        sched.step()
