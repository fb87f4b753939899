"""The spec builder's new layer types and presets."""
from __future__ import annotations

import pytest
import torch

from featviz.errors import FeatvizError
from featviz.model import PRESETS, build, resolve_layers
from featviz.units import enumerate_units


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds(name):
    shape = (1, 28, 28) if "mnist" in name else (3, 32, 32)
    net = build(resolve_layers({"preset": name}), shape, 10)
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_resnet_preset_units_are_named_by_block():
    net = build(resolve_layers({"preset": "resnet-cifar"}), (3, 32, 32), 10)
    names = [layer["name"] for layer in enumerate_units(net, (3, 32, 32), list("abcdefghij"))["layers"]]
    assert names == ["conv1", "conv2", "res1.conv1", "res1.conv2", "conv3", "res2.conv1", "res2.conv2", "classes"]


def test_residual_keeps_channels():
    with pytest.raises(FeatvizError, match=r"model.layers\[1\].out: a residual block keeps its input's 4 channels"):
        build([{"type": "conv", "out": 4, "kernel": 3}, {"type": "residual", "out": 8}, {"type": "fc"}], (1, 8, 8), 2)
