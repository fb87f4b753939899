"""From a run's `model` config to a network: a featviz spec (a preset or a layer list) or a
torchvision architecture by name. `describe` gives the part of model.json (and of the run id) that
says which architecture it is; `build_architecture` builds it for an input shape and class count."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import FeatvizError
from . import torchvision_archs
from .spec import build as build_spec
from .spec import resolve_layers


def is_torchvision(model_cfg: dict) -> bool:
    return bool(model_cfg.get("torchvision"))


def describe(model_cfg: dict) -> dict:
    """{"format": "featviz-spec", "layers": [...]} or {"format": "torchvision", "torchvision": name,
    "kwargs": {...}}."""
    if is_torchvision(model_cfg):
        name = model_cfg["torchvision"]
        torchvision_archs.check_name(name)
        return {"format": "torchvision", "torchvision": name,
                "kwargs": torchvision_archs.build_kwargs(name, model_cfg.get("kwargs"))}
    return {"format": "featviz-spec", "layers": resolve_layers(model_cfg)}


def build_architecture(arch: dict, input_shape, num_classes: int, where: str = "model") -> nn.Module:
    """The (randomly initialised) network `arch` describes, checked to take `input_shape`."""
    if arch["format"] == "featviz-spec":
        return build_spec(arch["layers"], tuple(input_shape), num_classes)
    if arch["format"] != "torchvision":
        raise FeatvizError(f"{where}: unknown architecture format '{arch['format']}'")
    net = torchvision_archs.build(arch["torchvision"], num_classes, arch.get("kwargs"), where)
    torchvision_archs.adapt_channels(net, int(input_shape[0]))
    check_fits(net, input_shape, f"{where}.torchvision: {arch['torchvision']}")
    return net


def error_line(exc: BaseException) -> str:
    """The telling line of an exception's message (TorchScript puts the real error last)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if "TorchScript interpreter" in lines[0] else lines[0]
    return line[:240]


def check_fits(net: nn.Module, input_shape, what: str) -> None:
    """One eval-mode forward pass on a zero input of `input_shape`, with a clear message if the
    network cannot take it (e.g. too small an image for AlexNet's poolings)."""
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError) as exc:
        raise FeatvizError(f"{what} does not take inputs of shape {tuple(input_shape)} "
                           f"({error_line(exc)})") from None
    finally:
        net.train(was)
