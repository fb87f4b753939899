"""The circuits block of unit pages (results/<run>/circuits/circuits.json, `featviz circuits`):
the units of the previous visualized layer that drive a unit most, positive and negative, and the
units of the next layer it drives, each with its thumbnail and a link to its page where it has one,
classes by name, and the measure.

`attach_circuits` runs before the unit pages are written: a page links units of layers whose
pictures are not written yet, so a thumbnail's path comes from `thumb_path`, the rule the unit
pictures are named by (site._unit_pictures; tests/test_circuits.py checks that the two agree).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FeatvizError
from ..figures import PIXEL_ART
from ..io import read_json

VERSION = 2  # featviz.circuits.VERSION (the report does not import torch): `in` and `out` keyed by unit

REMAKE = "re-run `featviz circuits` (or the workflow)"


def thumb_path(folder: str, unit: int, height: int, thumb: int) -> str:
    """The thumbnail site._unit_pictures writes for a unit image `height` px high: the page's own
    picture when it is at most `thumb` px high, else `<unit>-thumb`; PNG up to PIXEL_ART px, else JPEG."""
    ext = "png" if height <= PIXEL_ART else "jpg"
    return f"{folder}/{unit}.{ext}" if height <= thumb else f"{folder}/{unit}-thumb.{ext}"


def _bad(path: Path, problem: str) -> FeatvizError:
    return FeatvizError(f"circuits file {path}: {problem}; {REMAKE}")


def _keyed(edges, n: int) -> bool:
    """`in` or `out` of a pair: {unit: {"pos": [...], "neg": [...]}} with units below n."""
    return isinstance(edges, dict) and all(
        k.isdigit() and int(k) < n and isinstance(v, dict) and isinstance(v.get("pos"), list)
        and isinstance(v.get("neg"), list) for k, v in edges.items())


def load_circuits(results: Path, units: dict) -> dict | None:
    """circuits.json of a run, checked against units.json, or None where the run has none."""
    path = Path(results) / "circuits" / "circuits.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise _bad(path, f"not readable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise _bad(path, "no list of layer pairs")
    if data.get("version") != VERSION:
        raise _bad(path, f"written by an older featviz (layout version {data.get('version')}, not {VERSION})")
    counts = {layer["name"]: layer["units"] for layer in units["layers"]}
    for k, p in enumerate(data["pairs"]):
        ok = (isinstance(p, dict) and counts.get(p.get("from")) == p.get("from_units")
              and counts.get(p.get("to")) == p.get("to_units")
              and _keyed(p.get("in"), p["to_units"]) and _keyed(p.get("out"), p["from_units"]))
        if not ok:
            raise _bad(path, f"pairs[{k}] does not match the layers and unit counts of units.json")
    return data


def _partners(ranked: dict, layer: dict, height: int, thumb: int, max_abs: float, classes: list[str]) -> dict:
    def row(unit, value):
        cell = layer["by_unit"].get(unit)
        folder = f"units/{layer['slug']}"
        label = cell["label"] if cell else None
        if label is None and layer["kind"] == "class" and unit < len(classes):
            label = classes[unit]  # a class without a page is still named
        return {"unit": unit, "value": value, "page": cell["page"] if cell else None, "label": label,
                "thumb": thumb_path(folder, unit, height, thumb) if cell else None,
                "bar": round(100.0 * abs(value) / max_abs, 1) if max_abs > 0 else 0.0}

    return {sign: [row(int(u), float(v)) for u, v in ranked.get(sign, [])] for sign in ("pos", "neg")}


def attach_circuits(layers: list[dict], results: Path, units: dict, thumb: int, enabled: bool = True) -> None:
    """Give every layer entry of the report a `circuits` dict: unit -> {"in": ..., "out": ...}, each
    the edge set of one pair (the other layer, its page, the measure and its sentence, how many of
    the other layer's units were ranked, the partners); empty where the run has no circuits.json or
    the stage is off (`enabled` False: `circuits: null`, whatever an earlier run left there)."""
    for layer in layers:
        layer["circuits"] = {}
    data = load_circuits(results, units) if enabled else None
    if data is None:
        return
    height = int(units["input_shape"][-2])
    classes = units.get("classes") or []
    by_name = {layer["name"]: layer for layer in layers}
    for p in data["pairs"]:
        a, b = by_name[p["from"]], by_name[p["to"]]
        common = {"measure": p.get("measure"), "how": p.get("how"), "images": data.get("images")}
        max_abs = float(p.get("max_abs") or 0.0)
        for j, ranked in p["in"].items():
            if int(j) in b["by_unit"]:
                edges = dict(common, layer=a["name"], page=a["page"], among=p["from_units"], of=p["from_units"],
                             **_partners(ranked, a, height, thumb, max_abs, classes))
                b["circuits"].setdefault(int(j), {})["in"] = edges
        for i, ranked in p["out"].items():
            if int(i) in a["by_unit"]:
                edges = dict(common, layer=b["name"], page=b["page"], among=p.get("measured", p["to_units"]),
                             of=p["to_units"], **_partners(ranked, b, height, thumb, max_abs, classes))
                a["circuits"].setdefault(int(i), {})["out"] = edges
