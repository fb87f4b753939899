"""MACO (Fel et al. 2023; issue 26 item 1): the magnitude spectrum artifact, the parameterization,
the crops, NAdam, the recipe on a tiny net (CPU), batch == separate runs, the transparency map in
the chunk and on the unit and class pages, the verb and its errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from featviz.ascent import get_recipe, visualize
from featviz.ascent import spectrum as S
from featviz.ascent.optimize import StepRule
from featviz.ascent.param import MacoParam, make_param
from featviz.ascent.spectrum import COLOR_CORRELATION
from featviz.ascent.render import batch_size
from featviz.ascent.transforms import Crops, build
from featviz.errors import FeatvizError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"steps": 12, "class_steps": 12, "crops": 4, "robustness_samples": 0, "snapshots": 2, "dead_retries": 0}


def tiny(c=1, hw=16, seed=0):
    torch.manual_seed(seed)
    side = (hw - 2) // 2
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 4, 3)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(4 * side * side, 8)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(8, 3)),
    ])).eval()


# ------------------------------------------------------------------------------- the spectrum

def test_spectrum_shape_gray_and_rgb():
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 256, (10, 1, 12, 15), generator=g, dtype=torch.uint8)
    mag, n = S.mean_amplitude([gray[:4], gray[4:]])
    assert n == 10 and mag.shape == (1, 12, 15 // 2 + 1) and mag.dtype == np.float32
    want = np.abs(np.fft.rfft2(gray.numpy().astype(np.float64) / 255)).mean(0)
    np.testing.assert_allclose(mag, want, rtol=1e-5)
    # RGB: the spectrum of the colour-decorrelated images, the space MacoParam builds in before recorrelating
    rgb = torch.rand(6, 3, 8, 8, generator=g)
    mag3, _ = S.mean_amplitude([rgb])
    dec = np.einsum("nchw,dc->ndhw", rgb.double().numpy(), np.linalg.inv(COLOR_CORRELATION.astype(np.float64)))
    np.testing.assert_allclose(mag3, np.abs(np.fft.rfft2(dec)).mean(0), rtol=1e-5)
    assert not np.allclose(mag3, S.mean_amplitude([torch.rand(6, 3, 8, 8, generator=torch.Generator())])[0] * 0)
    recorrelated = torch.einsum("nchw,dc->ndhw", S.decorrelate(rgb.double()),
                                torch.as_tensor(COLOR_CORRELATION, dtype=torch.float64))
    assert torch.allclose(recorrelated, rgb.double())


def test_spectrum_is_deterministic_whatever_the_batches():
    x = torch.randint(0, 256, (37, 3, 9, 9), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    a, _ = S.mean_amplitude(S.batches_of(x))
    b, _ = S.mean_amplitude(S.batches_of(x))
    c, _ = S.mean_amplitude(S.batches_of(x, values=5 * 3 * 81))
    assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(a, c, rtol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        S.mean_amplitude([])


def test_resample_and_power_law():
    m = S.power_law(3, 28, 28)
    assert m.shape == (3, 28, 15) and m[0, 0, 0] == pytest.approx(28.0)
    r = S.resample(m, 64, 64)
    assert tuple(r.shape) == (3, 64, 33) and torch.isfinite(r).all()
    # an index of the resampled array lands on the same frequency in cycles per pixel (1/f stays 1/f)
    assert float(r[0, 0, 16]) == pytest.approx(float(r[0, 0, 8]) / 2, rel=0.1)
    assert torch.equal(S.resample(m, 28, 28), torch.as_tensor(m))


# ------------------------------------------------------------------------------- the engine parts

def test_maco_param_keeps_the_magnitude_and_maps_to_the_input():
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    mag = S.power_law(3, 10, 10)
    p = MacoParam((3, 10, 10), gens, mag, canvas_scale=2.0)
    canvas = p.image()
    assert canvas.shape == (2, 3, 20, 20) and canvas.min() >= 0 and canvas.max() <= 1
    assert p.picture().shape == (2, 3, 10, 10)
    # before the colours and the sigmoid, the image's |spectrum| is the fixed magnitude (up to one scale)
    p1 = MacoParam((1, 10, 10), gens[:1], S.power_law(1, 10, 10), canvas_scale=1.0)
    logit = torch.logit(p1.image().detach().double(), eps=1e-12)[0, 0]
    amp = torch.fft.rfft2(logit).abs()
    want = torch.as_tensor(S.power_law(1, 10, 10)[0], dtype=torch.float64)
    ratio = (amp / want)[:, 1:-1]  # (the DC and Nyquist columns of a real image keep only a real part)
    assert float(ratio.std() / ratio.mean()) < 1e-3
    with pytest.raises(ValueError, match="channel"):
        MacoParam((3, 10, 10), gens, S.power_law(1, 10, 10))


def test_crops_shape_identity_and_independence():
    x = torch.rand(3, 2, 20, 20, generator=torch.Generator().manual_seed(0))
    crops = Crops((10, 10), count=5, noise=0.04)
    out = crops(x, [torch.Generator().manual_seed(i) for i in range(3)], t=3, steps=10)
    assert out.shape == (15, 2, 10, 10)
    # element 1's crops do not depend on its batch-mates
    alone = crops(x[1:2], [torch.Generator().manual_seed(1)], t=3, steps=10)
    assert torch.allclose(out[5:10], alone, atol=1e-6)
    # strength 0: every crop is the picture itself (the whole canvas resampled), without noise
    flat = crops(x, [torch.Generator().manual_seed(i) for i in range(3)], strength=0.0, t=3, steps=10)
    full = torch.nn.functional.interpolate(x, size=(10, 10), mode="bilinear", align_corners=False)
    assert torch.allclose(flat[0], full[0], atol=1e-5) and torch.allclose(flat[14], full[2], atol=1e-5)
    assert crops.box(0, 256) == pytest.approx(0.5) and crops.box(255, 256) == pytest.approx(0.05)


def test_nadam_is_torchs_nadam_per_element():
    rec = get_recipe("maco")
    target = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    x = torch.zeros(2, 3)
    rule = StepRule(rec, (2, 3), "cpu")
    ref = [torch.zeros(3, requires_grad=True) for _ in range(2)]
    opts = [torch.optim.NAdam([r], lr=0.1, betas=(0.9, 0.999), eps=1e-7, momentum_decay=0.004) for r in ref]
    for step in range(20):
        g = -(x - target)  # ascent on -|x - target|^2 / 2
        idx = torch.tensor([0, 1]) if step % 3 else torch.tensor([1])  # element 0 sits some steps out
        x[idx] = x[idx] + rule(g[idx], idx, 0.1)
        for i in idx.tolist():
            opts[i].zero_grad()
            ((ref[i] - target[i]) ** 2 / 2).sum().backward()
            opts[i].step()
    assert torch.allclose(x, torch.stack([r.detach() for r in ref]), atol=1e-5)


def test_maco_recipe_checks():
    rec = get_recipe("maco")
    assert rec["param"] == "maco" and rec["step"] == "nadam" and rec["lr"] == 1.0 and rec["steps"] == 256
    assert rec["crops"] == 32 and rec["canvas_scale"] == pytest.approx(512 / 224) and rec["transparency"]
    with pytest.raises(ValueError, match="jitter"):
        build(get_recipe("maco", {"jitter": 1}), (28, 28))
    with pytest.raises(ValueError, match="diversity"):
        build(get_recipe("maco", {"diversity": 0.1}), (28, 28))
    # a batch of units sends `crops` images each through the network: max_batch counts images
    assert batch_size(rec, 10, max_batch=64) == 2 and batch_size(rec, 10, max_batch=8) == 1
    # published geometry at 224 px; below, transforms_size shrinks the canvas towards the input
    big = make_param(rec, (3, 224, 224), [torch.Generator()], "cpu")
    small = make_param(rec, (1, 28, 28), [torch.Generator()], "cpu")
    assert (big.ch, big.cw) == (512, 512) and (small.ch, small.cw) == (32, 32)


# ------------------------------------------------------------------------------- the recipe on a tiny net

@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("kind,layer,units", [("conv", "conv1", [0, 3]), ("dense", "fc1", [1, 6]),
                                              ("class", None, [0, 2])])
def test_maco_on_every_kind(c, kind, layer, units):
    net = tiny(c=c)
    mag = S.power_law(c, 16, 16) if c == 1 else S.mean_amplitude([torch.rand(4, 3, 16, 16)])[0]
    r = visualize(net, layer, units, kind, (c, 16, 16), recipe="maco", overrides=FAST, spectrum=mag)
    assert r.images.shape == (2, c, 16, 16) and np.isfinite(r.images).all()
    assert r.images.min() >= 0 and r.images.max() <= 1
    assert r.transparency.shape == (2, 16, 16) and (r.transparency >= 0).all() and (r.transparency.max(axis=(1, 2)) > 0).all()
    assert all(s["steps"] == 12 for s in r.stats) and r.trace.shape == (2, 12)
    assert all(snap.shape == r.images.shape for snap in r.snapshots.values())
    json.dumps(r.stats)


def test_maco_raises_the_objective():
    """A class logit that is a template dot product: MACO's phase ascent raises it well above its start."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(256, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, 256) / 16)
        net[1].bias.zero_()
    r = visualize(net, None, [0, 1], "class", (1, 16, 16), recipe="maco",
                  overrides={**FAST, "steps": 64, "class_steps": 64})
    for s, tr in zip(r.stats, r.trace):
        assert s["objective"] > s["initial_objective"] + 1.0, (s, tr[:3], tr[-3:])


def test_maco_batch_equals_separate_runs_and_is_deterministic():
    net = tiny(c=3)
    mag = S.mean_amplitude([torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))])[0]
    kw = dict(recipe="maco", overrides=FAST, seed=5, spectrum=mag)
    r = visualize(net, None, [0, 1, 2], "class", (3, 16, 16), **kw)
    again = visualize(net, None, [0, 1, 2], "class", (3, 16, 16), **kw)
    assert r.images.tobytes() == again.images.tobytes() and r.transparency.tobytes() == again.transparency.tobytes()
    for i, u in enumerate([0, 1, 2]):
        one = visualize(net, None, [u], "class", (3, 16, 16), **kw)
        np.testing.assert_allclose(r.images[i], one.images[0], atol=1e-5)
        np.testing.assert_allclose(r.transparency[i], one.transparency[0], rtol=1e-4,
                                   atol=1e-5 * float(r.transparency[i].max()))
    split = visualize(net, None, [0, 1, 2], "class", (3, 16, 16), max_batch=FAST["crops"], **kw)  # one unit a batch
    np.testing.assert_allclose(split.images, r.images, atol=1e-5)
    other = visualize(net, None, [0, 1, 2], "class", (3, 16, 16), **{**kw, "seed": 6})
    assert other.images.tobytes() != r.images.tobytes()


# ------------------------------------------------------------------------------- artifact, verb, chunk, pages

def _featviz(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "featviz", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def maco_run(tmp_path_factory):
    """The synthetic run with its class chunk and conv1's first chunk remade by `featviz ascend` with maco."""
    from tests.synthetic_run import make_run

    run = make_run(tmp_path_factory.mktemp("maco"))
    data = run.parent / "data" / run.name
    r = _featviz("spectrum", "--data", data, "--out", run / "spectrum.npz")
    assert r.returncode == 0, r.stderr
    cfg = json.dumps({"recipe": {"class": "maco", "conv": "maco"}, "chunk_size": 5,
                      "overrides": {"class": FAST, "conv": FAST}})
    for layer in ("classes", "conv1"):
        r = _featviz("ascend", "--model", run / "model", "--units", run / "units.json", "--layer", layer, "--chunk", 0,
                     "--config", cfg, "--spectrum", run / "spectrum.npz", "--device", "cpu",
                     "--out-npz", run / "ascent" / layer / "0.npz", "--out-json", run / "ascent" / layer / "0.json")
        assert r.returncode == 0, r.stderr
    return run


def test_spectrum_verb_writes_the_run_artifact(maco_run):
    from featviz.results import RunFolder, read_spectrum

    folder = RunFolder(maco_run)
    mag = read_spectrum(folder.spectrum)
    assert mag.shape == (1, 12, 7)
    with np.load(folder.spectrum) as z:
        assert int(z["n_images"]) == 300 and str(z["split"]) == "train"
    train = torch.load(maco_run.parent / "data" / maco_run.name / "train.pt", weights_only=True)["images"]
    np.testing.assert_allclose(mag, S.mean_amplitude([train])[0], rtol=1e-6)
    # byte-identical when made again
    again = maco_run / "again.npz"
    assert _featviz("spectrum", "--data", maco_run.parent / "data" / maco_run.name, "--out", again).returncode == 0
    assert again.read_bytes() == folder.spectrum.read_bytes()


def test_spectrum_and_ascend_errors(maco_run, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    cfg = json.dumps({"recipe": {"class": "maco"}, "overrides": {"class": FAST}})
    base = ["ascend", "--model", maco_run / "model", "--units", maco_run / "units.json", "--layer", "classes",
            "--chunk", 0, "--config", cfg, "--device", "cpu",
            "--out-npz", tmp_path / "o.npz", "--out-json", tmp_path / "o.json"]
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, magnitude=np.ones((3, 12, 7), np.float32))
    for extra, message in (([], "needs the run's magnitude spectrum"), (["--spectrum", bad], "truncated or corrupt"),
                           (["--spectrum", rgb], "has 3 channel(s), the network's input 1")):
        r = _featviz(*base, *extra)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert not (tmp_path / "o.npz").exists()
    r = _featviz("spectrum", "--data", tmp_path / "nowhere", "--out", tmp_path / "s.npz")
    assert r.returncode == 2 and "prepared dataset missing" in r.stderr


def test_chunk_keeps_the_transparency_map(maco_run):
    from featviz.chunks import ascent_chunks, read_chunk_transparency, read_layer_ascent

    alpha = read_chunk_transparency(ascent_chunks(maco_run / "ascent" / "classes")[0])
    assert alpha.shape == (3, 12, 12) and alpha.max() == pytest.approx(1.0) and alpha.min() >= 0
    rec = json.loads((maco_run / "ascent" / "classes" / "0.json").read_text())
    assert rec["recipe"]["name"] == "maco" and rec["batch_size"] >= 1
    assert read_layer_ascent(maco_run / "ascent" / "conv1").transparency().shape == (4, 12, 12)
    assert read_chunk_transparency(ascent_chunks(maco_run / "ascent" / "fc1")[0]) is None  # other recipes keep none


def test_unit_and_class_pages_show_the_transparency(maco_run, tmp_path):
    from featviz.report import render_run

    site = tmp_path / "site"
    render_run(maco_run, site, {})
    page = (site / "units" / "classes" / "1.html").read_text()
    assert 'id="transparency"' in page and "1-alpha.png" in page and "1-maco.png" in page
    assert (site / "units" / "classes" / "1-alpha.png").is_file() and (site / "units" / "classes" / "1-maco.png").is_file()
    assert "transparency" in (site / "units" / "conv1" / "0.html").read_text()
    assert "transparency" not in (site / "units" / "fc1" / "0.html").read_text()
    classes = (site / "classes.html").read_text()
    assert classes.count('class="alpha"') == 3 and "transparency map as alpha" in classes


def test_display_alpha_and_blend():
    from featviz.report.transparency import display_alpha, over_white

    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    d = display_alpha(a)
    assert d.max() == pytest.approx(1.0) and (d[-2:] == 1.0).all() and d[0, 0] == 0.0
    assert display_alpha(np.zeros((4, 4))).max() == 0.0
    img = np.zeros((3, 10, 10), np.float32)
    out = over_white(img, d)
    assert out[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and out[:, -1, -1].tolist() == [0.0, 0.0, 0.0]


def test_needs_spectrum():
    from featviz.spectrum import needs_spectrum

    assert needs_spectrum({})  # the default `auto` is maco for the classes of colour or large inputs
    assert not needs_spectrum({}, (1, 28, 28)) and needs_spectrum({}, (3, 32, 32)) and needs_spectrum({}, (3, 224, 224))
    lucid_classes = {"recipe": {"class": "lucid-scaled"}}
    assert not needs_spectrum(lucid_classes, (3, 28, 28)) and not needs_spectrum(lucid_classes, (3, 224, 224))
    assert needs_spectrum({"recipe": {"class": "maco"}})
    assert needs_spectrum({"recipe": {"layers": {"conv2": "maco"}}})
    assert needs_spectrum({"overrides": {"dense": {"param": "maco"}}})  # any recipe made MACO's by overrides
    assert needs_spectrum({"compare": {"recipes": ["hvass", "maco"]}})
    assert not needs_spectrum({**lucid_classes, "compare": {"recipes": ["hvass", "lucid"]}}, (3, 28, 28))


def test_recipes_verb_lists_maco():
    r = _featviz("recipes")
    assert r.returncode == 0 and "maco" in r.stdout and "Fel et al. 2023" in r.stdout


def test_workflow_makes_the_spectrum_for_maco_runs_only(tmp_path, monkeypatch):
    """On the tiny .test config: a run whose class recipe (and one comparison entry) is maco gets rule
    spectrum before its ascent and compare jobs, which read it; the archive's file list has it."""
    import copy

    import yaml
    from snakemake.utils import validate

    from featviz.config import resolve_runs
    from tests.snakemake_run import ROOT, snakemake
    from tests.synthetic import make_imagefolder

    make_imagefolder(tmp_path / "shapes", per_class=8, test_per_class=2)
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    cfg["runs"][0]["train"]["epochs"] = 1
    quick = {"steps": 3, "class_steps": 3, "crops": 2}
    cfg["runs"][0]["ascent"].update(recipe={"class": "maco"}, overrides={"class": quick},
                                    compare={"recipes": [{"recipe": "maco", "overrides": quick, "label": "maco"}],
                                             "units_per_layer": 2, "layers": ["classes"]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    filled = copy.deepcopy(cfg)
    validate(filled, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    run = resolve_runs(filled)[0].id
    targets = [f"results/{run}/ascent/classes/0.json", f"results/{run}/compare/maco"]
    r = snakemake(tmp_path, *targets, configfile=path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"spectrum\s+1\b", r.stdout + r.stderr)
    assert (tmp_path / "results" / run / "spectrum.npz").is_file()
    assert json.loads((tmp_path / "results" / run / "compare" / "maco" / "classes.json").read_text())["recipe"]["name"] == "maco"
    with np.load(tmp_path / "results" / run / "ascent" / "classes" / "0.npz") as z:
        assert z["transparency"].shape[0] == 3
    # without a maco recipe anywhere (the classes' default is maco: lucid-scaled here), no spectrum job
    cfg["runs"][0]["ascent"] = {"chunk_size": 4, "recipe": {"class": "lucid-scaled"}}
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "results" / run / "spectrum.npz").unlink()  # else a planned job would not show either
    plan = snakemake(tmp_path, "--dry-run", configfile=path, timeout=300)
    stats = (plan.stdout + plan.stderr).split("Job stats")[-1]
    assert plan.returncode == 0 and re.search(r"\bascend\s+\d", stats), plan.stdout[-2000:]
    assert not re.search(r"\bspectrum\s+\d", stats), stats
