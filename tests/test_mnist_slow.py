"""The quick MNIST report on the real MNIST files (../shared/data), end to end: the issue's
acceptance check. Skipped when the files are absent."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.snakemake_run import snakemake

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.workflow]


def test_quick_mnist_report(mnist_root, tmp_path):
    env = dict(os.environ, FEATVIZ_DATA_ROOT=str(mnist_root))
    quick = ROOT / "config" / "quick.yaml"
    r = snakemake(tmp_path, configfile=quick, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-5000:]
    run = next(p for p in (tmp_path / "results").iterdir() if p.name.startswith("mnist-"))
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.990
    conv = [json.loads(p.read_text()) for p in sorted((run / "ascent").glob("conv*/*.json"))]
    assert sum(len(c["stats"]) for c in conv) == 16 + 36
    classes = json.loads((run / "ascent" / "classes" / "0.json").read_text())["stats"]
    assert len(classes) == 10 and all(s["target_softmax"] >= 0.99 for s in classes)
    transfer = json.loads((run / "transfer.json").read_text())["summary"]
    assert transfer["n_transfer_recognized"] >= 8  # recognisable by an independently trained model
    page = (tmp_path / "reports" / run.name / "index.html").read_text()
    assert page.count('alt="conv1 filter') == 16 and page.count('alt="conv2 filter') == 36
    assert page.count('alt="class ') == 10
    # circuits on every unit page: all three pairs of this plain chain come from the weights
    circ = json.loads((run / "circuits" / "circuits.json").read_text())
    assert [(p["from"], p["to"], p["measure"]) for p in circ["pairs"]] == [
        ("conv1", "conv2", "weights"), ("conv2", "fc1", "weights"), ("fc1", "classes", "weights")]
    unit_pages = sorted((tmp_path / "reports" / run.name / "units").glob("*/*.html"))
    assert len(unit_pages) == 16 + 36 + 128 + 10 and all('id="circuits"' in p.read_text() for p in unit_pages)
    again = snakemake(tmp_path, "--dry-run", configfile=quick, env=env, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
    # the real report in a real browser: every page, no broken link or missing image, fast
    from tests.browser import browser_unavailable_reason, crawl

    if browser_unavailable_reason() is None:
        crawled = crawl(tmp_path / "reports" / "index.html")
        print(crawled.summary())
        crawled.assert_clean()
        assert len(crawled.pages) > 190 and crawled.max_load_ms < 1000, crawled.summary()
    from featviz.archive import verify_archive

    assert verify_archive(tmp_path / "reports" / f"{run.name}.tar.gz") > 100
