"""How far to trust a picture, in the report (results/<run>/trust.json, `featviz trust`; the score:
featviz/trust.py, docs/ascent.md "How far to trust a picture").

`attach_trust` runs before any page is written: each unit cell gets `trust` (its entry of
trust.json), the flag `unnatural` among its flags (the layer and run pages mark it like the other
flags, the search index carries it) and the metric `trust_score` (sortable on the layer page,
searchable); each layer gets `n_unnatural` and `trust` (its layers below). `write_trust_page` writes
trust.html after the unit pages: what the score means, the run's settings and, per layer, the units
flagged, with their pictures."""
from __future__ import annotations

from pathlib import Path

from ..io import write_text
from ..results import RunFolder, read_trust

PAGE = "trust.html"
FLAG = "unnatural"
METRIC = "trust_score"


def attach_trust(layers: list[dict], results: Path) -> dict | None:
    """Give cells and layers their trust entries (module docstring); trust.json's settings and
    summary, or None where the run has none (then every cell's `trust` is None)."""
    for layer in layers:
        layer["n_unnatural"] = None
        layer["trust"] = None
        for c in layer["cells"]:
            c["trust"] = None
    rec = read_trust(RunFolder(results).trust_json)
    if rec is None:
        return None
    by_name = {layer["name"]: layer for layer in layers}
    for entry in rec["layers"]:
        layer = by_name.get(entry["name"])
        if layer is None:
            continue
        layer["trust"] = {"below": entry["below"]}
        layer["n_unnatural"] = 0
        for row in entry["units"]:
            cell = layer["by_unit"].get(row["unit"])
            if cell is None:
                continue
            cell["trust"] = row
            if row["score"] is not None:
                cell["metrics"][METRIC] = float(row["score"])
                if METRIC not in layer["metric_keys"]:
                    layer["metric_keys"].append(METRIC)
            if row["unnatural"]:
                cell["flags"].append(FLAG)
                layer["n_unnatural"] += 1
    return {k: rec.get(k) for k in ("threshold", "images", "layers_below", "measure", "summary")}


def write_trust_page(env, site: Path, info: dict | None, layers: list[dict], ctx: dict) -> str | None:
    """trust.html (module docstring), or None where the run has no trust.json."""
    if info is None:
        return None
    rows = []
    for layer in layers:
        if layer["trust"] is None:
            continue
        scored = [c for c in layer["cells"] if c["trust"] and c["trust"]["score"] is not None]
        flagged = sorted((c for c in scored if c["trust"]["unnatural"]), key=lambda c: c["trust"]["score"])
        rows.append({"layer": layer, "below": layer["trust"]["below"], "scored": len(scored),
                     "unscored": len(layer["cells"]) - len(scored), "flagged": flagged,
                     "mean": sum(c["trust"]["score"] for c in scored) / len(scored) if scored else None})
    write_text(Path(site) / PAGE, env.get_template("trust.html").render(**ctx, info=info, rows=rows, root=""))
    return PAGE
