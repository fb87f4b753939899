"""The HTML report over a tiny synthetic run: every page exists, user strings are escaped and
cannot steer file names, links are relative, the config snapshot is written."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from featviz.report import render_index, render_run
from featviz.report.templating import slug
from featviz.report.site import _inside, unique_slugs
from tests.synthetic_run import make_run

EVIL_CLASS = "<script>alert(1)</script>"
EVIL_LAYER = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = make_run(root, classes=["zero", EVIL_CLASS, "T-shirt/top"], steps=30,
                   layer_rename={"fc1": EVIL_LAYER})
    out = root / "reports" / run.name
    render_run(run, out, {"name": "tiny", "train": {"epochs": 1}})
    render_index([out], root / "reports" / "index.html")
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_every_page_exists(site):
    names = {p.relative_to(site).as_posix() for p in _pages(site)}
    assert {"index.html", "classes.html", "layer-conv1.html", "layer-conv2.html", "layer-classes.html"} <= names
    evil = f"layer-{slug(EVIL_LAYER)}.html"
    assert evil in names
    units = json.loads((site.parent.parent / "results" / site.name / "units.json").read_text())
    n_units = sum(layer["units"] for layer in units["layers"])
    assert len([n for n in names if n.startswith("units/")]) == n_units
    assert json.loads((site / "config.json").read_text())["name"] == "tiny"
    s = json.loads((site / "summary.json").read_text())
    assert s["units"] == n_units and s["model_id"] == "0123abcd"


def test_user_strings_are_escaped(site):
    for page in _pages(site) + [site.parent / "index.html"]:
        html = page.read_text()
        assert "<script>alert" not in html, page
        assert "<img src=x" not in html, page
        # the only scripts are the report's own: inline sort/filter code, the search and its index, the tables
        for m in re.finditer(r"<script[^>]*>", html):
            assert m.group(0) in ("<script>", '<script src="static/search.js" defer>',
                                  '<script src="static/tables.js" defer>'), page
    run_page = (site / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
    assert "&lt;img src=x onerror=alert(2)&gt;" in run_page


def test_links_are_relative_and_stay_inside(site):
    root = site.parent
    for page in _pages(site) + [root / "index.html"]:
        for ref in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            assert not re.match(r"^[a-z]+:|^/", ref), (page, ref)
            if ref.startswith("#"):
                continue
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_relative_to(root.resolve()), (page, ref)
            if page.parent == root or ref != "../index.html":
                assert target.is_file(), (page, ref)
            assert not target.is_dir()


def test_slug_cannot_leave_the_folder(tmp_path):
    for name in ("../../etc/passwd", "..", "/abs", "a/../../b", "", "<script>", "x" * 300, "T-shirt/top"):
        s = slug(name)
        assert s and "/" not in s and not s.startswith(".") and len(s) <= 80
        assert (tmp_path / s).resolve().parent == tmp_path.resolve()
    assert unique_slugs(["a b", "a_b", "A_B"]) == ["a_b", "a_b-1", "A_B-2"]
    with pytest.raises(ValueError):
        _inside(tmp_path, "../outside.png")


def test_layer_page_carries_metrics_and_flags(site):
    html = (site / "layer-conv2.html").read_text()
    assert 'id="sort"' in html and 'id="filter"' in html and 'id="min"' in html
    cells = re.findall(r"data-v='([^']*)'", html)
    assert len(cells) == 6
    m = json.loads(cells[0].replace("&#34;", '"'))
    assert {"objective", "robustness", "dataset_max", "frac_active", "steps"} <= set(m)
    for key in ("robustness", "dataset_max", "frac_active"):
        assert f'<option value="{key}">' in html
    classes = (site / "classes.html").read_text()
    assert "transfer" in classes and "T-shirt/top" in classes


def test_dead_and_weak_are_marked(site):
    results = site.parent.parent / "results" / site.name
    probe = json.loads((results / "probe/probe.json").read_text())
    layer = next(e for e in probe["layers"] if e["name"] == EVIL_LAYER)
    dead = [u["unit"] for u in layer["per_unit"] if u["dead"]]
    html = (site / f"layer-{slug(EVIL_LAYER)}.html").read_text()
    for u in dead:
        assert re.search(rf'class="cell[^"]*\bdead\b[^"]*" href="units/[^/]+/{u}\.html"', html)
    unit = (site / f"units/{slug(EVIL_LAYER)}/{dead[0]}.html").read_text() if dead else ""
    assert not dead or 'class="tag dead"' in unit


def test_unit_page_has_everything(site):
    html = (site / "units/conv2/1.html").read_text()
    for what in ("1-evo.png", 'src="../../top/', "1-crops.png", "<svg class=\"hist\"", "robustness", "seed",
                 '"name": "synthetic"', "after step 1, 10, 100, final", '<svg class="hist trace"',
                 "snapshot after step 10"):
        assert what in html, what
    # the trace (issue 13 item 5): the chunk's 100 stored steps, the last at the right edge of the plot
    points = html.split('<polyline points="')[1].split('"')[0].split()
    assert len(points) == 100 and points[-1].startswith("300.0,")
    # the top test images are shared thumbnails of the probe's bank, one file per test image
    for src in re.findall(r'src="\.\./\.\./(top/[^"]+)"', html):
        assert (site / src).is_file(), src


def test_pictures_are_png_when_small_and_jpeg_when_large(tmp_path):
    from featviz.figures import save_image

    rng = np.random.default_rng(0)
    small = save_image(tmp_path / "s", rng.random((1, 28, 28), dtype=np.float32), 112)
    large = save_image(tmp_path / "l", rng.random((3, 224, 224), dtype=np.float32), 112)
    assert small == "s.png" and large == "l.jpg"
    from PIL import Image

    assert Image.open(tmp_path / small).size == (112, 112)  # whole-pixel upscaling, crisp
    assert Image.open(tmp_path / large).size == (112, 112)  # downscaled to the display size
    assert (tmp_path / large).stat().st_size < 224 * 224 * 3 / 4


def test_report_without_probe_or_snapshots_still_renders(tmp_path, site):
    results = site.parent.parent / "results" / site.name
    copy = tmp_path / "r" / site.name
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("probe"))
    render_run(copy, tmp_path / "out", {})
    assert (tmp_path / "out" / "index.html").exists()
    assert "Strongest test images" not in (tmp_path / "out" / "units/conv2/1.html").read_text()
    assert (tmp_path / "out" / "units/conv2/1.html").exists()


def test_confusion_picture_of_a_thousand_classes_stays_small(tmp_path):
    """1000 ImageNet classes: a fixed-size picture (it once asked for a 45,000-pixel square)."""
    from PIL import Image

    from featviz.figures import confusion_png

    k = 1000
    confusion_png(tmp_path / "c.png", np.eye(k, dtype=np.int64) * 3, [f"n{i:08d}" for i in range(k)])
    w, h = Image.open(tmp_path / "c.png").size
    assert max(w, h) <= 1400
