"""Render a run's results folder into a self-contained static site (relative links only).

The site is written into a temporary folder beside the target and swapped in at the end, so a
report is never half-written.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
from pathlib import Path

import jinja2
import numpy as np

from ..errors import FeatvizError
from ..io import read_json, unpack_images, write_text

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def slug(name: str) -> str:
    """A file-name-safe form of a user-given name (layer, class): it cannot leave its folder."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "unnamed"
    return s[:80]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "–" if x is None else f"{100.0 * float(x):.2f}%"
    env.filters["num"] = lambda x, d=3: "–" if x is None else f"{float(x):.{d}f}"
    return env


def load_ascent(results: Path, units: dict) -> dict[str, dict]:
    """Per layer: per-unit stats, per-unit job settings (recipe, seed, device, chunk), the chunk
    files in unit order and the snapshot steps every chunk has. No pixels: `ascent_pixels` reads a
    layer's images when its pages are written, so a report holds one layer's pictures at a time."""
    out = {}
    for layer in units["layers"]:
        folder = results / "ascent" / layer["name"]
        if not folder.is_dir():
            continue
        stats, jobs, files, steps = [], [], [], None
        for js in sorted(folder.glob("*.json"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem)):
            rec = read_json(js)
            npz = js.with_suffix(".npz")
            with np.load(npz) as z:  # the zip directory only: no arrays are read here
                have = {int(k.split("_")[1]) for k in z.files if k.startswith("snapshot_")}
            steps = have if steps is None else steps & have
            files.append(npz)
            stats.extend(rec["stats"])
            job = {k: rec.get(k) for k in ("recipe", "seed", "device", "chunk")}
            jobs.extend([job] * len(rec["stats"]))
        if not files:
            continue
        if layer["kind"] == "class":
            _merge_transfer(results, stats)
        out[layer["name"]] = {"files": files, "stats": stats, "jobs": jobs, "recipe": jobs[0]["recipe"],
                              "snapshot_steps": sorted(steps or ())}
    return out


def ascent_pixels(data: dict) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One layer's final images (N, C, H, W) float32 in [0, 1] and its snapshots {step: images}."""
    images, snaps = [], {st: [] for st in data["snapshot_steps"]}
    for npz in data["files"]:
        with np.load(npz) as z:
            images.append(unpack_images(z["images"]))
            for st in snaps:
                snaps[st].append(unpack_images(z[f"snapshot_{st:05d}"]))
    return np.concatenate(images), {st: np.concatenate(v) for st, v in snaps.items()}


TRANSFER_KEYS = ("transfer_softmax", "transfer_predicted", "transfer_recognized", "robustness")


def _merge_transfer(results: Path, stats: list[dict]) -> None:
    """Add the transfer score (results/<run>/transfer.json) to the class images' stats."""
    path = results / "transfer.json"
    if not path.exists():
        return
    rows = {row["unit"]: row for row in read_json(path).get("images", [])}
    for st in stats:
        row = rows.get(st["unit"], {})
        st.update({k: row[k] for k in TRANSFER_KEYS if row.get(k) is not None})


def load_probe(results: Path) -> tuple[dict | None, dict]:
    """probe.json and the arrays of probe.npz (loaded whole: they are small), or (None, {})."""
    js, npz = results / "probe" / "probe.json", results / "probe" / "probe.npz"
    if not (js.exists() and npz.exists()):
        return None, {}
    with np.load(npz) as z:
        return read_json(js), {k: z[k] for k in z.files}


def _swap_in(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def render_run(results: Path, out: Path, config: dict | None = None) -> None:
    """Render results/<run> into the folder `out` (replaced whole at the end)."""
    results, out = Path(results), Path(out)
    for needed in ("model/model.json", "eval/metrics.json", "units.json"):
        if not (results / needed).exists():
            raise FeatvizError(f"report: {results / needed} is missing (run the earlier stages first)")
    model_meta = read_json(results / "model/model.json")
    train_metrics = read_json(results / "model/metrics.json") if (results / "model/metrics.json").exists() else None
    ev = read_json(results / "eval/metrics.json")
    units = read_json(results / "units.json")
    ascent = load_ascent(results, units)
    probe, arrays = load_probe(results)
    run_id = results.name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_site(tmp, results, run_id, model_meta, train_metrics, ev, units, ascent, probe, arrays,
                    config or {})
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


from .site import write_site as _write_site  # noqa: E402


def _inline_js(path: Path) -> str:
    """A script's text for an inline <script> element (which must not contain "</")."""
    return path.read_text().replace("</", "<\\/")


def render_index(run_dirs: list[Path], out: Path) -> None:
    """reports/index.html: one row per run, read from each run's report folder; links are relative
    to the index's folder, and an archive is linked only where `<run>.tar.gz` exists beside it."""
    out = Path(out)
    rows = []
    for d in run_dirs:
        d = Path(d)
        summary = d / "summary.json"
        if not summary.exists():
            raise FeatvizError(f"index: {summary} is missing (render the run's report first)")
        row = read_json(summary)
        rel = Path(os.path.relpath(d, out.parent)).as_posix()
        row["href"] = f"{rel}/index.html"
        row.setdefault("model_id", row["run"].rsplit("-", 1)[-1])
        row.setdefault("dead", "–")
        row.setdefault("weak", "–")
        archive = d.parent / row.get("archive", f"{d.name}.tar.gz")
        row["archive_href"] = Path(os.path.relpath(archive, out.parent)).as_posix() if archive.exists() else None
        row["index_href"] = f"{rel}/units-index.js" if (d / "units-index.js").is_file() else None
        rows.append(row)
    html = environment().get_template("index.html").render(
        runs=rows, root="", inline_css=(STATIC / "style.css").read_text(), search_js=_inline_js(STATIC / "search.js"),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    write_text(out, html)
