"""The ascent stage's results: one `featviz ascend` job's chunk (`ascent/<layer>/<chunk>.json`, its
record, and `.npz`, its images, objectives, snapshots, views, trace and transparency maps), and a
layer's chunks read together (`LayerAscent`), as the report, transfer and trust read them. Part of
the results folder's contract (featviz.results: the layout and the other stages' files)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import artifacts
from .artifacts import REMAKE_ASCENT, npz_names, read_npz
from .errors import FeatvizError
from .io import unpack_images, write_json, write_npz


@dataclass(frozen=True)
class AscentChunk:
    """One ascent job's output: `record` (<chunk>.json: layer, units, recipe, stats...) and
    `images` (<chunk>.npz: images, objective, units, snapshot_<step>)."""

    index: int
    record: Path
    images: Path


def ascent_chunks(folder: str | Path) -> list[AscentChunk]:
    """The chunks of one layer's ascent folder in chunk order (the one sort rule: by the chunk
    number the file is named by; a file not named by a number is not a chunk)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = sorted((int(p.stem), p) for p in folder.glob("*.json") if p.stem.isdigit())
    return [AscentChunk(i, p, p.with_suffix(".npz")) for i, p in found]


def read_chunk_record(chunk: AscentChunk) -> dict:
    """<chunk>.json, checked: an object with a list of units and one stats record per unit."""
    rec = artifacts.read_chunk_record(chunk.record)
    if not isinstance(rec["units"], list) or len(rec["units"]) != len(rec["stats"]):
        raise FeatvizError(f"ascent chunk record {chunk.record} is not what featviz wrote (units and stats "
                           f"differ in length): {REMAKE_ASCENT}")
    return rec


def chunk_snapshot_steps(chunk: AscentChunk) -> set[int]:
    """The snapshot steps a chunk's .npz holds (its zip directory only: no arrays are read)."""
    if not chunk.images.is_file():
        raise FeatvizError(f"{chunk.record}: the images file {chunk.images.name} is missing (rerun the ascent job)")
    names = npz_names(chunk.images, "ascent chunk images", REMAKE_ASCENT)
    return {int(k[9:]) for k in names if k.startswith("snapshot_") and k[9:].isdigit()}


def read_chunk_images(chunk: AscentChunk, snapshot_steps=(), count: int | None = None
                      ) -> tuple[np.ndarray, list[int], dict[int, np.ndarray]]:
    """A chunk's final images (N, C, H, W) float32 in [0, 1], its units, and the snapshots
    {step: images} of `snapshot_steps`; with `count` (its record's units), checked to hold that many."""
    if not chunk.images.is_file():
        raise FeatvizError(f"{chunk.record}: the images file {chunk.images.name} is missing (rerun the ascent job)")
    keys = ("images", "units", *(snapshot_key(st) for st in snapshot_steps))
    z = read_npz(chunk.images, "ascent chunk images", REMAKE_ASCENT, keys)
    n = len(z["images"]) if count is None else count
    if any(z[k].ndim != 4 or len(z[k]) != n for k in keys if k != "units") or len(z["units"]) != n:
        raise FeatvizError(f"ascent chunk images {chunk.images} do not match their record ({n} units, images "
                           f"{list(z['images'].shape)}): {REMAKE_ASCENT}")
    snaps = {st: unpack_images(z[snapshot_key(st)]) for st in snapshot_steps}
    return unpack_images(z["images"]), [int(u) for u in z["units"]], snaps


TRACE = "trace"  # a chunk's (units, steps) float32 objective per step
VIEW_IMAGES = "view_images"  # a chunk's (M, C, H, W) uint8 extra views, one per entry of its record's `views`


def read_chunk_views(chunk: AscentChunk, views: list | None) -> tuple[list[dict], np.ndarray | None]:
    """A chunk's extra views (featviz.ascent.views), given its record's `views` (unit, view, member,
    objective, channel... per image): those and their images (M, C, H, W) float32 in [0, 1]; ([],
    None) where it has none."""
    if not views:
        return [], None
    if not isinstance(views, list) or not all(isinstance(v, dict) and "unit" in v and "view" in v for v in views):
        raise FeatvizError(f"ascent chunk record {chunk.record}: its `views` are not what featviz wrote: {REMAKE_ASCENT}")
    images = read_npz(chunk.images, "ascent chunk images", REMAKE_ASCENT, (VIEW_IMAGES,))[VIEW_IMAGES]
    if images.ndim != 4 or len(images) != len(views):
        raise FeatvizError(f"ascent chunk images {chunk.images}: {len(images)} view images for {len(views)} views in "
                           f"its record: {REMAKE_ASCENT}")
    return views, unpack_images(images)


TRANSPARENCY = "transparency"  # a chunk's (units, H, W) float16 transparency map (MACO), each unit's max 1


def read_chunk_transparency(chunk: AscentChunk) -> np.ndarray | None:
    """A chunk's transparency maps (units, H, W) float32 in [0, 1], or None where its recipe keeps none."""
    if TRANSPARENCY not in npz_names(chunk.images, "ascent chunk images", REMAKE_ASCENT):
        return None
    alpha = read_npz(chunk.images, "ascent chunk images", REMAKE_ASCENT, (TRANSPARENCY,))[TRANSPARENCY]
    if alpha.ndim != 3:
        raise FeatvizError(f"ascent chunk images {chunk.images}: the transparency maps are not (units, H, W) "
                           f"(shape {list(alpha.shape)}): {REMAKE_ASCENT}")
    return alpha.astype(np.float32)


def pack_transparency(alpha: np.ndarray) -> np.ndarray:
    """(N, H, W) accumulated |gradient| -> float16, each map divided by its largest value (a map that
    is 0 everywhere stays 0): what the chunk keeps; the report only needs the map's shape."""
    a = np.asarray(alpha, np.float64)
    top = a.reshape(len(a), -1).max(1) if a.size else np.zeros(len(a))
    top = np.where(np.isfinite(top) & (top > 0), top, 1.0)
    return np.nan_to_num(a / top[:, None, None], nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1).astype(np.float16)


def read_chunk_trace(chunk: AscentChunk) -> np.ndarray | None:
    """A chunk's trace (units, steps), or None where the chunk predates the trace."""
    if TRACE not in npz_names(chunk.images, "ascent chunk images", REMAKE_ASCENT):
        return None
    return read_npz(chunk.images, "ascent chunk images", REMAKE_ASCENT, (TRACE,))[TRACE]


def snapshot_key(step: int) -> str:
    return f"snapshot_{int(step):05d}"


def write_chunk(chunk_npz: str | Path, chunk_json: str | Path, *, images: np.ndarray, objective: np.ndarray,
                units: list[int], snapshots: dict[int, np.ndarray], record: dict,
                trace: np.ndarray | None = None, transparency: np.ndarray | None = None,
                view_images: np.ndarray | None = None) -> None:
    """One ascent job's two files: packed uint8 images (and snapshots, packed by the caller), the
    trace (units, steps) float32 (each unit's objective before every step, nan once it stopped),
    where the recipe keeps one, the transparency maps (units, H, W) (`pack_transparency`) and, where
    the chunk has extra views, their packed images (one per entry of the record's `views`), then the
    record."""
    extra = {} if trace is None else {TRACE: trace}
    if view_images is not None:
        extra[VIEW_IMAGES] = view_images
    if transparency is not None:
        extra[TRANSPARENCY] = pack_transparency(transparency)
    write_npz(chunk_npz, images=images, objective=objective, units=np.asarray(units, dtype=np.int64), **extra,
              **{snapshot_key(step): arr for step, arr in sorted(snapshots.items())})
    write_json(chunk_json, record)


@dataclass
class LayerAscent:
    """One layer's ascent results, read once: chunks in order, their records' stats and job
    settings per unit, and the snapshot steps every chunk holds."""

    chunks: list[AscentChunk]
    units: list[int]
    stats: list[dict]
    jobs: list[dict]
    snapshot_steps: list[int]
    recipe: dict
    counts: list[int]  # units per chunk, as their records have them
    chunk_views: list = None  # per chunk, its record's `views` (extra view images; [] where none)

    def views(self) -> tuple[list[dict], np.ndarray | None]:
        """The layer's extra views (featviz.ascent.views): one record per image (unit, view, member,
        objective, channel...) and the images (M, C, H, W), chunk by chunk; ([], None) without any."""
        records, images = [], []
        for chunk, views in zip(self.chunks, self.chunk_views or []):
            recs, imgs = read_chunk_views(chunk, views)
            if imgs is not None:
                records += recs
                images.append(imgs)
        return records, (np.concatenate(images) if images else None)

    def pixels(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The layer's final images and snapshots {step: images}, in unit order."""
        images, snaps = [], {st: [] for st in self.snapshot_steps}
        for chunk, count in zip(self.chunks, self.counts):
            imgs, _, sn = read_chunk_images(chunk, self.snapshot_steps, count)
            images.append(imgs)
            for st, frames in snaps.items():
                frames.append(sn[st])
        return np.concatenate(images), {st: np.concatenate(v) for st, v in snaps.items()}

    def transparency(self) -> np.ndarray | None:
        """The layer's transparency maps (units, H, W) in unit order; None where a chunk has none."""
        parts = [read_chunk_transparency(chunk) for chunk in self.chunks]
        if not parts or any(p is None for p in parts) or len({p.shape[1:] for p in parts}) != 1:
            return None
        return np.concatenate(parts)

    def traces(self) -> np.ndarray | None:
        """The layer's traces (units, steps) in unit order; None where a chunk has none or the
        chunks ran different step counts."""
        parts = [read_chunk_trace(chunk) for chunk in self.chunks]
        if not parts or any(p is None for p in parts) or len({p.shape[1] for p in parts}) != 1:
            return None
        return np.concatenate(parts)


JOB_KEYS = ("recipe", "seed", "device", "chunk")


def read_layer_ascent(folder: str | Path) -> LayerAscent | None:
    """A layer's ascent folder (no pixels read), or None where it has no chunk."""
    chunks = ascent_chunks(folder)
    if not chunks:
        return None
    units, stats, jobs, counts, steps, views = [], [], [], [], None, []
    for chunk in chunks:
        rec = read_chunk_record(chunk)
        counts.append(len(rec["stats"]))
        views.append(rec.get("views") or [])
        have = chunk_snapshot_steps(chunk)
        steps = have if steps is None else steps & have
        units += [int(u) for u in rec["units"]]
        stats.extend(rec["stats"])
        job = {k: rec.get(k) for k in JOB_KEYS}
        jobs.extend([job] * len(rec["stats"]))
    return LayerAscent(chunks, units, stats, jobs, sorted(steps or ()), jobs[0]["recipe"], counts, views)
