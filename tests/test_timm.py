"""timm architectures by name (`model: {timm: <name>}`), where timm is installed: built for the
dataset's classes or a checkpoint's, imported from a `.safetensors` file as the hub ships them, with
timm's pretrained config's normalization, and stage/block default targets. Downloads fail with one
message. Skipped without timm."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

from featviz.data import prepare  # noqa: E402
from featviz.errors import FeatvizError  # noqa: E402
from featviz.import_model import import_model  # noqa: E402
from featviz.io import read_json  # noqa: E402
from featviz.model import load_model  # noqa: E402
from featviz.model.architecture import build_architecture, describe  # noqa: E402
from featviz.units import enumerate_units  # noqa: E402
from tests.test_data_fixtures import image_folder  # noqa: E402


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("timm")
    root = image_folder(tmp / "imgs", classes=("a", "b", "c"), size=(32, 32), n_train=2, n_test=3)
    prepare({"dataset": "imagefolder", "path": str(root)}, tmp, tmp / "prepared")
    return tmp / "prepared"


def test_unknown_name_and_kwargs_are_one_message():
    with pytest.raises(FeatvizError, match=r"model.timm: 'resnet5O' is not an architecture of timm .*did you mean"):
        describe({"timm": "resnet5O"})
    with pytest.raises(FeatvizError, match="model.kwargs.num_classes: set by featviz"):
        describe({"timm": "resnet18", "kwargs": {"num_classes": 5}})


def test_stage_and_block_default_targets():
    net = build_architecture(describe({"timm": "resnet18"}), (3, 32, 32), 3)
    units = enumerate_units(net, (3, 32, 32), ["a", "b", "c"], None, family="timm")
    names = [layer["name"] for layer in units["layers"]]
    assert names[0] == "conv1" and names[-1] == "classes"
    for block in ("layer1.0", "layer1.1", "layer4.1", "layer4.1.conv2"):
        assert block in names
    stage = next(layer for layer in units["layers"] if layer["name"] == "layer4.1")
    assert "layer4" in stage["aliases"]  # timm's feature stage, the same tensor as its last block


def test_import_a_safetensors_checkpoint(prepared, tmp_path):
    """A timm state_dict as .safetensors (keys in the file's sorted order, `module.` in front): its
    output count read from the network's classifier under the prefix, timm's normalization."""
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    save_file({f"module.{k}": v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "model.safetensors"))
    out = tmp_path / "model"
    metrics = import_model({"timm": "resnet18", "import": {"path": str(tmp_path / "model.safetensors")}},
                           prepared, out, device="cpu")
    imp = metrics["imported"]
    assert imp["format"] == "timm" and imp["file_format"] == "safetensors" and imp["architecture"] == "timm resnet18"
    assert any("'module.'" in line for line in imp["adapted"])
    meta = read_json(out / "model.json")
    cfg = timm.models.get_pretrained_cfg("resnet18").to_dict()
    assert meta["mean"] == list(cfg["mean"]) and meta["input"]["normalization"].startswith("timm's pretrained config")
    loaded = load_model(out)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.net(loaded.normalize(x)), src(loaded.normalize(x)), atol=1e-5)


def test_pretrained_weights_offline_fail_with_one_message(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FeatvizError, match=r"model.weights: cannot get timm's pretrained resnet18 .*import: \{path: <file>\}"):
        import_model({"timm": "resnet18", "weights": "pretrained"}, prepared, tmp_path / "m", device="cpu")


def test_an_imported_timm_network_takes_timms_input_size_where_the_data_gives_none(tmp_path):
    from featviz.config import resolve_runs

    root = image_folder(tmp_path / "imgs", classes=("a", "b"), size=(40, 30), n_train=1, n_test=1)
    (tmp_path / "w.pt").write_bytes(b"")
    run = {"name": "t", "dataset": "imagefolder", "data": {"path": str(root)},
           "model": {"timm": "resnet18", "import": {"path": str(tmp_path / "w.pt")}}}
    (resolved,) = resolve_runs({"data_root": str(tmp_path), "runs": [run]})
    cfg = timm.models.get_pretrained_cfg("resnet18").to_dict()
    size = list(cfg["input_size"][1:])
    assert resolved.data["image_size"] == size and resolved.data["resize"] == round(size[0] / cfg["crop_pct"])
    run["data"]["image_size"] = [32, 32]  # the config's own size wins
    assert resolve_runs({"data_root": str(tmp_path), "runs": [run]})[0].data["image_size"] == [32, 32]
