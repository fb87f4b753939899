"""Proves tests/browser.py on tiny synthetic static sites.

A clean site must pass; each kind of defect, added alone to that clean site,
must be reported in its own category.  Needs chromium, chromedriver and
selenium (.ci/install-chromium.sh); skipped with a reason otherwise.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.browser import Browser, browser_unavailable_reason, crawl

_REASON = browser_unavailable_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_REASON is not None, reason=f"browser tests need Chromium: {_REASON}"),
]


# --------------------------------------------------------------------------- #
# Synthetic sites
# --------------------------------------------------------------------------- #
def png_bytes(width: int = 24, height: int = 16) -> bytes:
    """A real RGB PNG (a colour gradient), written with zlib + struct only."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // (width - 1), y * 255 // (height - 1), 160)) for x in range(width))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def page(title: str, body: str, head: str = "") -> str:
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title>{head}</head>\n<body>\n{body}\n</body></html>\n"
    )


def make_site(root: Path, index_extra: str = "", sub_extra: str = "", head_extra: str = "") -> Path:
    """index.html -> sub/page.html (and back), a PNG in each, a .tar.gz link,
    a stylesheet, a script that sorts a table; returns index.html."""
    (root / "sub").mkdir(parents=True)
    (root / "img").mkdir()
    (root / "img" / "grad.png").write_bytes(png_bytes())
    (root / "sub" / "small.png").write_bytes(png_bytes(8, 8))
    (root / "bundle.tar.gz").write_bytes(b"\x1f\x8b not really, but it exists")
    (root / "style.css").write_text("body { font-family: sans-serif; background: #f4f4fb; }\nimg { width: 96px; }\n")
    (root / "app.js").write_text(
        "document.addEventListener('DOMContentLoaded', () => {\n"
        "  const rows = Array.from(document.querySelectorAll('#t tbody tr'));\n"
        "  rows.sort((a, b) => a.cells[0].textContent.localeCompare(b.cells[0].textContent));\n"
        "  rows.forEach((r) => r.parentNode.appendChild(r));\n"
        "});\n"
    )
    head = "<link rel='stylesheet' href='style.css'><script src='app.js'></script>" + head_extra
    (root / "index.html").write_text(
        page(
            "Index",
            "<h1 id='top'>Report index</h1>\n"
            "<p><a href='sub/page.html'>sub page</a> | <a href='#top'>top</a> | "
            "<a href='bundle.tar.gz'>download</a> | <a href='sub/page.html#details'>details</a></p>\n"
            "<img src='img/grad.png' alt='gradient'>\n"
            "<table id='t'><tbody><tr><td>b</td></tr><tr><td>a</td></tr></tbody></table>\n" + index_extra,
            head,
        )
    )
    (root / "sub" / "page.html").write_text(
        page(
            "Sub",
            "<h2 id='details'>Sub page</h2><a href='../index.html'>back</a>\n"
            "<img src='small.png' alt='small'> <img src='../img/grad.png' alt='again' loading='lazy'>\n" + sub_extra,
            "<link rel='stylesheet' href='../style.css'>",
        )
    )
    return root / "index.html"


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def only(report, category: str) -> list[str]:
    """Problems of the report, checking they all belong to ``category``."""
    probs = report.all_problems()
    assert probs, f"expected a {category} problem, got none; {report.summary()}"
    kinds = {p.kind for p in probs}
    assert kinds == {category}, f"expected only {category}, got: {report.problems()}"
    with pytest.raises(AssertionError, match=category):
        report.assert_clean()
    return [str(p) for p in probs]


# --------------------------------------------------------------------------- #
# The clean site
# --------------------------------------------------------------------------- #
def test_png_writer_makes_a_valid_png():
    data = png_bytes(24, 16)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", data[16:24]) == (24, 16)


def test_clean_site_passes(tmp_path, browser):
    start = make_site(tmp_path / "site")
    shots = tmp_path / "shots"
    report = crawl(start, screenshot_dir=shots, browser=browser)
    report.assert_clean()
    assert sorted(report.page_paths) == ["index.html", "sub/page.html"]
    assert report.checked_files == {"bundle.tar.gz"}
    assert [p.images for p in report.pages] == [1, 2]
    assert {p.title for p in report.pages} == {"Index", "Sub"}
    assert 0 < report.max_load_ms < 10_000
    assert report.slowest_page is not None
    # full-page screenshots of every page, real PNGs of the window width
    assert sorted(f.name for f in shots.iterdir()) == ["index.png", "sub__page.png"]
    for f in shots.iterdir():
        data = f.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 1000 and height > 100
    assert "2 page(s)" in report.summary()


def test_tall_page_screenshot_is_full_page(tmp_path, browser):
    start = make_site(tmp_path / "site", index_extra="<div style='height:3000px'>tall</div><p>end</p>")
    report = crawl(start, screenshot_dir=tmp_path / "shots", screenshot_names={"index.html": "i.png"}, browser=browser)
    report.assert_clean()
    height = struct.unpack(">I", (tmp_path / "shots" / "i.png").read_bytes()[20:24])[0]
    assert height > 3000  # beyond the 900 px window


def test_screenshot_selection(tmp_path, browser):
    start = make_site(tmp_path / "site")
    shots = tmp_path / "shots"
    report = crawl(start, screenshot_dir=shots, screenshot_names={"sub/*.html": "sel-{name}"}, browser=browser)
    report.assert_clean()
    assert [f.name for f in shots.iterdir()] == ["sel-sub__page.png"]
    assert set(report.screenshots) == {"sub/page.html"}


def test_screenshot_of_unreached_page_is_a_problem(tmp_path, browser):
    start = make_site(tmp_path / "site")
    report = crawl(start, screenshot_dir=tmp_path / "s", screenshot_names={"units/u1.html": "u1.png"}, browser=browser)
    assert any("units/u1.html" in p for p in only(report, "crawl"))


def test_max_pages(tmp_path, browser):
    start = make_site(tmp_path / "site")
    report = crawl(start, max_pages=1, browser=browser)
    assert report.page_paths == ["index.html"]
    assert "max_pages=1" in only(report, "crawl")[0]


def test_missing_start_page(tmp_path):
    report = crawl(tmp_path / "nope.html")
    assert report.pages == []
    assert "does not exist" in only(report, "crawl")[0]


def test_crawl_starts_its_own_browser(tmp_path):
    report = crawl(make_site(tmp_path / "site"))
    report.assert_clean()
    assert len(report.pages) == 2


# --------------------------------------------------------------------------- #
# Each defect alone
# --------------------------------------------------------------------------- #
def test_broken_link_detected(tmp_path, browser):
    start = make_site(tmp_path / "site", sub_extra="<a href='../units/u7.html'>unit 7</a>")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "broken_link")
    assert "sub/page.html" in msg and "units/u7.html does not exist" in msg


def test_missing_download_detected(tmp_path, browser):
    start = make_site(tmp_path / "site", index_extra="<a href='results.tar.gz'>all results</a>")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "broken_link")
    assert "results.tar.gz does not exist" in msg


def test_link_leaving_the_folder_detected(tmp_path, browser):
    (tmp_path / "outside.html").write_text(page("Out", "<p>outside</p>"))
    start = make_site(tmp_path / "site", index_extra="<a href='../outside.html'>out</a>")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "broken_link")
    assert "leaves the report folder" in msg
    assert "outside.html" not in report.page_paths


def test_link_to_folder_detected(tmp_path, browser):
    start = make_site(tmp_path / "site", index_extra="<a href='sub/'>sub folder</a>")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "broken_link")
    assert "points to a folder" in msg


def test_missing_image_detected(tmp_path, browser):
    start = make_site(tmp_path / "site", sub_extra="<img src='../img/unit_0042.png' alt='gone'>")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "missing_image")
    assert "img/unit_0042.png does not exist" in msg  # the on-disk check names the file


def test_corrupt_image_detected(tmp_path, browser):
    # the file exists, so only the in-browser naturalWidth check can see it
    start = make_site(tmp_path / "site", index_extra="<img src='img/bad.png' alt='bad'>")
    (tmp_path / "site" / "img" / "bad.png").write_bytes(b"this is not a png")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "missing_image")
    assert "bad.png" in msg and "did not load" in msg


def test_missing_script_and_stylesheet_detected(tmp_path, browser):
    start = make_site(
        tmp_path / "site", head_extra="<script src='js/sort.js'></script><link rel='stylesheet' href='gone.css'>"
    )
    report = crawl(start, browser=browser)
    msgs = only(report, "missing_resource")
    assert len(msgs) == 2
    assert any("js/sort.js" in m for m in msgs) and any("gone.css" in m for m in msgs)


def test_console_error_detected(tmp_path, browser):
    start = make_site(tmp_path / "site", sub_extra="<script>console.error('unit table is empty');</script>")
    report = crawl(start, browser=browser)
    (msg,) = only(report, "console_error")
    assert "unit table is empty" in msg and msg.startswith("[console_error] sub/page.html")


def test_thrown_js_error_detected(tmp_path, browser):
    start = make_site(
        tmp_path / "site", index_extra="<script>function sortBy(k) { return k.nope.x; } sortBy({});</script>"
    )
    report = crawl(start, browser=browser)
    (msg,) = only(report, "js_error")
    assert "TypeError" in msg and "index.html" in msg


def test_error_in_script_file_and_after_load_detected(tmp_path, browser):
    start = make_site(tmp_path / "site", head_extra="<script src='late.js'></script>")
    (tmp_path / "site" / "late.js").write_text(
        "window.addEventListener('load', () => setTimeout(() => { throw new Error('late failure'); }, 0));\n"
        "Promise.reject(new Error('rejected promise'));\n"
    )
    report = crawl(start, browser=browser)
    msgs = only(report, "js_error")
    assert len(msgs) == 2, msgs  # file:// hides these from onerror ("Script error."); the log has them
    assert any("late failure" in m and "late.js" in m for m in msgs)
    assert any("rejected promise" in m for m in msgs)


def test_error_on_interaction_detected(tmp_path, browser):
    start = make_site(
        tmp_path / "site",
        index_extra="<button id='sort' onclick='table.sortRows()'>sort</button>",
    )

    def click_sort(driver, rel):
        if rel == "index.html":
            driver.find_element("id", "sort").click()

    report = crawl(start, browser=browser, on_page=click_sort)
    (msg,) = only(report, "js_error")
    assert "table" in msg


def test_external_asset_detected(tmp_path, browser):
    start = make_site(
        tmp_path / "site", head_extra="<script src='https://cdn.example.com/d3.min.js'></script>"
    )
    report = crawl(start, browser=browser)
    (msg,) = only(report, "external")
    assert "https://cdn.example.com/d3.min.js" in msg


def test_protocol_relative_and_css_external_detected(tmp_path, browser):
    start = make_site(
        tmp_path / "site",
        head_extra="<link rel='stylesheet' href='//fonts.example.com/css?family=Roboto'>"
        "<style>h1 { background: url(https://img.example.com/bg.png); }</style>",
    )
    report = crawl(start, browser=browser)
    msgs = only(report, "external")
    assert len(msgs) == 2
    assert any("//fonts.example.com" in m for m in msgs) and any("img.example.com" in m for m in msgs)


def test_external_link_detected_unless_allowed(tmp_path, browser):
    start = make_site(tmp_path / "site", index_extra="<a href='https://arxiv.org/abs/1234'>paper</a>")
    (msg,) = only(crawl(start, browser=browser), "external")
    assert "arxiv.org" in msg
    crawl(start, browser=browser, allow_external_links=True).assert_clean()


def test_fetch_of_local_json_fails_under_file_url(tmp_path, browser):
    # Documents Chromium's file:// rule: fetch()/XHR of a local file is
    # blocked, so the report must embed its data inline.
    start = make_site(
        tmp_path / "site",
        index_extra="<script>fetch('data.json').then((r) => r.json()).then(console.log)</script>",
    )
    (tmp_path / "site" / "data.json").write_text("{}")
    report = crawl(start, browser=browser)
    assert report.js_errors, report.problems()
    assert any("Failed to fetch" in p or "CORS" in p for p in report.problems())


def test_many_pages_are_fast(tmp_path, browser):
    """A report with one page per unit: one session, well under 1 s a page."""
    start = make_site(tmp_path / "site")
    site = tmp_path / "site"
    (site / "units").mkdir()
    links = []
    for i in range(40):
        (site / "img" / f"u{i}.png").write_bytes(png_bytes(32, 32))
        (site / "units" / f"u{i:03d}.html").write_text(
            page(f"unit {i}", f"<a href='../index.html'>index</a><img src='../img/u{i}.png' alt='u{i}'>")
        )
        links.append(f"<a href='units/u{i:03d}.html'>u{i}</a>")
    html = start.read_text().replace("</body>", " ".join(links) + "</body>")
    start.write_text(html)
    report = crawl(start, browser=browser)
    report.assert_clean()
    assert len(report.pages) == 42
    per_page_s = report.elapsed_s / len(report.pages)
    assert per_page_s < 1.0, report.summary()
    assert report.max_wall_ms < 5000, report.summary()
