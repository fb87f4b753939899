"""One archive per model: the report, the checkpoint, metrics, units, ascent results, the config
snapshot and the environment, with a manifest holding the sha256 of every file.

The run's lossless picture arrays that only feed the report's pictures (NOT_ARCHIVED below:
the probe's full-resolution image bank, the ascent chunks' and views' arrays) are left out, and named
with the reason in the manifest (`left_out`): the report holds what it shows of them at display
size, so that an archive stays about the size of the report plus the checkpoint. An archive's
results folder is a record, not an input: `featviz report` refuses it (the report is beside it).

Layout inside `<run>.tar.gz`:  <run>/index.html (a landing page: the report's "all runs" link
lands there)  <run>/report/...  <run>/results/...  <run>/extra/...  <run>/environment.json
<run>/MANIFEST.json

`verify_archive` checks a `.tar.gz` or a folder it was extracted to.
"""
from __future__ import annotations

import gzip
import hashlib
import html
import io
import json
import platform
import subprocess
import tarfile
from importlib import metadata
from pathlib import Path

from .errors import FeatvizError
from .io import atomic_path, file_sha256
from .results import PROBE_BANK

MANIFEST = "MANIFEST.json"
PACKAGES = ("featviz", "torch", "torchvision", "numpy", "scipy", "jinja2", "matplotlib", "snakemake")

# files of a run an archive leaves out (run-relative glob pattern: why): the lossless picture arrays
# the report's pictures are drawn from. The report holds what it shows of them at display size, and
# the checkpoint with the config remakes them, so an archive stays the report plus the checkpoint
# plus the run's numbers (records, statistics, metrics) and a few MB
NOT_ARCHIVED = {
    f"probe/{PROBE_BANK}": "the probe's full-resolution image bank: the report holds the thumbnails and "
                           "receptive-field crops it shows",
    "ascent/*/*.npz": "the ascent pictures, lossless at full resolution (images, snapshots, extra views, "
                      "transparency maps): the report holds them at display size; each chunk's .json "
                      "(objectives and statistics per unit) is archived",
    "compare/*/*.npz": "the recipe comparison's pictures, lossless: the methods page holds them at display "
                       "size; each comparison's .json is archived",
    "layer_views/layer_views.npz": "the layer pages' deep-dream and caricature pictures, lossless: the "
                                   "report holds them at display size",
    "attribution/attribution.npz": "the class views' images and maps (8 per class: hundreds of MB at "
                                   "1000 classes): the report holds them as the pictures it shows",
}


def not_archived(results: str | Path) -> dict[str, str]:
    """The files of results/<run> an archive leaves out (run-relative path: why), by NOT_ARCHIVED."""
    root = Path(results)
    return {p.relative_to(root).as_posix(): why for pattern, why in NOT_ARCHIVED.items()
            for p in sorted(root.glob(pattern)) if p.is_file()}


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "featviz_git_commit": commit}


def _files(folder: Path, prefix: str) -> list[tuple[str, Path]]:
    return [(f"{prefix}/{p.relative_to(folder).as_posix()}", p)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _landing(run: str, names: list[str]) -> bytes:
    r = html.escape(run)
    rows = "".join(f"<li>{html.escape(n.split('/', 1)[1])}</li>" for n in names)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{r} archive</title></head>'
            f'<body style="font-family: system-ui, sans-serif; max-width: 900px; margin: 2rem auto">'
            f'<h1>{r}</h1><p><a href="report/index.html">Open the report</a>. Check this folder with '
            f'<code>featviz verify-archive .</code> (every file against MANIFEST.json).</p>'
            f'<details><summary>{len(names)} files</summary><ul>{rows}</ul></details></body></html>').encode()


def make_archive(report: Path, results: Path, out: Path, extra: list[Path] = ()) -> None:
    report, results, out = Path(report), Path(results), Path(out)
    run = report.name
    for folder in (report, results):
        if not folder.is_dir():
            raise FeatvizError(f"archive: folder {folder} does not exist")
    left_out = {f"{run}/results/{rel}": why for rel, why in not_archived(results).items()}
    entries = _files(report, f"{run}/report") + [e for e in _files(results, f"{run}/results") if e[0] not in left_out]
    for p in extra:
        if not Path(p).is_file():
            raise FeatvizError(f"archive --extra: file {p} does not exist")
        entries.append((f"{run}/extra/{Path(p).name}", Path(p)))
    files = dict(entries)
    generated = {f"{run}/environment.json": json.dumps(environment(), indent=2, sort_keys=True).encode()}
    generated[f"{run}/index.html"] = _landing(run, sorted([*files, *generated]))
    # every file is read twice, a block at a time (its digest, then into the tar): memory stays
    # flat however large the report and results are
    manifest = {name: file_sha256(path) for name, path in files.items()}
    manifest.update({name: hashlib.sha256(data).hexdigest() for name, data in generated.items()})
    generated[f"{run}/{MANIFEST}"] = json.dumps({"run": run, "sha256": dict(sorted(manifest.items())),
                                                 "left_out": left_out}, indent=2, sort_keys=True).encode()
    with atomic_path(out) as tmp:
        # gzip level 6: most of an archive is PNG/JPEG/npz that level 9 shrinks no further, at twice the time
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz, \
                tarfile.open(fileobj=gz, mode="w") as tar:
            for name in sorted([*files, *generated]):
                if name in generated:
                    _add_bytes(tar, name, generated[name])
                else:
                    _add_file(tar, name, files[name])


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mtime = 0
    info.mode = 0o644
    with open(path, "rb") as f:
        tar.addfile(info, f)


def verify_folder(folder: Path) -> int:
    """Check an extracted archive (the folder holding MANIFEST.json) against its manifest."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        subs = [d for d in folder.iterdir() if (d / MANIFEST).exists()] if folder.is_dir() else []
        if len(subs) != 1:
            raise FeatvizError(f"{folder}: no {MANIFEST} here (point at the extracted <run> folder)")
        folder = subs[0]
    try:
        manifest = json.loads((folder / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise FeatvizError(f"{folder / MANIFEST} is unreadable: {exc}") from None
    run = folder.name
    problems = []
    for name, digest in manifest.items():
        rel = name.split("/", 1)[1] if name.startswith(run + "/") else None
        p = folder / rel if rel else None
        if p is None or not p.is_file():
            problems.append(f"missing {name}")
        elif file_sha256(p) != digest:
            problems.append(f"sha256 mismatch for {name}")
    listed = {n.split("/", 1)[1] for n in manifest if "/" in n} | {MANIFEST}
    problems += [f"not in the manifest: {run}/{p.relative_to(folder).as_posix()}"
                 for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() not in listed]
    if problems:
        raise FeatvizError(f"{folder} fails verification: " + "; ".join(problems[:10]))
    return len(manifest)


def verify_archive(path: Path) -> int:
    """Check every file against the manifest; returns the number of files checked. `path` is a
    `.tar.gz` or a folder an archive was extracted to."""
    path = Path(path)
    if not path.exists():
        raise FeatvizError(f"archive {path} does not exist")
    if path.is_dir():
        return verify_folder(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            manifests = [n for n in members if n.endswith("/" + MANIFEST) and n.count("/") == 1]
            if len(manifests) != 1:
                raise FeatvizError(f"archive {path}: no {MANIFEST} at its top")
            manifest = json.loads(tar.extractfile(members[manifests[0]]).read())["sha256"]
            problems = []
            for name, digest in manifest.items():
                if name not in members:
                    problems.append(f"missing {name}")
                    continue
                if hashlib.sha256(tar.extractfile(members[name]).read()).hexdigest() != digest:
                    problems.append(f"sha256 mismatch for {name}")
            listed = set(manifest) | {manifests[0]}
            problems += [f"not in the manifest: {n}" for n in members if n not in listed]
    except (tarfile.TarError, OSError, EOFError, ValueError, KeyError) as exc:
        raise FeatvizError(f"archive {path} is unreadable or corrupt: {exc}") from None
    if problems:
        raise FeatvizError(f"archive {path} fails verification: " + "; ".join(problems[:10]))
    return len(manifest)
