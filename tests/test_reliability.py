"""Guards against bad checkpoints, diverging training and nondeterminism (issue: reliability)."""
from __future__ import annotations

import pickle
import shutil

import pytest
import torch

from featviz.errors import FeatvizError
from featviz.model import load_model


def _copy(trained, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(trained, d)
    return d


def test_corrupt_checkpoint(trained_shapes, tmp_path):
    d = _copy(trained_shapes, tmp_path)
    data = (d / "model.pt").read_bytes()
    (d / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatvizError, match="model.pt"):
        load_model(d)


def test_wrong_architecture(trained_shapes, tmp_path):
    d = _copy(trained_shapes, tmp_path)
    state = torch.load(d / "model.pt", weights_only=True)
    state["conv1.weight"] = torch.zeros(5, 1, 3, 3)
    torch.save(state, d / "model.pt")
    with pytest.raises(FeatvizError, match=r"'conv1.weight' has shape \(5, 1, 3, 3\), the model expects \(4, 1, 3, 3\)"):
        load_model(d)


def test_missing_keys(trained_shapes, tmp_path):
    d = _copy(trained_shapes, tmp_path)
    state = torch.load(d / "model.pt", weights_only=True)
    del state["fc2.bias"]
    torch.save(state, d / "model.pt")
    with pytest.raises(FeatvizError, match=r"missing keys \['fc2.bias'\]"):
        load_model(d)


class Payload:
    """An object whose unpickling would run code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickle_refused_unless_trusted(trained_shapes, tmp_path, capsys):
    d = _copy(trained_shapes, tmp_path)
    state = torch.load(d / "model.pt", weights_only=True)
    torch.save({"state_dict": state, "extra": Payload()}, d / "model.pt", pickle_module=pickle)
    with pytest.raises(FeatvizError, match="trust_checkpoint: true"):
        load_model(d)
    assert "pwned" not in capsys.readouterr().out
    model = load_model(d, trust=True)  # the user said they trust it
    assert model.classes == ["diag", "hbar", "vbar"]


def test_diverging_training_stops_with_a_message(prepared_shapes, tmp_path):
    from featviz.train import train
    from tests.synthetic import TINY_LAYERS

    with pytest.raises(FeatvizError, match=r"training diverged: loss is (nan|inf).*lower train.lr"):
        train(prepared_shapes, {"layers": TINY_LAYERS}, {"epochs": 3, "batch_size": 16, "lr": 1e12,
                                                         "schedule": "constant"}, tmp_path / "m", device="cpu",
              progress=False)
    assert not (tmp_path / "m" / "model.json").exists()


def test_training_is_deterministic_on_cpu(prepared_shapes, trained_shapes, tmp_path):
    from featviz.train import train
    from tests.synthetic import TINY_LAYERS

    train(prepared_shapes, {"layers": TINY_LAYERS}, {"epochs": 8, "batch_size": 16, "lr": 0.01}, tmp_path / "again",
          seed=0, device="cpu", run_name="shapes", progress=False)
    assert (tmp_path / "again" / "model.pt").read_bytes() == (trained_shapes / "model.pt").read_bytes()


def test_cli_user_error_is_one_line(tmp_path, capsys):
    from featviz.cli import main

    assert main(["units", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "u.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("featviz: error: ") and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "u.json").exists()
