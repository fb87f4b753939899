"""Load a model folder, whatever wrote it (train, or import-model in any format)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import FeatvizError
from ..artifacts import read_model_json
from . import torchvision_archs
from .architecture import build_named
from .checkpoint import load_state_dict, load_weights
from .formats import build_class, from_export, from_torchscript, guard_inputs
from .hookable import no_inplace
from .loaded import LoadedModel
from .logits import strip_softmax
from .spec import build

MODEL_FORMATS = ("featviz-spec", "torchvision", "timm", "class", "torchscript", "export")


def build_network(model_dir: Path, meta: dict, trust: bool = False) -> nn.Module:
    """The network of a model folder, weights loaded, in eval mode, safe to hook (no in-place
    activations; a final softmax removed as at import)."""
    model_dir = Path(model_dir)
    fmt = meta.get("format", "featviz-spec")
    weights = model_dir / "model.pt"
    shape = tuple(meta["input_shape"])
    if fmt == "featviz-spec":
        net = build(meta["layers"], shape, len(meta["classes"]))
        load_weights(net, load_state_dict(weights, trust), weights)
        return no_inplace(net).eval()
    if fmt in ("torchvision", "timm"):
        net = build_named(meta, int(meta.get("num_outputs") or len(meta["classes"])))
        load_weights(net, load_state_dict(weights, trust), weights)
        torchvision_archs.adapt_channels(net, shape[0])
        return no_inplace(net).eval()
    if fmt == "class":
        imp = meta["import"]
        net = build_class(imp["class"], imp.get("kwargs"), imp.get("code_path"))
        load_weights(net, load_state_dict(weights, trust), weights)
    elif fmt == "torchscript":
        net, _ = from_torchscript(weights, shape)
    elif fmt == "export":
        net, _ = from_export(weights, shape)
    else:
        raise FeatvizError(f"model folder {model_dir}: unknown model format '{fmt}' in model.json "
                           f"(known: {', '.join(MODEL_FORMATS)})")
    net = no_inplace(guard_inputs(net)).eval()
    if (meta.get("output") or {}).get("softmax_removed"):
        strip_softmax(net, shape)
    return net


def load_model(model_dir: Path, trust: bool = False) -> LoadedModel:
    """Load a model folder written by `featviz train` or `featviz import-model`."""
    model_dir = Path(model_dir)
    meta = read_model_json(model_dir)
    net = build_network(model_dir, meta, trust)
    return LoadedModel(net, list(meta["classes"]), tuple(meta["input_shape"]), meta["mean"], meta["std"], meta)
