"""The whole Snakemake DAG on the tiny synthetic `.test/config.yaml`, end to end, then the report's
contents; a second run has nothing to do."""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


from tests.snakemake_run import snakemake


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from tests.synthetic import make_imagefolder

    workdir = tmp_path_factory.mktemp("workflow")
    make_imagefolder(workdir / "shapes")
    r = snakemake(workdir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return workdir


def test_report_contents(finished):
    reports = finished / "reports"
    runs = [p for p in reports.iterdir() if p.is_dir()]
    assert len(runs) == 1 and re.fullmatch(r"shapes-[0-9a-f]{8}", runs[0].name)
    run = runs[0]
    results = finished / "results" / run.name
    metrics = json.loads((results / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    html = (run / "index.html").read_text()
    assert f"{100 * metrics['test_accuracy']:.2f}%" in html
    units = json.loads((results / "units.json").read_text())
    assert [(layer["name"], layer["units"]) for layer in units["layers"]] == [
        ("conv1", 4), ("conv2", 6), ("fc1", 8), ("classes", 3)]
    # one image per unit of every layer, each referenced by the report and present on disk
    for layer in units["layers"]:
        for u in range(layer["units"]):
            rel = f"units/{layer['name']}/{u}.png"
            assert (run / rel).stat().st_size > 0
            assert rel in html or layer["kind"] == "dense"
    assert 'src="confusion.png"' in html and (run / "confusion.png").exists()
    for c in ("diag", "hbar", "vbar"):
        assert f"<b>{c}</b>" in html
    index = (reports / "index.html").read_text()
    assert f'href="{run.name}/index.html"' in index and f'href="{run.name}.tar.gz"' in index


def test_unit_pages_show_the_four_sides(finished):
    """`ascent.views` at its defaults: the first 2 units of each conv layer get their neuron,
    negative and diversity views in their ascent job, stored in the chunk and shown on the unit page;
    the other units and the dense layers get none."""
    run = next(p for p in (finished / "reports").iterdir() if p.is_dir())
    results = finished / "results" / run.name
    rec = json.loads((results / "ascent" / "conv1" / "0.json").read_text())
    assert sorted({v["unit"] for v in rec["views"]}) == [0, 1] and len(rec["views"]) == 2 * (1 + 1 + 4)
    page = (run / "units" / "conv1" / "1.html").read_text()
    assert page.count('class="card side-') == 7 and "1-diversity3.png" in page
    assert 'id="sides"' not in (run / "units" / "conv1" / "2.html").read_text()
    assert "views" not in json.loads((results / "ascent" / "fc1" / "0.json").read_text())


def test_one_pass_over_the_test_set(finished):
    """The evaluation reads the probe's test predictions (rule evaluate's input): the test images
    go through the network once for both."""
    results = next((finished / "results").glob("shapes-*"))
    ev = json.loads((results / "eval" / "metrics.json").read_text())
    probe = json.loads((results / "probe" / "probe.json").read_text())
    assert ev["inference"]["pass"] == "probe" and ev["inference"] == probe["inference"]
    assert ev["test_accuracy"] == probe["test_accuracy"] and ev["n_test"] == probe["n_test"]


def test_comparison_with_the_transfer_model(finished):
    """runs[i].match.transfer (on by default): one match job, its page linked from the run page."""
    results = next((finished / "results").glob("shapes-*"))
    rec = json.loads((results / "match" / "transfer.json").read_text())
    assert (results / "match" / "transfer.npz").is_file()
    assert [e["name"] for e in rec["layers"]] == ["conv1", "conv2", "fc1", "classes"]
    assert all(e["best"] is not None and 0.0 <= e["close_share"] <= 1.0 for e in rec["layers"])
    site = finished / "reports" / results.name
    assert 'href="match-transfer.html"' in (site / "index.html").read_text()
    assert 'id="layer-match-table"' in (site / "match-transfer.html").read_text()
    assert (results / "benchmarks" / "match" / "transfer.tsv").is_file()


def test_ascent_jobs_one_per_chunk(finished):
    results = next((finished / "results").glob("shapes-*"))
    # chunk_size 4: conv1 4 -> 1 job, conv2 6 -> 2, fc1 8 -> 2, classes 3 -> 1
    counts = {d.name: len(list(d.glob("*.npz"))) for d in (results / "ascent").iterdir()}
    assert counts == {"conv1": 1, "conv2": 2, "fc1": 2, "classes": 1}


def test_circuits_job_and_unit_pages(finished):
    results = next((finished / "results").glob("shapes-*"))
    c = json.loads((results / "circuits" / "circuits.json").read_text())
    # the tiny net is a plain chain: every pair reads the previous layer directly, so weights everywhere
    assert [(p["from"], p["to"], p["measure"]) for p in c["pairs"]] == [
        ("conv1", "conv2", "weights"), ("conv2", "fc1", "weights"), ("fc1", "classes", "weights")]
    assert (results / "benchmarks" / "circuits.tsv").is_file()
    site = finished / "reports" / results.name
    for rel, directions in (("conv1/0", ["Drives most"]), ("conv2/3", ["Driven most by", "Drives most"]),
                            ("fc1/7", ["Driven most by", "Drives most"]), ("classes/2", ["Driven most by"])):
        html = (site / "units" / f"{rel}.html").read_text()
        assert [d for d in ("Driven most by", "Drives most") if d in html] == directions, rel
        assert "weights: " in html
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', html[html.find('id="circuits"'):]):
            assert (site / "units" / rel).parent.joinpath(ref).resolve().is_file(), (rel, ref)


def test_trust_job_scores_every_picture(finished):
    """runs[i].trust (on by default): one job after the ascent and the probe; its scores on the unit
    pages, its log and benchmark archived."""
    results = next((finished / "results").glob("shapes-*"))
    rec = json.loads((results / "trust.json").read_text())
    assert [(e["name"], len(e["units"])) for e in rec["layers"]] == [("conv1", 4), ("conv2", 6), ("fc1", 8), ("classes", 3)]
    n_test = json.loads((results / "probe" / "probe.json").read_text())["n_test"]
    assert rec["layers"][3]["below"] == ["fc1", "conv2", "conv1"] and rec["images"] == min(32, n_test)
    assert (results / "logs" / "trust.log").is_file() and (results / "benchmarks" / "trust.tsv").is_file()
    site = finished / "reports" / results.name
    assert 'id="trust-score"' in (site / "units" / "fc1" / "1.html").read_text() or "No score" in (
        site / "units" / "fc1" / "1.html").read_text()
    assert (site / "trust.html").is_file()
    with tarfile.open(next((finished / "reports").glob("*.tar.gz"))) as tar:
        names = tar.getnames()
    assert any(n.endswith("/results/trust.json") for n in names) and any(n.endswith("/logs/trust.log") for n in names)


def test_views_on_real_images(finished):
    """runs[i].attribution and runs[i].layer_views (on by default): one job each after the probe /
    the units; the class pages' attribution and the layer pages' DeepDream and caricature, archived."""
    results = next((finished / "results").glob("shapes-*"))
    rec = json.loads((results / "attribution" / "attribution.json").read_text())
    assert rec["layer"] == "conv2" and len(rec["classes"]) == 3
    views = json.loads((results / "layer_views" / "layer_views.json").read_text())
    assert [e["name"] for e in views["layers"]] == ["conv1", "conv2", "fc1"]
    site = finished / "reports" / results.name
    assert 'id="looks-top"' in (site / "units" / "classes" / "0.html").read_text()
    assert 'id="caricature"' in (site / "layer-fc1.html").read_text()
    with tarfile.open(next((finished / "reports").glob("*.tar.gz"))) as tar:
        names = tar.getnames()
    for tail in ("/results/attribution/attribution.json", "/results/layer_views/layer_views.json", "/logs/dream.log",
                 "/logs/attribute.log", "/report/views/layers/fc1-deepdream.png"):
        assert any(n.endswith(tail) for n in names), tail
    # the views' lossless arrays stay out (the report holds their pictures): featviz.archive.NOT_ARCHIVED
    assert not any(n.endswith(("/results/attribution/attribution.npz", "/results/layer_views/layer_views.npz"))
                   for n in names)
    assert any("/report/views/classes/" in n for n in names)


def test_archive_verifies(finished):
    from featviz.archive import verify_archive

    archive = next((finished / "reports").glob("*.tar.gz"))
    assert verify_archive(archive) > 10
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    run = archive.name[:-len(".tar.gz")]
    assert f"{run}/results/model/model.pt" in names and f"{run}/report/index.html" in names


def test_second_run_does_nothing(finished):
    r = snakemake(finished, "--dry-run")
    assert r.returncode == 0
    assert "Nothing to be done" in r.stdout + r.stderr
