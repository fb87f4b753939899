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

from ..figures import curves_png, display_scale, montage, normalize_maps, save_png
from ..io import write_json, write_text
from .render import STATIC, environment, slug

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

    # ------------------------------------------------------------------ layers and units
    layers = []
    for j, (layer, lslug) in enumerate(zip(units["layers"], slugs)):
        data = ascent.get(layer["name"])
        pe = probe_layers.get(layer["name"])
        pj = pe["index"] if pe else None
        entry = dict(layer, slug=lslug, page=f"layer-{lslug}.html", cells=[], recipe=None, complete=False,
                     probe=pe, metric_keys=[], n_dead=0, n_weak=0)
        by_unit = {}
        if data is not None:
            scale = display_scale(data["images"].shape[-2])
            for i, (img, st, job) in enumerate(zip(data["images"], data["stats"], data["jobs"])):
                u = int(st["unit"])
                base = pe["per_unit"][u] if pe and u < len(pe["per_unit"]) else None
                folder = f"units/{lslug}"
                rel = f"{folder}/{u}.png"
                save_png(_inside(site, rel), img, scale)
                dead = bool(base["dead"]) if base else bool(st.get("dead"))
                weak = bool(base and not dead and st.get("objective") is not None and st["objective"] < base["max"])
                flags = [f for f, on in (("dead", dead), ("weak", weak), ("nonfinite", st.get("nonfinite")),
                                         ("unconverged", st.get("converged") is False),
                                         ("redundant", base and base.get("max_corr", 0) > pe["corr_threshold"]))
                         if on]
                cell = {"unit": u, "image": rel, "page": f"{folder}/{u}.html", "stats": st, "job": job,
                        "base": base, "dead": dead, "weak": weak, "flags": flags, "row": i,
                        "metrics": _metrics(st, base), "label": None, "predicted_label": None}
                if layer["kind"] == "class":
                    cell["label"] = classes[u] if u < len(classes) else str(u)
                    p = st.get("predicted")
                    cell["predicted_label"] = classes[p] if isinstance(p, int) and 0 <= p < len(classes) else None
                entry["cells"].append(cell)
                by_unit[u] = cell
            entry["recipe"] = data["recipe"]
            entry["complete"] = len(entry["cells"]) == layer["units"]
            keys = []
            for c in entry["cells"]:
                keys += [k for k in c["metrics"] if k not in keys]
            entry["metric_keys"] = keys
            entry["n_dead"] = sum(c["dead"] for c in entry["cells"])
            entry["n_weak"] = sum(c["weak"] for c in entry["cells"])
            entry["snapshot_steps"] = sorted(data["snapshots"])
        elif pe:
            entry["n_dead"] = pe["dead"]
        entry["by_unit"] = by_unit
        entry["pj"] = pj
        entry["data"] = data
        layers.append(entry)

    # ------------------------------------------------------------------ run-page pictures
    samples = []
    if probe is not None and "sample_images" in arrays:
        imgs = _u8_to_float(arrays["sample_images"])
        sal = arrays.get("saliency")
        for s, meta in enumerate(probe["samples"]):
            sc = display_scale(imgs.shape[-2], 84)
            save_png(_inside(site, f"samples/{s}.png"), imgs[s], sc)
            row = dict(meta, image=f"samples/{s}.png", maps=[], saliency=None)
            if sal is not None:
                save_png(_inside(site, f"samples/{s}-saliency.png"), _colormap(sal[s][None])[0], sc)
                row["saliency"] = f"samples/{s}-saliency.png"
            for layer in layers:
                key = f"maps_{layer['pj']}"
                if layer["kind"] != "conv" or layer["pj"] is None or key not in arrays:
                    continue
                maps = _colormap(normalize_maps(arrays[key][s].astype(np.float32)))
                h = maps.shape[-2]
                rel = f"samples/{s}-{layer['slug']}.png"
                save_png(_inside(site, rel), montage(maps, cols=min(len(maps), 12), gap=1, scale=max(1, 28 // h)))
                row["maps"].append({"layer": layer["name"], "image": rel, "units": len(maps)})
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
            rel = f"misclassified/{i}.png"
            save_png(_inside(site, rel), img, display_scale(img.shape[-2], 56))
            misclassified.append(dict(m, image=rel))

    # ------------------------------------------------------------------ unit pages
    class_layer = next((layer for layer in layers if layer["kind"] == "class"), None)
    for layer in layers:
        cells = layer["cells"]
        pj = layer["pj"]
        for n, cell in enumerate(cells):
            u, lslug = cell["unit"], layer["slug"]
            folder = f"units/{lslug}"
            data = layer["data"]
            evo = None
            if layer.get("snapshot_steps"):
                frames = [data["snapshots"][st][cell["row"]] for st in layer["snapshot_steps"]] + [data["images"][cell["row"]]]
                frames = np.stack(frames)
                sc = display_scale(frames.shape[-2], 84)
                save_png(_inside(site, f"{folder}/{u}-evo.png"), montage(frames, cols=len(frames), gap=2, scale=sc))
                evo = {"image": f"{u}-evo.png", "steps": layer["snapshot_steps"] + ["final"]}
            top = None
            hist = None
            if pj is not None and f"topimg_{pj}" in arrays and cell["base"]:
                t = _u8_to_float(arrays[f"topimg_{pj}"][u])
                sc = display_scale(t.shape[-2], 56)
                save_png(_inside(site, f"{folder}/{u}-top.png"), montage(t, cols=len(t), gap=2, scale=sc))
                crops = None
                if f"crops_{pj}" in arrays:
                    c = _u8_to_float(arrays[f"crops_{pj}"][u])
                    csc = display_scale(c.shape[-2], 56)
                    save_png(_inside(site, f"{folder}/{u}-crops.png"), montage(c, cols=len(c), gap=2, scale=csc))
                    crops = f"{u}-crops.png"
                b = cell["base"]
                top = {"image": f"{u}-top.png", "crops": crops,
                       "rows": [{"rank": r + 1, "index": i, "label": classes[lab] if lab < len(classes) else lab, "value": v}
                                for r, (i, lab, v) in enumerate(zip(b["top_index"], b["top_label"], b["top_value"]))]}
                hist = _hist_svg(arrays[f"hist_{pj}"][u], arrays[f"edges_{pj}"][u],
                                 {"ascent objective": cell["stats"].get("objective"), "dataset max": b["max"]})
            partner = None
            if cell["base"] and layer["units"] > 1 and cell["base"].get("max_corr", 0) > 0:
                pc = layer["by_unit"].get(cell["base"]["partner"])
                partner = {"unit": cell["base"]["partner"], "corr": cell["base"]["max_corr"],
                           "page": f"{pc['unit']}.html" if pc else None}
            prev_c = cells[n - 1] if n > 0 else None
            next_c = cells[n + 1] if n + 1 < len(cells) else None
            html = env.get_template("unit.html").render(
                run_id=run_id, layer=layer, cell=cell, evo=evo, top=top, hist=hist, partner=partner,
                prev=prev_c, next=next_c, root="../../", classes=classes, generated=generated)
            write_text(_inside(site, cell["page"]), html)

    # ------------------------------------------------------------------ run, layer, class pages
    per_class = [(c, ev["per_class_accuracy"].get(c)) for c in ev["classes"]]
    conf = ev.get("confusion") or []
    ctx = {
        "run_id": run_id, "model": model_meta, "train": train_metrics, "eval": ev, "per_class": per_class,
        "layers": layers, "config": config, "generated": generated, "probe": probe, "samples": samples,
        "first": first, "misclassified": misclassified, "confusion": conf,
        "confusion_max": max((max(r) for r in conf if r), default=0), "class_layer": class_layer,
        "model_id": run_id.rsplit("-", 1)[-1] if "-" in run_id else run_id,
    }
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
