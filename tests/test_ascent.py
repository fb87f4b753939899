"""Tests of featviz.ascent on a tiny synthetic CNN (CPU, a few seconds)."""
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from featviz.ascent import AscentResult, RecipeError, get_recipe, list_recipes, visualize
from featviz.ascent.render import unit_seed

SHAPE = (1, 12, 12)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(4 * 5 * 5, 8)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(8, 3)),
    ]))
    return m.eval()


CASES = [("conv", "conv1", [0, 1, 2, 3]), ("dense", "fc1", [0, 5, 7]), ("class", None, [0, 1, 2])]


@pytest.mark.parametrize("kind,layer,units", CASES)
def test_hvass_shapes_range_and_stats(net, kind, layer, units):
    r = visualize(net, layer, units, kind, SHAPE)
    assert isinstance(r, AscentResult)
    assert r.images.dtype == np.float32 and r.images.shape == (len(units),) + SHAPE
    assert r.images.min() >= 0.0 and r.images.max() <= 1.0
    assert r.objective.dtype == np.float32 and r.objective.shape == (len(units),)
    assert len(r.stats) == len(units)
    json.dumps(r.stats)
    json.dumps(r.recipe)
    for u, s in zip(units, r.stats):
        assert s["unit"] == u
        for key in ("objective", "steps", "converged", "nonfinite", "dead"):
            assert key in s
        assert s["steps"] == 30  # conv features and the 10-class figure alike (seed 000)
        assert s["nonfinite"] is False
        if kind == "class":
            assert 0.0 <= s["target_softmax"] <= 1.0 and 0 <= s["predicted"] < 3
    assert r.recipe["name"] == "hvass"
    for step, snap in r.snapshots.items():
        assert isinstance(step, int) and snap.shape == r.images.shape and snap.dtype == np.float32


def test_hvass_objective_rises(net):
    r = visualize(net, None, [0, 1, 2], "class", SHAPE)
    for s in r.stats:
        assert s["objective"] > s["initial_objective"]


def test_hvass_matches_seed_000_loop(net):
    """Literal re-implementation of seed 000's optimize_image for one feature."""
    unit, seed = 2, 7
    g = torch.Generator().manual_seed(unit_seed(seed, unit, 0))
    image = 0.45 + 0.1 * torch.rand((1,) + SHAPE, generator=g)  # 0.1*uniform+0.45
    for _ in range(30):
        x = image.clone().requires_grad_(True)
        loss = net.conv1(x)[0, unit].mean()
        (grad,) = torch.autograd.grad(loss, x)
        grad = grad.numpy().astype(np.float32)
        step_size = 1.0 / (grad.std() + 1e-8)
        image = torch.clamp(image + torch.from_numpy(step_size * grad), 0.0, 1.0)
    r = visualize(net, "conv1", [unit], "conv", SHAPE, seed=seed)
    np.testing.assert_allclose(r.images[0], image[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("kind,layer,units", CASES)
def test_batch_equals_separate_runs(net, kind, layer, units):
    """Per-element step normalization: a batch gives the images of N separate
    runs (up to BLAS/oneDNN batch-size-dependent rounding, ~1e-7)."""
    ov = {"jitter": 1}
    r = visualize(net, layer, units, kind, SHAPE, overrides=ov, seed=3)
    for i, u in enumerate(units):
        one = visualize(net, layer, [u], kind, SHAPE, overrides=ov, seed=3)
        np.testing.assert_allclose(r.images[i], one.images[0], atol=1e-5)
        assert r.stats[i]["steps"] == one.stats[0]["steps"]


@pytest.mark.parametrize("kind,layer,units", CASES)
def test_same_seed_is_byte_identical(net, kind, layer, units):
    a = visualize(net, layer, units, kind, SHAPE, seed=11, overrides={"jitter": 2})
    b = visualize(net, layer, units, kind, SHAPE, seed=11, overrides={"jitter": 2})
    assert a.images.tobytes() == b.images.tobytes()
    assert json.dumps(a.stats) == json.dumps(b.stats)
    c = visualize(net, layer, units, kind, SHAPE, seed=12, overrides={"jitter": 2})
    assert c.images.tobytes() != a.images.tobytes()


def test_normalize_is_applied(net):
    calls = []

    def normalize(x):
        calls.append(1)
        return (x - 0.13) / 0.31

    visualize(net, "fc1", [1], "dense", SHAPE, normalize=normalize)
    assert calls


def test_list_and_get_recipes():
    names = list_recipes()
    for n in ("hvass", "chollet", "yosinski", "tence-median", "oip-multiscale", "lucid"):
        assert n in names
    r = get_recipe("hvass", {"steps": 5})
    assert r["name"] == "hvass" and r["steps"] == 5 and r["class_steps"] == 30
    assert r["init_offset"] == 0.45 and r["init_scale"] == 0.1 and r["step"] == "std"
    with pytest.raises(RecipeError, match="unknown recipe 'nope'"):
        get_recipe("nope")
    with pytest.raises(RecipeError, match="bogus"):
        get_recipe("hvass", {"bogus": 1})
    with pytest.raises(RecipeError, match="steps"):
        get_recipe("hvass", {"steps": "many"})
    with pytest.raises(RecipeError, match="step"):
        get_recipe("hvass", {"step": "sideways"})
    with pytest.raises(RecipeError):
        get_recipe("hvass", {"clamp": 1})


def test_bad_arguments(net):
    with pytest.raises(ValueError):
        visualize(net, "conv1", [0], "weird", SHAPE)
    with pytest.raises(KeyError, match="nolayer"):
        visualize(net, "nolayer", [0], "conv", SHAPE)
    with pytest.raises(ValueError):
        visualize(net, "fc1", [0], "class", SHAPE)
    with pytest.raises(RecipeError):
        visualize(net, "conv1", [0], "conv", SHAPE, recipe="nope")


def test_channels_last_falls_back_where_the_forward_cannot_take_nhwc(capsys):
    """A user's forward that calls `.view` on a conv output fails on NHWC tensors: the ascent then
    runs contiguous (and says so) instead of failing; a plain network keeps channels_last."""
    import torch
    from torch import nn

    from featviz.ascent_job import channels_last_works
    from featviz.model import LoadedModel

    class Viewing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(self.conv(x).view(x.size(0), -1))

    def model(net):
        return LoadedModel(net, ["a", "b", "c"], (1, 6, 6), [0.0], [1.0])

    plain = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    assert channels_last_works(model(plain), torch.device("cpu"), True)
    assert not channels_last_works(model(plain), torch.device("cpu"), False)
    viewing = Viewing()
    assert not channels_last_works(model(viewing), torch.device("cpu"), True)
    assert "running contiguous" in capsys.readouterr().out
    assert viewing.conv.weight.is_contiguous()  # handed back as it was
