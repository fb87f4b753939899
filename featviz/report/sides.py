"""The unit page's "four sides" of a conv channel (featviz.ascent.views): its positive picture, the
neuron at the centre position, the negative channel and the diversity set, side by side, each with
the value it reached (the clean objective, and the channel's mean beside every view). Layer pages
keep one thumbnail per unit."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import save_image
from .templating import inside

CAPTIONS = {"neuron": "neuron at the centre", "negative": "negative channel", "diversity": "diversity"}


def views_by_unit(records: list[dict], images: np.ndarray | None) -> dict[int, list[tuple[dict, np.ndarray]]]:
    """A layer's extra views (LayerAscent.views()) grouped by unit, in their stored order."""
    out: dict[int, list] = {}
    if images is None:
        return out
    for rec, img in zip(records, images):
        out.setdefault(int(rec["unit"]), []).append((rec, img))
    return out


def unit_sides(site: Path, folder: str, cell: dict, views: list[tuple[dict, np.ndarray]] | None,
               height: int) -> list[dict] | None:
    """The pictures (about `height` px high, paths relative to the site) and captions of one unit's
    sides, the positive picture first (its grid thumbnail); None where the unit has no extra view."""
    if not views:
        return None
    u = cell["unit"]
    sides = [{"view": "positive", "label": "positive (the unit's picture)", "image": cell["thumb"],
              "objective": cell["stats"].get("objective"), "channel": None}]
    n_div = sum(rec["view"] == "diversity" for rec, _ in views)
    for rec, img in views:
        view, member = rec["view"], int(rec.get("member", 0))
        name = save_image(inside(site, f"{folder}/{u}-{view}{member if view == 'diversity' else ''}"), img, height)
        label = CAPTIONS.get(view, view) + (f" {member + 1}/{n_div}" if view == "diversity" else "")
        sides.append({"view": view, "label": label, "image": f"{folder}/{name}",
                      "objective": rec.get("objective"), "channel": rec.get("channel")})
    return sides
