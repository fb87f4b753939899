"""Make a network safe to read with forward hooks."""
from __future__ import annotations

from torch import nn


def no_inplace(net: nn.Module) -> nn.Module:
    """Turn off in-place activations (torchvision's `ReLU(inplace=True)`): an in-place ReLU
    overwrites the output of the conv or norm before it, so a hook holding that output would see
    post-activation values, and the activation's own output would be its input. Values and
    gradients of the network are unchanged; it costs one tensor per activation."""
    for mod in net.modules():
        if getattr(mod, "inplace", False) is True and not isinstance(mod, (nn.Dropout, nn.Dropout2d)):
            mod.inplace = False
    return net
