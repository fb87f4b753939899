"""The trace of one unit's ascent: its objective before every step (the chunk's `trace` array, seeds
000/002 print exactly this), drawn as an inline SVG beside the evolution strip, with the snapshot
steps marked and seed 002's convergence ratio."""
from __future__ import annotations

import numpy as np

MAX_POINTS = 300  # polyline vertices at most: longer traces are subsampled (first and last step kept)


def trace_svg(trace: np.ndarray, marks: list[int] | None = None, ratio: float | None = None) -> dict | None:
    """Polyline points and axis labels of a trace in a 300×90 view box, or None when the unit has no
    finite step. `marks`: steps to mark (the evolution strip's snapshots)."""
    w, h = 300.0, 90.0
    y = np.asarray(trace, np.float64)
    steps = np.flatnonzero(np.isfinite(y))
    if steps.size == 0:
        return None
    if steps.size > MAX_POINTS:
        keep = np.unique(np.linspace(0, steps.size - 1, MAX_POINTS).round().astype(int))
        steps = steps[keep]
    vals = y[steps]
    lo, hi = float(vals.min()), float(vals.max())
    span = (hi - lo) or 1.0
    last = max(int(len(y)) - 1, 1)

    def px(t):
        return round(float(t) / last * w, 2)

    def py(v):
        return round(h - (float(v) - lo) / span * (h - 4) - 2, 2)

    points = " ".join(f"{px(t)},{py(v)}" for t, v in zip(steps, vals))
    lines = [{"x": px(t), "step": int(t)} for t in (marks or []) if 0 <= t < len(y)]
    return {"points": points, "lines": lines, "lo": lo, "hi": hi, "w": w, "h": h, "steps": int(len(y)),
            "taken": int(np.isfinite(y).sum()), "first": float(vals[0]), "final": float(vals[-1]), "ratio": ratio}
