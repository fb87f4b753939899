"""Bring your own model: each import form, loaded back by load_model, enumerated by units, hooked
like ascent hooks, and the run id covering the imported file."""
from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from featviz.import_model import import_model
from featviz.config import resolve_runs
from featviz.data import prepare
from featviz.errors import FeatvizError
from featviz.io import read_json
from featviz.model import build, load_model
from featviz.units import enumerate_units
from tests.test_data_fixtures import image_folder

SHAPE = (3, 8, 8)
CLASSES = ["a", "b", "c"]

NET_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, width: int = 4, n_classes: int = 3):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Conv2d(width, width, 3, padding=1)
            self.fc1 = nn.Linear(width * 16, 10)
            self.out = nn.Linear(10, n_classes)

        def forward(self, x):
            x = self.features(x)
            x = torch.relu(self.head(x))
            x = torch.relu(self.fc1(x.view(x.size(0), -1)))
            return self.out(x)
''')


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("byo")
    root = image_folder(tmp / "imgs", classes=tuple(CLASSES), size=(8, 8), n_train=4, n_test=4)
    prepare({"dataset": "imagefolder", "path": str(root)}, tmp, tmp / "prepared")
    return tmp / "prepared"


@pytest.fixture(scope="module")
def tiny_cls(tmp_path_factory):
    code = tmp_path_factory.mktemp("code")
    (code / "byo_tinynet.py").write_text(NET_SOURCE)
    import sys

    sys.path.insert(0, str(code))
    try:
        import byo_tinynet
    finally:
        sys.path.remove(str(code))
    return code, byo_tinynet.TinyNet


def _x():
    return torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(0))


def _check_loaded(out_dir, reference: nn.Module, expect_layers):
    loaded = load_model(out_dir)
    with torch.no_grad():
        assert torch.allclose(loaded.net(_x()), reference.eval()(_x()), atol=1e-5)
    units = enumerate_units(loaded.net, loaded.input_shape, loaded.classes)
    names = [(layer["name"], layer["kind"], layer["units"]) for layer in units["layers"]]
    assert names == expect_layers
    # a forward hook on a hidden layer fires, as ascent and probes need
    seen = []
    hook = loaded.net.get_submodule(expect_layers[0][0]).register_forward_hook(lambda m, i, o: seen.append(o.shape))
    loaded.net(_x())
    hook.remove()
    assert seen and seen[0][1] == expect_layers[0][2]
    meta = read_json(Path(out_dir) / "model.json")
    metrics = read_json(Path(out_dir) / "metrics.json")
    assert metrics["epochs"] == [] and 0 <= metrics["check_accuracy"]["accuracy"] <= 1
    assert len(meta["mean"]) == 3 and meta["classes"] == CLASSES
    return loaded


TINY_LAYERS = [("features.0", "conv", 4), ("head", "conv", 4), ("fc1", "dense", 10), ("classes", "class", 3)]


def test_spec_state_dict(data_dir, tmp_path):
    layers = [{"type": "conv", "out": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool"},
              {"type": "flatten"}, {"type": "fc"}]
    net = build(layers, SHAPE, 3)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    import_model({"layers": layers, "import": {"path": str(tmp_path / "w.pt")}}, data_dir, tmp_path / "m")
    assert read_json(tmp_path / "m/model.json")["format"] == "featviz-spec"
    _check_loaded(tmp_path / "m", net, [("conv1", "conv", 4), ("classes", "class", 3)])


def test_spec_state_dict_of_a_plain_sequential(data_dir, tmp_path):
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3))
    torch.save({"state_dict": seq.state_dict()}, tmp_path / "w.pt")
    layers = [{"type": "conv", "out": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool"}, {"type": "fc"}]
    import_model({"layers": layers, "import": {"path": str(tmp_path / "w.pt")}}, data_dir, tmp_path / "m")
    _check_loaded(tmp_path / "m", seq, [("conv1", "conv", 4), ("classes", "class", 3)])


def test_spec_mismatch_is_a_clear_error(data_dir, tmp_path):
    net = build([{"type": "conv", "out": 5, "kernel": 3}, {"type": "fc"}], SHAPE, 3)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    with pytest.raises(FeatvizError, match="does not fit"):
        import_model({"layers": [{"type": "conv", "out": 4, "kernel": 3}, {"type": "fc"}],
                      "import": {"path": str(tmp_path / "w.pt")}}, data_dir, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_class_path(data_dir, tmp_path, tiny_cls):
    code, TinyNet = tiny_cls
    net = TinyNet(width=4)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    cfg = {"import": {"path": str(tmp_path / "w.pt"), "class": "byo_tinynet:TinyNet", "kwargs": {"width": 4},
                      "code_path": str(code)}}
    import_model(cfg, data_dir, tmp_path / "m")
    assert read_json(tmp_path / "m/model.json")["format"] == "class"
    _check_loaded(tmp_path / "m", net, TINY_LAYERS)


def test_class_path_unknown_module(data_dir, tmp_path):
    torch.save({}, tmp_path / "w.pt")
    with pytest.raises(FeatvizError, match="cannot import module 'no_such_mod'.*code_path"):
        import_model({"import": {"path": str(tmp_path / "w.pt"), "class": "no_such_mod:Net"}}, data_dir, tmp_path / "m")


def test_torchscript(data_dir, tmp_path, tiny_cls):
    _, TinyNet = tiny_cls
    net = TinyNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net), str(tmp_path / "net.ts"))
    import_model({"import": {"path": str(tmp_path / "net.ts")}}, data_dir, tmp_path / "m")
    meta = read_json(tmp_path / "m/model.json")
    assert meta["format"] == "torchscript" and "converted" in meta["imported"]["how"]
    _check_loaded(tmp_path / "m", net, TINY_LAYERS)


def test_torch_export(data_dir, tmp_path, tiny_cls):
    _, TinyNet = tiny_cls
    net = TinyNet().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    ep = torch.export.export(net, (torch.zeros(2, *SHAPE),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, str(tmp_path / "net.pt2"))
    import_model({"import": {"path": str(tmp_path / "net.pt2")}}, data_dir, tmp_path / "m")
    assert read_json(tmp_path / "m/model.json")["format"] == "export"
    loaded = _check_loaded(tmp_path / "m", net, TINY_LAYERS)
    # gradients reach the input, as activation maximization needs
    x = _x().requires_grad_(True)
    loaded.net(x)[:, 1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_refuses_unpickling_unless_trusted(data_dir, tmp_path, tiny_cls):
    code, TinyNet = tiny_cls
    net = TinyNet()
    torch.save(net, tmp_path / "whole.pt")  # a pickled module, not a state_dict
    cfg = {"import": {"path": str(tmp_path / "whole.pt"), "class": "byo_tinynet:TinyNet", "code_path": str(code)}}
    with pytest.raises(FeatvizError, match="refused as unsafe.*byo_tinynet.TinyNet.*trust_checkpoint: true"):
        import_model(cfg, data_dir, tmp_path / "m")
    import_model(cfg, data_dir, tmp_path / "m", trust=True)
    _check_loaded(tmp_path / "m", net, TINY_LAYERS)


def test_wrong_number_of_classes(data_dir, tmp_path, tiny_cls):
    code, TinyNet = tiny_cls
    torch.save(TinyNet(n_classes=7).state_dict(), tmp_path / "w.pt")
    cfg = {"import": {"path": str(tmp_path / "w.pt"), "class": "byo_tinynet:TinyNet",
                      "kwargs": {"n_classes": 7}, "code_path": str(code)}}
    with pytest.raises(FeatvizError, match=r"the network has 7 outputs and the dataset 3 classes"):
        import_model(cfg, data_dir, tmp_path / "m")


def test_undetectable_format(data_dir, tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(FeatvizError, match="cannot tell how to read"):
        import_model({"import": {"path": str(tmp_path / "w.pt")}}, data_dir, tmp_path / "m")


def test_run_id_covers_the_imported_file(tmp_path):
    (tmp_path / "data").mkdir()
    f = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(2)}, f)
    cfg = {"data_root": str(tmp_path / "data"), "seed": 0,
           "runs": [{"name": "mine", "dataset": "mnist", "model": {"preset": "hvass-mnist", "import": {"path": str(f)}}}]}
    first = resolve_runs(cfg)[0]
    assert first.imported and resolve_runs(cfg)[0].id == first.id
    torch.save({"a": torch.ones(2)}, f)
    assert resolve_runs(cfg)[0].id != first.id
    cfg["runs"][0]["model"]["import"]["path"] = str(tmp_path / "nope.pt")
    with pytest.raises(FeatvizError, match=r"runs\[0\].model.import.path: file .*nope.pt' does not exist"):
        resolve_runs(cfg)


def test_cli_user_error_is_one_line(data_dir, tmp_path, capsys):
    from featviz.cli import main

    rc = main(["import-model", "--data", str(data_dir), "--out", str(tmp_path / "m"),
               "--model", '{"import": {"path": "%s"}}' % (tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("featviz: error: model.import.path: file") and "Traceback" not in err


def test_imported_class_takes_non_contiguous_inputs(data_dir, tmp_path, tiny_cls):
    code, TinyNet = tiny_cls
    net = TinyNet()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    import_model({"import": {"path": str(tmp_path / "w.pt"), "class": "byo_tinynet:TinyNet", "code_path": str(code)}},
                 data_dir, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = _x().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # NCHW shape, channels_last strides
    with torch.no_grad():
        assert torch.allclose(loaded.net(x), net.eval()(x.contiguous()), atol=1e-5)  # TinyNet uses x.view
