"""The comparison pages (featviz/report/matching.py) of a tiny synthetic run compared with a model
folder (the transfer model's case: pictures are top test images) and with another run (its ascent
images): the pages are written and linked from the run page, their unit links resolve, and in
headless Chromium (skipped without it) they load with every picture and no console error."""
from __future__ import annotations

import copy
import re

import pytest
import torch

from featviz.matching import model_side, run_match, run_side
from featviz.model import build, save_model
from featviz.report import render_index, render_run
from tests.synthetic_run import LAYERS, make_run
from tests.browser import browser_unavailable_reason, crawl


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("match-report")
    run = make_run(root, steps=30)
    other = make_run(root, name="tiny2-0123abcd", steps=30, conv_channels=(5, 6))
    data = run.parent / "data" / run.name
    torch.manual_seed(5)
    meta = dict(__import__("json").loads((run / "model" / "model.json").read_text()))
    layers = copy.deepcopy(LAYERS)
    layers[0]["out"] = 3
    save_model(run / "transfer_model", build(layers, (1, 12, 12), 3), dict(meta, layers=layers, model={"layers": layers}))
    run_match(run_side(run, False), model_side(run / "transfer_model", False, "transfer"), data, {"images": 150},
              run / "match" / "transfer.json", device="cpu")
    run_match(run_side(run, False), run_side(other, False), data, {"images": 150}, run / "match" / f"{other.name}.json",
              device="cpu")
    out = root / "reports" / run.name
    render_run(run, out, {"name": "tiny"})
    render_index([out], out.parent / "index.html")
    return out, other.name


def test_pages_written_and_linked(site):
    out, other = site
    index = (out / "index.html").read_text()
    for page in ("match-transfer.html", f"match-{other}.html"):
        assert f'href="{page}" class="match-link"' in index
        html = (out / page).read_text()
        assert 'id="layer-match-table"' in html and 'class="close-share" data-layer="conv1"' in html
        for href in re.findall(r'href="([^"#]+)"', html):
            assert (out / href).is_file() or href == "../index.html", href
        for src in re.findall(r'src="([^"]+)"', html):
            assert (out / src).is_file(), src
        # this run's units link to their pages and show their ascent image
        assert 'href="units/conv1/' in html and 'src="units/conv1/' in html
    transfer = (out / "match-transfer.html").read_text()
    assert "transfer model" in transfer and "(top test images)" in transfer
    assert "(ascent)" in (out / f"match-{other}.html").read_text().split('id="layer-conv1"')[1]


@pytest.mark.skipif(bool(browser_unavailable_reason()), reason=f"no headless Chromium: {browser_unavailable_reason()}")
def test_comparison_pages_in_chromium(site):
    out, other = site
    report = crawl(out.parent / "index.html", screenshot_dir=None)
    print(report.summary())
    report.assert_clean()
    pages = set(report.page_paths)
    run = out.name
    assert {f"{run}/match-transfer.html", f"{run}/match-{other}.html", f"{run}/units/conv1/0.html"} <= pages


def test_only_the_given_comparisons_are_rendered(site, tmp_path):
    """The workflow names the comparisons of the config: a file left from an earlier config is not shown."""
    out, other = site
    results = out.parent.parent / "results" / out.name
    render_run(results, tmp_path / "r", {"name": "tiny"}, matches=[results / "match" / "transfer.json"])
    assert (tmp_path / "r" / "match-transfer.html").is_file() and not (tmp_path / "r" / f"match-{other}.html").exists()
    assert f"match-{other}.html" not in (tmp_path / "r" / "index.html").read_text()
    render_run(results, tmp_path / "none", {"name": "tiny"}, matches=[])
    assert "match-" not in (tmp_path / "none" / "index.html").read_text()


def test_an_invalid_transfer_model_is_not_compared(site, tmp_path):
    """transfer.json says the transfer model is not valid (not well above chance): its comparison
    page is not written nor linked, the run page says why in plain words; other comparisons stay."""
    import json

    out, other = site
    results = out.parent.parent / "results" / out.name
    reason = "the transfer model's test accuracy 0.190 is not well above chance (0.333)"
    (results / "transfer.json").write_text(json.dumps({"images": [], "transfer_model": {
        "model": {"preset": "auto"}, "seed": 1, "test_accuracy": 0.19, "valid": False, "invalid_reason": reason}}))
    try:
        render_run(results, tmp_path / "r", {"name": "tiny"})
    finally:
        (results / "transfer.json").unlink()
    html = (tmp_path / "r" / "index.html").read_text()
    assert not (tmp_path / "r" / "match-transfer.html").exists() and "match-transfer" not in html
    assert f'href="match-{other}.html" class="match-link"' in html
    assert 'id="transfer-invalid"' in html and reason.replace("'", "&#39;") in html
    assert "not used: " + reason.replace("'", "&#39;") in (tmp_path / "r" / "classes.html").read_text()
