"""The report's search index: `units-index.js`, one compact row per visualized unit.

A script file (not JSON) so that the run page's search works from file:// and from an extracted
archive, where fetch()/XHR of a local file is blocked: the page loads it with
`<script src="units-index.js">` and reads `window.FEATVIZ_UNITS`.

Each row is an object with short keys (absent when the unit has no such value):

    l layer name, u unit, p unit page, t thumbnail (both relative to the run's report folder),
    n class label (class units only), f flags, one letter each: d dead, w weak, r near-duplicate
    (redundant), u not converged, n non-finite, p unnatural path (trust.json);
    scores rounded to 4 significant digits: o objective (ascent), m dataset_max, a frac_active,
    c max_corr, s target_softmax, x transfer_softmax, v trust_score (how far to trust the picture).

The letters and keys are read by static/search.js (the run page's search and the all-runs page's).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..io import write_text

INDEX_FILE = "units-index.js"
FLAG_LETTERS = {"dead": "d", "weak": "w", "redundant": "r", "unconverged": "u", "nonfinite": "n", "unnatural": "p"}
SCORE_KEYS = {"objective": "o", "dataset_max": "m", "frac_active": "a", "max_corr": "c",
              "target_softmax": "s", "transfer_softmax": "x", "trust_score": "v"}


def _round(v: float) -> float | int | None:
    v = float(v)
    if not math.isfinite(v):
        return None
    r = float(f"{v:.4g}")
    return int(r) if r.is_integer() and abs(r) < 1e15 else r


def unit_rows(layers: list[dict]) -> list[dict]:
    """One row per visualized unit of the report's layers (site.py's layer entries with their cells:
    cell["page"] and cell["thumb"] must be set)."""
    rows = []
    for layer in layers:
        for c in layer["cells"]:
            row = {"l": layer["name"], "u": c["unit"], "p": c["page"], "t": c["thumb"]}
            if c.get("label") is not None:
                row["n"] = str(c["label"])
            flags = "".join(FLAG_LETTERS[f] for f in c["flags"] if f in FLAG_LETTERS)
            if flags:
                row["f"] = flags
            for key, short in SCORE_KEYS.items():
                v = c["metrics"].get(key)
                if v is not None and (r := _round(v)) is not None:
                    row[short] = r
            rows.append(row)
    return rows


def index_script(rows: list[dict]) -> str:
    body = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    # harmless in a separate script file, but keeps the text inert if it is ever inlined
    body = body.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.FEATVIZ_UNITS = {body};\n"


def write_units_index(site: Path, layers: list[dict]) -> int:
    """Write site/units-index.js; return its size in bytes."""
    text = index_script(unit_rows(layers))
    write_text(Path(site) / INDEX_FILE, text)
    return len(text.encode("utf-8"))
