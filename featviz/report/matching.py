"""The comparison pages (match-<other>.html) of a run with `runs[i].match`: per comparison the
layer-match table (each layer of this run against each comparable layer of the other network:
mean best-match |r| and the share of close matches) and, per layer, its units matched one to one
with the other network's units of its best layer, side by side with their correlation. Reads
results/<run>/match/<other>.json and .npz (featviz/matching.py); nothing where there are none."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import montage, save_image
from ..io import read_json, unpack_images, write_text
from .templating import slug

ROWS = 64  # matched pairs shown per layer (the strongest first)
THUMB = 84  # display height of a unit's picture
PREFIX = "match-"
TRANSFER = "transfer"  # the comparison with the run's transfer model (featviz.matching.TRANSFER, which needs torch)


def read_matches(results: Path, files: list[Path] | None = None) -> list[tuple[str, dict, Path]]:
    """(other, scores, pictures file) of the given comparisons (the workflow passes those of the
    config: a file left from an earlier config is not shown), or of every complete one of the run."""
    from ..errors import FeatvizError

    folder = Path(results) / "match"
    if files is None:
        files = [js for js in sorted(folder.glob("*.json")) if js.with_suffix(".npz").is_file()] if folder.is_dir() else []
    out = []
    for js in sorted(Path(f) for f in files):
        npz = js.with_suffix(".npz")
        if not (js.is_file() and npz.is_file()):
            raise FeatvizError(f"report: comparison {js} or its {npz.name} is missing (run `featviz match`, or the workflow)")
        out.append((js.stem, read_json(js), npz))
    return out


def other_label(rec: dict) -> str:
    b = rec["b"]
    if b["kind"] == "run":
        return b["run"]
    model = b.get("model") or {}
    what = model.get("preset") or ("its own layers" if model.get("layers") else None)
    return f"transfer model ({what})" if what else "transfer model"


def _top_picture(site: Path, rel: str, z, key: str, u: int, layer: dict | None = None) -> str | None:
    """The montage of a unit's top test images of the comparison's sample (a conv unit's:
    receptive-field crops around its strongest position where the job kept it), or None."""
    from ..crops import top_crops
    from .templating import inside as _inside

    if key not in z.files or u >= len(z[key]):
        return None
    rows = z[key][u]
    pos_key, rf = key.replace("top_", "pos_"), (layer or {}).get("receptive_field")
    if pos_key in z.files and rf and layer.get("output_shape"):
        imgs = unpack_images(top_crops(z["bank"], rows, z[pos_key][u], layer["output_shape"][-1], rf))
    else:
        imgs = unpack_images(z["bank"][rows])
    return f"{Path(rel).parent.as_posix()}/{save_image(_inside(site, rel), montage(imgs, cols=len(imgs), gap=2, fill=0.5), THUMB)}"


def _ascent_picture(site: Path, rel: str, z, j: int, u: int) -> str | None:
    from .templating import inside as _inside

    key = f"ascent_b_{j}"
    if key not in z.files:
        return None
    units = z[f"ascent_b_units_{j}"].tolist()
    if u not in units:
        return None
    img = unpack_images(z[key][units.index(u)][None])[0]
    return f"{Path(rel).parent.as_posix()}/{save_image(_inside(site, rel), img, THUMB)}"


def _side_a(site, folder, z, layer_entry, i, u, layer):
    """This run's unit: its ascent thumbnail and page where the report has them (with its top test
    images below, the same kind of picture the other side may have), else its top test images."""
    cell = (layer_entry or {}).get("by_unit", {}).get(u) if layer_entry else None
    top = _top_picture(site, f"{folder}/a-{i}-{u}", z, f"top_a_{i}", u, layer)
    if cell and cell.get("thumb"):
        return {"image": cell["thumb"], "page": cell["page"], "what": "ascent", "top": top}
    return {"image": top, "page": cell["page"] if cell else None, "what": "top test images", "top": None}


def _side_b(site, folder, z, j, u, layer):
    top = _top_picture(site, f"{folder}/b-{j}-{u}-top", z, f"top_b_{j}", u, layer)
    image = _ascent_picture(site, f"{folder}/b-{j}-{u}", z, j, u)
    if image is not None:
        return {"image": image, "page": None, "what": "ascent", "top": top}
    return {"image": top, "page": None, "what": "top test images", "top": None}


def _layer_table(rec: dict) -> dict:
    """Rows: this run's layers; columns: the other network's; cells: mean best |r| and close share."""
    cols = [la["name"] for la in rec["b"]["layers"]]
    by = {(p["a"], p["b"]): p for p in rec["pairs"]}
    rows = []
    for e in rec["layers"]:
        rows.append({"name": e["name"], "best": e["best"],
                     "cells": [by.get((e["name"], c)) for c in cols]})
    return {"cols": cols, "rows": rows}


def _sections(site: Path, folder: str, rec: dict, z, report_layers: dict) -> list[dict]:
    out = []
    for e in rec["layers"]:
        sec = {"name": e["name"], "slug": slug(e["name"]), "kind": e["kind"], "units": e["units"], "best": e["best"],
               "rows": [], "shown": 0, "scores": e}
        if e["best"] is not None:
            i, j = e["index"], e["best_index"]
            matched = [m for m in e["matches"] if m["partner"] is not None]
            matched.sort(key=lambda m: (-abs(m["r"]), m["unit"]))
            for m in matched[:ROWS]:
                sec["rows"].append({"a_unit": m["unit"], "b_unit": m["partner"], "r": m["r"], "best": m["best"],
                                    "best_r": m["best_r"],
                                    "a": _side_a(site, folder, z, report_layers.get(e["name"]), i, m["unit"],
                                                 rec["a"]["layers"][i]),
                                    "b": _side_b(site, folder, z, j, m["partner"], rec["b"]["layers"][j])})
            sec["shown"], sec["matched"] = len(sec["rows"]), len(matched)
        out.append(sec)
    return out


def write_matches(env, site: Path, results: Path, layers: list[dict], run_id: str, generated: str,
                  files: list[Path] | None = None, leave_out: tuple[str, ...] = ()) -> list[dict]:
    """Write the comparison pages of the run (`read_matches`, but those named in `leave_out`: an
    invalid transfer model's; pictures under match/<other>/); returns the run page's links: page,
    label, and a one-line summary."""
    links = []
    report_layers = {layer["name"]: layer for layer in layers}
    for other, rec, npz in read_matches(results, files):
        if other in leave_out:
            continue
        name = slug(other)
        page, folder = f"{PREFIX}{name}.html", f"match/{name}"
        with np.load(npz) as z:
            sections = _sections(site, folder, rec, z, report_layers)
        label = other_label(rec)
        write_text(Path(site) / page, env.get_template("match.html").render(
            run_id=run_id, rec=rec, label=label, table=_layer_table(rec), sections=sections, rows_max=ROWS,
            root="", generated=generated))
        close = [e for e in rec["layers"] if e["best"] is not None and e["kind"] != "class"]
        summary = ", ".join(f"{e['name']} {100 * e['close_share']:.0f}%" for e in close)
        links.append({"page": page, "label": label, "summary": summary, "close": rec["close"]})
    return links
