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
from ..io import read_json, write_json, write_text
from .inputs import ascent_pixels
from .methods import write_methods
from .search_index import write_units_index
from .templating import STATIC, environment, slug
from .trace import read_traces, trace_svg

# stats that are not metrics to sort by
NOT_METRICS = {"unit", "predicted"}


def _inside(site: Path, rel: str) -> Path:
    """site/rel, refusing anything that would land outside the site folder."""
    p = (site / rel).resolve()
    if not p.is_relative_to(site.resolve()):
        raise ValueError(f"report: refusing to write outside the report folder: {rel!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


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


def _colormap(maps01: np.ndarray) -> np.ndarray:
    """(N, H, W) in [0, 1] -> (N, 3, H, W) viridis."""
    from matplotlib import colormaps

    rgb = colormaps["viridis"](np.clip(maps01, 0, 1))[..., :3].astype(np.float32)
    return np.transpose(rgb, (0, 3, 1, 2))


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
CONFUSION_TABLE = 50  # classes up to which the run page carries the confusion matrix as a table
LAYER_PAGE = 256  # cells per page of a layer page's grid
SAMPLE_MAPS = 64  # activation maps per layer and sample on the run page
HERO, THUMB, TOP = 224, 112, 64  # display heights: unit page, grids, top test images and crops


def _unit_pictures(site: Path, folder: str, u: int, image: np.ndarray) -> tuple[str, str]:
    """The unit's final image for its page, and a thumbnail for grids (the same file when small)."""
    hero = save_image(_inside(site, f"{folder}/{u}"), image, HERO)
    thumb = hero if image.shape[-2] <= THUMB else save_image(_inside(site, f"{folder}/{u}-thumb"), image, THUMB)
    return f"{folder}/{hero}", f"{folder}/{thumb}"


def _bank_thumbnails(site: Path, arrays: dict) -> list[str]:
    """Each probe top-k test image once (`top/<row>`), shared by every unit page that shows it."""
    bank = arrays.get("topk_bank")
    if bank is None:
        return []
    return [f"top/{save_image(_inside(site, f'top/{r}'), _u8_to_float(img), TOP)}" for r, img in enumerate(bank)]


def _layer_cells(layer: dict, lslug: str, data: dict, pe: dict | None, classes: list[str]) -> list[dict]:
    cells = []
    for i, (st, job) in enumerate(zip(data["stats"], data["jobs"])):
        u = int(st["unit"])
        base = pe["per_unit"][u] if pe and u < len(pe["per_unit"]) else None
        folder = f"units/{lslug}"
        dead = bool(base["dead"]) if base else bool(st.get("dead"))
        weak = bool(base and not dead and st.get("objective") is not None and st["objective"] < base["max"])
        flags = [f for f, on in (("dead", dead), ("weak", weak), ("nonfinite", st.get("nonfinite")),
                                 ("unconverged", st.get("converged") is False),
                                 ("redundant", base and base.get("max_corr", 0) > pe["corr_threshold"]))
                 if on]
        cell = {"unit": u, "image": None, "thumb": None, "page": f"{folder}/{u}.html", "stats": st, "job": job,
                "base": base, "dead": dead, "weak": weak, "flags": flags, "row": i, "top_thumbs": [],
                "metrics": _metrics(st, base), "label": None, "predicted_label": None}
        if layer["kind"] == "class":
            cell["label"] = classes[u] if u < len(classes) else str(u)
            p = st.get("predicted")
            cell["predicted_label"] = classes[p] if isinstance(p, int) and 0 <= p < len(classes) else None
        cells.append(cell)
    return cells


def write_site(site: Path, results: Path, run_id: str, model_meta: dict, train_metrics: dict | None, ev: dict,
               units: dict, ascent: dict, probe: dict | None, arrays: dict, config: dict) -> None:
    env = environment()
    site = Path(site)
    (site / "static").mkdir()
    for f in STATIC.iterdir():
        shutil.copyfile(f, site / "static" / f.name)
    shutil.copyfile(results / "eval" / "confusion.png", site / "confusion.png")
    if train_metrics and train_metrics.get("epochs"):
        curves_png(site / "curves.png", train_metrics["epochs"])
    write_json(site / "config.json", config)
    classes = units["classes"]
    names = [layer["name"] for layer in units["layers"]]
    slugs = unique_slugs(names)
    probe_layers = {e["name"]: e for e in (probe or {}).get("layers", [])}
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    # ------------------------------------------------------------------ layers and their units (no pixels yet)
    layers = []
    for layer, lslug in zip(units["layers"], slugs):
        data = ascent.get(layer["name"])
        pe = probe_layers.get(layer["name"])
        entry = dict(layer, slug=lslug, page=f"layer-{lslug}.html", cells=[], recipe=None, complete=False,
                     probe=pe, metric_keys=[], n_dead=pe["dead"] if pe else 0, n_weak=0, snapshot_steps=[],
                     pj=pe["index"] if pe else None, data=data)
        if data is not None:
            entry["cells"] = _layer_cells(layer, lslug, data, pe, classes)
            entry["recipe"] = data["recipe"]
            entry["complete"] = len(entry["cells"]) == layer["units"]
            keys = []
            for c in entry["cells"]:
                keys += [k for k in c["metrics"] if k not in keys]
            entry["metric_keys"] = keys
            entry["n_dead"] = sum(c["dead"] for c in entry["cells"])
            entry["n_weak"] = sum(c["weak"] for c in entry["cells"])
            entry["snapshot_steps"] = data["snapshot_steps"]
        entry["by_unit"] = {c["unit"]: c for c in entry["cells"]}
        layers.append(entry)

    # ------------------------------------------------------------------ run-page pictures
    samples = []
    if probe is not None and "sample_images" in arrays:
        imgs = _u8_to_float(arrays["sample_images"])
        sal = arrays.get("saliency")
        for s, meta in enumerate(probe["samples"]):
            row = dict(meta, image=f"samples/{save_image(_inside(site, f'samples/{s}'), imgs[s], 84)}", maps=[],
                       saliency=None)
            if sal is not None:
                name = save_image(_inside(site, f"samples/{s}-saliency"), _colormap(sal[s][None])[0], 84)
                row["saliency"] = f"samples/{name}"
            for layer in layers:
                key = f"maps_{layer['pj']}"
                if layer["kind"] != "conv" or layer["pj"] is None or key not in arrays:
                    continue
                shown = arrays[key][s][:SAMPLE_MAPS].astype(np.float32)
                maps = _colormap(normalize_maps(shown))
                h = maps.shape[-2]
                rel = f"samples/{s}-{layer['slug']}.png"
                save_png(_inside(site, rel), montage(maps, cols=min(len(maps), 16), gap=1, scale=max(1, 28 // h)))
                row["maps"].append({"layer": layer["name"], "image": rel, "units": len(maps), "of": layer["units"]})
            samples.append(row)
    first = None
    if probe is not None and "conv1_weights" in arrays and probe.get("first_layer"):
        w = arrays["conv1_weights"]
        opt = arrays["conv1_optimal"]
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
    if probe is not None and (results / "probe" / "pruning.png").exists():
        shutil.copyfile(results / "probe" / "pruning.png", site / "pruning.png")
    misclassified = []
    npz = results / "eval" / "misclassified.npz"
    if npz.exists():
        with np.load(npz) as z:
            mimg = z["images"]
        for i, (m, img) in enumerate(zip(ev.get("misclassified", []), mimg)):
            name = save_image(_inside(site, f"misclassified/{i}"), img, 56)
            misclassified.append(dict(m, image=f"misclassified/{name}"))

    # ------------------------------------------------------------------ unit pictures and pages, a layer at a time
    bank_thumbs = _bank_thumbnails(site, arrays)
    class_layer = next((layer for layer in layers if layer["kind"] == "class"), None)
    for layer in layers:
        if not layer["cells"]:
            continue
        _unit_pages(env, site, layer, arrays, bank_thumbs, classes, run_id, generated)
    write_units_index(site, layers)  # units-index.js: the run page's search (static/search.js)

    # ------------------------------------------------------------------ run, layer, class pages
    per_class = [(c, ev["per_class_accuracy"].get(c)) for c in ev["classes"]]
    transfer_file = results / "transfer.json"
    transfer_model = read_json(transfer_file).get("transfer_model") if transfer_file.is_file() else None
    conf = ev.get("confusion") or []
    ctx = {
        "run_id": run_id, "model": model_meta, "train": train_metrics, "eval": ev, "per_class": per_class,
        "layers": layers, "config": config, "generated": generated, "probe": probe, "samples": samples,
        "first": first, "misclassified": misclassified, "confusion": conf,
        "confusion_max": max((max(r) for r in conf if r), default=0), "class_layer": class_layer,
        "model_id": run_id.rsplit("-", 1)[-1] if "-" in run_id else run_id,
        "transfer_model": transfer_model, "run_page_cells": RUN_PAGE_CELLS, "page_size": LAYER_PAGE, "confusion_table_classes": CONFUSION_TABLE, "run_page_classes": RUN_PAGE_CLASSES,
    }
    ctx["methods_page"] = write_methods(env, site, results, units, probe, config, run_id, generated)
    write_text(site / "index.html", env.get_template("run.html").render(**ctx, root=""))
    for layer in layers:
        write_text(_inside(site, layer["page"]), env.get_template("layer.html").render(**ctx, layer=layer, root=""))
    if class_layer is not None:
        acc = dict(per_class)
        write_text(site / "classes.html", env.get_template("classes.html").render(**ctx, layer=class_layer, accuracy=acc, root=""))
    write_json(site / "summary.json", {
        "run": run_id,
        "model_id": ctx["model_id"],
        "dataset": model_meta.get("dataset"),
        "test_accuracy": ev["test_accuracy"],
        "generated": generated,
        "units": sum(len(layer["cells"]) for layer in layers),
        "layers": len(layers),
        "dead": sum(layer["n_dead"] for layer in layers),
        "weak": sum(layer["n_weak"] for layer in layers),
        "archive": f"{run_id}.tar.gz",
    })


def _unit_pages(env, site: Path, layer: dict, arrays: dict, bank_thumbs: list[str], classes: list[str],
                run_id: str, generated: str) -> None:
    """Every picture and page of one layer's units; the layer's pixels are dropped when it returns."""
    images, snapshots = ascent_pixels(layer["data"])
    traces = read_traces(layer["data"]["files"])
    cells, pj, lslug = layer["cells"], layer["pj"], layer["slug"]
    folder = f"units/{lslug}"
    bank_rows = arrays.get(f"topk_{pj}") if pj is not None else None
    rf = (layer["probe"] or {}).get("receptive_field")
    for n, cell in enumerate(cells):
        u = cell["unit"]
        cell["image"], cell["thumb"] = _unit_pictures(site, folder, u, images[cell["row"]])
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
        if b and bank_rows is not None and u < len(bank_rows):
            rows = bank_rows[u]
            cell["top_thumbs"] = [bank_thumbs[r] for r in rows]
            crops = None
            if rf is not None and "top_pos" in layer["probe"]:
                c = top_crops(arrays["topk_bank"], rows, layer["probe"]["top_pos"][u], layer["output_shape"][-1], rf)
                crops = save_image(_inside(site, f"{folder}/{u}-crops"), montage(_u8_to_float(c), cols=len(c), gap=2), TOP)
            top = {"thumbs": cell["top_thumbs"], "crops": crops,
                   "rows": [{"rank": r + 1, "index": i, "label": classes[lab] if lab < len(classes) else lab, "value": v}
                            for r, (i, lab, v) in enumerate(zip(b["top_index"], b["top_label"], b["top_value"]))]}
        if b and pj is not None and f"hist_{pj}" in arrays:
            hist = _hist_svg(arrays[f"hist_{pj}"][u], arrays[f"edges_{pj}"][u],
                             {"ascent objective": cell["stats"].get("objective"), "dataset max": b["max"]})
        partner = None
        if b and layer["units"] > 1 and b.get("max_corr", 0) > 0:
            pc = layer["by_unit"].get(b["partner"])
            partner = {"unit": b["partner"], "corr": b["max_corr"], "page": f"{pc['unit']}.html" if pc else None}
        prev_c = cells[n - 1] if n > 0 else None
        next_c = cells[n + 1] if n + 1 < len(cells) else None
        html = env.get_template("unit.html").render(
            run_id=run_id, layer=layer, cell=cell, evo=evo, trace=trace, top=top, hist=hist, partner=partner,
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
