"""Layers grouped by stage or block from their names alone (featviz/report/groups.py), on the
module names of the networks users bring: a CIFAR ResNet-56 (its convs), torchvision's
MobileNetV2 and EfficientNet-B0 (their default targets, and every module of EfficientNet's
`features`), a network under a wrapper's prefix; the quick MNIST net stays flat."""
from __future__ import annotations

from featviz.report.groups import FLAT_LAYERS, group_layers, neighbours


def _layers(names):
    return [{"name": n, "units": 4, "cells": [1] if n.endswith("conv1") else [], "n_dead": 1, "n_weak": 0}
            for n in names]


def _shape(segments):
    return [(s["name"], len(s["layers"])) if s["group"] else [la["name"] for la in s["layers"]] for s in segments]


RESNET56 = ["conv1"] + [f"layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in range(9) for c in (1, 2)] + ["classes"]


def test_a_small_network_is_flat():
    names = ["conv1", "conv2", "fc1", "classes"]
    assert _shape(group_layers(_layers(names))) == [names]
    names = [f"features.{i}" for i in range(FLAT_LAYERS - 1)] + ["classes"]
    assert _shape(group_layers(_layers(names))) == [names]
    assert group_layers([]) == []


def test_resnet56_by_stage_with_blocks_as_sections():
    segs = group_layers(_layers(RESNET56))
    assert _shape(segs) == [["conv1"], ("layer1", 18), ("layer2", 18), ("layer3", 18), ["classes"]]
    layer2 = segs[2]
    assert [s["name"] for s in layer2["sections"]] == [f"layer2.{b}" for b in range(9)]
    assert all(len(s["layers"]) == 2 for s in layer2["sections"])
    assert (layer2["units"], layer2["visualized"], layer2["dead"]) == (72, 9, 18)
    # the order of the layers is kept, every layer once
    flat = [la["name"] for s in segs for la in s["layers"]]
    assert flat == RESNET56


def test_a_prefix_holding_everything_is_descended_into():
    mobilenet = ["features.0.0", "features.0"] + [n for i in range(1, 19) for n in (f"features.{i}.conv.2", f"features.{i}")]
    segs = group_layers(_layers(mobilenet + ["classes"]))
    assert [s["name"] for s in segs if s["group"]] == [f"features.{i}" for i in range(19)]
    wrapped = [f"model.{n}" for n in RESNET56[:-1]] + ["classes"]  # a LightningModule's attribute
    assert _shape(group_layers(_layers(wrapped)))[1:4] == [("model.layer1", 18), ("model.layer2", 18), ("model.layer3", 18)]


def test_big_stages_get_sections_by_block():
    names = ["features.0.0", "features.0"]
    for st, blocks in ((1, 1), (2, 2), (6, 4)):
        for b in range(blocks):
            names += [f"features.{st}.{b}.block.{m}" for m in range(6)] + [f"features.{st}.{b}"]
        names.append(f"features.{st}")
    segs = group_layers(_layers(names + ["classes"]))
    six = next(s for s in segs if s["name"] == "features.6")
    assert [s["name"] for s in six["sections"]] == ["features.6.0", "features.6.1", "features.6.2", "features.6.3", None]
    one = next(s for s in segs if s["name"] == "features.1")
    assert [s["name"] for s in one["sections"]] == [None]  # 8 layers: no sections


def test_neighbours():
    n = neighbours(_layers(["a", "b", "c"]))
    assert n["a"][0] is None and n["a"][1]["name"] == "b" and n["c"][1] is None and n["b"][0]["name"] == "a"
