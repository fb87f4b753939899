"""Open the rendered report in headless Chromium: every page of a synthetic run (and of the
archive extracted elsewhere) loads with no broken link, missing image, external reference or JS
error; the layer page's sort and filter controls work. Skipped without Chromium."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from featviz.archive import make_archive, verify_archive
from featviz.report import render_index, render_run
from tests.browser import Browser, browser_unavailable_reason, crawl
from tests.synthetic_run import make_run

pytestmark = pytest.mark.browser
_why = browser_unavailable_reason()
if _why:
    pytest.skip(f"no headless Chromium: {_why}", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent


def _exercise_controls(driver, rel):
    """On a layer page: sort by every metric both ways, filter, threshold; check the order."""
    if "/layer-" not in "/" + rel:
        return
    from selenium.webdriver.support.ui import Select

    sort = Select(driver.find_element("id", "sort"))
    keys = [o.get_attribute("value") for o in sort.options]
    assert "objective" in keys and "dataset_max" in keys, keys
    direction = driver.find_element("id", "dir")
    for key in keys:
        sort.select_by_value(key)
        for _ in range(2):
            direction.click()
            desc = direction.get_attribute("data-desc") == "1"
            vals = driver.execute_script(
                "return Array.prototype.map.call(document.querySelectorAll('#grid > .cell'),"
                " function (c) { return c._v[arguments[1]]; });".replace("arguments[1]", repr(key)))
            vals = [v for v in vals if v is not None]
            assert vals == sorted(vals, reverse=desc), (rel, key, desc, vals)
    filt = Select(driver.find_element("id", "filter"))
    total = len(driver.find_elements("css selector", "#grid > .cell"))
    for flag in ("dead", "weak", "redundant", "ok", "all"):
        filt.select_by_value(flag)
        shown = driver.find_elements("css selector", "#grid > .cell:not([hidden])")
        for c in shown:
            flags = c.get_attribute("data-flags").split()
            assert flag == "all" or (flags == [] if flag == "ok" else flag in flags), (rel, flag, flags)
        count = driver.find_element("id", "count").text
        assert count.startswith(f"{len(shown)} of {total}"), count
    sort.select_by_value("objective")
    box = driver.find_element("id", "min")
    box.send_keys("1.5")
    shown = driver.find_elements("css selector", "#grid > .cell:not([hidden])")
    assert all(float(driver.execute_script("return arguments[0]._v.objective", c)) >= 1.5 for c in shown)
    box.clear()
    box.send_keys("\b")


def test_synthetic_report_in_chromium(tmp_path):
    run = make_run(tmp_path, classes=["zero", "<script>alert(1)</script>", "T-shirt/top"], steps=20)
    reports = tmp_path / "reports"
    render_run(run, reports / run.name, {"name": "tiny"})
    make_archive(reports / run.name, run, reports / f"{run.name}.tar.gz")
    render_index([reports / run.name], reports / "index.html")
    shots = tmp_path / "screenshots"
    with Browser() as browser:
        report = crawl(reports / "index.html", screenshot_dir=shots, browser=browser,
                       screenshot_names={f"{run.name}/index.html": "run.png",
                                         f"{run.name}/layer-conv2.html": "layer-conv2.png",
                                         f"{run.name}/units/conv2/1.html": "unit-conv2-1.png"},
                       on_page=_exercise_controls)
        print(report.summary())
        print(f"screenshots in {shots}")
        report.assert_clean()
        pages = set(report.page_paths)
        assert {f"{run.name}/index.html", f"{run.name}/classes.html", f"{run.name}/layer-conv1.html",
                f"{run.name}/units/classes/1.html"} <= pages
        assert f"{run.name}.tar.gz" in report.checked_files or any(f.endswith(".tar.gz") for f in report.checked_files)
        assert (shots / "run.png").stat().st_size > 0 and (shots / "layer-conv2.png").stat().st_size > 0

        # the archive, extracted elsewhere, verifies and its report opens clean from file://
        elsewhere = tmp_path / "elsewhere"
        with tarfile.open(reports / f"{run.name}.tar.gz", "r:gz") as tar:
            tar.extractall(elsewhere, filter="data")
        assert verify_archive(elsewhere / run.name) > 0
        inside = crawl(elsewhere / run.name / "index.html", browser=browser)
        print(inside.summary())
        inside.assert_clean()
        assert "report/layer-conv2.html" in inside.page_paths


def _mnist_reports() -> list[Path]:
    root = Path(os.environ.get("FEATVIZ_REPORTS", REPO / "reports"))
    return sorted(p for p in root.glob("mnist-*/index.html"))


@pytest.mark.slow
@pytest.mark.skipif(not _mnist_reports(), reason="no MNIST report under reports/ (run the quick config first)")
def test_mnist_report_pages_load_fast():
    start = _mnist_reports()[0]
    index = start.parent.parent / "index.html"
    report = crawl(index if index.exists() else start, screenshot_dir=None)
    print(report.summary())
    if index.exists():
        report.assert_clean()
    assert len(report.pages) > 100
    assert report.max_load_ms < 1000, report.summary()


def test_wide_layer_report_pages_stay_light(tmp_path):
    """A scaled-down rehearsal of a 2048-channel layer: 600 units on one layer page. The grid shows
    one page of cells at a time (lazy thumbnails: hidden cells fetch nothing), the pager walks the
    rest, and the heaviest pages open with no console error."""
    run = make_run(tmp_path, steps=20, n_test=60, chunk_size=64, conv_channels=(4, 300))
    reports = tmp_path / "reports"
    render_run(run, reports / run.name, {"name": "wide"})
    render_index([reports / run.name], reports / "index.html")
    site = reports / run.name
    with Browser() as browser:
        report = crawl(reports / "index.html", browser=browser)
        print(report.summary())
        report.assert_clean()
        driver = browser.driver
        driver.get((site / "layer-conv2.html").as_uri())
        visible = driver.find_elements("css selector", "#grid > .cell:not([hidden])")
        assert len(visible) == 256
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').filter(function (e) {"
            " return e.name.indexOf('/units/conv2/') >= 0; }).length;")
        assert fetched <= 256, fetched
        driver.find_element("id", "next").click()
        units = [int(c.get_attribute("data-unit"))
                 for c in driver.find_elements("css selector", "#grid > .cell:not([hidden])")]
        assert units == list(range(256, 300))
        assert driver.find_element("id", "page").text == "page 2 of 2"
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
    html = (site / "index.html").read_text()
    assert "all of them on the layer page" in html  # the run page shows the first cells of a wide layer
