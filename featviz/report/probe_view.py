"""What the probe measured for the units of a layer that have no picture of their own (a layer left
out of `ascent.layers`, or the units `ascent.units` did not pick): each unit's dataset maximum and
mean activation, how often it is active, whether it is dead, its most correlated partner, and its
strongest test images (the probe's shared thumbnails, `top/<row>`). Read from probe.json and
probe.npz (featviz/results.py) by the report's loaders; no pixels are written here.
"""
from __future__ import annotations

from ..results import ProbeArrays

TOP_SHOWN = 5  # strongest test images per unit in the layer page's table


def probe_rows(layer: dict, arrays: ProbeArrays, bank_thumbs: list[str], classes: list[str]) -> list[dict]:
    """One row per unit of the layer without an ascent cell, in unit order (none without a probe)."""
    pe = layer.get("probe")
    if not pe:
        return []
    bank_rows = arrays.layer("topk", layer["pj"])
    threshold = pe.get("corr_threshold", 1.0)
    rows = []
    for b in pe["per_unit"]:
        u = int(b["unit"])
        if u in layer["by_unit"]:
            continue
        top = []
        if bank_rows is not None and u < len(bank_rows) and bank_thumbs:
            for r, lab, v in zip(bank_rows[u][:TOP_SHOWN], b.get("top_label", []), b.get("top_value", [])):
                if 0 <= int(r) < len(bank_thumbs):
                    label = classes[lab] if isinstance(lab, int) and 0 <= lab < len(classes) else str(lab)
                    top.append({"src": bank_thumbs[int(r)], "label": label, "value": v})
        # as on the unit pages: a partner only where the layer has several units and one correlates
        partner = b.get("partner") if layer["units"] > 1 and (b.get("max_corr") or 0) > 0 else None
        name = classes[u] if layer["kind"] == "class" and u < len(classes) else None
        rows.append({"unit": u, "label": name, "max": b.get("max"), "mean": b.get("mean"), "frac_active": b.get("frac_active"),
                     "dead": bool(b.get("dead")), "max_corr": b.get("max_corr") if partner is not None else None,
                     "partner": partner, "partner_page": _page(layer, partner),
                     "redundant": partner is not None and (b.get("max_corr") or 0) > threshold, "top": top})
    return rows


def _page(layer: dict, unit) -> str | None:
    cell = layer["by_unit"].get(unit) if unit is not None else None
    return cell["page"] if cell else None


def layer_samples(samples: list[dict], name: str) -> list[dict]:
    """The run page's sample inputs with this layer's activation maps (where it is conv-shaped)."""
    out = []
    for s in samples:
        maps = [m for m in s["maps"] if m["layer"] == name]
        if maps:
            out.append({"index": s["index"], "image": s["image"], "true": s.get("true"), "map": maps[0]})
    return out
