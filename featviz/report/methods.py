"""The methods page (methods.html) of a run with `ascent.compare`: per compared unit a row of the
recipes' images with their scores, and per layer a summary table (mean scores and time per unit per
recipe). Reads results/<run>/compare/ (featviz.compare.read_compare); written only where it exists."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import REMAKE_COMPARE, read_npz
from ..compare import read_compare, resolve_compare, score, summarize
from ..errors import FeatvizError
from ..figures import save_image
from ..io import unpack_images, write_text
from .templating import inside as _inside
from .templating import slug
from .trace import trace_svg

PAGE = "methods.html"
THUMB = 96  # display height of a compared image

# summary columns: (score key, heading, digits)
SUMMARY = (("reached", "reached (mean)", 3), ("reached_median", "reached (median)", 3), ("robustness", "robustness", 3),
           ("target_softmax", "target softmax", 4), ("transfer_softmax", "transfer softmax", 4),
           ("transfer_recognized", "recognised by the independent model", 2), ("steps", "steps", 0), ("wall_s", "s per unit", 3),
           ("cpu_s", "CPU s per unit", 3))


CLASS_ONLY = ("target_softmax", "transfer_softmax", "transfer_recognized")


def _entries(results: Path, config: dict) -> list[dict]:
    compare = (config.get("ascent") or {}).get("compare")
    try:
        resolved = resolve_compare(compare, check=False) if compare else None
    except FeatvizError:
        resolved = None
    return read_compare(results, resolved["entries"] if resolved else None)


def write_methods(env, site: Path, results: Path, units: dict, probe: dict | None, config: dict, run_id: str,
                  generated: str) -> str | None:
    """Write methods.html (and its pictures under methods/) into the site; returns its name, or None
    where the run has no comparison results."""
    entries = _entries(Path(results), config)
    if not entries:
        return None
    classes = units["classes"]
    probe_layers = {e["name"]: e for e in (probe or {}).get("layers", [])}
    main_recipe = (config.get("ascent") or {}).get("recipe") or {}
    main_overrides = (config.get("ascent") or {}).get("overrides") or {}
    layers = []
    for layer in units["layers"]:
        have = [e for e in entries if layer["name"] in e["layers"]]
        if not have:
            continue
        lslug = slug(layer["name"])
        pe = probe_layers.get(layer["name"])
        unit_ids = []
        for e in have:
            unit_ids += [u for u in e["layers"][layer["name"]]["record"]["units"] if u not in unit_ids]
        rows = {u: {"unit": u, "label": classes[u] if layer["kind"] == "class" and u < len(classes) else None,
                    "base": pe["per_unit"][u] if pe and u < len(pe["per_unit"]) else None,
                    "cells": []} for u in unit_ids}
        summary = []
        for e in have:
            part = e["layers"][layer["name"]]
            rec = part["record"]
            z = read_npz(part["npz"], "comparison images", REMAKE_COMPARE, None)
            images = unpack_images(z["images"])
            traces = z.get("trace")
            by_unit = {}
            for i, st in enumerate(rec["stats"]):
                u = int(st["unit"])
                sc = score(st, rows[u]["base"])
                name = save_image(_inside(site, f"methods/{e['slug']}/{lslug}/{u}"), images[i], THUMB)
                by_unit[u] = dict(sc, image=f"methods/{e['slug']}/{lslug}/{name}",
                                  trace=trace_svg(traces[i]) if traces is not None and i < len(traces) else None)
            for u, row in rows.items():
                row["cells"].append(by_unit.get(u))
            recipe = rec.get("recipe") or {}
            is_class = layer["kind"] == "class"
            means = summarize(list(by_unit.values()))
            summary.append({
                "label": e["label"], "entry": e["entry"], "units": len(by_unit),
                "means": means,
                "recipe_steps": recipe.get("class_steps") or recipe.get("steps") if is_class else recipe.get("steps"),
                # the settings the run's own report uses for this kind of unit
                "main": e["entry"]["recipe"] == ((main_recipe.get("layers") or {}).get(layer["name"])
                                                 or main_recipe.get(layer["kind"]))
                        and e["entry"]["overrides"] == {**(main_overrides.get(layer["kind"]) or {}),
                                                        **((main_overrides.get("layers") or {}).get(layer["name"]) or {})},
            })
        for row in rows.values():
            reached = [c["reached"] for c in row["cells"] if c and c["reached"] is not None]
            row["best"] = max(reached) if reached else None
        best = [s["means"]["reached"] for s in summary if s["means"]["reached"] is not None]
        layers.append({"name": layer["name"], "kind": layer["kind"], "slug": lslug, "entries": have,
                       "rows": list(rows.values()), "summary": summary, "best_reached": max(best) if best else None,
                       "columns": [c for c in SUMMARY if layer["kind"] == "class" or c[0] not in CLASS_ONLY]})
    html = env.get_template("methods.html").render(
        run_id=run_id, layers=layers, entries=entries, generated=generated, root="")
    write_text(site / PAGE, html)
    return PAGE
