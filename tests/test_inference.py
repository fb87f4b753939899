"""One pass over the test set at the machine's pace: the probe's pass yields the test predictions,
evaluate derives its metrics from them (or runs a pass of its own, alone) and both agree with a
plain fp32 forward; bf16 predictions are settled to fp32's top-1; the probe's statistics read a
channels_last or bf16 output as they read a contiguous fp32 one."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from featviz import inference
from featviz.errors import FeatvizError
from featviz.evaluate import evaluate
from featviz.inference import Mode
from featviz.model import LoadedModel, build, load_model
from featviz.probe import _correlation_from_moments, probe
from featviz.probe_pass import Stats
from featviz.results import Predictions, read_predictions, write_predictions
from tests.synthetic import MICRO_LAYERS
from tests.synthetic_run import make_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("inference"), steps=30)


def _test_set(run):
    return torch.load(run.parent / "data" / run.name / "test.pt", weights_only=True)


def _reference_logits(model, images):
    """A plain fp32 forward of the whole test set, contiguous, one batch."""
    with torch.no_grad():
        return model.net(model.normalize(images.float() / 255)).float()


def _micro(seed=0):
    torch.manual_seed(seed)
    net = build(MICRO_LAYERS, (1, 8, 8), 3).eval()
    return LoadedModel(net, ["a", "b", "c"], (1, 8, 8), [0.5], [0.25])


def test_probe_predictions_are_a_reference_forward(run):
    model = load_model(run / "model")
    test = _test_set(run)
    ref = torch.softmax(_reference_logits(model, test["images"]), 1)
    p = read_predictions(run / "probe/predictions.npz")
    assert p.top_class.shape == (len(test["labels"]), 3) and p.top_class.dtype == np.int32
    assert np.array_equal(p.labels, test["labels"].numpy())
    assert np.array_equal(p.top_class[:, 0], ref.argmax(1).numpy())
    top = ref.topk(3, 1)
    assert np.allclose(p.top_prob, top.values.numpy(), atol=1e-5)
    assert p.record["pass"] == "probe" and p.record["precision"] == "fp32" and p.fp32.all()
    s = json.loads((run / "probe/probe.json").read_text())
    assert s["inference"] == p.record
    assert s["test_accuracy"] == pytest.approx(float((ref.argmax(1) == test["labels"]).float().mean()))


def test_evaluate_from_the_probe_pass_equals_evaluate_alone_and_a_reference(run, tmp_path):
    model = load_model(run / "model")
    data = run.parent / "data" / run.name
    alone = evaluate(model, data, tmp_path / "alone", "cpu")
    shared = evaluate(model, data, tmp_path / "shared", "cpu", predictions=run / "probe/predictions.npz")
    assert alone.pop("inference")["pass"] == "evaluate" and shared.pop("inference")["pass"] == "probe"
    assert alone == shared
    test = _test_set(run)
    pred = _reference_logits(model, test["images"]).argmax(1)
    assert shared["test_accuracy"] == pytest.approx(float((pred == test["labels"]).float().mean()))
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (test["labels"].numpy(), pred.numpy()), 1)
    assert shared["confusion"] == confusion.tolist()
    for a, b in (("alone", "shared"),):
        for name in ("misclassified.npz", "confusion.png", "misclassified.png"):
            assert (tmp_path / a / name).read_bytes() == (tmp_path / b / name).read_bytes(), name
    mis = np.load(tmp_path / "shared/misclassified.npz")["images"]
    assert mis.dtype == np.uint8 and np.array_equal(mis, test["images"][[m["index"] for m in shared["misclassified"]]].numpy())


def test_misclassified_images_are_kept_at_display_size():
    from featviz.evaluate import SHOWN_PX, shown_size

    big = np.arange(2 * 3 * 224 * 200, dtype=np.int64).reshape(2, 3, 224, 200) % 256
    small = shown_size(big.astype(np.uint8))
    assert small.shape == (2, 3, 112, 100) and small.dtype == np.uint8 and max(small.shape[-2:]) <= SHOWN_PX
    assert small[0, 0, 0, 0] == round(float(big[0, 0, :2, :2].mean()))
    odd = shown_size(np.full((1, 1, 300, 90), 7, np.uint8))
    assert odd.shape == (1, 1, 100, 30) and (odd == 7).all()
    tiny = np.zeros((3, 1, 28, 28), np.uint8)
    assert shown_size(tiny) is tiny


def test_evaluate_refuses_predictions_of_another_test_set(run, tmp_path):
    model = load_model(run / "model")
    p = read_predictions(run / "probe/predictions.npz")
    other = tmp_path / "other.npz"
    write_predictions(other, Predictions(p.top_class[:-1], p.top_prob[:-1], p.labels[:-1], p.fp32[:-1], p.record))
    with pytest.raises(FeatvizError, match="made from another test set"):
        evaluate(model, run.parent / "data" / run.name, tmp_path / "out", "cpu", predictions=other)
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.npz"
    write_predictions(bad, Predictions(p.top_class, p.top_prob[:-1], p.labels, p.fp32, p.record))
    with pytest.raises(FeatvizError, match="not what featviz wrote"):
        read_predictions(bad)


def test_settle_recomputes_in_fp32_what_bf16_could_have_moved():
    """A made-up bf16 pass over 60 images of 3 outputs: the calibration images, the 16 closest
    calls, drift d0 (their lowest output moved: margins unchanged); a wide call made close (bf16
    margin just above the calibration's, below d0) that drifted d1 > d0 is recomputed and widens the
    bound, which takes in a second call whose top two bf16 swapped (margin between d0 and d1); an
    image far from any other output is kept as the pass computed it."""
    model = _micro()
    images = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    exact = inference.logits(model, images, CPU, Mode("fp32", False), 64)
    m = inference.margins(exact)
    order = m.argsort().tolist()
    cal, rest = sorted(order[:inference.CALIBRATION]), order[inference.CALIBRATION:]
    m16 = float(m[cal].max())
    d0 = 2 * m16 + 0.01
    out = exact.clone()
    for c in cal:
        out[c, int(exact[c].argmin())] -= d0  # drift d0, margin unchanged
    wide = rest[-1]
    first = rest[-2]
    a, b = exact[first].topk(2).indices.tolist()
    out[first, b] = exact[first, a] - (m16 + d0) / 2  # bf16 margin between the calibration's and d0
    d1 = float(m[first]) - (m16 + d0) / 2
    second = rest[0]
    a2, b2 = exact[second].topk(2).indices.tolist()
    e = 0.45 * d1
    out[second, a2] -= e
    out[second, b2] += e  # swapped: bf16 margin 2e - m, drift 2e = 0.9 d1
    assert d1 > d0 and d0 < float(inference.margins(out)[second]) <= d1 and float(m[wide]) > d1
    assert inference.closest(inference.margins(out), inference.CALIBRATION).tolist() == cal
    s = inference.settle(model, images, out, CPU, Mode("bf16", False), 16)
    assert s.record["bf16_drift"] == pytest.approx(d1, abs=1e-5)
    assert s.fp32[first] and s.fp32[second] and not s.fp32[wide] and int(s.fp32.sum()) == s.record["fp32_rows"]
    # no more fp32 work than that: the calibration and the calls within the drift
    within = {i for i in range(60) if float(inference.margins(out)[i]) <= d1}
    assert set(torch.nonzero(s.fp32).flatten().tolist()) == set(cal) | within
    for row in (first, second, *cal):
        assert torch.allclose(s.logits[row], exact[row], atol=1e-5)
    assert int(s.logits[second].argmax()) == a2 != int(out[second].argmax())
    # the rest keep their pass's values: their margins exceed the drift
    kept = ~s.fp32
    assert bool((inference.margins(out)[kept] > d1).all()) and torch.equal(s.logits[kept], out[kept])
    # fp32: nothing to settle
    same = inference.settle(model, images, exact, CPU, Mode("fp32", True), 16)
    assert same.logits is exact and bool(same.fp32.all())


def test_bf16_predictions_have_fp32_top1():
    model = _micro(3)
    images = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    exact = _reference_logits(model, images)
    s = inference.predict(model, images, CPU, "bf16", batch_size=64)
    assert s.record["precision"] == "bf16" and s.record["calibration_images"] == inference.CALIBRATION
    assert torch.equal(s.logits.argmax(1), exact.argmax(1))
    assert inference.accuracy(model, images, exact.argmax(1), CPU, "bf16") == 1.0
    assert all(p.is_contiguous() for p in model.net.parameters())  # handed back contiguous


def test_probe_pass_in_bf16(run, tmp_path):
    """probe.precision bf16: the statistics within bf16's rounding of fp32's, the test accuracy and
    the predictions' top-1 fp32's, the mode recorded."""
    model = load_model(run / "model")
    units = json.loads((run / "units.json").read_text())
    kw = dict(top_k=4, samples=3, prune_images=200)
    data = run.parent / "data" / run.name
    a = probe(model, units, data, tmp_path / "fp32", "cpu", **kw)
    b = probe(model, units, data, tmp_path / "bf16", "cpu", precision="bf16", **kw)
    assert b["inference"]["precision"] == "bf16" and b["inference"]["pass"] == "probe"
    assert b["test_accuracy"] == a["test_accuracy"]
    pa, pb = read_predictions(tmp_path / "fp32/predictions.npz"), read_predictions(tmp_path / "bf16/predictions.npz")
    assert np.array_equal(pa.top_class[:, 0], pb.top_class[:, 0])
    for la, lb in zip(a["layers"], b["layers"]):
        for ua, ub in zip(la["per_unit"], lb["per_unit"]):
            assert ub["max"] == pytest.approx(ua["max"], rel=2e-2, abs=2e-2)
            assert ub["mean"] == pytest.approx(ua["mean"], rel=2e-2, abs=2e-2)
            assert ub["top_value"][0] == pytest.approx(ua["top_value"][0], rel=2e-2, abs=2e-2)
    with pytest.raises(FeatvizError, match="probe.precision: unknown precision 'fp8'"):
        probe(model, units, data, tmp_path / "c", "cpu", precision="fp8", **kw)
    assert not (tmp_path / "c").exists()


def _moments_reference(x: np.ndarray) -> np.ndarray:
    """Correlation of units over every image and position, float64 numpy."""
    v = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1) if x.ndim == 4 else x.T
    c = np.corrcoef(v.astype(np.float64))
    np.fill_diagonal(c, 0.0)
    return c


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "dense"])
def test_stats_read_every_layout_alike(layout):
    """Stats of a layer output in either memory format (and a dense one): per-image means and
    maxima, top-k positions, correlations (of values far from 0: the shifted fp32 moments)."""
    g = torch.Generator().manual_seed(0)
    shape = (7, 3) if layout == "dense" else (7, 3, 4, 5)
    out = torch.randn(*shape, generator=g) + 1000.0
    out[:, 1] = out[:, 0] * 0.5 + 0.1 * torch.randn(out[:, 0].shape, generator=g)  # unit 1 follows unit 0
    st = Stats(3, k=2, hist_n=7)
    batches = [out[:4], out[4:]]
    for start, b in zip((0, 4), batches):
        st.add(b.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else b, start)
    x = out.numpy().astype(np.float64)
    per_image = x.reshape(7, 3, -1)
    assert np.allclose(st.sum.numpy(), per_image.mean(2).sum(0), rtol=1e-6)
    assert np.allclose(st.max.numpy(), per_image.mean(2).max(0), rtol=1e-6)
    assert np.allclose(st.acts, per_image.mean(2), rtol=1e-6)
    best = per_image.max(2)  # (images, units): the strongest position
    assert st.top[1].tolist() == np.argsort(-best, 0, kind="stable")[:2].T.tolist()
    assert st.top[2].tolist() == [[int(per_image[i, u].argmax()) for i in row] for u, row in enumerate(st.top[1].tolist())]
    corr = _correlation_from_moments(st.m1, st.m2, st.cnt)
    assert np.allclose(corr, _moments_reference(x), atol=1e-4)
    assert corr[0, 1] > 0.9 and st.cnt == math.prod(shape) // 3


def test_wide_layers_correlate_over_a_turning_sample_of_positions(monkeypatch):
    """A layer over CORR_VALUES values per image: its Gram matrix reads every stride-th position,
    from an offset that turns with each batch (all positions over the set), and the correlations
    it estimates are the whole layer's within sampling error."""
    import featviz.probe_pass as pp

    monkeypatch.setattr(pp, "CORR_VALUES", 3 * 16)  # 3 units: 16 of the 64 positions per image
    g = torch.Generator().manual_seed(3)
    out = torch.randn(64, 3, 8, 8, generator=g)
    out[:, 1] = out[:, 0] * 0.8 + 0.6 * torch.randn(out[:, 0].shape, generator=g)
    st = Stats(3, k=2, hist_n=4)
    for start in range(0, 64, 8):
        st.add(out[start:start + 8].contiguous(memory_format=torch.channels_last), start)
    assert st.cnt == 64 * 16  # a quarter of the values
    full = _moments_reference(out.numpy())
    corr = _correlation_from_moments(st.m1, st.m2, st.cnt)
    assert np.allclose(corr, full, atol=0.06) and abs(corr[0, 1] - full[0, 1]) < 0.03
    assert np.allclose(st.sum.numpy(), out.numpy().reshape(64, 3, -1).mean(2).sum(0), rtol=1e-5)  # means: every position
    where = torch.arange(64.0).view(1, 64, 1).expand(1, 64, 3)  # (B, P, U): each value its position
    seen = []
    for b in range(4):  # the offset turns with each batch: every position is read once per 4 batches
        st.batches = b
        seen += st._sample(where)[0, :, 0].long().tolist()
    assert sorted(seen) == list(range(64))
    assert Stats(3, k=2, hist_n=4, images=64)._sample(where).shape[1] == 64  # a small set: CORR_ROWS keeps every position
    monkeypatch.setattr(pp, "CORR_ROWS", 64 * 100 // 4)
    assert Stats(3, k=2, hist_n=4, images=100)._sample(where).shape[1] == 16  # 100 images x 16 positions suffice


def test_stats_of_a_bf16_output():
    out = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    ref, half = Stats(4, 3, 6), Stats(4, 3, 6)
    ref.add(out, 0)
    half.add(out.bfloat16().contiguous(memory_format=torch.channels_last), 0)
    assert np.allclose(half.acts, ref.acts, atol=2e-2)
    assert torch.equal(half.top[1], ref.top[1]) or np.allclose(half.top[0], ref.top[0], atol=2e-2)
    assert np.allclose(_correlation_from_moments(half.m1, half.m2, half.cnt),
                       _correlation_from_moments(ref.m1, ref.m2, ref.cnt), atol=2e-2)


def test_sample_maps_are_bytes_of_a_reference_forward(run):
    """probe.npz's activation maps: uint8 per map over its own range (what the report draws), the
    ranges beside them: within half a step of a direct forward's maps."""
    model = load_model(run / "model")
    s = json.loads((run / "probe/probe.json").read_text())
    z = np.load(run / "probe/probe.npz")
    idx = [m["index"] for m in s["samples"]]
    out = {}
    h = model.net.conv2.register_forward_hook(lambda m, i, o: out.__setitem__("a", o))
    with torch.no_grad():
        model.net(model.normalize(_test_set(run)["images"][idx].float() / 255))
    h.remove()
    ref = out["a"].numpy()
    q, rng = z["maps_1"], z["maps_range_1"]  # conv2 is layer 1
    assert q.dtype == np.uint8 and q.shape == ref.shape and rng.shape == (*ref.shape[:2], 2)
    lo, hi = rng[..., :1, None], rng[..., 1:, None]
    assert np.allclose(lo[..., 0, 0], ref.min((2, 3)), atol=1e-5) and np.allclose(hi[..., 0, 0], ref.max((2, 3)), atol=1e-5)
    back = lo + q.astype(np.float32) / 255 * (hi - lo)
    assert np.all(np.abs(back - ref) <= (hi - lo) / 255 / 2 + 1e-5)


def test_sample_maps_survive_activations_in_place(run):
    """The pass captures the sample maps while the ReLU after the conv runs in place (contiguous
    fp32: no conversion would copy them by chance): the maps are the conv's, negatives included."""
    from featviz.inplace import in_place
    from featviz.probe import module_of
    from featviz.probe_pass import activation_pass

    model = load_model(run / "model")
    units = json.loads((run / "units.json").read_text())
    layers = units["layers"]
    mods = [module_of(model.net, layer) for layer in layers]
    test = _test_set(run)
    with in_place(model.net) as changed:
        assert model.net.conv2 not in changed and changed  # the ReLUs after the convs
        seen = activation_pass(model, mods, layers, test["images"], test["labels"], CPU, 64, 2, 10, 3,
                               Mode("fp32", False))
    out = {}
    h = model.net.conv2.register_forward_hook(lambda m, i, o: out.__setitem__("a", o.clone()))
    with torch.no_grad():
        model.net(model.normalize(test["images"][seen.sample_idx].float() / 255))
    h.remove()
    assert (out["a"] < 0).any() and torch.allclose(seen.sample_maps[1], out["a"], atol=1e-5)
