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
from ..figures import curves_png, display_scale, save_png
from ..io import read_json, write_json, write_text

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
    """Per layer: images (N, C, H, W) and the per-unit stats, gathered from every chunk."""
    out = {}
    for layer in units["layers"]:
        folder = results / "ascent" / layer["name"]
        images, stats, recipe = [], [], None
        for js in sorted(folder.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
            rec = read_json(js)
            with np.load(js.with_suffix(".npz")) as z:
                images.append(z["images"])
            stats.extend(rec["stats"])
            recipe = rec.get("recipe")
        if images:
            out[layer["name"]] = {"images": np.concatenate(images), "stats": stats, "recipe": recipe}
    return out


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
    results, out = Path(results), Path(out)
    for needed in ("model/model.json", "eval/metrics.json", "units.json"):
        if not (results / needed).exists():
            raise FeatvizError(f"report: {results / needed} is missing (run the earlier stages first)")
    model_meta = read_json(results / "model/model.json")
    train_metrics = read_json(results / "model/metrics.json") if (results / "model/metrics.json").exists() else None
    ev = read_json(results / "eval/metrics.json")
    units = read_json(results / "units.json")
    ascent = load_ascent(results, units)
    run_id = results.name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_site(tmp, results, run_id, model_meta, train_metrics, ev, units, ascent, config or {})
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_site(site, results, run_id, model_meta, train_metrics, ev, units, ascent, config):
    env = environment()
    (site / "static").mkdir()
    for f in STATIC.iterdir():
        shutil.copyfile(f, site / "static" / f.name)
    for name in ("confusion.png", "misclassified.png"):
        shutil.copyfile(results / "eval" / name, site / name)
    if train_metrics and train_metrics.get("epochs"):
        curves_png(site / "curves.png", train_metrics["epochs"])
    classes = units["classes"]
    layers = []
    for layer in units["layers"]:
        data = ascent.get(layer["name"])
        entry = dict(layer, slug=slug(layer["name"]), cells=[], recipe=None, complete=False)
        if data is not None:
            scale = display_scale(data["images"].shape[-2])
            for img, st in zip(data["images"], data["stats"]):
                rel = f"units/{entry['slug']}/{st['unit']}.png"
                (site / rel).parent.mkdir(parents=True, exist_ok=True)
                save_png(site / rel, img, scale)
                cell = dict(st, image=rel)
                if layer["kind"] == "class":
                    cell["label"] = classes[st["unit"]]
                    cell["predicted_label"] = classes[st["predicted"]] if "predicted" in st else None
                entry["cells"].append(cell)
            entry["recipe"] = data["recipe"]
            entry["complete"] = len(entry["cells"]) == layer["units"]
        layers.append(entry)
    ctx = {
        "run_id": run_id,
        "model": model_meta,
        "train": train_metrics,
        "eval": ev,
        "per_class": [(c, ev["per_class_accuracy"].get(c)) for c in ev["classes"]],
        "layers": layers,
        "config": config,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_text(site / "index.html", env.get_template("run.html").render(**ctx, root=""))
    write_json(site / "summary.json", {
        "run": run_id,
        "dataset": model_meta.get("dataset"),
        "test_accuracy": ev["test_accuracy"],
        "generated": ctx["generated"],
        "units": sum(len(layer["cells"]) for layer in layers),
        "layers": len(layers),
        "archive": f"{run_id}.tar.gz",
    })
    for layer in layers:
        write_text(site / f"layer-{layer['slug']}.html",
                   env.get_template("layer.html").render(**ctx, layer=layer, root=""))


def render_index(run_dirs: list[Path], out: Path) -> None:
    """reports/index.html: one row per run, read from each run's report folder."""
    rows = []
    for d in run_dirs:
        d = Path(d)
        summary = d / "summary.json"
        if not summary.exists():
            raise FeatvizError(f"index: {summary} is missing (render the run's report first)")
        rows.append(read_json(summary))
    out = Path(out)
    html = environment().get_template("index.html").render(
        runs=rows, root="", inline_css=(STATIC / "style.css").read_text(), generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    write_text(out, html)
