"""Headless-Chromium crawler that checks a static HTML report opened from file://.

Usage (from a test)::

    from tests.browser import crawl, browser_unavailable_reason

    report = crawl(out_dir / "index.html", screenshot_dir=tmp_path / "shots")
    report.assert_clean()
    print(report.summary())

``crawl`` opens ``file://<start>`` in one headless Chromium session (Selenium +
the system ``chromedriver``; nothing is downloaded) and visits every HTML page
reachable through relative ``<a href>`` links that stay inside the start
file's folder.  For each page it records:

* broken links: the target file is missing, is a directory, or lies outside
  the start file's folder tree; non-HTML targets (``.tar.gz``, ``.csv``...) are
  not opened but must exist;
* external references: any ``http(s)://`` or protocol-relative ``//`` URL in a
  ``src``/``href``/``srcset``/``poster``/``data``/``action`` attribute or a CSS
  ``url()``/``@import`` (the report must be self-contained).  The browser is
  also told to block every http(s) request, so nothing leaves the machine;
* missing images: every ``<img>`` must end up ``complete && naturalWidth > 0``
  (lazy images are switched to eager first); ``<link rel=stylesheet>`` must
  have a ``sheet``; ``<script src>`` / other elements must not fire a load
  ``error``; local ``src``/``href`` targets must exist on disk; any other
  failed load reported by the browser (CSS ``url()``, ``fetch``) is kept too;
* console errors: ``console.error(...)`` and every other SEVERE entry of the
  browser log;
* JS errors: uncaught exceptions and unhandled promise rejections, caught by a
  collector installed before any page script runs, plus the browser log;
* load time (navigationStart -> loadEventEnd) of every page.

Chromium runs with its normal file:// security: ``fetch()``/XHR of a local
file is blocked exactly as for a person double-clicking the report, and shows
up here as an error.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import math
import os
import re
import shutil
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import unquote, urljoin, urlsplit

__all__ = [
    "Browser",
    "CrawlReport",
    "PageResult",
    "Problem",
    "browser_unavailable_reason",
    "crawl",
    "find_chromium",
    "find_chromedriver",
]

CHROMIUM_CANDIDATES = (
    # The real binary first: the Debian wrapper /usr/bin/chromium sources
    # /etc/chromium.d, which adds extension flags we do not want.
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
)
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--mute-audio",
    # No DNS at all: an external URL can never reach the network.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)

HTML_SUFFIXES = (".html", ".htm")
EXTERNAL_RE = re.compile(r"^\s*(?:(?:https?|wss?|ftps?):)?//", re.I)
SCHEME_RE = re.compile(r"^\s*([a-z][a-z0-9+.-]*):", re.I)
IGNORED_SCHEMES = {"data", "blob", "javascript", "mailto", "tel", "about"}

# Runs in every document before any page script (CDP
# Page.addScriptToEvaluateOnNewDocument): keeps uncaught errors, unhandled
# rejections and element load failures in window.__fvErrors.
COLLECTOR_JS = r"""
(() => {
  if (window.__fvErrors) return;
  const errs = window.__fvErrors = [];
  window.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t !== window && t.tagName) {
      errs.push({kind: 'resource', tag: t.tagName.toLowerCase(),
                 url: String(t.currentSrc || t.src || t.href || ''),
                 message: 'failed to load'});
    } else {
      errs.push({kind: 'js', message: String(e.message),
                 source: String(e.filename || ''), line: e.lineno || 0,
                 col: e.colno || 0,
                 stack: e.error && e.error.stack ? String(e.error.stack) : ''});
    }
  }, true);
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    errs.push({kind: 'js', source: '', line: 0, col: 0, core: String(r),
               stack: r && r.stack ? String(r.stack) : '',
               message: 'Unhandled promise rejection: ' + String(r)});
  });
})();
"""

# Async: waits for the load event to finish and then for every image (lazy
# ones switched to eager), lets pending timers run, then returns what was seen.
CHECK_JS = r"""
const done = arguments[arguments.length - 1];
const timeoutMs = arguments[0], settleMs = arguments[1];
const waitImg = (i) => (i.complete ? Promise.resolve() : new Promise((r) => {
  i.addEventListener('load', r, {once: true});
  i.addEventListener('error', r, {once: true});
}));
const waitLoad = () => new Promise((r) => {
  const chk = () => {
    const n = performance.getEntriesByType('navigation')[0];
    if ((n && n.loadEventEnd > 0) || (!n && document.readyState === 'complete')) r();
    else setTimeout(chk, 5);
  };
  chk();
});
const timeout = new Promise((r) => setTimeout(r, timeoutMs));
// The document's images are listed only after its load event: chromedriver's
// get() can hand back a file:// page before its body is parsed.
const waitImages = () => {
  const imgs = Array.from(document.images);
  for (const i of imgs) { if (i.loading === 'lazy') i.loading = 'eager'; }
  return Promise.all(imgs.map(waitImg));
};
Promise.race([waitLoad().then(waitImages), timeout]).then(() => {
  setTimeout(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    let loadMs = null;
    if (nav && nav.loadEventEnd > 0) loadMs = nav.loadEventEnd - nav.startTime;
    else if (performance.timing && performance.timing.loadEventEnd > 0)
      loadMs = performance.timing.loadEventEnd - performance.timing.navigationStart;
    const ATTRS = ['src', 'href', 'srcset', 'poster', 'data', 'action',
                   'xlink:href', 'background'];
    const refs = [];
    for (const el of document.querySelectorAll('*')) {
      for (const a of ATTRS) {
        const v = el.getAttribute(a);
        if (v !== null && v !== '') refs.push({tag: el.tagName.toLowerCase(), attr: a,
                                               rel: el.getAttribute('rel') || '', value: v});
      }
      const st = el.getAttribute('style');
      if (st) refs.push({tag: el.tagName.toLowerCase(), attr: 'style', rel: '', value: st});
    }
    for (const s of document.querySelectorAll('style'))
      refs.push({tag: 'style', attr: 'text', rel: '', value: s.textContent});
    done({
      collector: Array.isArray(window.__fvErrors),
      errors: (window.__fvErrors || []).slice(),
      baseURI: document.baseURI,
      title: document.title,
      loadMs: loadMs,
      images: Array.from(document.images).map((i) => ({src: i.getAttribute('src') || '', current: i.currentSrc || i.src || '',
                                ok: i.complete && i.naturalWidth > 0,
                                w: i.naturalWidth, h: i.naturalHeight})),
      sheets: Array.from(document.querySelectorAll('link[rel~="stylesheet" i]')).map(
        (l) => ({href: l.getAttribute('href') || '', ok: !!l.sheet})),
      refs: refs,
    });
  }, settleMs);
});
"""

CSS_URL_RE = re.compile(
    r"""(?:url\(\s*(['"]?)(?P<u>[^'")\s]+)\1\s*\)|@import\s+(['"])(?P<i>[^'"]+)\3)""", re.I
)


# --------------------------------------------------------------------------- #
# Availability
# --------------------------------------------------------------------------- #
def _first_executable(candidates: Iterable[str], env_var: str, names: Iterable[str]) -> str | None:
    env = os.environ.get(env_var)
    if env:
        return env if os.access(env, os.X_OK) else None
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def find_chromium() -> str | None:
    """Chromium binary ($FEATVIZ_CHROMIUM overrides)."""
    return _first_executable(CHROMIUM_CANDIDATES, "FEATVIZ_CHROMIUM", ("chromium", "chromium-browser"))


def find_chromedriver() -> str | None:
    """chromedriver binary ($FEATVIZ_CHROMEDRIVER overrides)."""
    return _first_executable(CHROMEDRIVER_CANDIDATES, "FEATVIZ_CHROMEDRIVER", ("chromedriver",))


def browser_unavailable_reason() -> str | None:
    """None when a crawl can run here, else why not (for pytest.skip)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (run .ci/install-chromium.sh)"
    if find_chromium() is None:
        return "chromium is not installed (run .ci/install-chromium.sh)"
    if find_chromedriver() is None:
        return "chromedriver is not installed (run .ci/install-chromium.sh)"
    return None


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str  # broken_link | external | missing_image | missing_resource | console_error | js_error | crawl
    page: str  # page path relative to the crawl root ('' when not tied to a page)
    detail: str

    def __str__(self) -> str:
        where = self.page or "<crawl>"
        return f"[{self.kind}] {where}: {self.detail}"


@dataclasses.dataclass
class PageResult:
    path: str  # relative to the crawl root, posix
    url: str
    title: str = ""
    load_ms: float | None = None  # navigationStart -> loadEventEnd, from the page
    wall_ms: float = 0.0  # whole visit seen from Python (get + checks + screenshot)
    screenshot: Path | None = None
    images: int = 0
    log: list[dict] = dataclasses.field(default_factory=list)  # every browser log entry


@dataclasses.dataclass
class CrawlReport:
    start: Path
    root: Path
    pages: list[PageResult] = dataclasses.field(default_factory=list)
    broken_links: list[Problem] = dataclasses.field(default_factory=list)
    external: list[Problem] = dataclasses.field(default_factory=list)
    missing_images: list[Problem] = dataclasses.field(default_factory=list)
    missing_resources: list[Problem] = dataclasses.field(default_factory=list)
    console_errors: list[Problem] = dataclasses.field(default_factory=list)
    js_errors: list[Problem] = dataclasses.field(default_factory=list)
    crawl_errors: list[Problem] = dataclasses.field(default_factory=list)
    checked_files: set[str] = dataclasses.field(default_factory=set)  # non-HTML link targets found
    elapsed_s: float = 0.0

    # -- derived -------------------------------------------------------------
    @property
    def page_paths(self) -> list[str]:
        return [p.path for p in self.pages]

    @property
    def screenshots(self) -> dict[str, Path]:
        return {p.path: p.screenshot for p in self.pages if p.screenshot is not None}

    @property
    def max_load_ms(self) -> float:
        vals = [p.load_ms for p in self.pages if p.load_ms is not None]
        return max(vals) if vals else 0.0

    @property
    def slowest_page(self) -> PageResult | None:
        timed = [p for p in self.pages if p.load_ms is not None]
        return max(timed, key=lambda p: p.load_ms) if timed else None

    @property
    def max_wall_ms(self) -> float:
        return max((p.wall_ms for p in self.pages), default=0.0)

    def all_problems(self) -> list[Problem]:
        return (
            self.crawl_errors
            + self.broken_links
            + self.external
            + self.missing_images
            + self.missing_resources
            + self.js_errors
            + self.console_errors
        )

    def problems(self) -> list[str]:
        return [str(p) for p in self.all_problems()]

    def summary(self) -> str:
        slow = self.slowest_page
        s = (
            f"crawled {len(self.pages)} page(s) under {self.root} in {self.elapsed_s:.2f}s; "
            f"max load {self.max_load_ms:.0f} ms"
        )
        if slow is not None:
            s += f" ({slow.path})"
        s += f"; max visit {self.max_wall_ms:.0f} ms; {len(self.all_problems())} problem(s)"
        return s

    def assert_clean(self) -> None:
        probs = self.problems()
        if probs:
            raise AssertionError(
                f"{len(probs)} problem(s) in the report at {self.start}:\n  "
                + "\n  ".join(probs)
                + "\n"
                + self.summary()
            )


# --------------------------------------------------------------------------- #
# Browser
# --------------------------------------------------------------------------- #
class Browser:
    """One headless Chromium session; reusable across several crawls.

    Example::

        with Browser() as b:
            r1 = crawl(site1 / "index.html", browser=b)
    """

    def __init__(self, window_size: tuple[int, int] = (1280, 900), page_load_timeout_s: float = 60):
        reason = browser_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self._profile = tempfile.mkdtemp(prefix="featviz-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = find_chromium()
        for f in CHROMIUM_FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={self._profile}")
        opts.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        opts.page_load_strategy = "normal"
        service = Service(executable_path=find_chromedriver(), log_output=os.devnull)
        try:
            self.driver = webdriver.Chrome(options=opts, service=service)
        except Exception:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        try:
            self.driver.set_page_load_timeout(page_load_timeout_s)
            self.driver.set_script_timeout(page_load_timeout_s)
            self.driver.execute_cdp_cmd("Page.enable", {})
            self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COLLECTOR_JS})
            self.driver.execute_cdp_cmd("Network.enable", {})
            self.driver.execute_cdp_cmd(
                "Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]}
            )
        except Exception:
            self.close()
            raise

    def drain_log(self) -> list[dict]:
        return self.driver.get_log("browser")

    def screenshot(self, dest: Path, max_height: int = 16384) -> Path:
        """Full-page PNG (not just the viewport) via CDP."""
        m = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = m.get("cssContentSize") or m["contentSize"]
        vp = m.get("cssLayoutViewport") or m.get("layoutViewport") or {}
        width = max(math.ceil(size["width"]), int(vp.get("clientWidth", 0)), 1)
        height = min(max(math.ceil(size["height"]), int(vp.get("clientHeight", 0)), 1), max_height)
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(base64.b64decode(shot["data"]))
        return dest

    def close(self) -> None:
        try:
            drv = getattr(self, "driver", None)
            if drv is not None:
                drv.quit()
        finally:
            self.driver = None
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- #
# Crawl
# --------------------------------------------------------------------------- #
def _url_to_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _is_external_url(url: str) -> bool:
    """http(s)/protocol-relative, or what a protocol-relative URL becomes
    under file:// (``file://host/...``)."""
    if EXTERNAL_RE.match(url or ""):
        return True
    parts = urlsplit(url or "")
    return parts.scheme.lower() == "file" and parts.netloc not in ("", "localhost")


def _norm(url: str) -> str:
    """Compare resource URLs by the file they name (percent-encoding differs)."""
    if url.lower().startswith("file:"):
        return str(_url_to_path(url.split("#")[0]).resolve())
    return url


def _default_shot_name(rel: str) -> str:
    stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel
    return stem.replace("/", "__") + ".png"


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _split_srcset(v: str) -> list[str]:
    out = []
    for part in v.split(","):
        tok = part.strip().split()
        if tok:
            out.append(tok[0])
    return out


def crawl(
    start: Path,
    screenshot_dir: Path | None = None,
    screenshot_names: dict[str, str] | None = None,
    max_pages: int = 2000,
    *,
    browser: Browser | None = None,
    on_page: Callable[[object, str], None] | None = None,
    allow_external_links: bool = False,
    settle_ms: int = 30,
    image_timeout_ms: int = 10000,
) -> CrawlReport:
    """Crawl the static site whose entry page is ``start``; see the module doc.

    screenshot_dir: where full-page PNGs go (None: no screenshots).
    screenshot_names: None -> every page, named after its relative path
        (``units/u1.html`` -> ``units__u1.png``).  Otherwise only the pages it
        names: key = page path relative to the start folder (posix) or an
        fnmatch pattern (``units/*.html``); value = PNG file name, where
        ``{name}`` is replaced by the default name.  An exact key whose page is
        never reached is reported as a problem.
    max_pages: stop (and report a problem) after that many pages.
    browser: an open :class:`Browser` to reuse (else one is started and quit).
    on_page: ``on_page(driver, rel_path)`` called on every page after the
        checks, e.g. to click sort buttons; errors it provokes are recorded.
    allow_external_links: accept ``<a href="https://...">`` (never followed);
        external assets (img/script/css/...) are always problems.
    """
    t0 = time.perf_counter()
    start = Path(start).resolve()
    root = start.parent
    report = CrawlReport(start=start, root=root)
    if not start.is_file():
        report.crawl_errors.append(Problem("crawl", "", f"start page {start} does not exist"))
        return report

    own = browser is None
    if own:
        browser = Browser()
    try:
        browser.drain_log()  # forget whatever an earlier crawl left
        _crawl(
            browser, report, start, root, screenshot_dir, screenshot_names, max_pages,
            on_page, allow_external_links, settle_ms, image_timeout_ms,
        )
    finally:
        if own:
            browser.close()
    report.elapsed_s = time.perf_counter() - t0
    return report


def _crawl(browser, report, start, root, screenshot_dir, screenshot_names, max_pages,
           on_page, allow_external_links, settle_ms, image_timeout_ms) -> None:
    drv = browser.driver

    def rel_of(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def inside(p: Path) -> bool:
        try:
            p.relative_to(root)
            return True
        except ValueError:
            return False

    queue: deque[Path] = deque([start])
    seen_pages: set[Path] = {start}
    checked_links: set[tuple[str, str]] = set()
    exact_shots = {k: v for k, v in (screenshot_names or {}).items() if not _is_glob(k)}
    glob_shots = [(k, v) for k, v in (screenshot_names or {}).items() if _is_glob(k)]

    def shot_name(rel: str) -> str | None:
        if screenshot_dir is None:
            return None
        if screenshot_names is None:
            return _default_shot_name(rel)
        if rel in exact_shots:
            return exact_shots[rel].replace("{name}", _default_shot_name(rel))
        for pat, name in glob_shots:
            if fnmatch.fnmatchcase(rel, pat):
                return name.replace("{name}", _default_shot_name(rel))
        return None

    while queue:
        if len(report.pages) >= max_pages:
            report.crawl_errors.append(
                Problem("crawl", "", f"stopped after max_pages={max_pages}; {len(queue)} page(s) not visited")
            )
            break
        page = queue.popleft()
        rel = rel_of(page)
        url = page.as_uri()
        res = PageResult(path=rel, url=url)
        report.pages.append(res)
        tp = time.perf_counter()

        drv.get(url)
        data = drv.execute_async_script(CHECK_JS, image_timeout_ms, settle_ms)
        if not data.get("collector"):
            report.crawl_errors.append(Problem("crawl", rel, "error collector was not installed"))
        res.title = data.get("title") or ""
        res.load_ms = data.get("loadMs")
        res.images = len(data.get("images") or [])
        base = data.get("baseURI") or url
        errors = list(data.get("errors") or [])

        if on_page is not None:
            on_page(drv, rel)
            errors += drv.execute_script("return (window.__fvErrors || []).slice(arguments[0]);", len(errors)) or []

        log = browser.drain_log()
        res.log = log
        reported_urls: set[str] = set()  # resource URLs already reported (dedupe vs. log)

        def problem(lst: list, kind: str, detail: str) -> None:
            lst.append(Problem(kind, rel, detail))

        # -- references in the DOM: links, assets, external URLs -------------
        for ref in data.get("refs") or []:
            tag, attr, value = ref["tag"], ref["attr"], ref["value"]
            if attr in ("style", "text"):
                for m in CSS_URL_RE.finditer(value):
                    u = m.group("u") or m.group("i")
                    if _is_external_url(u):
                        problem(report.external, "external", f"<{tag}> CSS url({u!r}) is an external asset")
                    elif not SCHEME_RE.match(u) or SCHEME_RE.match(u).group(1).lower() == "file":
                        _check_local(report, rel, tag, f"CSS url({u})", urljoin(base, u), root, inside,
                                     report.missing_resources, "missing_resource", reported_urls)
                continue
            values = _split_srcset(value) if attr == "srcset" else [value.strip()]
            for v in values:
                if not v or v.startswith("#"):
                    continue
                is_link = tag in ("a", "area") and attr == "href"
                if EXTERNAL_RE.match(v):
                    if is_link:
                        if not allow_external_links:
                            problem(report.external, "external", f"<a href={v!r}> links outside the report")
                    else:
                        problem(report.external, "external", f"<{tag} {attr}={v!r}> is an external asset")
                    continue
                sm = SCHEME_RE.match(v)
                if sm and sm.group(1).lower() != "file":
                    if sm.group(1).lower() not in IGNORED_SCHEMES:
                        problem(report.external, "external", f"<{tag} {attr}={v!r}> uses scheme {sm.group(1)}:")
                    continue
                if tag == "base":
                    continue
                target_url = urljoin(base, v)
                if is_link:
                    key = (rel, target_url.split("#")[0])
                    if key in checked_links:
                        continue
                    checked_links.add(key)
                    target = _url_to_path(target_url).resolve()
                    if not inside(target):
                        problem(report.broken_links, "broken_link",
                                f"<a href={v!r}> leaves the report folder ({target})")
                    elif target.is_dir():
                        problem(report.broken_links, "broken_link",
                                f"<a href={v!r}> points to a folder ({rel_of(target)}/), "
                                "which file:// shows as a listing; link to a file")
                    elif not target.is_file():
                        problem(report.broken_links, "broken_link",
                                f"<a href={v!r}> -> {rel_of(target)} does not exist")
                    elif target.suffix.lower() in HTML_SUFFIXES:
                        if target not in seen_pages:
                            seen_pages.add(target)
                            queue.append(target)
                    else:
                        report.checked_files.add(rel_of(target))
                elif attr == "action":
                    continue
                else:
                    kind_list, kind = ((report.missing_images, "missing_image") if tag == "img"
                                       else (report.missing_resources, "missing_resource"))
                    _check_local(report, rel, tag, f"{attr}={v!r}", target_url, root, inside,
                                 kind_list, kind, reported_urls)

        # -- images that did not render -------------------------------------
        for img in data.get("images") or []:
            if not img["ok"]:
                u = img["current"] or img["src"]
                if _norm(u) in reported_urls or EXTERNAL_RE.match(img["src"] or ""):
                    continue
                reported_urls.add(_norm(u))
                problem(report.missing_images, "missing_image",
                        f"<img src={img['src']!r}> did not load (complete && naturalWidth > 0 is false)")
        for sh in data.get("sheets") or []:
            if not sh["ok"] and not EXTERNAL_RE.match(sh["href"]):
                u = urljoin(base, sh["href"])
                if _norm(u) in reported_urls:
                    continue
                reported_urls.add(_norm(u))
                problem(report.missing_resources, "missing_resource",
                        f"<link rel=stylesheet href={sh['href']!r}> did not load")

        # -- errors seen by the collector -----------------------------------
        js_msgs: list[str] = []
        opaque_js = 0
        for e in errors:
            if e.get("kind") == "resource":
                u = e.get("url", "")
                if _norm(u) in reported_urls or _is_external_url(u):
                    continue
                reported_urls.add(_norm(u))
                problem(report.missing_resources, "missing_resource", f"<{e.get('tag')}> {u} failed to load")
            elif e.get("message") == "Script error." and not e.get("source"):
                # An error in a separate .js file: file:// makes every file
                # its own origin, so onerror only sees this opaque text.  The
                # browser log below has the real message.
                opaque_js += 1
            else:
                js_msgs.append(e.get("core") or e.get("message", ""))
                loc = ""
                if e.get("source"):
                    src = e["source"]
                    if src.startswith("file://"):
                        try:
                            src = rel_of(_url_to_path(src).resolve())
                        except ValueError:
                            pass
                    loc = f" at {src}:{e.get('line')}:{e.get('col')}"
                problem(report.js_errors, "js_error", f"{e.get('message')}{loc}")

        # -- browser log (console.error, uncaught errors, failed loads) ------
        log_js = 0
        for entry in log:
            if entry.get("level") != "SEVERE":
                continue
            msg = entry.get("message", "")
            source = entry.get("source", "")
            if source == "network":
                mu = re.match(r"^(\S+) - ", msg)
                u = mu.group(1) if mu else ""
                if _norm(u) in reported_urls or _is_external_url(u) or "ERR_BLOCKED_BY_CLIENT" in msg:
                    continue  # already reported (or an external URL, reported as such)
                reported_urls.add(_norm(u))
                problem(report.missing_resources, "missing_resource", f"browser: {msg}")
            elif source == "javascript":
                # Uncaught errors are normally caught by the collector too.
                if any(m and m in msg for m in js_msgs):
                    continue
                problem(report.js_errors, "js_error", f"browser: {msg}")
                log_js += 1
            else:
                problem(report.console_errors, "console_error", f"{source}: {msg}")

        if opaque_js and not log_js:
            problem(report.js_errors, "js_error",
                    f"{opaque_js} uncaught error(s) in a separate script file (details hidden by file://)")

        # -- screenshot ------------------------------------------------------
        name = shot_name(rel)
        if name is not None:
            res.screenshot = browser.screenshot(Path(screenshot_dir) / name)
        res.wall_ms = (time.perf_counter() - tp) * 1000

    visited = set(report.page_paths)
    for k in exact_shots:
        if screenshot_dir is not None and k not in visited:
            report.crawl_errors.append(
                Problem("crawl", "", f"screenshot requested for {k!r}, but that page was never reached")
            )


def _check_local(report, rel, tag, what, target_url, root, inside, lst, kind, reported_urls) -> None:
    target = _url_to_path(target_url).resolve()
    if not inside(target):
        lst.append(Problem(kind, rel, f"<{tag} {what}> lies outside the report folder ({target})"))
        reported_urls.add(_norm(target_url))
    elif not target.is_file():
        lst.append(Problem(kind, rel, f"<{tag} {what}> -> {target.relative_to(root).as_posix()} does not exist"))
        reported_urls.add(_norm(target_url))
