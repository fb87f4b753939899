"""Stage-2 engine tests: recipes x kinds, objectives, parameterizations,
transforms, regularizers, optimizer features, metrics, chunk size."""
import json
from collections import OrderedDict

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from torch import nn

from featviz.ascent import (RecipeError, auto_chunk_size, class_confidence, get_recipe, list_recipes,
                            visualize)
from featviz.ascent import objectives as O
from featviz.ascent import optimize, param, regularizers, transforms
from featviz.ascent.hooks import OUTPUT, ActivationReader


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(c=1, hw=12, seed=0):
    torch.manual_seed(seed)
    side = (hw - 2) // 2
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 4, 3)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(4 * side * side, 8)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(8, 3)),
    ])).eval()


@pytest.fixture(scope="module")
def net():
    return tiny()


KINDS = [("conv", "conv1", [0, 3]), ("dense", "fc1", [1, 6]), ("class", None, [0, 2])]


@pytest.mark.parametrize("recipe", ["hvass", "chollet", "yosinski", "tence-median", "oip-multiscale", "lucid"])
@pytest.mark.parametrize("kind,layer,units", KINDS)
def test_every_recipe_on_every_kind(net, recipe, kind, layer, units):
    ov = {"steps": 4, "class_steps": 4, "dead_retries": 1, "robustness_samples": 1}
    r = visualize(net, layer, units, kind, (1, 12, 12), recipe=recipe, overrides=ov)
    assert r.images.shape == (2, 1, 12, 12) and r.images.dtype == np.float32
    assert np.isfinite(r.images).all() and r.images.min() >= 0 and r.images.max() <= 1
    assert r.recipe["name"] == recipe and r.recipe["steps"] == 4
    json.dumps(r.stats)
    assert all(s["steps"] <= 4 for s in r.stats)


@pytest.mark.parametrize("recipe", ["lucid", "yosinski", "hvass"])
def test_rgb_odd_size(recipe):
    net = tiny(c=3, hw=13)
    ov = {"steps": 3, "class_steps": 3, "dead_retries": 0, "robustness_samples": 0}
    r = visualize(net, None, [0, 1], "class", (3, 13, 13), recipe=recipe, overrides=ov)
    assert r.images.shape == (2, 3, 13, 13) and np.isfinite(r.images).all()


# ---------------------------------------------------------------- objectives
def test_objective_algebra(net):
    x = torch.rand(2, 1, 12, 12)
    idx = torch.arange(2)
    with ActivationReader(net, [OUTPUT, "conv1", "fc1"]) as read:
        acts = read(x)
    ch = O.channel("conv1", [0, 3])
    want = torch.stack([acts["conv1"][0, 0].mean(), acts["conv1"][1, 3].mean()])
    assert torch.allclose(ch(acts, idx), want)
    assert torch.allclose(O.channel("conv1", [0, 3], "sum")(acts, idx), want * 100)
    nr = O.neuron("conv1", [0, 3], pos=(2, 4))(acts, idx)
    assert torch.allclose(nr, torch.stack([acts["conv1"][0, 0, 2, 4], acts["conv1"][1, 3, 2, 4]]))
    cl = O.class_logit([2, 1])(acts, idx)
    assert torch.allclose(cl, torch.stack([acts[OUTPUT][0, 2], acts[OUTPUT][1, 1]]))
    dn = O.dense("fc1", [5, 5])(acts, idx)
    combo = 2 * ch - O.dense("fc1", [5, 5]) + 1.5
    assert torch.allclose(combo(acts, idx), 2 * want - dn + 1.5)
    assert torch.allclose((-ch)(acts, idx), -want)
    assert torch.allclose((ch / 2)(acts, idx), want / 2)
    assert combo.layers == {"conv1", "fc1"}
    lay = O.layer("conv1")(acts, idx)
    assert torch.allclose(lay, (acts["conv1"] ** 2).flatten(1).mean(1))
    div = O.diversity("conv1")(acts, idx)
    assert div.shape == (2,) and torch.all(div <= 1.0001)
    same = O.diversity("conv1")({"conv1": acts["conv1"][[0, 0]]}, idx)
    assert torch.allclose(same, torch.full((2,), 0.5))  # identical pair: cos=1, /n


def test_reader_stops_early():
    calls = []
    net = tiny()
    net.fc2.register_forward_hook(lambda *a: calls.append(1))
    with ActivationReader(net, ["conv1"]) as read:
        read(torch.rand(1, 1, 12, 12))
    assert not calls
    with ActivationReader(net, [OUTPUT]) as read:
        read(torch.rand(1, 1, 12, 12))
    assert calls


def test_neuron_and_diversity_recipes(net):
    r = visualize(net, "conv1", [1, 2], "conv", (1, 12, 12),
                  overrides={"conv_objective": "neuron", "neuron_pos": [3, 3], "diversity": 0.1,
                             "steps": 5})
    assert r.images.shape == (2, 1, 12, 12)


# ------------------------------------------------------------ parameterization
def test_pixel_inits():
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    x = param.pixel_init(get_recipe("hvass"), (1, 8, 8), gens)
    assert x.min() >= 0.45 and x.max() <= 0.55
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    c = param.pixel_init(get_recipe("chollet"), (3, 8, 8), gens)
    assert c.min() >= 128 / 255 and c.max() <= 148 / 255
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    n = param.pixel_init(get_recipe("tence-median"), (3, 40, 40), gens)
    assert abs(float(n.std()) - 10 / 255) < 0.005


@pytest.mark.parametrize("scales,weights", [([3, 7, 14, 28], [0.5] * 4), ([2, 5], [1.0, 0.2]), ([4, 9, 17, 30, 64], [1] * 5)])
def test_multiscale_any_scales(scales, weights):
    g = torch.Generator().manual_seed(0)
    z = param.multiscale_noise((1, 28, 20), scales, weights, g)
    assert z.shape == (1, 28, 20)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std(unbiased=False)) - 1) < 1e-4
    # coarse-only init is smooth: neighbouring pixels correlate strongly
    coarse = param.multiscale_noise((1, 28, 28), [3], [1.0], torch.Generator().manual_seed(1))
    assert float((coarse[:, 1:] - coarse[:, :-1]).abs().mean()) < 0.3


@pytest.mark.parametrize("shape", [(1, 12, 12), (3, 13, 17), (3, 32, 32)])
def test_fourier_param(shape):
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    p = param.FourierParam(shape, gens)
    img = p.image()
    assert img.shape == (2,) + shape and img.min() > 0 and img.max() < 1
    assert abs(float(img.detach().mean()) - 0.5) < 0.05  # sd 0.01 spectrum -> near gray
    img.sum().backward()
    assert p.tensor.grad is not None and torch.isfinite(p.tensor.grad).all()
    q = param.FourierParam(shape, gens, sigmoid=False, decorrelate=False)
    v = q.image()
    assert v.min() >= 0 and v.max() <= 1


def test_fourier_spectral_decay():
    f = param.rfft2d_freqs(8, 8)
    assert f.shape == (8, 5) and f[0, 0] == 0 and np.isclose(f[0, 4], 0.5)


# ---------------------------------------------------------------- transforms
def test_transforms_keep_size_and_are_per_element():
    x = torch.rand(3, 1, 16, 16, requires_grad=True)
    for name in ("lucid", "keras-project", "google", "none"):
        tf = transforms.build(dict(get_recipe("lucid"), transforms=name, jitter=1), (16, 16))
        gens = [torch.Generator().manual_seed(i) for i in range(3)]
        y = tf(x, gens)
        assert y.shape == x.shape
        y.sum().backward()
        gens1 = [torch.Generator().manual_seed(1)]
        y1 = tf(x[1:2], gens1)
        assert torch.allclose(y[1:2], y1, atol=1e-6)


def test_jitter_is_integer_shift():
    x = torch.arange(36.0).view(1, 1, 6, 6) / 36
    tf = transforms.Compose([{"type": "jitter", "d": 1}], (6, 6))
    y = tf(x, [torch.Generator().manual_seed(0)])
    # interior values are exactly values of x (a translation, no resampling)
    assert set(np.round(y[0, 0, 2:4, 2:4].numpy().ravel(), 6)) <= set(np.round(x.numpy().ravel(), 6))


def test_batched_jitter_equals_per_element_crops():
    """The one-gather jitter gives, element by element, the crop of the padded image at that
    element's own offsets, and the gradient of a plain crop: nothing leaks between elements."""
    x = torch.rand(4, 3, 9, 7, requires_grad=True)
    d = 2
    offsets = np.array([[0, 4], [2, 2], [4, 0], [1, 3]])
    y = transforms._jitter(x, d, offsets, 0.5)
    weights = torch.randn(y.shape)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    padded = torch.nn.functional.pad(x.detach(), (d, d, d, d), value=0.5)
    for k in range(4):
        oy, ox = (int(v) for v in offsets[k])
        assert torch.equal(y[k], padded[k, :, oy:oy + 9, ox:ox + 7])
        expected = torch.zeros(3, 9 + 2 * d, 7 + 2 * d)
        expected[:, oy:oy + 9, ox:ox + 7] = weights[k]
        assert torch.equal(grad[k], expected[:, d:d + 9, d:d + 7])
    assert y.is_contiguous()


def test_unknown_transform_preset(net):
    from featviz.ascent import RecipeError
    with pytest.raises(RecipeError, match="preset"):
        visualize(net, "conv1", [0], "conv", (1, 12, 12), overrides={"transforms": "wobble"})


# -------------------------------------------------------------- regularizers
def test_blur_and_median_match_scipy():
    x = torch.rand(2, 3, 11, 9)
    b = regularizers.gaussian_blur(x, 0.8).numpy()
    want = ndi.gaussian_filter(x.numpy(), sigma=[0, 0, 0.8, 0.8], mode="mirror", truncate=4.0)
    np.testing.assert_allclose(b, want, atol=1e-5)
    m = regularizers.median_filter(x, 5).numpy()
    np.testing.assert_allclose(m, ndi.median_filter(x.numpy(), size=(1, 1, 5, 5), mode="mirror"), atol=1e-6)


def test_pixel_regularizers():
    x = torch.rand(2, 3, 8, 8)
    d = regularizers.decay(x, 0.1)
    assert torch.allclose(d - 0.5, 0.9 * (x - 0.5), atol=1e-6)
    c = regularizers.clip_small_norm(x, 50)
    norms = (x - 0.5).norm(dim=1)
    for i in range(2):
        thr = torch.quantile(norms[i].flatten(), 0.5)
        assert torch.all(c[i][:, norms[i] < thr] == 0.5) and torch.all(c[i][:, norms[i] >= thr] == x[i][:, norms[i] >= thr])
    g = torch.randn_like(x)
    cc = regularizers.clip_small_contribution(x, g, 90)
    assert float((cc == 0.5).float().mean()) > 0.85
    s = regularizers.standardize(x, 0.5, 0.2)
    assert torch.allclose(s.flatten(1).mean(1), torch.full((2,), 0.5), atol=1e-5)
    assert torch.allclose(s.flatten(1).std(1, unbiased=False), torch.full((2,), 0.2), atol=1e-4)
    flat = torch.full((1, 1, 4, 4), 0.3)
    assert float(regularizers.total_variation(flat)) == 0
    assert float(regularizers.lp_norm(flat, 2, 0.5)) == pytest.approx(0.2)
    assert float(regularizers.l2(flat, 0.5)) == pytest.approx(0.04)


def test_penalties_reduce_variation(net):
    ov = {"steps": 20, "robustness_samples": 0}
    a = visualize(net, "conv1", [1], "conv", (1, 12, 12), recipe="lucid", overrides=ov)
    b = visualize(net, "conv1", [1], "conv", (1, 12, 12), recipe="lucid",
                  overrides=dict(ov, tv_weight=50.0))
    tv = lambda im: float(regularizers.total_variation(torch.from_numpy(im)))  # noqa: E731
    assert tv(b.images) < tv(a.images)


def test_final_step_unregularized(net):
    ov = {"steps": 5, "median_size": 3, "median_every": 1, "dead_retries": 0}
    a = visualize(net, "conv1", [1], "conv", (1, 12, 12), overrides=dict(ov, final_unregularized=True))
    b = visualize(net, "conv1", [1], "conv", (1, 12, 12), overrides=ov)
    assert not np.allclose(a.images, b.images)


# ----------------------------------------------------------------- optimizer
def test_snapshot_steps_log_spaced():
    # seed 002: 600 epochs, 6 levels -> steps 0, 9, 18, 36, 72, 144, 288, 599
    assert optimize.snapshot_steps(600, 6) == [0, 9, 18, 36, 72, 144, 288, 599]
    assert optimize.snapshot_steps(30, 0) == []
    assert optimize.snapshot_steps(5, 7) == [0, 1, 2, 4]


def test_snapshots_in_result(net):
    r = visualize(net, "conv1", [0, 1], "conv", (1, 12, 12), overrides={"snapshots": 3})
    assert sorted(r.snapshots) == optimize.snapshot_steps(30, 3)
    assert all(v.shape == r.images.shape for v in r.snapshots.values())
    assert visualize(net, "conv1", [0], "conv", (1, 12, 12), overrides={"snapshots": 0}).snapshots == {}


def test_lr_schedules():
    assert optimize.lr_factor("constant", 5, 10, 0.1) == 1
    assert optimize.lr_factor("linear", 9, 10, 0.1) == pytest.approx(0.1)
    assert optimize.lr_factor("cosine", 0, 10, 0.1) == pytest.approx(1.0)
    assert optimize.lr_factor("cosine", 9, 10, 0.1) == pytest.approx(0.1)
    assert optimize.lr_factor("exp", 9, 10, 0.01) == pytest.approx(0.01)
    r = visualize(tiny(), None, [1], "class", (1, 12, 12), overrides={"lr_schedule": "cosine"})
    assert r.stats[0]["objective"] > r.stats[0]["initial_objective"]


def test_step_rules_per_element():
    g = torch.randn(3, 1, 5, 5) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    for rule in ("std", "rms"):
        r = optimize.StepRule(dict(get_recipe("hvass"), step=rule), tuple(g.shape), "cpu")
        d = r(g, torch.arange(3), 1.0).flatten(1)
        stat = d.std(1, unbiased=False) if rule == "std" else d.pow(2).mean(1).sqrt()
        assert torch.allclose(stat, torch.ones(3), atol=1e-4)
    a = optimize.StepRule(get_recipe("lucid"), tuple(g.shape), "cpu")
    d = a(g, torch.arange(3), 0.05)
    assert torch.allclose(d.abs(), torch.full_like(d, 0.05), atol=1e-4)  # first Adam step = lr*sign


def test_convergence_early_stop(net):
    r = visualize(net, None, [0, 1, 2], "class", (1, 12, 12), recipe="oip-multiscale",
                  overrides={"steps": 300, "class_steps": 300, "robustness_samples": 0})
    assert any(s["converged"] and s["steps"] < 300 for s in r.stats)
    r2 = visualize(net, None, [0, 1, 2], "class", (1, 12, 12), recipe="oip-multiscale",
                   overrides={"steps": 60, "class_steps": 60, "early_stop": False, "robustness_samples": 0})
    assert all(s["steps"] == 60 for s in r2.stats)


class Boom(nn.Module):
    """Channel 0 overflows to inf once the image brightens; channel 1 is tame."""
    def forward(self, x):
        w = x.shape[-1] // 2
        left, right = x[..., :w].mean((1, 2, 3)), x[..., w:].mean((1, 2, 3))
        return torch.stack([torch.exp(300 * (left - 0.5)), right], 1).view(-1, 2, 1, 1)


def test_nonfinite_unit_is_flagged_and_job_completes():
    net = nn.Sequential(OrderedDict([("feat", Boom()), ("flatten", nn.Flatten())])).eval()
    r = visualize(net, "feat", [0, 1], "conv", (1, 6, 6), overrides={"steps": 5, "dead_retries": 0})
    assert r.stats[0]["nonfinite"] is True and r.stats[1]["nonfinite"] is False
    assert np.isfinite(r.images).all()
    assert np.isfinite(r.objective[0])  # last image whose objective was finite
    json.dumps(r.stats)


def relu_net(bias):
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.copy_(torch.tensor([bias, -5.0]))  # channel 1 can never fire
    return nn.Sequential(OrderedDict([("conv1", conv), ("relu1", nn.ReLU()), ("flatten", nn.Flatten())])).eval()


def test_dead_units_retried_then_flagged():
    # relu(x - 0.56) is 0 everywhere for the 0.45..0.55 init; a retry with
    # doubled noise (0.45..0.65) wakes it up.  Channel 1 stays dead.
    net = relu_net(-0.56)
    r = visualize(net, "relu1", [0, 1], "conv", (1, 8, 8), overrides={"dead_retries": 2, "dead_patience": 3})
    s0, s1 = r.stats
    assert s0["dead"] is False and s0["best_attempt"] >= 1 and s0["objective"] > 0
    assert s1["dead"] is True and s1["attempts"] == 3 and s1["steps"] <= 3
    r0 = visualize(net, "relu1", [0], "conv", (1, 8, 8), overrides={"dead_retries": 0})
    assert r0.stats[0]["dead"] is True


def test_restarts_keep_best(net):
    base = visualize(net, "fc1", [2, 4], "dense", (1, 12, 12), overrides={"steps": 4})
    r = visualize(net, "fc1", [2, 4], "dense", (1, 12, 12), overrides={"steps": 4, "restarts": 2})
    assert all(s["attempts"] == 3 for s in r.stats)
    assert np.all(r.objective >= base.objective - 1e-6)


def test_lucid_adam_rises(net):
    r = visualize(net, "fc1", [3], "dense", (1, 12, 12), recipe="lucid", overrides={"steps": 30})
    assert r.stats[0]["objective"] > r.stats[0]["initial_objective"]


# ------------------------------------------------------------------- metrics
def test_class_confidence(net):
    x = np.random.default_rng(0).random((4, 1, 12, 12), dtype=np.float32)
    norm = lambda v: (v - 0.1) / 0.3  # noqa: E731
    got = class_confidence(net, x, norm, [0, 1, 2, 1])
    with torch.no_grad():
        p = torch.softmax(net(norm(torch.from_numpy(x))), 1).numpy()
    np.testing.assert_allclose(got, p[np.arange(4), [0, 1, 2, 1]], rtol=1e-6)
    assert got.dtype == np.float32


def test_robustness_in_stats(net):
    r = visualize(net, None, [0, 1, 2], "class", (1, 12, 12), overrides={"robustness_samples": 3})
    vals = [s["robustness"] for s in r.stats if s["robustness"] is not None]
    assert vals and all(np.isfinite(v) for v in vals)
    r0 = visualize(net, None, [0], "class", (1, 12, 12), overrides={"robustness_samples": 0})
    assert r0.stats[0]["robustness"] is None


def test_auto_chunk_size(net):
    from featviz.ascent.memory import bytes_per_image
    per = bytes_per_image(net, "conv1", (1, 12, 12))
    assert per == 3 * 4 * 4 * 10 * 10 + 6 * 4 * 144
    assert auto_chunk_size(net, "conv1", (1, 12, 12), "cpu", memory_budget_bytes=per * 37 + 5) == 37
    assert auto_chunk_size(net, "conv1", (1, 12, 12), "cpu", memory_budget_bytes=1) == 1
    assert auto_chunk_size(net, None, (1, 12, 12)) >= auto_chunk_size(net, "fc2", (1, 12, 12)) >= 1
    assert auto_chunk_size(net, "conv1", (1, 12, 12)) <= 4096


def test_max_batch_splits_the_units_and_keeps_each_units_result(net):
    """Units optimized in batches of 2 give what one batch gives (each unit has its own
    generator); snapshots and stats line up with the units."""
    ov = {"steps": 15, "class_steps": 15, "robustness_samples": 2, "snapshots": 2, "jitter": 1}
    units = [0, 1, 2, 3, 4]
    whole = visualize(net, "fc1", units, "dense", (1, 12, 12), recipe="lucid", overrides=ov, seed=2)
    split = visualize(net, "fc1", units, "dense", (1, 12, 12), recipe="lucid", overrides=ov, seed=2, max_batch=2)
    assert [s["unit"] for s in split.stats] == units
    np.testing.assert_allclose(split.images, whole.images, atol=1e-5)
    np.testing.assert_allclose(split.objective, whole.objective, rtol=1e-4, atol=1e-5)
    assert split.snapshots.keys() == whole.snapshots.keys()
    for k in whole.snapshots:
        assert split.snapshots[k].shape == whole.snapshots[k].shape


def test_diversity_keeps_one_batch(net):
    """The diversity term couples the batch, so max_batch does not split it."""
    ov = {"steps": 5, "robustness_samples": 0, "snapshots": 0, "diversity": 0.5}
    one = visualize(net, "conv1", [0, 1, 2, 3], "conv", (1, 12, 12), recipe="hvass", overrides=ov, seed=1)
    capped = visualize(net, "conv1", [0, 1, 2, 3], "conv", (1, 12, 12), recipe="hvass", overrides=ov, seed=1,
                       max_batch=1)
    assert np.array_equal(one.images, capped.images)


def test_recipe_sources_documented():
    import featviz.ascent.recipes as R
    src = open(R.__file__).read()
    for name in list_recipes():
        assert f'"{name}"' in src


def test_progress_and_custom_transform_list(net, capsys):
    specs = [{"type": "pad", "pad": 2, "value": 0.5}, {"type": "rotate", "range": [-3, 3]},
             {"type": "jitter", "d": 1}]
    r = visualize(net, "conv1", [0, 1], "conv", (1, 12, 12), progress=True,
                  overrides={"transforms": specs, "steps": 3})
    assert r.images.shape == (2, 1, 12, 12) and r.recipe["transforms"] == specs
    assert capsys.readouterr().out == ""  # nothing printed on stdout


@pytest.mark.parametrize("precision,channels_last", [("fp32", True), ("bf16", False), ("bf16", True)])
def test_bf16_and_channels_last_reach_what_fp32_reaches(precision, channels_last):
    """The faster execution modes: deterministic, fp32 objectives reported, about the same result."""
    ov = {"steps": 24, "dead_retries": 0, "robustness_samples": 0, "snapshots": 0}
    base = visualize(tiny(c=3, hw=16), "conv1", [0, 1, 2], "conv", (3, 16, 16), recipe="lucid", overrides=ov)
    runs = [visualize(tiny(c=3, hw=16), "conv1", [0, 1, 2], "conv", (3, 16, 16), recipe="lucid", overrides=ov,
                      precision=precision, channels_last=channels_last) for _ in range(2)]
    assert np.array_equal(runs[0].images, runs[1].images)  # deterministic on CPU
    assert runs[0].objective.dtype == np.float32 and np.isfinite(runs[0].objective).all()
    if precision == "fp32":
        np.testing.assert_allclose(runs[0].images, base.images, atol=1e-4)
    # bf16 rounds the forward pass: the images differ a little, the objective reached is about the same
    np.testing.assert_allclose(runs[0].objective, base.objective, rtol=0.05, atol=0.01)


@pytest.mark.parametrize("layers", [[OUTPUT], ["conv1"]])
def test_bf16_reader_casts_the_weights_once_and_gives_them_back(layers):
    """bf16 copies of the conv/linear weights stand in while the reader is open: the activations are
    what autocast gives with the fp32 weights, and the network gets its own fp32 parameters back
    (same objects, requires_grad restored) on exit and whenever bf16 is switched off."""
    net = tiny(c=3, hw=16)
    originals = [p for p in net.parameters()]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = net(x) if layers == [OUTPUT] else net.conv1(x)
    with torch.no_grad():
        plain = net(x) if layers == [OUTPUT] else net.conv1(x)
    key = layers[0]
    with ActivationReader(net, layers, precision="bf16") as reader:
        assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
        with torch.no_grad():
            assert torch.equal(reader(x)[key], expected.float())
        reader.bf16 = False  # the reported objective: fp32 again, with the fp32 weights
        assert all(a is b for a, b in zip(net.parameters(), originals))
        with torch.no_grad():
            assert torch.equal(reader(x)[key], plain)
        reader.bf16 = True
        assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    assert all(a is b for a, b in zip(net.parameters(), originals))
    assert all(p.requires_grad and p.dtype == torch.float32 for p in net.parameters())


def test_bf16_reader_runs_strided_depthwise_convolutions_in_fp32_on_cpu():
    """A MobileNet-style block under the bf16 reader: the stride-2 depthwise conv computes in fp32 (its
    fp32 weights kept, its output cast back to bf16), the other convs in bf16; the gradient reaches
    the input, and on exit the conv's own forward is back."""
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU6(), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
                        nn.ReLU6(), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=4)).eval()
    depthwise, plain_dw = net[2], net[5]  # strided / not strided
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mid = net[1](net[0](x))  # what reaches the depthwise conv, in bf16
    ref = nn.functional.conv2d(mid.float(), depthwise.weight.detach(), depthwise.bias.detach(), 2, 1, 1, 8).bfloat16()
    with ActivationReader(net, ["2", OUTPUT], precision="bf16") as reader:
        assert depthwise.weight.dtype == torch.float32 and "forward" in vars(depthwise)
        assert plain_dw.weight.dtype == torch.bfloat16 and "forward" not in vars(plain_dw)
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            acts = reader(xx)
        assert torch.equal(acts["2"].detach(), ref.float())  # fp32 computed, cast back to bf16, handed back in fp32
        acts[OUTPUT].float().sum().backward()
        assert xx.grad is not None and bool(xx.grad.abs().sum() > 0)
    assert "forward" not in vars(depthwise) and all(p.dtype == torch.float32 for p in net.parameters())


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        ActivationReader(tiny(), ["conv1"], precision="fp8")


@pytest.mark.parametrize("preset,hw", [("lucid", 28), ("lucid", 32), ("keras-project", 28), ("google", 28)])
def test_fused_transforms_equal_the_stepwise_pipeline(preset, hw):
    """One resampling for pad + jitter + scale + rotate + jitter + centre fit: the same random draws
    and the same pixels as the step-by-step pipeline (and the same gradient). Without Lucid's pad, the
    stepwise pipeline loses content a jitter pushed off its canvas: they differ only at the border."""
    tf = transforms.Compose(transforms.PRESETS[preset], (hw, hw))
    x = torch.rand(5, 3, hw, hw, requires_grad=True)
    w = torch.randn(5, 3, hw, hw)
    outs, grads = [], []
    for f in (tf.fused, tf.stepwise):
        y = f(x, [torch.Generator().manual_seed(i) for i in range(5)])
        (g,) = torch.autograd.grad((y * w).sum(), x)
        outs.append(y.detach())
        grads.append(g)
    if preset == "lucid":
        torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=0)
        torch.testing.assert_close(grads[0], grads[1], atol=1e-3, rtol=0)
    else:
        torch.testing.assert_close(outs[0][..., 3:-3, 3:-3], outs[1][..., 3:-3, 3:-3], atol=1e-4, rtol=0)


def test_transform_strength_shrinks_towards_the_identity():
    """`transforms_size`/`transforms_fade`: strength 0 is the input itself, strength 1 the full
    pipeline, and the draws do not depend on it (the generators stay in step); a strength between
    moves every output pixel less."""
    tf = transforms.Compose(transforms.PRESETS["lucid"], (28, 28))
    r = torch.arange(28.0) - 13.5
    x = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 50.0).expand(3, 1, 28, 28)  # smooth: moves show
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    assert torch.equal(tf(x, gens(), 0.0), x)
    full, half = tf(x, gens()), tf(x, gens(), 0.5)
    assert torch.equal(full, tf.fused(x, gens()))
    assert (half - x).abs().mean() < (full - x).abs().mean()
    g0, g1 = gens(), gens()
    tf(x, g0, 0.0), tf(x, g1, 1.0)
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(g0, g1))


def test_transforms_size_and_fade():
    sized = transforms.build(get_recipe("lucid-scaled"), (28, 28))
    assert sized.strength == pytest.approx(28 / 224)
    assert transforms.build(get_recipe("lucid-scaled"), (224, 224)).strength == 1.0
    assert transforms.build(get_recipe("lucid"), (28, 28)).strength == 1.0
    assert [transforms.fade_strength(t, 8, 0.5) for t in range(8)] == [1, 1, 1, 1, 0.75, 0.5, 0.25, 0]
    assert transforms.fade_strength(7, 8, 0.0) == 1.0
    with pytest.raises(RecipeError, match="transforms_fade needs transforms that pad with the gray 0.5"):
        transforms.build(dict(get_recipe("lucid"), transforms=[{"type": "pad", "pad": 2, "value": 0.0}],
                              transforms_fade=0.5), (28, 28))
    with pytest.raises(RecipeError, match="transforms_fade"):
        get_recipe("lucid", {"transforms_fade": 1.5})


def test_transform_draws_are_one_call_per_element_and_cover_their_ranges():
    """Each element's parameters come from its own generator only (one call per step), so an element
    draws the same whatever its batch-mates; the integer and choice draws cover their whole range."""
    specs = [{"type": "jitter", "d": 2}, {"type": "scale", "choices": [0.9, 1.0, 1.1]},
             {"type": "rotate", "range": [-5.0, 5.0]}, {"type": "pad", "pad": 3}]
    gens = [torch.Generator().manual_seed(i) for i in range(400)]
    jit, sc, rot, pad = transforms.draw(specs, gens)
    assert jit.shape == (400, 2) and set(np.unique(jit)) == {0, 1, 2, 3, 4}
    assert set(np.unique(sc)) == {0.9, 1.0, 1.1}
    assert rot.shape == (400,) and rot.min() >= -5.0 and rot.max() <= 5.0 and pad is None
    alone = transforms.draw(specs, [torch.Generator().manual_seed(7)])
    assert np.array_equal(alone[0][0], jit[7]) and alone[1][0] == sc[7] and alone[2][0] == rot[7]
    # one call on each generator: the next draw continues right after this step's numbers
    g = torch.Generator().manual_seed(7)
    transforms.draw(specs, [g])
    assert torch.equal(torch.rand(1, generator=g, dtype=torch.float64),
                       torch.rand(5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)[4:])
