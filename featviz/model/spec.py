"""Spec-driven CNN builder and the seeds' networks as named presets.

A spec is a list of layers, each a dict with a `type`:
  conv (out, kernel, padding: same|valid|int, stride), relu, maxpool (kernel), avgpool (kernel),
  dropout (p), batchnorm, flatten, fc (out; the last fc may omit it: it gets one output per class),
  residual (a basic ResNet block keeping its input's channels: conv-bn-relu-conv-bn + skip, relu;
  kernel, default 3), globalavgpool (mean over the spatial positions).
Modules are named by type and count (conv1, relu1, pool1, drop1, bn1, flatten, fc1, ...), so layer
names in configs and reports are the same for every network built from a spec.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from ..errors import FeatvizError, why


def _conv(out, kernel, padding="same", stride=1):
    return {"type": "conv", "out": out, "kernel": kernel, "padding": padding, "stride": stride}


R, F, FLAT = {"type": "relu"}, {"type": "fc"}, {"type": "flatten"}


def _pool(k=2):
    return {"type": "maxpool", "kernel": k}


def _drop(p):
    return {"type": "dropout", "p": p}


def _fc(n):
    return {"type": "fc", "out": n}


class Residual(nn.Module):
    """conv-bn-relu-conv-bn plus the input, then relu (He et al.'s basic block, same width)."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C): the mean over positions."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def _bn():
    return {"type": "batchnorm"}


def _res():
    return {"type": "residual"}


_KERAS_CIFAR10_CNN = [
    _conv(32, 3), R, _conv(32, 3, "valid"), R, _pool(), _drop(0.25),
    _conv(64, 3), R, _conv(64, 3, "valid"), R, _pool(), _drop(0.25),
    FLAT, _fc(512), R, _drop(0.5), F,
]

PRESETS: dict[str, dict] = {
    "resnet-cifar": {
        "source": "featviz's default CIFAR-10/SVHN network, a small ResNet sized for CPU training: "
                  "conv 32, pool, conv 64, residual 64, pool, conv 128, pool, residual 128, global average, fc",
        "layers": [_conv(32, 3), _bn(), R, _pool(), _conv(64, 3), _bn(), R, _res(), _pool(),
                   _conv(128, 3), _bn(), R, _pool(), _res(), {"type": "globalavgpool"}, F],
    },
    "hvass-mnist": {
        "source": "seed 000 (Hvass-Labs TF tutorial 13-B): conv 16@5x5 same, pool 2, conv 36@5x5 same, pool 2, fc 128, fc 10",
        "layers": [_conv(16, 5), R, _pool(), _conv(36, 5), R, _pool(), FLAT, _fc(128), R, F],
    },
    "allibhai-mnist": {
        "source": "seed 001 MNIST (Allibhai's Keras CNN): conv 64@5x5 valid, pool 2, conv 32@5x5 valid, pool 2, fc",
        "layers": [_conv(64, 5, "valid"), R, _pool(), _conv(32, 5, "valid"), R, _pool(), FLAT, F],
    },
    "uygur-svhn": {
        "source": "seed 001 SVHN (Uygur's CNN-SVHN_Keras): conv-conv-pool-dropout twice, fc 512-dropout, fc",
        "layers": copy.deepcopy(_KERAS_CIFAR10_CNN),
    },
    "keras-cifar10": {
        "source": "seed 001 CIFAR-10 (Keras examples/cifar10_cnn.py): 32, 32, 64, 64 3x3 convs, dense 512",
        "layers": copy.deepcopy(_KERAS_CIFAR10_CNN),
    },
    "tf-cifar10": {
        "source": "seed 001 CIFAR-10 (the project's TF net): conv 32@5x5, conv 64@5x5 (each + pool 2), fc 1024, fc 512, fc 10",
        "layers": [_conv(32, 5), R, _pool(), _conv(64, 5), R, _pool(), FLAT, _fc(1024), R, _fc(512), R, _drop(0.5), F],
    },
}

LAYER_TYPES = ("conv", "relu", "maxpool", "avgpool", "dropout", "batchnorm", "flatten", "fc", "residual",
               "globalavgpool")
_PREFIX = {"conv": "conv", "relu": "relu", "maxpool": "pool", "avgpool": "pool", "dropout": "drop",
           "batchnorm": "bn", "fc": "fc", "residual": "res", "globalavgpool": "gap"}


def resolve_layers(model_cfg: dict) -> list[dict]:
    """The layer list of a model config: `layers` as given, or the named `preset`'s."""
    if model_cfg.get("layers"):
        return copy.deepcopy(model_cfg["layers"])
    preset = model_cfg.get("preset")
    if preset not in PRESETS:
        raise FeatvizError(f"model.preset: unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    return copy.deepcopy(PRESETS[preset]["layers"])


def build(layers: list[dict], input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Build an nn.Sequential from a spec, inferring every layer's input size."""
    if not layers or layers[-1].get("type") != "fc":
        raise FeatvizError("model.layers: the last layer must be {type: fc} (the class logits)")
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    counts: dict[str, int] = {}
    shape = (1, *input_shape)
    x = torch.zeros(shape)
    for i, spec in enumerate(layers):
        where = f"model.layers[{i}]"
        if not isinstance(spec, dict):
            raise FeatvizError(f"{where}: a layer is an object with a type, not {spec!r}")
        kind = spec.get("type")
        if kind not in LAYER_TYPES:
            raise FeatvizError(f"{where}.type: unknown layer type '{kind}' (known: {', '.join(LAYER_TYPES)})")
        last = i == len(layers) - 1
        try:
            if kind == "conv":
                if x.dim() != 4:
                    raise FeatvizError(f"{where}: conv after flatten")
                pad = spec.get("padding", "same")
                if isinstance(pad, str) and pad not in ("same", "valid"):
                    raise FeatvizError(f"{where}.padding: must be same, valid or an integer, not '{pad}'")
                stride = int(spec.get("stride", 1))
                if pad == "same" and stride != 1:
                    pad = int(spec["kernel"]) // 2
                mod = nn.Conv2d(x.shape[1], int(spec["out"]), int(spec["kernel"]), stride=stride, padding=pad)
            elif kind == "relu":
                mod = nn.ReLU()
            elif kind in ("maxpool", "avgpool"):
                cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
                mod = cls(int(spec.get("kernel", 2)))
            elif kind == "dropout":
                mod = nn.Dropout(float(spec.get("p", 0.5)))
            elif kind == "batchnorm":
                mod = nn.BatchNorm2d(x.shape[1]) if x.dim() == 4 else nn.BatchNorm1d(x.shape[1])
            elif kind == "flatten":
                mod = nn.Flatten()
            elif kind == "residual":
                if x.dim() != 4:
                    raise FeatvizError(f"{where}: residual after flatten")
                if spec.get("out") not in (None, x.shape[1]):
                    raise FeatvizError(f"{where}.out: a residual block keeps its input's {x.shape[1]} channels")
                mod = Residual(x.shape[1], int(spec.get("kernel", 3)))
            elif kind == "globalavgpool":
                if x.dim() != 4:
                    raise FeatvizError(f"{where}: globalavgpool after flatten")
                mod = GlobalAvgPool()
            else:  # fc
                out = spec.get("out")
                if last:
                    if out not in (None, num_classes):
                        raise FeatvizError(f"{where}.out: the last fc layer must have {num_classes} outputs (one per class), not {out}")
                    out = num_classes
                elif out is None:
                    raise FeatvizError(f"{where}.out: only the last fc layer may omit `out`")
                if x.dim() != 2:
                    mods["flatten"] = nn.Flatten()
                    x = x.flatten(1)
                mod = nn.Linear(x.shape[1], int(out))
        except KeyError as exc:  # a key the layer type needs
            raise FeatvizError(f"{where}.{exc.args[0]}: required for a {kind} layer") from None
        except (TypeError, ValueError) as exc:  # a value of the wrong type
            raise FeatvizError(f"{where} ({kind}): bad value: {exc}") from None
        if kind == "flatten":
            name = "flatten"
        else:
            prefix = _PREFIX[kind]
            counts[prefix] = counts.get(prefix, 0) + 1
            name = f"{prefix}{counts[prefix]}"
        mods[name] = mod
        try:
            with torch.no_grad():
                x = mod.eval()(x)
        except RuntimeError as exc:
            raise FeatvizError(f"{where} ({kind}): does not fit the input of shape {tuple(x.shape[1:])}: {why(exc)}") from None
        if x.numel() == 0:
            raise FeatvizError(f"{where} ({kind}): output is empty for input shape {tuple(input_shape)}")
    return nn.Sequential(mods)
