"""Seed fidelity (issue 13 item 6): the recipe values and options that follow the seeds' code."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from featviz.ascent import get_recipe, visualize
from featviz.ascent import objectives as O
from featviz.ascent.hooks import ActivationReader
from featviz.ascent.regularizers import standardize_input
from featviz.ascent.render import input_affine


def test_recipe_values_follow_the_seeds():
    assert get_recipe("hvass")["class_steps"] == 30          # seed 000's 10-class figure
    y = get_recipe("yosinski")                                 # seed 001: np.zeros start, img*0.9, |img| clip
    assert (y["init_offset"], y["init_scale"], y["center"], y["decay"]) == (0.0, 0.0, 0.0, 0.1)
    assert (y["blur_sigma"], y["blur_ksize"], y["step"]) == (0.8, 3, "rms")
    assert get_recipe("tence-median")["rectify"] is True     # seed 003: Keras layers, after the ReLU
    assert get_recipe("oip-multiscale")["standardize_space"] == "pixel"


def test_rectify_reads_the_unit_after_a_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    x = torch.randn(2, 1, 8, 8)
    with ActivationReader(net, ["0", "1"]) as read:
        acts = read(x)
    idx = torch.arange(2)
    rec = dict(get_recipe("tence-median"))
    got = O.for_kind("conv", "0", [0, 1], rec)(acts, idx)
    want = O.channel("1", [0, 1], "sum")(acts, idx)         # the ReLU module's own output
    assert torch.allclose(got, want)
    plain = O.for_kind("conv", "0", [0, 1], dict(rec, rectify=False))(acts, idx)
    assert not torch.allclose(plain, got)                      # pre-ReLU sums include the negatives


def test_standardization_in_the_input_space():
    mean, std = torch.tensor([0.1307]).view(1, 1, 1, 1), torch.tensor([0.3081]).view(1, 1, 1, 1)
    a, b = input_affine(lambda v: (v - mean) / std, 1, "cpu")
    assert torch.allclose(a, 1 / std) and torch.allclose(b, -mean / std)
    x = torch.rand(3, 1, 9, 9)
    z = (standardize_input(x, (a, b)) - mean) / std            # what the network takes
    assert torch.allclose(z.flatten(1).mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.flatten(1).std(1, unbiased=False), torch.ones(3), atol=1e-4)


def test_oip_multiscale_in_the_input_space_runs_and_differs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    norm = lambda v: (v - 0.1307) / 0.3081  # noqa: E731
    ov = {"steps": 6, "snapshots": 0, "robustness_samples": 0, "clamp": False}
    pix = visualize(net, "0", [0], "conv", (1, 8, 8), normalize=norm, recipe="oip-multiscale", overrides=ov)
    inp = visualize(net, "0", [0], "conv", (1, 8, 8), normalize=norm, recipe="oip-multiscale",
                    overrides={**ov, "standardize_space": "input"})
    z = norm(torch.from_numpy(inp.images))
    assert float(z.std()) == pytest.approx(1.0, abs=0.05)     # the last step standardized it
    assert float(torch.from_numpy(pix.images).std()) == pytest.approx(0.2, abs=0.02)
