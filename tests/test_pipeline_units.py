"""Unit tests of the stages on tiny synthetic data: data, models, train, evaluate, units, ascent
job, report, archive."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from torch import nn

from featviz.data import load_prepared, load_info
from featviz.errors import FeatvizError
from featviz.model import PRESETS, build, load_model, resolve_layers
from featviz.units import enumerate_units


def test_prepare_imagefolder(prepared_shapes):
    info = load_info(prepared_shapes)
    assert info["classes"] == ["diag", "hbar", "vbar"]
    assert info["input_shape"] == [1, 12, 12]
    assert info["n_train"] == 72 and info["n_test"] == 24
    train = load_prepared(prepared_shapes, train=True)
    assert train.images.dtype == torch.uint8 and train.images.shape == (72, 1, 12, 12)
    assert 0 < info["mean"][0] < 1 and 0 < info["std"][0] < 1


@pytest.mark.parametrize("preset,shape", [
    ("hvass-mnist", (1, 28, 28)), ("allibhai-mnist", (1, 28, 28)), ("uygur-svhn", (3, 32, 32)),
    ("keras-cifar10", (3, 32, 32)), ("tf-cifar10", (3, 32, 32))])
def test_presets_build(preset, shape):
    net = build(resolve_layers({"preset": preset}), shape, 10)
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_hvass_preset_is_seed_000():
    net = build(resolve_layers({"preset": "hvass-mnist"}), (1, 28, 28), 10)
    names = [n for n, _ in net.named_children()]
    assert names[:4] == ["conv1", "relu1", "pool1", "conv2"]
    assert net.conv1.out_channels == 16 and net.conv1.kernel_size == (5, 5)
    assert net.conv2.out_channels == 36 and net.fc1.out_features == 128 and net.fc2.out_features == 10
    assert set(PRESETS) >= {"hvass-mnist", "allibhai-mnist", "uygur-svhn", "keras-cifar10", "tf-cifar10"}


def test_units_of_a_foreign_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 4))

        def forward(self, x):
            return self.head(self.features(x))

    units = enumerate_units(Net(), (3, 9, 9), ["a", "b", "c", "d"])
    got = [(layer["name"], layer["kind"], layer["units"]) for layer in units["layers"]]
    assert got == [("features.0", "conv", 5), ("head.1", "dense", 7), ("classes", "class", 4)]
    assert units["layers"][-1]["module"] == "head.3"


def test_train_learns_and_checkpoint_roundtrips(trained_shapes, prepared_shapes):
    metrics = json.loads((trained_shapes / "metrics.json").read_text())
    assert metrics["final_test_accuracy"] >= 0.9
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, 9))
    model = load_model(trained_shapes)
    assert model.classes == ["diag", "hbar", "vbar"]
    # the checkpoint is a plain state_dict
    state = torch.load(trained_shapes / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_evaluate(trained_shapes, prepared_shapes, tmp_path):
    from featviz.evaluate import evaluate

    m = evaluate(load_model(trained_shapes), prepared_shapes, tmp_path, device="cpu")
    assert 0.9 <= m["test_accuracy"] <= 1.0
    assert np.asarray(m["confusion"]).sum() == m["n_test"] == 24
    assert set(m["per_class_accuracy"]) == {"diag", "hbar", "vbar"}
    for f in ("metrics.json", "confusion.png", "misclassified.png", "misclassified.npz"):
        assert (tmp_path / f).stat().st_size > 0


def test_ascent_job_chunks(trained_shapes, tmp_path):
    from featviz.ascent_job import run_chunk
    from featviz.io import write_json

    model = load_model(trained_shapes)
    units = enumerate_units(model.net, model.input_shape, model.classes)
    write_json(tmp_path / "units.json", units)
    cfg = {"chunk_size": 4, "seed": 0, "recipe": {"conv": "hvass", "dense": "hvass", "class": "hvass"}}
    rec = run_chunk(trained_shapes, tmp_path / "units.json", "conv2", 1, cfg, tmp_path / "c.npz", tmp_path / "c.json",
                    device="cpu")
    assert rec["units"] == [4, 5]
    assert rec["batch_size"] == 2  # a 12x12 net: the whole chunk fits the memory budget
    with np.load(tmp_path / "c.npz") as z:
        assert z["images"].shape == (2, 1, 12, 12)
        assert z["images"].dtype == np.uint8  # stored as the pictures will be: 4x smaller than float32
        one_batch = z["images"]
    rec = run_chunk(trained_shapes, tmp_path / "units.json", "conv2", 1, {**cfg, "batch_size": 1},
                    tmp_path / "c1.npz", tmp_path / "c1.json", device="cpu")
    assert rec["batch_size"] == 1
    with np.load(tmp_path / "c1.npz") as z:
        assert np.abs(z["images"].astype(int) - one_batch.astype(int)).max() <= 1
    rec = run_chunk(trained_shapes, tmp_path / "units.json", "classes", 0, cfg, tmp_path / "k.npz", tmp_path / "k.json",
                    device="cpu")
    assert [s["unit"] for s in rec["stats"]] == [0, 1, 2]
    assert all(0 <= s["target_softmax"] <= 1 for s in rec["stats"])
    with pytest.raises(FeatvizError, match="unknown layer 'nope'"):
        run_chunk(trained_shapes, tmp_path / "units.json", "nope", 0, cfg, tmp_path / "x.npz", tmp_path / "x.json")
    for bad in (0, -1, "abc", 2.5):
        with pytest.raises(FeatvizError, match="ascent.batch_size: .* is not a positive integer"):
            run_chunk(trained_shapes, tmp_path / "units.json", "conv1", 0, {**cfg, "batch_size": bad},
                      tmp_path / "x.npz", tmp_path / "x.json")
    with pytest.raises(FeatvizError, match="no chunk 9"):
        run_chunk(trained_shapes, tmp_path / "units.json", "conv1", 9, cfg, tmp_path / "x.npz", tmp_path / "x.json")
    assert not (tmp_path / "x.npz").exists()


def test_archive_roundtrip_and_tamper(tmp_path):
    from featviz.archive import make_archive, verify_archive

    report, results = tmp_path / "r" / "run-1", tmp_path / "res" / "run-1"
    (report / "units").mkdir(parents=True)
    (results / "model").mkdir(parents=True)
    (report / "index.html").write_text("<html></html>")
    (report / "units" / "0.png").write_bytes(b"png")
    (results / "model" / "model.pt").write_bytes(b"weights")
    out = tmp_path / "run-1.tar.gz"
    make_archive(report, results, out)
    assert verify_archive(out) == 5  # 3 files + environment.json + the landing page index.html
    # tamper: rewrite one member
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(out) as src, tarfile.open(bad, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.endswith("model.pt"):
                data = b"evil"
                m.size = len(data)
            import io
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(FeatvizError, match="sha256 mismatch"):
        verify_archive(bad)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from featviz.io import atomic_path

    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
