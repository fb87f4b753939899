"""What the report reads from a run's results folder, through featviz.results (the layout and a
reader per artifact): the ascent chunks (metadata first, one layer's pixels at a time) with the
transfer score merged into the class images' stats, and the probe's summary and arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..chunks import LayerAscent, read_layer_ascent
from ..results import TRANSFER_STATS, RunFolder, read_probe, read_transfer


def load_ascent(results: Path, units: dict) -> dict[str, LayerAscent]:
    """Per layer that has chunks: its LayerAscent (per-unit stats and job settings, chunks in unit
    order, the snapshot steps every chunk has). No pixels: `ascent_pixels` reads a layer's images
    when its pages are written, so a report holds one layer's pictures at a time."""
    folder = RunFolder(results)
    transfer = read_transfer(folder.transfer_json)
    out = {}
    for layer in units["layers"]:
        data = read_layer_ascent(folder.ascent_dir(layer["name"]))
        if data is None:
            continue
        if layer["kind"] == "class" and transfer is not None:
            merge_transfer(transfer, data.stats)
        out[layer["name"]] = data
    return out


def ascent_pixels(data: LayerAscent) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One layer's final images (N, C, H, W) float32 in [0, 1] and its snapshots {step: images}."""
    return data.pixels()


def merge_transfer(transfer: dict, stats: list[dict]) -> None:
    """Add the transfer score (transfer.json) to the class images' stats."""
    rows = {row["unit"]: row for row in transfer.get("images", [])}
    for st in stats:
        row = rows.get(st["unit"], {})
        st.update({k: row[k] for k in TRANSFER_STATS if row.get(k) is not None})


def load_probe(results: Path):
    """probe.json and the arrays of probe.npz (a featviz.results.ProbeArrays), or (None, empty)."""
    return read_probe(RunFolder(results))
