"""From a run's `model` config to a network: a featviz spec (a preset or a layer list) or a
torchvision or timm architecture by name. `describe` gives the part of model.json (and of the run id) that
says which architecture it is; `build_architecture` builds it for an input shape and class count."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import FeatvizError
from . import timm_archs, torchvision_archs
from .spec import build as build_spec
from .spec import resolve_layers


# the model zoos whose architectures a config names: model.torchvision or model.timm
ZOOS = {"torchvision": torchvision_archs, "timm": timm_archs}


def zoo_of(model_cfg: dict) -> str | None:
    """"torchvision" or "timm" where the model section names an architecture of that zoo, else None."""
    return next((zoo for zoo in ZOOS if model_cfg.get(zoo)), None)


def is_torchvision(model_cfg: dict) -> bool:
    return zoo_of(model_cfg) == "torchvision"


def describe(model_cfg: dict) -> dict:
    """{"format": "featviz-spec", "layers": [...]} or {"format": "torchvision"|"timm", <zoo>: name,
    "kwargs": {...}}."""
    zoo = zoo_of(model_cfg)
    if zoo:
        name = model_cfg[zoo]
        ZOOS[zoo].check_name(name, f"model.{zoo}")
        return {"format": zoo, zoo: name, "kwargs": ZOOS[zoo].build_kwargs(name, model_cfg.get("kwargs"))}
    return {"format": "featviz-spec", "layers": resolve_layers(model_cfg)}


def build_named(arch: dict, num_classes: int, where: str = "model") -> nn.Module:
    """A zoo's architecture (`describe`'s torchvision or timm form) with `num_classes` outputs."""
    zoo = arch["format"]
    if zoo not in ZOOS:
        raise FeatvizError(f"{where}: unknown architecture format '{zoo}'")
    return ZOOS[zoo].build(arch[zoo], num_classes, arch.get("kwargs"), where)


def build_architecture(arch: dict, input_shape, num_classes: int, where: str = "model") -> nn.Module:
    """The (randomly initialised) network `arch` describes, checked to take `input_shape`."""
    if arch["format"] == "featviz-spec":
        return build_spec(arch["layers"], tuple(input_shape), num_classes)
    net = build_named(arch, num_classes, where)
    torchvision_archs.adapt_channels(net, int(input_shape[0]))
    check_fits(net, input_shape, f"{where}.{arch['format']}: {arch[arch['format']]}")
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
