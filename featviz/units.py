"""Enumerate what can be visualized in any nn.Module: every Conv2d (one unit per channel), every
Linear except the one producing the class logits (one unit per output), and the classes.

Shapes come from one dummy forward pass with hooks, so it works for any module tree, not only for
networks built from a spec.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import FeatvizError

CLASS_LAYER = "classes"


def enumerate_units(net: nn.Module, input_shape, classes: list[str]) -> dict:
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    hooks = []
    for name, mod in net.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: seen.append((name, m, o)) if isinstance(o, torch.Tensor) else None))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != len(classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FeatvizError(f"the model's output has shape {shape}; expected (batch, {len(classes)}) class logits")
    layers = []
    logits_module = None
    for name, mod, o in seen:
        if o is out or (o.shape == out.shape and torch.equal(o, out) and name == seen[-1][0]):
            logits_module = name
            continue
        if any(layer["name"] == name for layer in layers):
            continue  # a module called twice is listed once
        kind = "conv" if isinstance(mod, nn.Conv2d) else "dense"
        if kind == "conv" and o.dim() != 4:
            continue
        layers.append({"name": name, "kind": kind, "units": int(o.shape[1]), "output_shape": list(o.shape[1:]),
                       "receptive_field": None})
    if any(layer["name"] == CLASS_LAYER for layer in layers):
        raise FeatvizError(f"the model has a module named '{CLASS_LAYER}', a name featviz reserves for the class logits")
    layers.append({"name": CLASS_LAYER, "kind": "class", "units": len(classes), "output_shape": [len(classes)],
                   "module": logits_module})
    return {"input_shape": list(input_shape), "classes": list(classes), "layers": layers}


def selected_units(layer: dict, ascent_cfg: dict) -> list[int]:
    """The units of a layer that the config asks to visualize: all of them, unless
    `ascent.layers` leaves the layer out or `ascent.units` lists some."""
    wanted_layers = ascent_cfg.get("layers")
    if wanted_layers and layer["name"] not in wanted_layers:
        return []
    picked = (ascent_cfg.get("units") or {}).get(layer["name"])
    return sorted(set(picked)) if picked else list(range(layer["units"]))


def chunks(units: list[int], chunk_size: int) -> list[list[int]]:
    return [units[s:s + chunk_size] for s in range(0, len(units), chunk_size)]


def n_chunks(n_units: int, chunk_size: int) -> int:
    return math.ceil(n_units / chunk_size)


def find_layer(units: dict, name: str) -> dict:
    for layer in units["layers"]:
        if layer["name"] == name:
            return layer
    known = ", ".join(layer["name"] for layer in units["layers"])
    raise FeatvizError(f"unknown layer '{name}' (known: {known})")
