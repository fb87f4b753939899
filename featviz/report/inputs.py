"""What the report reads from a run's results folder: the ascent chunks (metadata first, one layer's
pixels at a time) and the probe's summary and arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import (
    REMAKE_ASCENT,
    REMAKE_PROBE,
    npz_names,
    read_chunk_record,
    read_npz,
    read_probe_summary,
    read_transfer_file,
)
from ..errors import FeatvizError
from ..io import unpack_images


def load_ascent(results: Path, units: dict) -> dict[str, dict]:
    """Per layer: per-unit stats, per-unit job settings (recipe, seed, device, chunk), the chunk
    files in unit order and the snapshot steps every chunk has. No pixels: `ascent_pixels` reads a
    layer's images when its pages are written, so a report holds one layer's pictures at a time."""
    out = {}
    for layer in units["layers"]:
        folder = results / "ascent" / layer["name"]
        if not folder.is_dir():
            continue
        stats, jobs, files, counts, steps = [], [], [], [], None
        for js in sorted(folder.glob("*.json"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem)):
            rec = read_chunk_record(js)
            npz = js.with_suffix(".npz")
            names = npz_names(npz, "ascent chunk images", REMAKE_ASCENT)  # the zip directory only
            have = {int(k[9:]) for k in names if k.startswith("snapshot_") and k[9:].isdigit()}
            steps = have if steps is None else steps & have
            files.append(npz)
            counts.append(len(rec["stats"]))
            stats.extend(rec["stats"])
            job = {k: rec.get(k) for k in ("recipe", "seed", "device", "chunk")}
            jobs.extend([job] * len(rec["stats"]))
        if not files:
            continue
        if layer["kind"] == "class":
            _merge_transfer(results, stats)
        out[layer["name"]] = {"files": files, "counts": counts, "stats": stats, "jobs": jobs, "recipe": jobs[0]["recipe"],
                              "snapshot_steps": sorted(steps or ())}
    return out


def ascent_pixels(data: dict) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One layer's final images (N, C, H, W) float32 in [0, 1] and its snapshots {step: images}."""
    images, snaps = [], {st: [] for st in data["snapshot_steps"]}
    for i, npz in enumerate(data["files"]):
        z = read_npz(npz, "ascent chunk images", REMAKE_ASCENT, ("images", *(f"snapshot_{st:05d}" for st in snaps)))
        n = data["counts"][i] if "counts" in data else len(z["images"])
        if any(a.ndim != 4 or len(a) != n for a in z.values()):
            raise FeatvizError(f"ascent chunk images {npz} do not match their record ({n} units, images "
                               f"{[list(a.shape) for a in z.values()][:2]}): {REMAKE_ASCENT}")
        images.append(unpack_images(z["images"]))
        for st in snaps:
            snaps[st].append(unpack_images(z[f"snapshot_{st:05d}"]))
    return np.concatenate(images), {st: np.concatenate(v) for st, v in snaps.items()}


TRANSFER_KEYS = ("transfer_softmax", "transfer_predicted", "transfer_recognized", "robustness")


def _merge_transfer(results: Path, stats: list[dict]) -> None:
    """Add the transfer score (results/<run>/transfer.json) to the class images' stats."""
    path = results / "transfer.json"
    if not path.exists():
        return
    rows = {row["unit"]: row for row in read_transfer_file(path)["images"]}
    for st in stats:
        row = rows.get(st["unit"], {})
        st.update({k: row[k] for k in TRANSFER_KEYS if row.get(k) is not None})


def load_probe(results: Path) -> tuple[dict | None, dict]:
    """probe.json and the arrays of probe.npz (loaded whole: they are small), or (None, {})."""
    js, npz = results / "probe" / "probe.json", results / "probe" / "probe.npz"
    if not (js.exists() and npz.exists()):
        return None, {}
    return read_probe_summary(js), read_npz(npz, "probe arrays file", REMAKE_PROBE, None)
