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
    with pytest.raises(FeatvizError, match=r"'conv1.weight' is \(5, 1, 3, 3\) in the file but \(4, 1, 3, 3\) in the network"):
        load_model(d)


def test_missing_keys(trained_shapes, tmp_path):
    d = _copy(trained_shapes, tmp_path)
    state = torch.load(d / "model.pt", weights_only=True)
    del state["fc2.bias"]
    torch.save(state, d / "model.pt")
    with pytest.raises(FeatvizError, match=r"missing: 'fc2.bias'"):
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
    _refused(["train", "--data", data, "--model", '{"preset": "hvass-mnist"}', "--train", '{"epochs": 1}',
              "--out", tmp_path / "m", "--device", "cpu", "--no-progress"], capsys, "no info.json", "featviz data")
    (data / "test.pt").unlink()
    _refused(["evaluate", "--model", trained_shapes, "--data", data, "--out", tmp_path / "e", "--device", "cpu"],
             capsys, "no test.pt", "featviz data")
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


# --------------------------------------------------------------------------- nothing overwritten (issue 14)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("bad, key", [({"epochs": 0}, "train.epochs"), ({"batch_size": -1}, "train.batch_size"),
                                      ({"optimizer": "rmsprop"}, "train.optimizer"),
                                      ({"epchs": 2}, "epchs")])
def test_train_refuses_a_bad_config_and_keeps_the_model(trained_shapes, prepared_shapes, tmp_path, capsys, bad, key):
    d = _copy(trained_shapes, tmp_path)
    before = _snapshot(d)
    from tests.synthetic import TINY_LAYERS
    import json

    err = _refused(["train", "--data", prepared_shapes, "--model", json.dumps({"layers": TINY_LAYERS}), "--train",
                    json.dumps({"batch_size": 16, **bad}), "--out", d, "--device", "cpu", "--no-progress"], capsys, key)
    assert "runs[0]" not in err
    assert _snapshot(d) == before


def test_train_refuses_a_bad_model_section(prepared_shapes, tmp_path, capsys):
    _refused(["train", "--data", prepared_shapes, "--model", '{"preset": "nope"}', "--train", '{"epochs": 1}',
              "--out", tmp_path / "m", "--device", "cpu"], capsys, "model.preset", "nope")
    assert not (tmp_path / "m").exists()


def test_failed_training_keeps_the_previous_model(trained_shapes, prepared_shapes, tmp_path):
    from featviz.train import train
    from tests.synthetic import TINY_LAYERS

    d = _copy(trained_shapes, tmp_path)
    before = _snapshot(d)
    with pytest.raises(FeatvizError, match="training diverged"):
        train(prepared_shapes, {"layers": TINY_LAYERS}, {"epochs": 2, "batch_size": 16, "lr": 1e12,
                                                         "schedule": "constant"}, d, device="cpu", progress=False)
    assert _snapshot(d) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind


def test_failed_import_keeps_the_previous_model(trained_shapes, prepared_shapes, tmp_path, capsys):
    import json

    from tests.synthetic import TINY_LAYERS

    d = _copy(trained_shapes, tmp_path)
    before = _snapshot(d)
    wrong = [dict(layer) for layer in TINY_LAYERS]
    wrong[0]["out"] = 5
    _refused(["import-model", "--data", prepared_shapes, "--model",
              json.dumps({"layers": wrong, "import": {"path": str(trained_shapes / "model.pt")}}),
              "--out", d, "--device", "cpu"], capsys, "does not fit the featviz spec")
    assert _snapshot(d) == before
    # and a good import replaces all three files
    from featviz.cli import main

    assert main(["import-model", "--data", str(prepared_shapes), "--model",
                 json.dumps({"layers": TINY_LAYERS, "import": {"path": str(trained_shapes / "model.pt")}}),
                 "--out", str(d), "--device", "cpu"]) == 0
    after = _snapshot(d)
    assert after["model.pt"] == before["model.pt"] and after["model.json"] != before["model.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("cfg, names", [({"chunk_size": 0}, ("ascent.chunk_size", "minimum")),
                                        ({"chunk_size": 4, "units": {"conv1": [99]}}, ("ascent.units.conv1", "99")),
                                        ({"chunk_size": 4, "layers": ["conv9"]}, ("ascent.layers", "conv9")),
                                        ({"chunk_size": 4, "recipe": {"conv": "nope"}}, ("recipe", "nope"))])
def test_ascend_refuses_what_the_dag_refuses(trained_shapes, shapes_units, tmp_path, capsys, cfg, names):
    import json

    _refused(["ascend", "--model", trained_shapes, "--units", shapes_units, "--layer", "conv1", "--chunk", "0",
              "--config", json.dumps(cfg), "--out-npz", tmp_path / "c.npz", "--out-json", tmp_path / "c.json",
              "--device", "cpu"], capsys, *names)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- spec layers (issue 14)


@pytest.mark.parametrize("layers, message", [
    ([{"type": "conv", "kernel": 3}, {"type": "fc"}], "runs[0].model.layers[0].out: required for type 'conv'"),
    ([{"type": "conv", "out": 4}, {"type": "fc"}], "runs[0].model.layers[0].kernel: required for type 'conv'"),
    ([{"type": "conv", "out": 4, "kernel": 3, "padding": "full"}, {"type": "fc"}], "runs[0].model.layers[0].padding"),
    ([{"type": "pool"}, {"type": "fc"}], "runs[0].model.layers[0].type: 'pool' is not one of"),
])
def test_schema_requires_each_layer_types_keys(layers, message):
    from featviz.config import load_schema, schema_error

    cfg = {"runs": [{"dataset": "mnist", "model": {"layers": layers}}]}
    assert schema_error(cfg, load_schema()).startswith(message)
    cfg = {"runs": [{"dataset": "mnist", "ascent": {"transfer": {"layers": layers}}}]}
    assert schema_error(cfg, load_schema()).startswith(message.replace("model.", "ascent.transfer."))


def test_builder_names_a_missing_key():
    from featviz.model import build

    with pytest.raises(FeatvizError, match=r"model.layers\[0\].out: required for a conv layer"):
        build([{"type": "conv", "kernel": 3}, {"type": "fc"}], (1, 8, 8), 2)
    with pytest.raises(FeatvizError, match=r"model.layers\[0\] \(conv\): bad value"):
        build([{"type": "conv", "out": "four", "kernel": 3}, {"type": "fc"}], (1, 8, 8), 2)


# --------------------------------------------------------------------------- YAML errors (issue 14)


def test_yaml_syntax_error_has_file_and_line(tmp_path, capsys):
    from featviz.config import yaml_syntax_error

    bad = tmp_path / "c.yaml"
    bad.write_text("runs:\n  - dataset: mnist\n\ttrain: {}\n")
    assert yaml_syntax_error(bad).startswith(f"{bad}: line 3, column 1: found character '\\t'")
    bad.write_text("runs: [{dataset: mnist}\n")
    assert f"{bad}: line 2" in yaml_syntax_error(bad)
    assert yaml_syntax_error(tmp_path / "none.yaml") is None
    _refused(["check-config", bad], capsys, str(bad), "line 2")
    good = tmp_path / "g.yaml"
    good.write_text("runs: [{dataset: mnist, train: {epochs: 0}}]\n")
    _refused(["check-config", good], capsys, "runs[0].train.epochs: 0 is less than the minimum of 1")


# --------------------------------------------------------------------------- degenerate datasets (issue 14)


def test_single_class_folder_is_refused(tmp_path, capsys):
    from tests.synthetic import make_imagefolder

    root = make_imagefolder(tmp_path / "one", per_class=4, test_per_class=2, classes=("only",))
    cfg = '{"dataset": "imagefolder", "path": "%s"}' % root
    _refused(["data", "--config", cfg, "--out", tmp_path / "prep"], capsys, "needs at least two classes", "only")
    assert not (tmp_path / "prep").exists()
    from featviz.config import resolve_runs

    with pytest.raises(FeatvizError, match=r"runs\[0\].data.path: the dataset needs at least two classes"):
        resolve_runs({"data_root": str(tmp_path), "runs": [{"dataset": "imagefolder", "data": {"path": str(root)}}]})


def test_class_without_training_images_is_refused(tmp_path, capsys):
    from tests.synthetic import make_imagefolder

    root = make_imagefolder(tmp_path / "tiny", per_class=1, test_per_class=0, classes=("a", "b"))
    shutil.rmtree(root / "test")
    cfg = '{"dataset": "imagefolder", "path": "%s", "test_fraction": 0.1}' % root
    _refused(["data", "--config", cfg, "--out", tmp_path / "prep"], capsys, "has no training images",
             "test_fraction")
    assert not (tmp_path / "prep").exists()


# --------------------------------------------------------------------------- foreign messages (issue 14)


def test_corrupt_checkpoint_does_not_suggest_trust(trained_shapes, tmp_path, capsys):
    d = _copy(trained_shapes, tmp_path)
    data = bytearray((d / "model.pt").read_bytes())
    for i in range(0, len(data), 7):
        data[i] ^= 0xFF
    (d / "model.pt").write_bytes(bytes(data))
    err = _refused(["units", "--model", d], capsys, "model.pt", "corrupt", "re-create it")
    assert "trust_checkpoint" not in err


def test_refused_class_message_is_plain(trained_shapes, tmp_path, capsys):
    d = _copy(trained_shapes, tmp_path)
    state = torch.load(d / "model.pt", weights_only=True)
    torch.save({"state_dict": state, "extra": Payload()}, d / "model.pt", pickle_module=pickle)
    err = _refused(["units", "--model", d], capsys, "trust_checkpoint: true", "`print`")
    assert "\x1b" not in err and "pwned" not in err


def test_export_format_on_a_state_dict_is_one_line(trained_shapes, prepared_shapes, tmp_path):
    """`format: export` on a file that is not a torch.export archive: featviz's message, and nothing of
    torch's logging (run as a user runs it: a fresh process)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for src in (trained_shapes / "model.pt", trained_shapes / "model.json"):
        r = subprocess.run([sys.executable, "-m", "featviz", "import-model", "--data", str(prepared_shapes), "--model",
                            json.dumps({"import": {"path": str(src), "format": "export"}}), "--out",
                            str(tmp_path / "m"), "--device", "cpu"], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(root)}, cwd=root)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("featviz: error: model.import: ") and r.stderr.count("\n") == 1, r.stderr
        assert "not a readable torch.export archive" in r.stderr and "warnings above" not in r.stderr
        assert "Traceback" not in r.stdout + r.stderr and not (tmp_path / "m").exists()


def test_units_file_that_does_not_match_the_model(trained_shapes, shapes_units, tmp_path, capsys):
    import json

    cfg = json.dumps({"chunk_size": 16, "recipe": {"class": "hvass", "conv": "hvass"},
                      "overrides": {"class": {"class_steps": 2, "snapshots": 0}, "conv": {"steps": 2, "snapshots": 0}}})
    units = json.loads(shapes_units.read_text())
    for layer in units["layers"]:
        layer["units"] = 9
    (tmp_path / "units.json").write_text(json.dumps(units))
    for name, count in (("classes", 3), ("conv1", 4)):
        _refused(["ascend", "--model", trained_shapes, "--units", tmp_path / "units.json", "--layer", name, "--chunk",
                  "0", "--config", cfg, "--out-npz", tmp_path / "c.npz", "--out-json", tmp_path / "c.json",
                  "--device", "cpu"], capsys, f"'{name}' has {count} units in the model, not 9", "featviz units")
    assert not (tmp_path / "c.json").exists()


def test_data_refuses_a_bad_config_and_keeps_a_previous_preparation(shapes_folder, prepared_shapes, tmp_path, capsys):
    data = _copy_data(prepared_shapes, tmp_path)
    before = _snapshot(data)
    _refused(["data", "--config", '{"dataset": "imagefolder", "path": "%s", "test_fraction": 2}' % shapes_folder,
              "--out", data], capsys, "data.test_fraction")
    _refused(["data", "--config", '{"path": "%s"}' % shapes_folder, "--out", data], capsys, "dataset")
    assert _snapshot(data) == before


def test_probe_refuses_a_truncated_test_split(trained_shapes, shapes_units, prepared_shapes, tmp_path, capsys):
    data = _copy_data(prepared_shapes, tmp_path)
    blob = (data / "test.pt").read_bytes()
    (data / "test.pt").write_bytes(blob[: len(blob) // 2])
    _refused(["probe", "--model", trained_shapes, "--units", shapes_units, "--data", data, "--out", tmp_path / "probe",
              "--device", "cpu"], capsys, "test.pt", "truncated or corrupt")
    assert not (tmp_path / "probe").exists()


# --------------------------------------------------------------------------- recipe values (issue 14)


@pytest.mark.parametrize("overrides, message", [
    ({"conv": {"transforms": "bogus"}}, "runs[0].ascent.overrides.conv.transforms: unknown transforms preset 'bogus'"),
    ({"conv": {"neuron_pos": [99, 99]}}, "runs[0].ascent.overrides.conv.neuron_pos: [99, 99] is outside layer conv1"),
    ({"conv": {"neuron_pos": [1]}}, "runs[0].ascent.overrides.conv: recipe parameter 'neuron_pos' must be a list of 2"),
    ({"class": {"transforms": [{"type": "jitter"}]}}, "runs[0].ascent.overrides.class.transforms[0]: "),
    ({"dense": {"transforms": [{"type": "scale", "range": [0, 1]}]}}, "runs[0].ascent.overrides.dense.transforms[0]: "),
    ({"conv": {"transforms": [{"type": "pad", "pad": 100000, "value": 0}]}},
     "runs[0].ascent.overrides.conv.transforms[0]: {'type': 'pad', 'pad': 100000, 'value': 0}: `pad` 100000 is more"),
    ({"conv": {"jitter": 100}}, "runs[0].ascent.overrides.conv.jitter: 100 is more than 4x the input's size (12 px)"),
    ({"layers": {"conv1": {"median_size": 4}}}, "runs[0].ascent.overrides.layers.conv1: recipe parameter 'median_size'"),
])
def test_recipe_values_that_depend_on_the_network_stop_the_dag(shapes_folder, overrides, message):
    from featviz.config import resolve_runs
    from tests.synthetic import TINY_LAYERS

    cfg = {"data_root": str(shapes_folder), "runs": [{
        "dataset": "imagefolder", "data": {"path": str(shapes_folder)}, "model": {"layers": TINY_LAYERS},
        "ascent": {"chunk_size": 4, "recipe": {"conv": "lucid", "dense": "lucid", "class": "lucid"},
                   "overrides": overrides}}]}
    with pytest.raises(FeatvizError) as info:
        resolve_runs(cfg)
    assert str(info.value).startswith(message), str(info.value)


def test_ascend_checks_recipe_values(trained_shapes, shapes_units, tmp_path, capsys):
    import json

    cfg = {"chunk_size": 4, "recipe": {"conv": "hvass"}, "overrides": {"conv": {"neuron_pos": [12, 0]}}}
    _refused(["ascend", "--model", trained_shapes, "--units", shapes_units, "--layer", "conv1", "--chunk", "0",
              "--config", json.dumps(cfg), "--out-npz", tmp_path / "c.npz", "--out-json", tmp_path / "c.json",
              "--device", "cpu"], capsys, "ascent.overrides.conv.neuron_pos: [12, 0] is outside layer conv1", "12x12")


def test_mixed_sizes_and_modes_are_noted(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from featviz.data import prepare
    from tests.synthetic import make_imagefolder

    root = make_imagefolder(tmp_path / "mixed", per_class=4, test_per_class=2)
    Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(root / "train" / "hbar" / "big.png")
    info = prepare({"dataset": "imagefolder", "path": str(root)}, tmp_path, tmp_path / "prep")
    assert info["input_shape"] == [1, 12, 12]
    out = capsys.readouterr().out
    assert "2 different sizes, all resized to 12x12" in out and "2 modes (L, RGB)" in out


def test_search_refuses_zero_max_steps(trained_shapes, tmp_path, capsys):
    _refused(["search", "--model", trained_shapes, "--layer", "conv1", "--max-steps", "0", "--out", tmp_path / "s.json",
              "--device", "cpu"], capsys, "--max-steps: 0 is not an integer >= 1")
    assert not (tmp_path / "s.json").exists()
