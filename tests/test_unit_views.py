"""Four sides of a conv unit (featviz.ascent.views): the neuron, negative and diversity views run in
the same batch as the positive pictures, each with its clean objective; the job stores them, the
unit page shows them, the archive keeps them, and the config names them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featviz.ascent import objectives as O
from featviz.ascent import visualize
from featviz.ascent.hooks import ActivationReader
from featviz.ascent.views import LUCID_DIVERSITY_WEIGHT, Views, batches, plan
from featviz.checks import check_sections
from featviz.errors import FeatvizError
from tests.test_ascent_engine import tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (1, 12, 12)
OV = {"steps": 60, "robustness_samples": 0, "snapshots": 0, "dead_retries": 0}


@pytest.fixture(scope="module")
def net():
    return tiny()


def _acts(net, x, layer="conv1"):
    with ActivationReader(net, [layer]) as read, torch.no_grad():
        return read(x)[layer]


def test_plan_puts_the_positives_first_and_keeps_each_unit_whole():
    v = Views({"neuron": [2], "negative": [2], "diversity": [0, 2]}, diversity_images=3)
    p = plan([0, 1, 2], v)
    assert p.n_positive == 3 and p.units[:3] == [0, 1, 2] and p.view[:3] == ["positive"] * 3
    assert list(zip(p.units[3:], p.view[3:], p.member[3:])) == [
        (0, "diversity", 0), (0, "diversity", 1), (0, "diversity", 2),
        (2, "neuron", 0), (2, "negative", 0), (2, "diversity", 0), (2, "diversity", 1), (2, "diversity", 2)]
    assert p.keys[0] == (0,) and len(set(p.keys)) == len(p.keys)  # positives keep their seed, the rest differ
    assert batches([0, 1, 2], v, 4) == [[0], [1], [2]]  # unit 0 has 4 elements, unit 2 has 6 (alone)
    assert batches([0, 1, 2, 3], None, 2) == [[0, 1], [2, 3]]
    assert batches([0, 1, 2], v, None) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="unknown view"):
        Views({"sideways": [0]})


def test_group_diversity_couples_only_one_units_set(net):
    x = torch.rand(4, *SHAPE)
    acts = {"conv1": _acts(net, x)}
    idx = torch.arange(4)
    d = O.group_diversity("conv1", [0, 0, 1, -1])(acts, idx)
    assert d[2] == 0 and d[3] == 0 and torch.allclose(d[0], d[1]) and d[0] > 0
    twin = {"conv1": acts["conv1"][[0, 0, 1]]}
    assert torch.allclose(O.group_diversity("conv1", [5, 5, 5])(twin, torch.arange(3))[:2].min(), torch.tensor(1.0) +
                          O.group_diversity("conv1", [5, 5])({"conv1": acts["conv1"][[0, 1]]}, torch.arange(2))[0])
    # Lucid's value for a batch: the summed similarities over i != j, divided by the batch size
    full = O.diversity("conv1")(acts, idx).sum()
    assert torch.allclose(O.group_diversity("conv1", [0, 0, 0, 0])(acts, idx).sum() / 4, full, atol=1e-6)


def test_the_views_reach_what_they_are_for(net):
    units = [0, 1, 2, 3]
    views = Views({"neuron": units, "negative": units})
    # hvass: no transforms, so that the centre stays the centre (a 12 px input under Lucid's 224 px
    # jitters is a different position every step)
    r = visualize(net, "conv1", units, "conv", SHAPE, recipe="hvass", overrides=OV, seed=3, views=views)
    plain = visualize(net, "conv1", units, "conv", SHAPE, recipe="hvass", overrides=OV, seed=3)
    np.testing.assert_allclose(r.images, plain.images, atol=1e-5)  # the positives are what they are alone
    assert r.view_images.shape == (8, 1, 12, 12) and [s["view"] for s in r.views] == ["neuron", "negative"] * 4
    neuron = {s["unit"]: i for i, s in enumerate(r.views) if s["view"] == "neuron"}
    negative = {s["unit"]: s for s in r.views if s["view"] == "negative"}
    imgs = torch.from_numpy(np.concatenate([r.images, r.view_images]))
    a = _acts(net, imgs)
    for i, u in enumerate(units):
        centre = a[:, u, 5, 5]  # conv1's maps are 10x10: the centre is (5, 5)
        j = 4 + neuron[u]
        # the neuron view drives its centre neuron above what the channel's own picture reaches there
        assert centre[j] > centre[i]
        assert r.views[neuron[u]]["objective"] == pytest.approx(float(centre[j]), rel=1e-4, abs=1e-5)
        # the negative view lowers the channel below the positive picture's value
        assert negative[u]["channel"] < r.objective[i]
        assert negative[u]["objective"] == pytest.approx(-negative[u]["channel"])


def _spread(images: np.ndarray) -> float:
    """Mean pairwise distance of a set of images."""
    f = images.reshape(len(images), -1)
    return float(np.mean([np.linalg.norm(f[i] - f[j]) for i in range(len(f)) for j in range(i + 1, len(f))]))


def test_the_diversity_term_keeps_a_units_images_apart(net):
    units = [0, 1, 2, 3]
    on = visualize(net, "conv1", units, "conv", SHAPE, recipe="lucid", overrides=OV, seed=5,
                   views=Views({"diversity": units}))
    off = visualize(net, "conv1", units, "conv", SHAPE, recipe="lucid", overrides=OV, seed=5,
                    views=Views({"diversity": units}, diversity_weight=0.0))
    assert LUCID_DIVERSITY_WEIGHT == 100 and on.view_images.shape == (16, 1, 12, 12)
    wider = 0
    for k, u in enumerate(units):
        rows = slice(4 * k, 4 * k + 4)
        assert all(s["unit"] == u and s["view"] == "diversity" for s in on.views[rows])
        assert [s["member"] for s in on.views[rows]] == [0, 1, 2, 3]
        # each image's clean objective is its channel, without the diversity term
        assert all(s["objective"] == s["channel"] for s in on.views[rows])
        wider += _spread(on.view_images[rows]) > _spread(off.view_images[rows])
    assert wider >= 3


def test_a_batch_cap_keeps_a_unit_with_its_views(net):
    units = [0, 1, 2]
    v = Views({"neuron": [0], "diversity": [0, 2]})
    ov = dict(OV, steps=8)
    whole = visualize(net, "conv1", units, "conv", SHAPE, recipe="lucid", overrides=ov, seed=1, views=v)
    split = visualize(net, "conv1", units, "conv", SHAPE, recipe="lucid", overrides=ov, seed=1, views=v, max_batch=2)
    assert [s["unit"] for s in split.stats] == units
    assert [(s["unit"], s["view"], s["member"]) for s in split.views] == \
        [(s["unit"], s["view"], s["member"]) for s in whole.views]
    np.testing.assert_allclose(split.view_images, whole.view_images, atol=1e-5)
    np.testing.assert_allclose(split.images, whole.images, atol=1e-5)
    dense = visualize(net, "fc1", [0, 1], "dense", SHAPE, recipe="lucid", overrides=ov, views=v)
    assert dense.views is None and dense.view_images is None  # conv units only


def test_views_with_macos_crops(net):
    """MACO sends `crops` images per element: a diversity set's similarities average over the other
    images' crops, so the term weighs what it weighs with one crop."""
    x = torch.rand(2, *SHAPE)
    acts = {"conv1": _acts(net, x)}
    one = O.group_diversity("conv1", [0, 0])(acts, torch.arange(2))
    crops = {"conv1": acts["conv1"][[0, 0, 0, 1, 1, 1]]}
    three = O.group_diversity("conv1", [0, 0])(crops, torch.arange(2).repeat_interleave(3))
    assert torch.allclose(three, one.repeat_interleave(3), atol=1e-6)
    ov = {"steps": 4, "crops": 3, "robustness_samples": 0, "snapshots": 0, "dead_retries": 0}
    r = visualize(net, "conv1", [0, 1], "conv", SHAPE, recipe="maco", overrides=ov,
                  views=Views({"neuron": [0], "diversity": [1]}, diversity_images=2))
    assert r.view_images.shape == (3, 1, 12, 12) and np.isfinite(r.view_images).all()
    assert r.transparency.shape == (2, 12, 12)  # the positive pictures' maps only


@pytest.mark.parametrize("bad,message", [
    ({"show": ["neuron", "sideways"]}, "ascent.views.show[1]: 'sideways' is not one of ['neuron', 'negative', 'diversity']"),
    ({"diversity_images": 1}, "ascent.views.diversity_images: 1 is less than the minimum of 2"),
    ({"units_per_layer": -1}, "ascent.views.units_per_layer: -1 is less than the minimum of 0"),
    ({"diversty_weight": 1}, "ascent.views: Additional properties are not allowed"),
])
def test_bad_views_config_names_the_key(bad, message):
    with pytest.raises(FeatvizError) as exc:
        check_sections(ascent={"views": bad})
    assert str(exc.value).startswith(message)


UNITS_INFO = {"input_shape": [1, 12, 12], "classes": ["a", "b"], "layers": [
    {"name": "conv1", "kind": "conv", "units": 4, "output_shape": [4, 10, 10]},
    {"name": "fc1", "kind": "dense", "units": 8, "output_shape": [8]}]}


def test_which_units_get_the_views():
    from featviz.ascent_job import views_for
    from featviz.schema import with_defaults

    conv, dense = UNITS_INFO["layers"]
    cfg = with_defaults("ascent", {})
    v = views_for(conv, [0, 1, 2, 3], cfg)
    assert v.units == {"neuron": (0, 1), "negative": (0, 1), "diversity": (0, 1)} and v.diversity_weight == 100
    assert views_for(conv, [2, 3], cfg) is None and views_for(dense, [0, 1], cfg) is None
    cfg = with_defaults("ascent", {"units": {"conv1": [1, 2, 3]}, "views": {"units_per_layer": None, "show": ["negative"]}})
    assert views_for(conv, [1, 2, 3], cfg).units == {"negative": (1, 2, 3)}
    cfg = with_defaults("ascent", {"views": {"units": {"conv1": [3]}, "show": []}})
    assert views_for(conv, [0, 1, 2, 3], cfg) is None
    cfg = with_defaults("ascent", {"views": {"units": {"conv1": [3]}}})
    assert views_for(conv, [0, 1, 2, 3], cfg).units["neuron"] == (3,)


@pytest.mark.parametrize("views,ascent,message", [
    ({"units": {"conv9": [0]}}, {}, "ascent.views.units: unknown layer 'conv9'"),
    ({"units": {"fc1": [0]}}, {}, "ascent.views.units.fc1: layer 'fc1' is not a conv layer"),
    ({"units": {"conv1": [4]}}, {}, "ascent.views.units.conv1: unit 4 is not visualized ('conv1' has 4 units)"),
    ({"units": {"conv1": [2]}}, {"units": {"conv1": [0, 1]}},
     "ascent.views.units.conv1: unit 2 is not visualized (ascent.layers or ascent.units leave it out)"),
])
def test_views_units_are_checked_against_the_network(views, ascent, message):
    from featviz.ascent_job import check_recipe_values

    with pytest.raises(FeatvizError) as exc:
        check_recipe_values(UNITS_INFO, {**ascent, "views": views})
    assert str(exc.value).startswith(message)
    check_recipe_values(UNITS_INFO, {"views": {"units": {"conv1": [3]}}})


def test_the_job_stores_the_views_and_the_unit_page_shows_them(tmp_path):
    from featviz.archive import make_archive, verify_archive
    from featviz.ascent_job import run_chunk
    from featviz.report.render import render_run
    from tests.synthetic_run import make_run

    run = make_run(tmp_path, steps=6)
    cfg = {"recipe": {"conv": "lucid"}, "overrides": {"conv": {"steps": 6}}, "chunk_size": 4,
           "views": {"units_per_layer": 1, "diversity_images": 3}}
    folder = run / "ascent" / "conv1"
    for c in range(2):  # conv1 has 4 units: chunks of 4 would be one chunk; replace the synthetic results
        for p in folder.glob(f"{c}.*"):
            p.unlink()
    rec = run_chunk(run / "model", run / "units.json", "conv1", 0, cfg, folder / "0.npz", folder / "0.json", "cpu")
    assert [(v["unit"], v["view"]) for v in rec["views"]] == [(0, "neuron"), (0, "negative")] + [(0, "diversity")] * 3
    assert rec["view_settings"] == {"diversity_images": 3, "diversity_weight": 100.0}
    with np.load(folder / "0.npz") as z:
        assert z["view_images"].shape == (5, 1, 12, 12) and z["view_images"].dtype == np.uint8
    # a chunk whose units are past the first `units_per_layer` has no views
    rec2 = run_chunk(run / "model", run / "units.json", "conv2", 1, cfg, tmp_path / "c.npz", tmp_path / "c.json", "cpu")
    assert "views" not in rec2
    with np.load(tmp_path / "c.npz") as z:
        assert "view_images" not in z.files

    out = tmp_path / "reports" / run.name
    render_run(run, out)
    page = (out / "units" / "conv1" / "0.html").read_text()
    assert 'id="sides"' in page and page.count('class="card side-') == 6
    for name in ("0-neuron", "0-negative", "0-diversity0", "0-diversity2"):
        assert (out / "units" / "conv1" / f"{name}.png").is_file() and f"{name}.png" in page
    assert 'id="sides"' not in (out / "units" / "conv1" / "1.html").read_text()
    assert "0-neuron" not in (out / "layer-conv1.html").read_text()  # the layer page keeps one thumbnail

    tar = tmp_path / f"{run.name}.tar.gz"
    make_archive(out, run, tar)
    verify_archive(tar)
    import tarfile
    with tarfile.open(tar) as t:
        names = set(t.getnames())
    assert f"{run.name}/report/units/conv1/0-diversity1.png" in names  # the views, at display size
    # the chunk's record is archived, its lossless arrays (the views among them) are not
    assert f"{run.name}/results/ascent/conv1/0.json" in names and f"{run.name}/results/ascent/conv1/0.npz" not in names
