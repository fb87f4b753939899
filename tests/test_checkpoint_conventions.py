"""Checkpoints as training code saves them: each convention imports without re-saving, and what was
adapted is said. Built from a real network's weights (the published CIFAR-10 ResNet-20 of
akamaster/pytorch_resnet_cifar10, ../shared/models) where present, else from the same class with
random weights, so that the logic is tested everywhere."""
from __future__ import annotations

import os
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from featviz.errors import FeatvizError
from featviz.model.checkpoint import import_weights

SHARED = Path(__file__).resolve().parents[2] / "shared"
RESNET20 = SHARED / "models" / "resnet20-12fca82f.th"
sys.path.insert(0, str(Path(__file__).resolve().parent / "real_nets"))
from cifar_resnet import resnet20  # noqa: E402  (the user's class, a test fixture)


@pytest.fixture(scope="module")
def source() -> nn.Module:
    """ResNet-20 with the published weights where present (loaded the plain torch way, as a
    reference), else with seeded random weights and non-trivial BatchNorm statistics."""
    net = resnet20()
    if RESNET20.exists():
        sd = torch.load(RESNET20, map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    else:
        torch.manual_seed(0)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _x():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _imported(path, **kw):
    net = resnet20()
    info = import_weights(net, path, **kw)
    return net.eval(), info


def _same(a: nn.Module, b: nn.Module) -> bool:
    with torch.no_grad():
        return torch.allclose(a(_x()), b(_x()), atol=1e-5)


def _state(net):
    return OrderedDict((k, v.clone()) for k, v in net.state_dict().items())


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict", "net", "network", "ema", "model_ema",
                                 "state_dict_ema"])
def test_a_state_dict_nested_under_a_training_key(source, tmp_path, key):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 90, "best_acc1": 91.7, key: _state(source), "optimizer": {"state": {}, "param_groups": []}},
               path)
    net, info = _imported(path)
    assert _same(net, source)
    assert info["entry"] == key and f"took the state_dict under '{key}'" in info["adapted"]


def test_a_bare_state_dict_loads_as_saved(source, tmp_path):
    torch.save(_state(source), tmp_path / "sd.pt")
    net, info = _imported(tmp_path / "sd.pt")
    assert _same(net, source)
    assert info == {"file_format": "torch zip archive", "entry": None, "adapted": []}


def test_data_parallel_prefix(source, tmp_path):
    wrapped = nn.DataParallel(resnet20())  # on CPU it only wraps; its state_dict carries `module.`
    wrapped.module.load_state_dict(source.state_dict())
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    torch.save({"state_dict": wrapped.state_dict()}, tmp_path / "dp.pth")
    net, info = _imported(tmp_path / "dp.pth")
    assert _same(net, source)
    assert any("'module.'" in line and "DataParallel" in line for line in info["adapted"])


def test_torch_compile_prefix(source, tmp_path):
    compiled = torch.compile(resnet20())  # an OptimizedModule: `_orig_mod.` keys, compiled only when called
    compiled._orig_mod.load_state_dict(source.state_dict())
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    torch.save(compiled.state_dict(), tmp_path / "compiled.pt")
    net, info = _imported(tmp_path / "compiled.pt")
    assert _same(net, source)
    assert any("'_orig_mod.'" in line and "torch.compile" in line for line in info["adapted"])


def test_lightning_checkpoint(source, tmp_path):
    """A Lightning `.ckpt` as its checkpoint connector dumps it: the LightningModule's state_dict
    (the network under its attribute, `model.`, beside a loss module's buffer) with the loops',
    callbacks' and optimizers' states and the hyper-parameters as a plain dict."""
    state = OrderedDict((f"model.{k}", v) for k, v in _state(source).items())
    state["criterion.weight"] = torch.ones(10)
    opt = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    ckpt = {"epoch": 3, "global_step": 1173, "pytorch-lightning_version": "2.4.0", "state_dict": state,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4, "completed": 3}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}": {
                "best_model_score": torch.tensor(0.91), "best_model_path": "/ckpts/epoch=3.ckpt"}},
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [], "hparams_name": "kwargs",
            "hyper_parameters": {"lr": 0.1, "depth": 20}}
    torch.save(ckpt, tmp_path / "epoch=3-step=1173.ckpt")
    net, info = _imported(tmp_path / "epoch=3-step=1173.ckpt")
    assert _same(net, source)
    assert info["entry"] == "state_dict"
    assert any("'model.'" in line for line in info["adapted"])
    assert any("ignored 1 tensors outside 'model.'" in line and "criterion.weight" in line for line in info["adapted"])


def test_legacy_batchnorm_and_legacy_pickle(source, tmp_path):
    """A checkpoint older than BatchNorm's num_batches_tracked (version 1 in its metadata), saved in
    the pre-zip pickle format: torch's own load_state_dict fills the counters; featviz trusts it."""
    state = _state(source)
    meta = getattr(source.state_dict(), "_metadata")
    state = OrderedDict((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    state._metadata = OrderedDict((k, {**v, "version": 1} if "bn" in k else dict(v)) for k, v in meta.items())
    torch.save({"state_dict": state, "best_prec1": 91.73}, tmp_path / "old.th", _use_new_zipfile_serialization=False)
    net, info = _imported(tmp_path / "old.th")
    assert _same(net, source)
    assert info["file_format"] == "legacy torch pickle"
    assert any("filled 19 BatchNorm num_batches_tracked" in line for line in info["adapted"])


def test_safetensors(source, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "model.safetensors"))
    net, info = _imported(tmp_path / "model.safetensors")
    assert _same(net, source)
    assert info["file_format"] == "safetensors"


def test_half_precision_weights_are_said(source, tmp_path):
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()},
               tmp_path / "half.pt")
    net, info = _imported(tmp_path / "half.pt")
    assert any("stored as float16, loaded as float32" in line for line in info["adapted"])


def test_several_fitting_state_dicts_need_a_key(source, tmp_path):
    ema = {k: (v * 0.5 if v.is_floating_point() else v) for k, v in _state(source).items()}
    torch.save({"model": _state(source), "model_ema": ema}, tmp_path / "both.pth")
    with pytest.raises(FeatvizError, match=r"model.import.key: .*several state_dicts .*'model', 'model_ema'"):
        _imported(tmp_path / "both.pth")
    net, info = _imported(tmp_path / "both.pth", key="model")
    assert _same(net, source) and info["entry"] == "model"
    _, info = _imported(tmp_path / "both.pth", key="model_ema")
    assert info["entry"] == "model_ema"
    with pytest.raises(FeatvizError, match=r"model.import.key: .* has no 'ema_model' at the top level \(keys there: model, model_ema\)"):
        _imported(tmp_path / "both.pth", key="ema_model")


def test_nothing_fits_says_what_came_closest(source, tmp_path):
    state = OrderedDict((f"backbone.{k}", v) for k, v in _state(source).items() if not k.startswith("layer3"))
    state["backbone.head.weight"] = torch.zeros(10, 64)
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(FeatvizError) as err:
        _imported(tmp_path / "partial.pt")
    msg = str(err.value)
    assert "after stripping 'backbone.', 67 of 97 network keys match" in msg
    assert "missing: 'layer3.0.conv1.weight'" in msg and "unexpected: 'head.weight'" in msg


def test_a_shape_mismatch_is_named(source, tmp_path):
    state = _state(source)
    state["linear.weight"] = torch.zeros(100, 64)
    state["linear.bias"] = torch.zeros(100)
    torch.save(state, tmp_path / "c100.pt")
    with pytest.raises(FeatvizError, match=r"'linear.weight' is \(100, 64\) in the file but \(10, 64\) in the network"):
        _imported(tmp_path / "c100.pt")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo featviz-test-should-never-run",))


def test_an_unsafe_pickle_is_refused_as_unsafe_naming_what_it_calls(tmp_path):
    torch.save({"state_dict": {}, "x": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(FeatvizError) as err:
        _imported(tmp_path / "evil.pt")
    msg = str(err.value)
    assert "refused as unsafe" in msg and "posix.system" in msg and "corrupt" not in msg


def test_a_corrupt_file_is_said_corrupt(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(FeatvizError, match="truncated, corrupt or not a PyTorch file"):
        _imported(tmp_path / "bad.pt")


@pytest.mark.skipif(not RESNET20.exists(), reason=f"{RESNET20} not present")
def test_the_published_resnet20_imports_as_published():
    """The file exactly as published: a legacy pickle of {'best_prec1', 'state_dict'} saved from
    nn.DataParallel by a PyTorch older than num_batches_tracked."""
    net, info = _imported(RESNET20)
    assert info["file_format"] == "legacy torch pickle" and info["entry"] == "state_dict"
    assert info["adapted"] == [
        "took the state_dict under 'state_dict'",
        "stripped the key prefix 'module.' (nn.DataParallel / DistributedDataParallel)",
        "filled 19 BatchNorm num_batches_tracked counters (a checkpoint older than that key; torch's "
        "load_state_dict fills them)"]
    images = sorted((SHARED / "data" / "foolbox-samples").glob("cifar10_*.png"))
    if images:
        import numpy as np
        from PIL import Image

        x = torch.tensor(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in images])).permute(0, 3, 1, 2)
        x = (x.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        labels = torch.tensor([int(f.stem.rsplit("_", 1)[1]) for f in images])
        with torch.no_grad():
            accuracy = float((net(x).argmax(1) == labels).float().mean())
        assert accuracy >= 0.9  # 20 of 20 measured; the published figure is 91.73% on the test set
