"""Views on real images (issue 28 items 2 and 3): Grad-CAM and SmoothGrad on a planted net, DeepDream
and caricature raise what they maximize, `featviz attribute` and `featviz dream` on the tiny
synthetic run, and their blocks on the class and layer pages."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from featviz.attribution import gradcam, saliency, smoothgrad
from featviz.errors import FeatvizError
from featviz.model.loaded import LoadedModel

PATCH = (11, 4)  # the planted bright patch's centre (row, column)


def planted():
    """A bright-patch detector: conv (3x3 of ones) -> ReLU -> global mean -> logits (-s, +s): class
    "patch" rises with the patch, class "none" falls."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(-4.0)  # silent on the dim background (9 x 0.1 < 4), on at the patch
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.zero_()
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    model = LoadedModel(net, ["none", "patch"], (1, 16, 16), [0.0], [1.0])
    x = torch.full((2, 1, 16, 16), 25, dtype=torch.uint8)
    r, c = PATCH
    x[:, :, r - 1:r + 2, c - 1:c + 2] = 255
    return model, conv, x


def _peak(m: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(m), m.shape))


def test_gradcam_peaks_where_the_planted_feature_is():
    model, conv, x = planted()
    maps = gradcam(model, x, conv, torch.tensor([1, 0]), "cpu")
    assert maps.shape == (2, 16, 16)
    r, c = _peak(maps[0])
    assert abs(r - PATCH[0]) <= 1 and abs(c - PATCH[1]) <= 1 and maps[0].max() == pytest.approx(1.0)
    # far from the patch the evidence for "patch" is nil
    assert maps[0][:5, 10:].max() < 0.05
    # the patch is evidence against "none": nothing positive to show
    assert maps[1].max() == 0.0


def test_smoothgrad_and_the_gradient_peak_at_the_planted_feature():
    model, _, x = planted()
    sg = smoothgrad(model, x[:1], torch.tensor([1]), "cpu", samples=8, noise=0.1, seed=0)
    grad, _ = saliency(model, x[:1], "cpu", torch.tensor([1]))
    for m in (sg[0], grad[0]):
        r, c = _peak(m)
        assert abs(r - PATCH[0]) <= 2 and abs(c - PATCH[1]) <= 2
        assert m[:4, 10:].max() < 0.2
    # seeded: the same maps again
    again = smoothgrad(model, x[:1], torch.tensor([1]), "cpu", samples=8, noise=0.1, seed=0)
    assert np.array_equal(sg, again)


def test_image_param_starts_at_the_image():
    from featviz.ascent import get_recipe
    from featviz.ascent.param import image_param

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 10, 12, generator=g) * 0.9 + 0.05
    for recipe in ("lucid-scaled", "hvass"):
        p = image_param(get_recipe(recipe), x, "cpu")
        assert torch.allclose(p.picture().detach(), x, atol=1e-4), recipe
    with pytest.raises(ValueError):
        image_param(get_recipe("maco"), x, "cpu")


@pytest.fixture(scope="module")
def tiny_net():
    from featviz.model import build

    torch.manual_seed(0)
    layers = [{"type": "conv", "out": 4, "kernel": 3, "padding": "same"}, {"type": "relu"},
              {"type": "flatten"}, {"type": "fc", "out": 5}, {"type": "relu"}, {"type": "fc"}]
    net = build(layers, (1, 8, 8), 3).eval()
    conv = next(n for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    return net, conv


def test_deepdream_raises_the_layers_norm_and_caricature_the_dot_product(tiny_net):
    from featviz.ascent.dream import dream

    net, conv = tiny_net
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    dd = dream(net, conv, x, "deepdream", "lucid-scaled", {"steps": 24}, seed=0)
    assert dd.images.shape == (2, 1, 8, 8)
    assert np.all(dd.final > dd.image)  # the layer's mean squared activation, above the test image's own
    car = dream(net, conv, x, "caricature", "lucid-scaled", {"steps": 24}, seed=0, cossim_pow=1.0)
    assert np.all(car.final > car.start)  # the dot product with the image's activations, above the noise's
    again = dream(net, conv, x, "caricature", "lucid-scaled", {"steps": 24}, seed=0, cossim_pow=1.0)
    assert np.array_equal(car.images, again.images)


def test_choose_strongest_and_most_confident_mistakes():
    from featviz.class_views import choose

    predicted = np.array([0, 1, 1, 1, 0, 1])
    confidence = np.array([0.9, 0.8, 0.95, 0.7, 0.6, 0.95])
    labels = np.array([0, 0, 1, 2, 0, 2])
    picks = choose([[0, 4], [2, 1], [3]], predicted, confidence, labels, images=1, mistakes=2)
    assert picks[0] == {"top": [0], "mistakes": []}
    # class 1's mistakes: #5 (0.95) before #1 (0.8) before #3 (0.7, left out)
    assert picks[1] == {"top": [2], "mistakes": [5, 1]}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.synthetic_run import make_run

    return make_run(tmp_path_factory.mktemp("views"), steps=30)


def test_attribute_and_dream_verbs_and_their_pages(tiny_run, tmp_path):
    from featviz.cli import main
    from featviz.report.render import render_run

    data = tiny_run.parent / "data" / tiny_run.name
    assert main(["attribute", "--results", str(tiny_run), "--data", str(data), "--config", '{"samples": 4}',
                 "--select", '{"units": {"classes": [0, 2]}}', "--device", "cpu",
                 "--out", str(tiny_run / "attribution")]) == 0
    assert main(["dream", "--results", str(tiny_run), "--data", str(data), "--config", '{"steps": 8, "images": 2}',
                 "--select", '{"layers": ["conv2", "classes"]}', "--device", "cpu",
                 "--out", str(tiny_run / "layer_views")]) == 0
    rec = json.loads((tiny_run / "attribution" / "attribution.json").read_text())
    assert rec["layer"] == "conv2" and rec["maps"] == ["gradcam", "smoothgrad", "gradient"]
    assert [c["class"] for c in rec["classes"]] == [0, 2] and all(len(c["top"]) == 4 for c in rec["classes"])
    z = np.load(tiny_run / "attribution" / "attribution.npz")
    assert z["images"].shape[0] == len(rec["rows"]) == z["gradcam"].shape[0]
    views = json.loads((tiny_run / "layer_views" / "layer_views.json").read_text())
    assert [e["name"] for e in views["layers"]] == ["conv2"] and len(views["images"]) == 2

    site = tmp_path / "site"
    render_run(tiny_run, site, {})
    page = (site / "units" / "classes" / "0.html").read_text()
    assert 'id="looks-top"' in page and "Grad-CAM at conv2" in page
    assert page.count('src="../../views/classes/') == len(rec["classes"][0]["top"]) + len(rec["classes"][0]["mistakes"])
    layer = (site / "layer-conv2.html").read_text()
    assert 'id="deepdream"' in layer and 'id="caricature"' in layer
    assert 'id="deepdream"' not in (site / "layer-conv1.html").read_text()
    assert 'id="looks"' not in (site / "units" / "classes" / "1.html").read_text()  # class 1 not explained


def test_attribution_labels_are_the_networks_outputs(tiny_run, tmp_path):
    """A network whose outputs are not the dataset's classes (model.json's `label_to_output`, as an
    imported ImageNet network on a folder of a few classes): the explained images' labels, and which
    images count as mistakes, are read in the network's output indices."""
    import shutil

    from featviz.cli import main

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "model" / "model.json").read_text())
    n = len(meta["classes"])
    meta["label_to_output"] = [n - 1 - i for i in range(n)]  # dataset class i is output n-1-i
    (run / "model" / "model.json").write_text(json.dumps(meta))
    data = tiny_run.parent / "data" / tiny_run.name
    assert main(["attribute", "--results", str(run), "--data", str(data), "--config", '{"samples": 2}',
                 "--device", "cpu", "--out", str(run / "attribution2")]) == 0
    rec = json.loads((run / "attribution2" / "attribution.json").read_text())
    from featviz.artifacts import read_prepared

    test = read_prepared(data, "test")
    for row in rec["rows"]:
        assert row["label"] == n - 1 - int(test.labels[row["index"]])
    for c in rec["classes"]:
        assert all(rec["rows"][r]["label"] != c["class"] for r in c["mistakes"])


def test_bad_settings_stop_before_any_compute(tiny_run, tmp_path):
    from featviz.class_views import attribution_config
    from featviz.layer_views import layer_views_config, run_dream

    data = tiny_run.parent / "data" / tiny_run.name
    with pytest.raises(FeatvizError, match="samples"):
        attribution_config({"samples": 0})
    with pytest.raises(FeatvizError, match="layer_views.recipe"):
        run_dream(tiny_run, data, tmp_path / "out", layer_views_config({"recipe": "maco"}), {})
    with pytest.raises(FeatvizError, match="layer_views.recipe"):
        run_dream(tiny_run, data, tmp_path / "out", layer_views_config({"recipe": "nope"}), {})
    with pytest.raises(FeatvizError, match="ascent.layers"):
        run_dream(tiny_run, data, tmp_path / "out", layer_views_config({}), {"layers": ["nope"]})
    assert not (tmp_path / "out").exists()


def test_a_network_without_classes_gets_an_empty_record(tiny_run, tmp_path):
    from featviz.class_views import attribution_config, run_attribute
    from featviz.io import read_json, write_json
    from featviz.report.views import attach_class_views

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("ascent", "attribution", "layer_views"))
    units = read_json(run / "units.json")
    units["layers"] = [layer for layer in units["layers"] if layer["kind"] != "class"]
    write_json(run / "units.json", units)
    run_attribute(run, tiny_run.parent / "data" / tiny_run.name, run / "attribution", attribution_config({}))
    assert read_json(run / "attribution" / "attribution.json")["classes"] == []
    assert attach_class_views(tmp_path / "site", run, {"by_unit": {}}, []) is None
