"""The report of a network featviz did not train (issue 25 item 4), over a synthetic imported run
(tests/synthetic_imported.py: a 56-layer CIFAR-ResNet-shaped tree, 1000 outputs, 19 classes with
test images): the run card says where the network came from and never "None s"; the layers are
grouped by stage, collapsible, with one compact menu; the per-class table hides the classes without
test images and the confusion is its strongest confusions, not a 1000×1000 matrix; a layer without
pictures shows what the probe measured; an invalid transfer model is not advertised; the all-runs
page lists every report under reports/ and the archives that exist. The browser test (headless
Chromium, skipped without it) opens every page and works the tables."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from featviz.report import render_index, render_run
from tests.synthetic_imported import PRESENT, make_imported_run

N_PRESENT = len(PRESENT)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    run = make_imported_run(root)
    out = root / "reports" / run.name
    render_run(run, out, {"name": "imported"})
    render_index([out], root / "reports" / "index.html")
    return run, out


def _html(out: Path, page: str = "index.html") -> str:
    return (out / page).read_text()


def test_run_card_says_where_the_network_came_from(imported):
    run, out = imported
    html = _html(out)
    meta = json.loads((run / "model" / "model.json").read_text())["imported"]
    card = html.split('id="model-origin"')[1].split("</table>")[0]
    assert "resnet56-4bfd9763.th" in card and meta["path"] in card
    assert f'title="{meta["sha256"]}">{meta["sha256"][:12]}…' in card
    assert "legacy torch pickle" in card and "<code>state_dict</code>" in card
    assert "cifar_resnet:resnet56" in card
    assert "stripped prefix &#39;module.&#39; (nn.DataParallel/DDP)</li>" in card
    assert "filled 55 BatchNorm num_batches_tracked" in card
    assert f"{meta['parameters']:,}" in card and "in 1.37 s on cpu" in card
    assert "1000 classes (imagenet names); the image folder has 19" in card
    assert "19 classes (the network has 1000), input 3×8×8" in html
    assert "None" not in html.split("<main>")[1].split('id="search-bar"')[0]
    assert 'id="training-card"' not in html and "training</div>" not in html
    # the evaluation's warnings, at the top of the page
    assert html.index('id="eval-warnings"') < html.index('class="cards"')
    assert "is at chance level for 19 classes" in html


def test_older_model_folders_fall_back(tmp_path):
    """An `imported` record with only path, sha256, format and how (model folders of earlier
    versions): the card shows those, the metrics' parameter count, and no "None"."""
    run = make_imported_run(tmp_path, legacy=True)
    render_run(run, tmp_path / "out", {})
    card = _html(tmp_path / "out").split('id="model-origin"')[1].split("</table>")[0]
    assert "resnet56-4bfd9763.th" in card and "class tests.synthetic_imported:TinyCifarResNet" in card
    assert "state_dict loaded into" in card and "5,218" in card
    assert 'id="origin-adapted">–' in card and "None" not in card


def test_layers_grouped_by_stage_with_one_menu(imported):
    _, out = imported
    html = _html(out)
    nav = html.split('<header class="top">')[1].split("</header>")[0]
    assert nav.count('id="layer-menu"') == 1 and "layers (56)" in nav
    groups = re.findall(r'<details class="layer-group" data-group="([^"]+)">', html)
    assert groups == ["layer1", "layer2", "layer3"]
    layer1 = html.split('data-group="layer1"')[1].split("</details>")[0]
    assert layer1.count('href="layer-layer1.') == 18 and "18 layers · 36 units" in layer1
    assert '<tr class="section"><th class="l" colspan="11">layer1.4</th></tr>' in layer1
    # a layer page: the same menu, the current layer marked, the previous and next layers linked
    page = _html(out, "layer-layer1.3.conv1.html")
    assert '<span aria-current="page">layer1.3.conv1</span>' in page
    assert 'id="prev-layer" title="previous layer">← layer1.2.conv2' in page
    assert 'href="layer-layer1.3.conv2.html" id="next-layer"' in page


def test_a_thousand_classes_fit_on_the_page(imported):
    run, out = imported
    ev = json.loads((run / "eval" / "metrics.json").read_text())
    assert "confusion" not in ev and len(ev["confusions"]) == ev["n_confusions"] <= 200
    assert sum(ev["per_class_images"].values()) == ev["n_test"] and ev["per_class_accuracy"]["n00000000"] is None
    assert (run / "eval" / "metrics.json").stat().st_size < 200_000
    html = _html(out)
    table = html.split('<table id="per-class"')[1].split("</table>")[0]
    assert table.count("<tr data-optional hidden>") == 1000 - N_PRESENT
    assert table.count("<tr>") == N_PRESENT + 1  # the header, then the classes with test images
    assert 'data-show-all="per-class"' in html and "show all 1000 classes" in html
    rows = html.split('<table id="confusions"')[1].split("</table>")[0].count("→")
    assert rows == len(ev["confusions"])
    # no unreadable picture: the evaluation wrote a note in its place, the report shows neither
    assert "confusion.png" not in html and not (out / "confusion.png").exists()
    assert (run / "eval" / "confusion.png").stat().st_size < 30_000
    assert 'id="confusion-table"' not in html


def test_a_layer_without_pictures_shows_what_the_probe_measured(imported):
    run, out = imported
    probe = json.loads((run / "probe" / "probe.json").read_text())
    entry = next(e for e in probe["layers"] if e["name"] == "layer1.3.conv1")
    page = _html(out, "layer-layer1.3.conv1.html")
    assert "No visualizations" not in page and 'id="no-pictures"' in page
    table = page.split('<table id="probe-units"')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + entry["units"]
    assert f'data-v="{entry["per_unit"][0]["max"]}"' in table
    tops = re.findall(r'<img src="(top/[^"]+)"', table)
    assert len(tops) == entry["units"] * 4 and all((out / t).is_file() for t in tops)
    assert 'id="probe-summary"' in page and f"<b>{entry['dead']}</b> of 2 units dead" in page
    # the class layer: pictures for 6 classes, the probe's row for each of the other 994
    classes = _html(out, "layer-classes.html")
    rows = classes.split('<table id="probe-units"')[1].split("</table>")[0].count("<tr")
    assert rows == 1 + 1000 - 6 and "of the units without a picture" in classes


def test_an_invalid_transfer_model_is_not_advertised(imported):
    _, out = imported
    html = _html(out)
    assert 'id="transfer-invalid"' in html and "not well above chance" in html
    assert "match-transfer" not in html and not list(out.glob("match-*.html"))


def test_the_index_lists_every_report_and_the_archives_that_exist(imported, tmp_path):
    run, out = imported
    reports = tmp_path / "reports"
    shutil.copytree(out, reports / run.name)
    shutil.copytree(out, reports / "older-00000000")  # a report of an earlier config, with its archive
    summary = json.loads((out / "summary.json").read_text())
    summary.update(run="older-00000000", archive="older-00000000.tar.gz")
    (reports / "older-00000000" / "summary.json").write_text(json.dumps(summary))
    (reports / "older-00000000.tar.gz").write_bytes(b"archive")
    (reports / ".older-00000000.tmp").mkdir()  # a report being written: not listed
    (reports / "not-a-report").mkdir()
    render_index([reports / run.name], reports / "index.html")
    html = (reports / "index.html").read_text()
    assert re.findall(r'<tr[^>]* data-run="([^"]+)"', html) == [run.name, "older-00000000"]
    assert html.count('<a href="older-00000000/index.html">') == 1 and "earlier config" in html
    assert 'href="older-00000000.tar.gz"' in html and f"{run.name}.tar.gz (not built)" in html
    assert "not-a-report" not in html and ".older" not in html


def _visible(driver, table: str) -> list:
    return driver.find_elements("css selector", f"#{table} tbody tr:not([hidden])")


@pytest.mark.browser
def test_imported_report_in_chromium(imported):
    """Every page opens clean from file://; the per-class table shows the 19 classes with test
    images, then all 1000 a page of 100 at a time, and sorts; the layer menu opens over the page;
    the probe table of the class layer sorts; the layer groups open and close."""
    from tests.browser import Browser, browser_unavailable_reason, crawl

    why = browser_unavailable_reason()
    if why:
        pytest.skip(f"no headless Chromium: {why}")
    _, out = imported
    with Browser() as browser:
        report = crawl(out.parent / "index.html", browser=browser)
        print(report.summary())
        report.assert_clean()
        assert len([p for p in report.page_paths if "/layer-" in p]) == 56
        d = browser.driver
        d.get((out / "index.html").as_uri())
        assert len(_visible(d, "per-class")) == N_PRESENT
        assert not d.find_element("css selector", '[data-pager="per-class"]').is_displayed()
        d.find_element("css selector", 'input[data-show-all="per-class"]').click()
        assert len(_visible(d, "per-class")) == 100
        pager = d.find_element("css selector", '[data-pager="per-class"]')
        assert "page 1 of 10 (1000 rows)" in pager.text
        pager.find_elements("tag name", "button")[1].click()
        assert _visible(d, "per-class")[0].find_element("tag name", "td").text == "n00000100"
        header = d.find_elements("css selector", "#per-class thead th")[1]  # test images
        header.click()
        header.click()  # descending: the classes with test images first
        assert header.get_attribute("aria-sort") == "descending"
        assert [r.find_elements("tag name", "td")[1].text for r in _visible(d, "per-class")[:N_PRESENT]] == ["3"] * N_PRESENT
        menu = d.find_element("id", "layer-menu")
        panel = menu.find_element("css selector", ".menu-panel")
        assert not panel.is_displayed()
        menu.find_element("tag name", "summary").click()
        assert panel.is_displayed() and len(panel.find_elements("tag name", "a")) == 56
        right = d.execute_script("return arguments[0].getBoundingClientRect().right", panel)
        assert right <= d.execute_script("return window.innerWidth")  # not cut off at the right
        groups = d.find_elements("css selector", "details.layer-group")
        assert not any(g.get_attribute("open") for g in groups)
        d.find_element("css selector", 'button[data-details="open"]').click()
        assert all(g.get_attribute("open") for g in groups)
        d.get((out / "layer-classes.html").as_uri())
        head = d.find_elements("css selector", "#probe-units thead th")[2]  # dataset max
        head.click()
        vals = [float(r.find_elements("tag name", "td")[2].get_attribute("data-v")) for r in _visible(d, "probe-units")]
        assert len(vals) == 100 and vals == sorted(vals)
        errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
