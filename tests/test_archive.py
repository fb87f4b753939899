"""Per-run archives: contents, sha256 manifest, tampering detected (tar and extracted folder)."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from featviz.archive import MANIFEST, NOT_ARCHIVED, make_archive, not_archived, verify_archive
from featviz.cli import main
from featviz.errors import FeatvizError
from featviz.report import render_run
from tests.synthetic_run import make_run


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    run = make_run(root, steps=20)
    report = root / "reports" / run.name
    render_run(run, report, {"name": "tiny", "seed": 0})
    out = root / "reports" / f"{run.name}.tar.gz"
    make_archive(report, run, out)
    return out


def _members(path):
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_contents_and_manifest(archive):
    files = _members(archive)
    run = archive.name[: -len(".tar.gz")]
    for needed in ("index.html", "report/index.html", "report/config.json", "results/model/model.pt",
                   "results/model/model.json", "results/eval/metrics.json", "results/units.json",
                   "results/probe/probe.json", "environment.json", MANIFEST):
        assert f"{run}/{needed}" in files, needed
    assert json.loads(files[f"{run}/report/config.json"])["name"] == "tiny"
    manifest = json.loads(files[f"{run}/{MANIFEST}"])["sha256"]
    assert set(manifest) == set(files) - {f"{run}/{MANIFEST}"}
    assert verify_archive(archive) == len(manifest)
    assert main(["verify-archive", str(archive)]) == 0


def test_the_lossless_picture_arrays_stay_out(archive, tmp_path):
    """The probe's bank of full-resolution test images and the ascent chunks' lossless pictures are
    left out, each named in the manifest with its reason; the report's pictures drawn from them and
    the chunks' records are in; rendering the archive's results again is one clear error."""
    files = _members(archive)
    run = archive.name[: -len(".tar.gz")]
    results = archive.parent.parent / "results" / run
    chunks = sorted(results.glob("ascent/*/*.npz"))
    assert (results / "probe/bank.npz").is_file() and chunks  # the run keeps them: the report reads them
    assert not [n for n in files
                if n.endswith("bank.npz") or (n.startswith(f"{run}/results/ascent/") and n.endswith(".npz"))]
    left_out = json.loads(files[f"{run}/{MANIFEST}"])["left_out"]
    assert left_out[f"{run}/results/probe/bank.npz"] == NOT_ARCHIVED["probe/bank.npz"]
    for c in chunks:
        rel = c.relative_to(results).as_posix()
        assert left_out[f"{run}/results/{rel}"] == NOT_ARCHIVED["ascent/*/*.npz"]
        assert f"{run}/results/{rel[:-len('.npz')]}.json" in files  # the chunk's objectives and statistics
    assert left_out == {f"{run}/results/{k}": why for k, why in not_archived(results).items()}
    assert f"{run}/results/probe/probe.npz" in files and f"{run}/results/probe/predictions.npz" in files
    assert [n for n in files if n.startswith(f"{run}/report/top/")]  # the top images the report shows
    assert [n for n in files if n.startswith(f"{run}/report/units/")]  # the ascent pictures, at display size
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    with pytest.raises(FeatvizError, match="extracted archive.*MANIFEST.json, left_out.*report"):
        render_run(tmp_path / run / "results", tmp_path / "site", {"name": "tiny", "seed": 0})
    assert not (tmp_path / "site").exists()


def _rewrite(src, dst, change=None, add=None):
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if change and m.name.endswith(change):
                data = data.replace(b"featviz", b"featvix", 1)
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
        if add:
            info = tarfile.TarInfo(add)
            info.size = 3
            tout.addfile(info, io.BytesIO(b"bad"))


def test_tampered_archive_is_detected(archive, tmp_path, capsys):
    run = archive.name[: -len(".tar.gz")]
    bad = tmp_path / "changed.tar.gz"
    _rewrite(archive, bad, change="report/index.html")
    with pytest.raises(FeatvizError, match="sha256 mismatch for .*report/index.html"):
        verify_archive(bad)
    assert main(["verify-archive", str(bad)]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    extra = tmp_path / "extra.tar.gz"
    _rewrite(archive, extra, add=f"{run}/report/evil.html")
    with pytest.raises(FeatvizError, match="not in the manifest"):
        verify_archive(extra)
    broken = tmp_path / "truncated.tar.gz"
    broken.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(FeatvizError, match="unreadable or corrupt"):
        verify_archive(broken)


def test_extracted_archive_verifies_and_tampering_is_detected(archive, tmp_path):
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    run = tmp_path / archive.name[: -len(".tar.gz")]
    assert verify_archive(tmp_path) == verify_archive(run) > 10
    (run / "report" / "index.html").write_text((run / "report" / "index.html").read_text().replace("featviz", "x", 1))
    with pytest.raises(FeatvizError, match="sha256 mismatch"):
        verify_archive(run)


def test_file_only_verbs_do_not_import_torch(archive, tmp_path):
    """report, index, archive and verify-archive end every report one after another; each skips
    torch's import (about 2 s of start-up). A fresh interpreter shows what the verbs import."""
    import subprocess
    import sys

    name = archive.name[: -len(".tar.gz")]
    run_dir, report = archive.parent.parent / "results" / name, archive.parent / name
    script = f"""
import sys
from featviz.cli import main
verbs = [
    ["report", "--results", {str(run_dir)!r}, "--config", "{{}}", "--out", {str(tmp_path / "site")!r}],
    ["index", "--out", {str(tmp_path / "index.html")!r}, {str(report)!r}],
    ["archive", "--report", {str(report)!r}, "--results", {str(run_dir)!r}, "--out", {str(tmp_path / "a.tar.gz")!r}],
    ["verify-archive", {str(tmp_path / "a.tar.gz")!r}],
]
for argv in verbs:
    assert main(argv) == 0, argv
    assert "torch" not in sys.modules, f"featviz {{argv[0]}} imported torch"
print("no torch")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "no torch" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
