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


# --------------------------------------------------------------------------- checked readers (issue 14)


def _refused(argv, capsys, *names) -> str:
    """`featviz <argv>` exits 2 with one `featviz: error:` line naming each of `names`."""
    from featviz.cli import main

    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("featviz: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "\x1b" not in err, err
    for name in names:
        assert name in err, err
    return err


@pytest.fixture(scope="module")
def shapes_units(trained_shapes, tmp_path_factory):
    from featviz.cli import main

    out = tmp_path_factory.mktemp("units") / "units.json"
    assert main(["units", "--model", str(trained_shapes), "--out", str(out)]) == 0
    return out


def _copy_data(prepared, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(prepared, d)
    return d


def test_truncated_model_json_is_one_error(trained_shapes, prepared_shapes, tmp_path, capsys):
    d = _copy(trained_shapes, tmp_path)
    text = (d / "model.json").read_text()
    (d / "model.json").write_text(text[: len(text) // 2])
    for verb in (["units", "--model", d], ["evaluate", "--model", d, "--data", prepared_shapes, "--out",
                                           tmp_path / "eval", "--device", "cpu"]):
        err = _refused(verb, capsys, "model.json", "truncated or corrupt", "featviz train")
    assert "line" in err
    assert not (tmp_path / "eval").exists()


def test_model_json_that_is_not_featviz_s(trained_shapes, tmp_path, capsys):
    d = _copy(trained_shapes, tmp_path)
    (d / "model.json").write_text('{"classes": "abc", "input_shape": [1, 12, 12], "mean": [0], "std": [1]}')
    _refused(["units", "--model", d], capsys, "model.json", "`classes`")


def test_prepared_folder_without_info_json(trained_shapes, prepared_shapes, tmp_path, capsys):
    data = _copy_data(prepared_shapes, tmp_path)
    (data / "info.json").unlink()
    _refused(["evaluate", "--model", trained_shapes, "--data", data, "--out", tmp_path / "e", "--device", "cpu"],
             capsys, "no info.json", "featviz data")
    _refused(["train", "--data", data, "--model", '{"preset": "hvass-mnist"}', "--train", '{"epochs": 1}',
              "--out", tmp_path / "m", "--device", "cpu", "--no-progress"], capsys, "no info.json")
    _refused(["evaluate", "--model", trained_shapes, "--data", tmp_path / "nowhere", "--out", tmp_path / "e",
              "--device", "cpu"], capsys, "does not exist")


def test_truncated_test_split(trained_shapes, prepared_shapes, tmp_path, capsys):
    data = _copy_data(prepared_shapes, tmp_path)
    blob = (data / "test.pt").read_bytes()
    (data / "test.pt").write_bytes(blob[: len(blob) // 3])
    _refused(["evaluate", "--model", trained_shapes, "--data", data, "--out", tmp_path / "e", "--device", "cpu"],
             capsys, "test.pt", "truncated or corrupt", "featviz data")
    (data / "test.pt").write_bytes(b"")
    _refused(["evaluate", "--model", trained_shapes, "--data", data, "--out", tmp_path / "e", "--device", "cpu"],
             capsys, "test.pt")


def test_missing_or_corrupt_units_file(trained_shapes, shapes_units, prepared_shapes, tmp_path, capsys):
    args = ["--model", trained_shapes, "--layer", "conv1", "--chunk", "0", "--config", '{"chunk_size": 4}',
            "--out-npz", tmp_path / "c.npz", "--out-json", tmp_path / "c.json", "--device", "cpu"]
    _refused(["ascend", "--units", tmp_path / "none.json", *args], capsys, "none.json", "does not exist",
             "featviz units")
    bad = tmp_path / "units.json"
    bad.write_text(shapes_units.read_text()[:-40])
    _refused(["ascend", "--units", bad, *args], capsys, "units.json", "truncated or corrupt")
    _refused(["probe", "--model", trained_shapes, "--units", bad, "--data", prepared_shapes, "--out",
              tmp_path / "probe", "--device", "cpu"], capsys, "units.json")
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "probe").exists()


def test_usage_errors_are_one_line(capsys):
    _refused(["train", "--data", "x", "--model", "[1]", "--train", "{}", "--out", "y"], capsys, "--model")
    _refused(["train", "--data", "x", "--model", "@/nonexistent.yaml", "--train", "{}", "--out", "y"], capsys,
             "/nonexistent.yaml")


def test_yaml_argument_file_with_a_syntax_error(tmp_path, capsys):
    bad = tmp_path / "train.yaml"
    bad.write_text("epochs: 2\n  batch_size: [16\n")
    _refused(["train", "--data", "x", "--model", "{}", "--train", f"@{bad}", "--out", "y"], capsys, "line")
