"""Build every page and picture of one run's report into a (temporary) folder.

Pages: index.html (the run), layer-<slug>.html (one per layer), classes.html,
units/<layer slug>/<unit>.html (one per unit). Every file name made from a user-given string
(layer or class name) goes through `slug()` and `_inside()`; every link is relative.
"""
from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

import numpy as np

from ..crops import top_crops
from ..figures import curves_png, display_scale, montage, normalize_maps, save_image, save_png
from ..io import write_json, write_text
from ..chunks import LayerAscent
from ..results import CONV1_OPTIMAL, CONV1_WEIGHTS, ProbeArrays, RunFolder, read_misclassified_images, read_transfer
from .card import evaluation, origin
from .circuits import attach_circuits
from .groups import FLAT_LAYERS, group_layers, neighbours
from .inputs import ascent_pixels
from .matching import TRANSFER, write_matches
from .methods import write_methods
from .probe_view import layer_samples, probe_rows
from .samples import samples as _samples
from .search_index import write_units_index
from .sides import unit_sides, views_by_unit
from .templating import STATIC, environment, slug
from .templating import inside as _inside
from .trace import trace_svg
from .transparency import transparency_pictures
from .trust_view import attach_trust, write_trust_page
from .views import attach_class_views, attach_layer_views

# stats that are not metrics to sort by
NOT_METRICS = {"unit", "predicted"}


def unique_slugs(names: list[str]) -> list[str]:
    """slug() of each name, made unique (a suffix on collisions)."""
    out, seen = [], set()
    for i, n in enumerate(names):
        s = slug(n)
        if s.lower() in seen:
            s = f"{s[:70]}-{i}"
        seen.add(s.lower())
        out.append(s)
    return out


def _u8_to_float(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) / 255.0


def _hist_svg(counts: np.ndarray, edges: np.ndarray, marks: dict[str, float]) -> dict:
    """Bars and marker lines of an activation histogram, in a 300×90 view box."""
    w, h = 300.0, 90.0
    lo, hi = float(edges[0]), float(edges[-1])
    xs = [v for v in marks.values() if v is not None and np.isfinite(v)]
    lo2, hi2 = min([lo] + xs), max([hi] + xs)
    span = (hi2 - lo2) or 1.0
    top = float(max(counts.max(), 1))

    def x(v):
        return round((float(v) - lo2) / span * w, 2)

    bars = []
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        bh = round(float(c) / top * (h - 4), 2)
        bars.append({"x": x(a), "w": max(0.5, round(x(b) - x(a) - 0.3, 2)), "y": round(h - bh, 2), "h": bh, "n": int(c)})
    lines = [{"x": x(v), "label": k, "value": float(v)} for k, v in marks.items() if v is not None and np.isfinite(v)]
    return {"bars": bars, "lines": lines, "lo": lo2, "hi": hi2, "w": w, "h": h}


def _metrics(stats: dict, base: dict | None) -> dict:
    """Every numeric stat of a unit (ascent stats, then the probe's dataset baseline)."""
    m = {}
    for k, v in stats.items():
        if k in NOT_METRICS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        m[k] = float(v)
    if base:
        m["dataset_max"] = base["max"]
        m["dataset_mean"] = base["mean"]
        m["frac_active"] = base["frac_active"]
        if "max_corr" in base:
            m["max_corr"] = base["max_corr"]
    return m


RUN_PAGE_CELLS = 64  # per conv layer on the run page (the layer page has them all)
RUN_PAGE_CLASSES = 100
TABLE_PAGE = 100  # rows per page of the long tables (per-class accuracy, a layer's probe results)
LAYER_PAGE = 256  # cells per page of a layer page's grid
HERO, THUMB, TOP = 224, 112, 64  # display heights: unit page, grids, top test images and crops


def _unit_pictures(site: Path, folder: str, u: int, image: np.ndarray) -> tuple[str, str]:
    """The unit's final image for its page, and a thumbnail for grids (the same file when small)."""
    hero = save_image(_inside(site, f"{folder}/{u}"), image, HERO)
    thumb = hero if image.shape[-2] <= THUMB else save_image(_inside(site, f"{folder}/{u}-thumb"), image, THUMB)
    return f"{folder}/{hero}", f"{folder}/{thumb}"


class _BankThumbnails:
    """The thumbnail (`top/<row>`) of each probe top-k test image a page shows, made the first time
    one asks for it and shared by every page that shows it; none without the probe's bank (a run
    rebuilt from its archive)."""

    def __init__(self, site: Path, bank: np.ndarray | None):
        self.site, self.bank, self.names = site, bank, {}

    def __len__(self) -> int:
        return 0 if self.bank is None else len(self.bank)

    def __getitem__(self, row) -> str:
        r = int(row)
        if r not in self.names:
            self.names[r] = f"top/{save_image(_inside(self.site, f'top/{r}'), _u8_to_float(self.bank[r]), TOP)}"
        return self.names[r]


def _bank_thumbnails(site: Path, arrays: ProbeArrays) -> _BankThumbnails:
    return _BankThumbnails(site, arrays.bank)


def _layer_cells(layer: dict, lslug: str, data: LayerAscent, pe: dict | None, classes: list[str]) -> list[dict]:
    cells = []
    for i, (st, job) in enumerate(zip(data.stats, data.jobs)):
        u = int(st["unit"])
        base = pe["per_unit"][u] if pe and u < len(pe["per_unit"]) else None
        folder = f"units/{lslug}"
        dead = bool(base["dead"]) if base else bool(st.get("dead"))
        weak = bool(base and not dead and st.get("objective") is not None and st["objective"] < base["max"])
        flags = [f for f, on in (("dead", dead), ("weak", weak), ("nonfinite", st.get("nonfinite")),
                                 ("unconverged", st.get("converged") is False),
                                 ("redundant", base and base.get("max_corr", 0) > pe["corr_threshold"]))
                 if on]
        cell = {"unit": u, "image": None, "thumb": None, "alpha": None, "page": f"{folder}/{u}.html", "stats": st,
                "job": job, "base": base, "dead": dead, "weak": weak, "flags": flags, "row": i, "top_thumbs": [],
                "metrics": _metrics(st, base), "label": None, "predicted_label": None}
        if layer["kind"] == "class":
            cell["label"] = classes[u] if u < len(classes) else str(u)
            p = st.get("predicted")
            cell["predicted_label"] = classes[p] if isinstance(p, int) and 0 <= p < len(classes) else None
        cells.append(cell)
    return cells


# ---------------------------------------------------------------------- view records (no pixels)

def _layer_view(layer: dict, lslug: str, data: LayerAscent | None, pe: dict | None, classes: list[str]) -> dict:
    """One layer's entry of the report: its units.json record, its probe summary and its cells."""
    entry = dict(layer, slug=lslug, page=f"layer-{lslug}.html", cells=[], recipe=None, complete=False,
                 probe=pe, metric_keys=[], n_dead=pe["dead"] if pe else 0, n_weak=0, snapshot_steps=[],
                 pj=pe["index"] if pe else None, data=data)
    if data is not None:
        entry["cells"] = _layer_cells(layer, lslug, data, pe, classes)
        entry["recipe"] = data.recipe
        entry["complete"] = len(entry["cells"]) == layer["units"]
        keys = []
        for c in entry["cells"]:
            keys += [k for k in c["metrics"] if k not in keys]
        entry["metric_keys"] = keys
        entry["n_dead"] = sum(c["dead"] for c in entry["cells"])
        entry["n_weak"] = sum(c["weak"] for c in entry["cells"])
        entry["snapshot_steps"] = data.snapshot_steps
    entry["by_unit"] = {c["unit"]: c for c in entry["cells"]}
    return entry


def layer_views(units: dict, ascent: dict[str, LayerAscent], probe: dict | None) -> list[dict]:
    """Every layer of units.json as a view record, in order."""
    probe_layers = {e["name"]: e for e in (probe or {}).get("layers", [])}
    slugs = unique_slugs([layer["name"] for layer in units["layers"]])
    return [_layer_view(layer, lslug, ascent.get(layer["name"]), probe_layers.get(layer["name"]), units["classes"])
            for layer, lslug in zip(units["layers"], slugs)]


# ---------------------------------------------------------------------- run-page pictures

def _copy_run_files(site: Path, folder: RunFolder, train_metrics: dict | None, probe: dict | None,
                    confusion_picture: bool) -> None:
    """The static files and the pictures the earlier stages drew, into the site."""
    (site / "static").mkdir()
    for f in STATIC.iterdir():
        shutil.copyfile(f, site / "static" / f.name)
    if confusion_picture:  # (beyond a readable size the evaluation writes a note, not the matrix)
        shutil.copyfile(folder.confusion_png, site / "confusion.png")
    if train_metrics and train_metrics.get("epochs"):
        curves_png(site / "curves.png", train_metrics["epochs"])
    if probe is not None and folder.pruning_png.exists():
        shutil.copyfile(folder.pruning_png, site / "pruning.png")


def _first_layer(site: Path, probe: dict | None, arrays: ProbeArrays, layers: list[dict]) -> dict | None:
    """The first conv layer's weights beside their analytic optimal input and the ascent's objective."""
    if probe is None or CONV1_WEIGHTS not in arrays or not probe.get("first_layer"):
        return None
    w = arrays[CONV1_WEIGHTS]
    opt = arrays[CONV1_OPTIMAL]
    lim = float(np.abs(w).max()) or 1.0
    wshow = (w / lim + 1) / 2  # 0.5 is zero: diverging grey scale
    sc = display_scale(w.shape[-1], 56)
    first = {"name": probe["first_layer"]["name"], "units": []}
    fl = next((layer for layer in layers if layer["name"] == first["name"]), None)
    for u in range(len(w)):
        save_png(_inside(site, f"first/{u}-w.png"), wshow[u] if w.shape[1] in (1, 3) else wshow[u, :1], sc)
        save_png(_inside(site, f"first/{u}-opt.png"), opt[u] if w.shape[1] in (1, 3) else opt[u, :1], sc)
        cell = (fl or {}).get("by_unit", {}).get(u)
        first["units"].append({"unit": u, "weights": f"first/{u}-w.png", "optimal": f"first/{u}-opt.png",
                               "analytic_max": probe["first_layer"]["analytic_max"][u],
                               "objective": cell["stats"].get("objective") if cell else None,
                               "page": cell["page"] if cell else None})
    return first


def _misclassified(site: Path, folder: RunFolder, ev: dict) -> list[dict]:
    """The evaluation's misclassified test images with their records."""
    mimg = read_misclassified_images(folder.misclassified_npz)
    if mimg is None:
        return []
    out = []
    for i, (m, img) in enumerate(zip(ev.get("misclassified", []), mimg)):
        name = save_image(_inside(site, f"misclassified/{i}"), img, 56)
        out.append(dict(m, image=f"misclassified/{name}"))
    return out


# ---------------------------------------------------------------------- pages

def _run_context(run_id: str, model_meta: dict, train_metrics: dict | None, ev: dict, layers: list[dict],
                 config: dict, generated: str, probe: dict | None, folder: RunFolder) -> dict:
    """What every page of the run is rendered with (pictures are added by the caller)."""
    transfer = read_transfer(folder.transfer_json)
    tmodel = transfer.get("transfer_model") if transfer else None
    return {
        "run_id": run_id, "model": model_meta, "train": train_metrics, "eval": ev,
        "origin": origin(model_meta, train_metrics), "evaluation": evaluation(ev),
        "layers": layers, "groups": group_layers(layers), "neighbours": neighbours(layers),
        "config": config, "generated": generated, "probe": probe,
        "class_layer": next((layer for layer in layers if layer["kind"] == "class"), None),
        "model_id": run_id.rsplit("-", 1)[-1] if "-" in run_id else run_id,
        "transfer_model": tmodel,
        # an invalid transfer model (not well above chance) scores nothing and is compared with nothing
        "transfer_invalid": bool(tmodel and tmodel.get("valid") is False),
        "run_page_cells": RUN_PAGE_CELLS, "page_size": LAYER_PAGE, "table_page": TABLE_PAGE,
        "run_page_classes": RUN_PAGE_CLASSES, "flat_layers": FLAT_LAYERS,
    }


def _run_page(env, site: Path, ctx: dict) -> None:
    write_text(site / "index.html", env.get_template("run.html").render(**ctx, root=""))


def _layer_pages(env, site: Path, ctx: dict) -> None:
    for layer in ctx["layers"]:
        write_text(_inside(site, layer["page"]), env.get_template("layer.html").render(
            **ctx, layer=layer, layer_samples=layer_samples(ctx["samples"], layer["name"]), root=""))


def _classes_page(env, site: Path, ctx: dict) -> None:
    if ctx["class_layer"] is not None:
        write_text(site / "classes.html", env.get_template("classes.html").render(
            **ctx, layer=ctx["class_layer"], accuracy=ctx["eval"]["per_class_accuracy"], root=""))


def _summary(ctx: dict) -> dict:
    """summary.json: the run's row of the report index."""
    layers = ctx["layers"]
    return {
        "run": ctx["run_id"],
        "model_id": ctx["model_id"],
        "dataset": ctx["model"].get("dataset"),
        "test_accuracy": ctx["eval"]["test_accuracy"],
        "generated": ctx["generated"],
        "units": sum(len(layer["cells"]) for layer in layers),
        "layers": len(layers),
        "dead": sum(layer["n_dead"] for layer in layers),
        "weak": sum(layer["n_weak"] for layer in layers),
        "archive": f"{ctx['run_id']}.tar.gz",
    }


def write_site(site: Path, results: Path, run_id: str, model_meta: dict, train_metrics: dict | None, ev: dict,
               units: dict, ascent: dict[str, LayerAscent], probe: dict | None, arrays: ProbeArrays,
               config: dict, matches: list[Path] | None = None) -> None:
    """Every picture and page of one run's report into `site` (loaders -> view records ->
    pictures -> pages)."""
    env = environment()
    site, folder = Path(site), RunFolder(results)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    classes = units["classes"]
    layers = layer_views(units, ascent, probe)
    trust = attach_trust(layers, results)  # the cells' trust scores and `unnatural` flags (trust.json)
    ctx = _run_context(run_id, model_meta, train_metrics, ev, layers, config, generated, probe, folder)
    _copy_run_files(site, folder, train_metrics, probe, ctx["evaluation"]["picture"])
    write_json(site / "config.json", config)
    ctx["samples"] = _samples(site, probe, arrays, layers)
    ctx["first"] = _first_layer(site, probe, arrays, layers)
    ctx["misclassified"] = _misclassified(site, folder, ev)
    bank_thumbs = _bank_thumbnails(site, arrays)
    for layer in layers:  # what the probe measured of the units without a picture (the layer pages)
        layer["probe_rows"] = probe_rows(layer, arrays, bank_thumbs, classes)
    # each layer's `circuits`: the unit pages' circuits block (none with `circuits: null`)
    attach_circuits(layers, results, units, THUMB, enabled=config.get("circuits", {}) is not None)
    # the views on real images: the class pages' attribution, the layer pages' DeepDream and caricature
    attach_class_views(site, results, ctx["class_layer"], classes)
    attach_layer_views(site, results, layers)
    for layer in layers:  # unit pictures and pages, a layer at a time
        if layer["cells"]:
            _unit_pages(env, site, layer, arrays, bank_thumbs, classes, run_id, generated)
    write_units_index(site, layers)  # units-index.js: the run page's search (static/search.js)
    ctx["trust_page"] = write_trust_page(env, site, trust, layers, ctx)  # after the unit pages (their thumbnails)
    ctx["methods_page"] = write_methods(env, site, results, units, probe, config, run_id, generated)
    ctx["match_pages"] = write_matches(env, site, results, layers, run_id, generated, matches,  # after the unit pages
                                       leave_out=(TRANSFER,) if ctx["transfer_invalid"] else ())
    _run_page(env, site, ctx)
    _layer_pages(env, site, ctx)
    _classes_page(env, site, ctx)
    write_json(site / "summary.json", _summary(ctx))


def _unit_pages(env, site: Path, layer: dict, arrays: ProbeArrays, bank_thumbs: _BankThumbnails, classes: list[str],
                run_id: str, generated: str) -> None:
    """Every picture and page of one layer's units; the layer's pixels are dropped when it returns."""
    images, snapshots = ascent_pixels(layer["data"])
    traces = layer["data"].traces()
    alphas = layer["data"].transparency()  # MACO's transparency maps, where the recipe keeps them
    views = views_by_unit(*layer["data"].views())  # the extra views of some conv units (report/sides.py)
    cells, pj, lslug = layer["cells"], layer["pj"], layer["slug"]
    folder = f"units/{lslug}"
    bank_rows = arrays.layer("topk", pj)
    rf = (layer["probe"] or {}).get("receptive_field")
    for n, cell in enumerate(cells):
        u = cell["unit"]
        cell["image"], cell["thumb"] = _unit_pictures(site, folder, u, images[cell["row"]])
        sides = unit_sides(site, folder, cell, views.get(u), THUMB)
        if alphas is not None:
            cell["alpha"] = transparency_pictures(site, folder, u, images[cell["row"]], alphas[cell["row"]], HERO)
        evo = None
        if layer["snapshot_steps"]:
            frames = np.stack([snapshots[st][cell["row"]] for st in layer["snapshot_steps"]]
                              + [_shrink_like(images[cell["row"]], snapshots[layer["snapshot_steps"][0]].shape[-2:])])
            name = save_image(_inside(site, f"{folder}/{u}-evo"), montage(frames, cols=len(frames), gap=2), 84)
            evo = {"image": name, "steps": layer["snapshot_steps"] + ["final"]}
        trace = None if traces is None else trace_svg(traces[cell["row"]], layer["snapshot_steps"],
                                                      cell["stats"].get("convergence_ratio"))
        top = hist = None
        b = cell["base"]
        if b and bank_rows is not None and u < len(bank_rows) and len(bank_thumbs):
            rows = bank_rows[u]
            cell["top_thumbs"] = [bank_thumbs[r] for r in rows]
            crops = None
            if rf is not None and "top_pos" in layer["probe"]:
                c = top_crops(arrays.bank, rows, layer["probe"]["top_pos"][u], layer["output_shape"][-1], rf)
                crops = save_image(_inside(site, f"{folder}/{u}-crops"), montage(_u8_to_float(c), cols=len(c), gap=2), TOP)
            top = {"thumbs": cell["top_thumbs"], "crops": crops,
                   "rows": [{"rank": r + 1, "index": i, "label": classes[lab] if lab < len(classes) else lab, "value": v}
                            for r, (i, lab, v) in enumerate(zip(b["top_index"], b["top_label"], b["top_value"]))]}
        hist_j = arrays.layer("hist", pj)
        if b and hist_j is not None:
            hist = _hist_svg(hist_j[u], arrays.layer("edges", pj)[u],
                             {"ascent objective": cell["stats"].get("objective"), "dataset max": b["max"]})
        partner = None
        if b and layer["units"] > 1 and b.get("max_corr", 0) > 0:
            pc = layer["by_unit"].get(b["partner"])
            partner = {"unit": b["partner"], "corr": b["max_corr"], "page": f"{pc['unit']}.html" if pc else None}
        prev_c = cells[n - 1] if n > 0 else None
        next_c = cells[n + 1] if n + 1 < len(cells) else None
        html = env.get_template("unit.html").render(
            run_id=run_id, layer=layer, cell=cell, evo=evo, trace=trace, top=top, hist=hist, partner=partner, sides=sides,
            prev=prev_c, next=next_c, root="../../", classes=classes, generated=generated)
        write_text(_inside(site, cell["page"]), html)


def _shrink_like(image: np.ndarray, size) -> np.ndarray:
    """The final image at the snapshots' (downscaled) size, for the evolution strip."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image
    from PIL import Image

    from ..figures import to_uint8

    pil = Image.fromarray(to_uint8(image)).resize((int(size[1]), int(size[0])), Image.BOX)
    arr = np.asarray(pil, np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else np.transpose(arr, (2, 0, 1))
