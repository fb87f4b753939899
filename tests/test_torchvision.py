"""torchvision architectures by name, their import from a torchvision-format state_dict, default and
configured targets (block outputs, post-activation modules), the softmax check, and that every import
format lists the same units as the network it came from. Tiny random nets at small sizes, offline."""
from __future__ import annotations

import urllib.error
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from featviz.config import resolve_runs
from featviz.errors import FeatvizError
from featviz.import_model import import_model
from featviz.io import read_json
from featviz.model import load_model
from featviz.model import torchvision_archs as tv
from featviz.model.architecture import build_architecture, describe
from featviz.units import enumerate_units, select

NAMES3 = ["a", "b", "c"]


def _units(net, shape, targets=None, family="torchvision"):
    return enumerate_units(net, shape, NAMES3, targets, family=family)


def _names(units):
    return [layer["name"] for layer in units["layers"]]


# --------------------------------------------------------------------------- naming


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "mobilenet_v3_small", "googlenet"])
def test_builds_by_name_with_the_datasets_classes(name):
    net = build_architecture(describe({"torchvision": name}), (3, 32, 32), 3)
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_unknown_architecture_names_close_matches():
    with pytest.raises(FeatvizError, match=r"model.torchvision: 'resnet51'.*did you mean resnet50"):
        describe({"torchvision": "resnet51"})


def test_num_classes_comes_from_the_dataset():
    with pytest.raises(FeatvizError, match="kwargs.num_classes"):
        describe({"torchvision": "resnet18", "kwargs": {"num_classes": 5}})


def test_too_small_input_is_one_clear_message():
    with pytest.raises(FeatvizError, match=r"alexnet does not take inputs of shape \(3, 16, 16\) \(.*size"):
        build_architecture(describe({"torchvision": "alexnet"}), (3, 16, 16), 3)


def test_gray_input_is_repeated_to_rgb():
    net = build_architecture(describe({"torchvision": "resnet18"}), (1, 16, 16), 3).eval()
    x = torch.rand(2, 1, 16, 16)
    ref = net(x.expand(-1, 3, -1, -1).clone())
    assert torch.allclose(net(x), ref)


def test_run_id_hashes_the_name_and_kwargs(shapes_folder):
    def run_id(model):
        cfg = {"data_root": str(shapes_folder), "seed": 0,
               "runs": [{"dataset": "imagefolder", "data": {"path": str(shapes_folder), "image_size": [32, 32]},
                         "model": model, "train": {"epochs": 1}, "ascent": {}}]}
        return resolve_runs(cfg)[0].id

    a = run_id({"torchvision": "resnet18"})
    assert a == run_id({"torchvision": "resnet18"})
    assert a != run_id({"torchvision": "resnet34"})
    assert a != run_id({"torchvision": "resnet18", "kwargs": {"zero_init_residual": True}})


def test_pretrained_weights_offline_fail_with_one_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FeatvizError, match=r"model.weights: cannot get torchvision's resnet18 weights IMAGENET1K_V1.*import"):
        tv.pretrained("resnet18", "IMAGENET1K_V1")
    with pytest.raises(FeatvizError, match=r"has no weights 'NOPE'"):
        tv.pretrained("resnet18", "NOPE")


# --------------------------------------------------------------------------- targets


def test_resnet_default_targets_are_stem_blocks_and_final_convs():
    net = torchvision.models.resnet18(num_classes=3)
    units = _units(net, (3, 32, 32))
    names = _names(units)
    assert names[0] == "conv1" and names[-1] == "classes"
    for want in ("layer1.0", "layer1.0.conv2", "layer3.1", "layer4.1.conv2"):
        assert want in names
    assert "layer1.0.conv1" not in names and "layer2.0.downsample.0" not in names
    # a stage returns its last block's tensor: one layer, the stage as its alias
    block = next(layer for layer in units["layers"] if layer["name"] == "layer4.1")
    assert block["aliases"] == ["layer4"] and block["role"] == "block" and block["module_type"] == "BasicBlock"
    assert "layer4" not in names
    assert units["layers"][-1]["module"] == "fc"


def test_vgg_default_has_last_conv_and_post_relu_before_each_pool():
    net = torchvision.models.vgg11(num_classes=3)
    units = _units(net, (3, 32, 32))
    layer = {la["name"]: la for la in units["layers"]}
    assert layer["features.18"]["role"] == "conv" and layer["features.19"]["role"] == "activation"
    assert layer["features.19"]["module_type"] == "ReLU"
    assert "classifier.0" in layer and layer["classifier.0"]["kind"] == "dense"


def test_targets_by_glob_type_and_default():
    net = torchvision.models.resnet18(num_classes=3)
    names = _names(_units(net, (3, 32, 32), ["layer2.*"]))
    assert names[:-1] == ["layer2.0", "layer2.1"]
    assert _names(_units(net, (3, 32, 32), ["layer*.*"]))[:3] == ["layer1.0", "layer1.1", "layer2.0"]
    assert "layer1.0.conv1" in _names(_units(net, (3, 32, 32), ["layer1.**"]))
    acts = _units(net, (3, 32, 32), [{"type": "activation", "name": "layer1.**"}])["layers"][:-1]
    assert [la["name"] for la in acts] == ["layer1.0.relu", "layer1.1.relu"]
    # a shared relu is read at its first call: after bn1, 64 channels
    assert acts[0]["calls"] == 2 and acts[0]["units"] == 64
    both = _names(_units(net, (3, 32, 32), ["default", "relu"]))
    assert "relu" in both and "layer1.0" in both


def test_a_target_matching_nothing_names_itself():
    net = torchvision.models.resnet18(num_classes=3)
    with pytest.raises(FeatvizError, match=r"ascent.targets\[1\]: layer9\* matches no module.*layer4"):
        _units(net, (3, 32, 32), ["layer1", "layer9*"])
    with pytest.raises(FeatvizError, match=r"ascent.targets\[0\].type: unknown module type 'relu'"):
        _units(net, (3, 32, 32), [{"type": "relu"}])


def test_inplace_relu_does_not_overwrite_the_conv_output():
    net = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("relu", nn.ReLU(inplace=True)),
                                     ("flat", nn.Flatten()), ("fc", nn.Linear(2 * 6 * 6, 3))]))
    units = enumerate_units(net, (1, 8, 8), NAMES3, ["conv", "relu"])
    assert [la["name"] for la in units["layers"]] == ["conv", "relu", "classes"]


def test_spec_default_unchanged_and_torchvision_candidates_listed():
    from tests.synthetic import TINY_LAYERS
    from featviz.model import build

    units = enumerate_units(build(TINY_LAYERS, (1, 12, 12), 3), (1, 12, 12), NAMES3)
    assert _names(units) == ["conv1", "conv2", "fc1", "classes"]
    assert {e["name"] for e in units["available"]} >= {"relu1", "pool1", "conv2"}


# --------------------------------------------------------------------------- import


def test_torchvision_state_dict_import(prepared_shapes, tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=3).eval()
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    cfg = {"torchvision": "resnet18", "import": {"path": str(tmp_path / "resnet18.pth")}}
    metrics = import_model(cfg, prepared_shapes, tmp_path / "model", device="cpu")
    meta = read_json(tmp_path / "model" / "model.json")
    assert meta["format"] == "torchvision" and meta["input"]["normalization"] == "imagenet"
    assert meta["input"]["gray_to_rgb"] is True and meta["class_names"] == "dataset"
    assert 0.0 <= metrics["check_accuracy"]["accuracy"] <= 1.0
    loaded = load_model(tmp_path / "model")
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        want = ref(loaded.normalize(x).expand(-1, 3, -1, -1))
        assert torch.allclose(loaded.net(loaded.normalize(x)), want, atol=1e-5)
    names = _names(enumerate_units(loaded.net, loaded.input_shape, loaded.classes, family="torchvision"))
    assert "layer1.0" in names


# --------------------------------------------------------------------------- the softmax check


def _softmax_warnings(meta: dict) -> list[str]:
    """The import's warnings about probabilities (an untrained test net also reads at chance)."""
    return [w for w in meta["output"]["warnings"] if "probabilities" in w]


class _SoftmaxInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 10 * 10, 3)

    def forward(self, x):
        return torch.softmax(self.fc(torch.relu(self.conv(x)).flatten(1)), 1)


def _with_softmax_module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 10 * 10, 3), nn.Softmax(dim=1)).eval()


def test_final_softmax_module_is_removed(prepared_shapes, tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "softnets.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class WithSoftmax(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(200, 3), nn.Softmax(dim=1))\n")
    monkeypatch.syspath_prepend(str(code))
    import softnets

    torch.manual_seed(0)
    net = softnets.WithSoftmax().eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    cfg = {"import": {"path": str(tmp_path / "w.pt"), "class": "softnets:WithSoftmax", "code_path": str(code)}}
    import_model(cfg, prepared_shapes, tmp_path / "model", device="cpu")
    meta = read_json(tmp_path / "model" / "model.json")
    assert "Softmax module '4'" in meta["output"]["softmax_removed"] and not _softmax_warnings(meta)
    loaded = load_model(tmp_path / "model")
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        logits = loaded.net(x)
        assert not torch.allclose(logits.sum(1), torch.ones(2))
        assert torch.allclose(torch.softmax(logits, 1), net(x), atol=1e-6)
    units = enumerate_units(loaded.net, loaded.input_shape, loaded.classes)
    assert units["layers"][-1]["module"] == "3"


def test_final_softmax_of_a_torchscript_graph_is_removed(prepared_shapes, tmp_path):
    net = _with_softmax_module()
    torch.jit.trace(net, torch.rand(2, 1, 12, 12)).save(str(tmp_path / "traced.pt"))
    import_model({"import": {"path": str(tmp_path / "traced.pt")}}, prepared_shapes, tmp_path / "model", device="cpu")
    meta = read_json(tmp_path / "model" / "model.json")
    assert meta["output"]["softmax_removed"] and not _softmax_warnings(meta)
    loaded = load_model(tmp_path / "model")
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(loaded.net(x), 1), net(x), atol=1e-5)


def test_softmax_that_cannot_be_removed_is_flagged(prepared_shapes, tmp_path):
    net = torch.jit.script(_SoftmaxInForward().eval())
    # scripted code with the softmax inside forward: converted to a graph, the softmax is its last node
    net.save(str(tmp_path / "scripted.pt"))
    import_model({"import": {"path": str(tmp_path / "scripted.pt")}}, prepared_shapes, tmp_path / "m1", device="cpu")
    assert read_json(tmp_path / "m1" / "model.json")["output"]["softmax_removed"]
    from featviz.model.logits import looks_like_probabilities, strip_softmax

    eager = _SoftmaxInForward().eval()
    assert strip_softmax(eager, (1, 12, 12)) is None
    assert looks_like_probabilities(eager, (1, 12, 12))
    assert not looks_like_probabilities(_with_softmax_module()[:4], (1, 12, 12))


# --------------------------------------------------------------------------- every format, the same units


CNN_SOURCE = '''
from collections import OrderedDict
from torch import nn

class Cnn(nn.Sequential):
    def __init__(self):
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(4, 6, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()), ("fc1", nn.Linear(54, 8)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(8, 3))]))
'''


def test_every_import_format_lists_the_same_units(prepared_shapes, tmp_path, monkeypatch):
    from tests.synthetic import TINY_LAYERS
    from featviz.model import build

    code = tmp_path / "code"
    code.mkdir()
    (code / "samecnn.py").write_text(CNN_SOURCE)
    monkeypatch.syspath_prepend(str(code))
    torch.manual_seed(0)
    net = build(TINY_LAYERS, (1, 12, 12), 3).eval()
    x = torch.rand(2, 1, 12, 12)
    torch.save(net.state_dict(), tmp_path / "spec.pt")
    torch.jit.trace(net, x).save(str(tmp_path / "traced.pt"))
    torch.jit.script(net).save(str(tmp_path / "scripted.pt"))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes={"input": {0: batch}}), str(tmp_path / "exported.pt2"))
    configs = {
        "spec": {"layers": TINY_LAYERS, "import": {"path": str(tmp_path / "spec.pt")}},
        "class": {"import": {"path": str(tmp_path / "spec.pt"), "class": "samecnn:Cnn", "code_path": str(code)}},
        "traced": {"import": {"path": str(tmp_path / "traced.pt")}},
        "scripted": {"import": {"path": str(tmp_path / "scripted.pt")}},
        "export": {"import": {"path": str(tmp_path / "exported.pt2")}},
    }
    probe_x = torch.rand(5, 1, 12, 12)
    seen = {}
    for kind, cfg in configs.items():
        import_model(cfg, prepared_shapes, tmp_path / kind, device="cpu")
        loaded = load_model(tmp_path / kind)
        units = enumerate_units(loaded.net, loaded.input_shape, loaded.classes)
        layers = [(la["name"], la["units"]) for la in units["layers"]]
        acts = {}
        hooks = [m.register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o))
                 for n, m in loaded.net.named_modules() if n in dict(layers)]
        with torch.no_grad():
            acts["classes"] = loaded.net(probe_x)
        for h in hooks:
            h.remove()
        seen[kind] = (layers, acts)
    want_layers, want_acts = seen["spec"]
    assert [n for n, _ in want_layers] == ["conv1", "conv2", "fc1", "classes"]
    for kind, (layers, acts) in seen.items():
        assert layers == want_layers, kind
        for name, _ in layers:
            np.testing.assert_allclose(acts[name].numpy(), want_acts[name].numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{kind} {name}")


def test_select_dedupes_identical_outputs():
    found = [{"name": "a", "role": "block", "kind": "conv", "units": 2},
             {"name": "b", "role": "block", "kind": "conv", "units": 2, "same_as": "a"}]
    out = select(found, ["*"], [])
    assert [e["name"] for e in out] == ["a"] and out[0]["aliases"] == ["b"]
    assert [e["name"] for e in select(found, ["b"], [])] == ["b"]
