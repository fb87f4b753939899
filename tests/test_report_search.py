"""The report's search: units-index.js holds one compact row per visualized unit (read without a
browser), and in headless Chromium the run page's search finds units by layer, unit and class, its
flag and score filters hide the rest, its result links resolve, a query in the URL hash (as the
all-runs page links it) is applied on load, from the report and from the extracted archive, with no
console error. The browser tests skip without Chromium."""
from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from featviz.archive import make_archive
from featviz.report import render_index, render_run
from featviz.report.search_index import FLAG_LETTERS, INDEX_FILE
from tests.browser import Browser, browser_unavailable_reason
from tests.synthetic_run import make_run

EVIL_CLASS = "<script>alert(1)</script>"
EVIL_LAYER = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    run = make_run(root, classes=["zero", EVIL_CLASS, "T-shirt/top"], steps=20, layer_rename={"fc1": EVIL_LAYER})
    out = root / "reports"
    render_run(run, out / run.name, {"name": "tiny"})
    make_archive(out / run.name, run, out / f"{run.name}.tar.gz")
    render_index([out / run.name], out / "index.html")
    return out / run.name


def _rows(site: Path) -> list[dict]:
    text = (site / INDEX_FILE).read_text()
    prefix = "window.FEATVIZ_UNITS = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix):-2])


def test_index_has_one_row_per_visualized_unit(reports):
    rows = _rows(reports)
    units = json.loads((reports.parent.parent / "results" / reports.name / "units.json").read_text())
    assert len(rows) == sum(layer["units"] for layer in units["layers"])
    assert [r["l"] for r in rows[:4]] == ["conv1"] * 4
    for r in rows:
        assert (reports / r["p"]).is_file() and (reports / r["t"]).is_file(), r
        assert not r["p"].startswith(("/", "..")) and "://" not in r["p"]
        assert set(r.get("f", "")) <= set(FLAG_LETTERS.values())
        assert isinstance(r["o"], (int, float)) and len(repr(r["o"]).lstrip("-0.")) <= 6  # rounded
    classes = [r for r in rows if r["l"] == "classes"]
    assert [r["n"] for r in classes] == ["zero", EVIL_CLASS, "T-shirt/top"]
    assert all("s" in r and "x" in r for r in classes)  # target and transfer softmax
    assert all("m" in r and "a" in r and "c" in r for r in rows if r["l"] == "conv2")  # the probe's scores
    # the flags agree with the layer page's
    layer_page = (reports / "layer-conv2.html").read_text()
    for r in (r for r in rows if r["l"] == "conv2"):
        assert f'href="units/conv2/{r["u"]}.html" data-unit="{r["u"]}" data-flags="' in layer_page
    text = (reports / INDEX_FILE).read_text()
    assert "<" not in text  # inert even if inlined
    per_unit = len(text.encode()) / len(rows)
    print(f"{len(rows)} units, {len(text.encode())} bytes, {per_unit:.0f} bytes per unit")
    assert per_unit < 200


def test_pages_carry_the_search(reports):
    run_html = (reports / "index.html").read_text()
    assert 'id="q-results"' in run_html and 'data-index="units-index.js"' in run_html
    assert (reports / "static" / "search.js").is_file()
    index = (reports.parent / "index.html").read_text()
    assert f'data-index="{reports.name}/units-index.js"' in index
    assert f'href="{reports.name}/index.html#search"' in index
    assert "window.FeatvizSearch" in index and index.count("</script>") == 1  # search.js inlined, inert
    assert '"Segoe UI"' in index  # the inlined stylesheet is not HTML-escaped (it was: the font rule was dropped)


# --------------------------------------------------------------------------- browser
needs_browser = pytest.mark.skipif(bool(browser_unavailable_reason()),
                                   reason=f"no headless Chromium: {browser_unavailable_reason()}")


def _wait(driver, js, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        v = driver.execute_script(js)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {js}")


def _results(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#q-results > a.cell'), function (a) {"
        " var i = a.querySelector('img'); return {href: a.href, layer: a.getAttribute('data-layer'),"
        " unit: +a.getAttribute('data-unit'), flags: a.getAttribute('data-flags'), img: i.getAttribute('src')}; });")


def _type(driver, element_id, text):
    box = driver.find_element("id", element_id)
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() fires no input event
        driver.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _errors(driver) -> list:
    return driver.execute_script("return window.__fvErrors || []")


def _links_resolve(driver, site: Path, hits: list[dict]) -> None:
    for h in hits:
        path = Path(unquote(urlsplit(h["href"]).path))
        assert path.is_file() and path.resolve().is_relative_to(site.resolve()), h
        assert (site / h["img"]).is_file(), h
    ok = driver.execute_async_script(
        "var d = arguments[arguments.length - 1]; var imgs = Array.prototype.slice.call("
        "document.querySelectorAll('#q-results img'));"
        " imgs.forEach(function (i) { i.loading = 'eager'; });"
        " Promise.all(imgs.map(function (i) { return i.complete ? 0 : new Promise(function (r) {"
        " i.onload = i.onerror = r; }); })).then(function () {"
        " d(imgs.every(function (i) { return i.naturalWidth > 0; })); });") if hits else True
    assert ok, "a result thumbnail did not load"


@needs_browser
def test_search_in_chromium(reports):
    rows = _rows(reports)
    site = reports
    with Browser() as browser:
        d = browser.driver
        d.get((site / "index.html").as_uri())
        _wait(d, "return document.getElementById('q-count').textContent.indexOf('indexed') >= 0")
        assert _results(d) == []
        assert not d.find_element("id", "q").get_attribute("disabled")

        # one unit by layer#unit; its link opens its page
        _type(d, "q", "conv2#3")
        hits = _results(d)
        assert [(h["layer"], h["unit"]) for h in hits] == [("conv2", 3)]
        assert d.current_url.endswith("#q=conv2%233")
        _links_resolve(d, site, hits)

        # a layer: all its units, in order
        _type(d, "q", "conv2")
        hits = _results(d)
        assert [(h["layer"], h["unit"]) for h in hits] == [("conv2", u) for u in range(6)]
        assert d.find_element("id", "q-count").text.startswith(f"6 of {len(rows)} units match")
        _links_resolve(d, site, hits)

        # a class label, and hostile strings are found as text, never run
        _type(d, "q", "shirt")
        assert [(h["layer"], h["unit"]) for h in _results(d)] == [("classes", 2)]
        _type(d, "q", "<script>")
        assert [(h["layer"], h["unit"]) for h in _results(d)] == [("classes", 1)]
        _type(d, "q", "<img src")
        assert {h["layer"] for h in _results(d)} == {EVIL_LAYER} and len(_results(d)) == 8

        # a flag filter hides the rest (query cleared: every layer)
        _type(d, "q", "")
        assert _results(d) == []
        dead = d.find_element("css selector", "input.q-flag[value=d]")
        dead.click()
        hits = _results(d)
        want = [(r["l"], r["u"]) for r in rows if "d" in r.get("f", "")]
        assert want and len(want) < len(rows)
        assert [(h["layer"], h["unit"]) for h in hits] == want
        assert all("d" in h["flags"] for h in hits)
        assert "flags=d" in d.current_url
        _links_resolve(d, site, hits)
        d.find_element("css selector", "input.q-flag[value=ok]").click()  # dead or unflagged
        want = [(r["l"], r["u"]) for r in rows if "d" in r.get("f", "") or not r.get("f")]
        assert [(h["layer"], h["unit"]) for h in _results(d)] == want
        dead.click()
        d.find_element("css selector", "input.q-flag[value=ok]").click()

        # a minimum score, highest first
        from selenium.webdriver.support.ui import Select

        Select(d.find_element("id", "q-score")).select_by_value("objective")
        Select(d.find_element("id", "q-order")).select_by_value("desc")
        _type(d, "q-min", "1.5")
        hits = _results(d)
        by = {(r["l"], r["u"]): r for r in rows}
        vals = [by[(h["layer"], h["unit"])]["o"] for h in hits]
        assert vals and all(v >= 1.5 for v in vals) and vals == sorted(vals, reverse=True)
        assert len(hits) == sum(r["o"] >= 1.5 for r in rows)
        Select(d.find_element("id", "q-layer")).select_by_value("classes")
        assert {h["layer"] for h in _results(d)} <= {"classes"}
        d.find_element("id", "q-clear").click()
        assert _results(d) == []

        # the query in the hash, as the all-runs page links it
        d.get((site / "index.html").as_uri() + "#q=conv1&flags=u")
        _wait(d, "return document.querySelectorAll('#q-results > a.cell').length > 0")
        assert d.find_element("id", "q").get_attribute("value") == "conv1"
        want = [("conv1", r["u"]) for r in rows if r["l"] == "conv1" and "u" in r.get("f", "")]
        assert [(h["layer"], h["unit"]) for h in _results(d)] == want
        # a hash change (edited address) is applied too
        d.execute_script("location.hash = 'q=classes'")
        _wait(d, "return document.getElementById('q').value === 'classes'")
        assert len(_results(d)) == 3

        assert not _errors(d), _errors(d)
        assert not _severe(d), _severe(d)


@needs_browser
def test_all_runs_page_search_links_to_the_run_search(reports):
    with Browser() as browser:
        d = browser.driver
        d.get((reports.parent / "index.html").as_uri())
        row = d.find_element("css selector", f'#runs tr[data-run="{reports.name}"]')
        _type(d, "runs-q", "conv2")
        _wait(d, "return document.getElementById('runs-count').textContent.indexOf('runs match') >= 0")
        assert row.is_displayed()
        assert row.find_element("css selector", ".run-hits").text == "6 units"
        link = row.find_element("css selector", "a.run-search")
        assert link.get_attribute("href").endswith(f"{reports.name}/index.html#q=conv2")
        assert d.current_url.endswith("#q=conv2")
        _type(d, "runs-q", "synthetic")  # the dataset: the run matches by its metadata
        assert row.is_displayed()
        _type(d, "runs-q", "nosuchthing")
        assert not row.is_displayed()
        assert d.find_element("id", "runs-count").text.startswith("0 of 1 runs match")
        _type(d, "runs-q", "conv2")
        link.click()
        _wait(d, "return document.querySelectorAll('#q-results > a.cell').length === 6")
        assert d.find_element("id", "q").get_attribute("value") == "conv2"
        assert not _errors(d), _errors(d)
        assert not _severe(d), _severe(d)


@needs_browser
def test_search_in_the_extracted_archive(reports, tmp_path):
    with tarfile.open(reports.parent / f"{reports.name}.tar.gz", "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    site = tmp_path / reports.name / "report"
    assert (site / INDEX_FILE).is_file() and (site / "static" / "search.js").is_file()
    with Browser() as browser:
        d = browser.driver
        d.get((site / "index.html").as_uri() + "#q=conv1")
        _wait(d, "return document.querySelectorAll('#q-results > a.cell').length === 4")
        _links_resolve(d, site, _results(d))
        assert not _errors(d), _errors(d)
        assert not _severe(d), _severe(d)
