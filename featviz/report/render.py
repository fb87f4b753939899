"""Render a run's results folder into a self-contained static site (relative links only).

The site is written into a temporary folder beside the target and swapped in at the end, so a
report is never half-written.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path

from ..artifacts import read_json_object, read_model_json, read_units
from ..errors import FeatvizError, why
from ..io import write_text
from ..results import RunFolder, read_eval_metrics, read_train_metrics
from .inputs import load_ascent, load_probe
from .site import write_site as _write_site
from .templating import STATIC, environment, slug  # noqa: F401  (slug: re-exported for callers)


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


def _refuse_archived_results(results: Path) -> None:
    """An extracted archive's results folder keeps the run's numbers, not the lossless pictures the
    pages are drawn from (featviz.archive.NOT_ARCHIVED): one clear error instead of a missing file."""
    if results.name == "results" and (results.parent / "MANIFEST.json").is_file():
        raise FeatvizError(f"report: {results} is the results folder of an extracted archive, which leaves out "
                           f"the lossless pictures the pages are drawn from (MANIFEST.json, left_out); its report "
                           f"is {results.parent / 'report'}. To render the run again, run the workflow from the "
                           f"archived checkpoint and config")


def render_run(results: Path, out: Path, config: dict | None = None, matches: list[Path] | None = None) -> None:
    """Render results/<run> into the folder `out` (replaced whole at the end). `matches`: the
    comparisons (results/<run>/match/<other>.json) to render; None: every one there."""
    out = Path(out)
    folder = RunFolder(results)
    results = folder.root
    _refuse_archived_results(results)
    for needed in (folder.model_json, folder.eval_metrics, folder.units):
        if not needed.exists():
            raise FeatvizError(f"report: {needed} is missing (run the earlier stages first)")
    # every input through a checked reader: a missing, truncated or corrupt file is one error naming it
    model_meta = read_model_json(folder.model_dir)
    train_metrics = read_train_metrics(folder.train_metrics)
    ev = read_eval_metrics(folder.eval_metrics)
    units = read_units(folder.units)
    ascent = load_ascent(results, units)
    probe, arrays = load_probe(results)
    run_id = results.name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_site(tmp, results, run_id, model_meta, train_metrics, ev, units, ascent, probe, arrays,
                    config or {}, matches)
        _swap_in(tmp, out)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # files that read cleanly but disagree inside (a stats row without a key, fewer images than
        # stats): the readers check each file's shape, not every value the pages use
        shutil.rmtree(tmp, ignore_errors=True)
        raise FeatvizError(f"report: the results in {results} are inconsistent ({type(exc).__name__}: {why(exc)}); "
                           f"a file there is not what featviz wrote: re-run the stages that write it (or the "
                           f"workflow)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _inline_js(path: Path) -> str:
    """A script's text for an inline <script> element (which must not contain "</")."""
    return path.read_text().replace("</", "<\\/")


def _index_row(d: Path, out: Path, listed: bool) -> dict:
    """One run's row of the index, read from its report folder's summary.json."""
    summary = d / "summary.json"
    if not summary.exists():
        raise FeatvizError(f"index: {summary} is missing (render the run's report first)")
    row = read_json_object(summary, "report summary", "re-render the run's report (`featviz report`)", ("run",))
    rel = Path(os.path.relpath(d, out.parent)).as_posix()
    row["href"] = f"{rel}/index.html"
    row.setdefault("model_id", row["run"].rsplit("-", 1)[-1])
    row.setdefault("dead", "–")
    row.setdefault("weak", "–")
    archive = d.parent / row.get("archive", f"{d.name}.tar.gz")
    row["archive_href"] = Path(os.path.relpath(archive, out.parent)).as_posix() if archive.exists() else None
    row["index_href"] = f"{rel}/units-index.js" if (d / "units-index.js").is_file() else None
    row["listed"] = listed
    return row


def other_reports(folder: Path, given: list[Path]) -> list[Path]:
    """The report folders in `folder` (those with a summary.json) not among `given`: the runs of
    earlier configs whose reports are still there (a hidden folder is a report being written)."""
    seen = {Path(d).resolve() for d in given}
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and (d / "summary.json").is_file() and d.resolve() not in seen)


def render_index(run_dirs: list[Path], out: Path) -> None:
    """reports/index.html: one row per run: the given report folders first (the config's runs), then
    every other report folder beside the index (earlier configs' runs); links are relative to the
    index's folder, and an archive is linked where `<run>.tar.gz` exists beside its report when the
    index is written (the workflow writes the index after the archives)."""
    out = Path(out)
    given = [Path(d) for d in run_dirs]
    rows = [_index_row(d, out, True) for d in given]
    rows += [_index_row(d, out, False) for d in other_reports(out.parent, given)]
    html = environment().get_template("index.html").render(
        runs=rows, root="", inline_css=(STATIC / "style.css").read_text(), search_js=_inline_js(STATIC / "search.js"),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    write_text(out, html)
