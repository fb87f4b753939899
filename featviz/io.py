"""Atomic, deterministic writes: every artifact appears whole or not at all."""
from __future__ import annotations

import contextlib
import io as _io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def staged_files(out_dir: str | os.PathLike, names: tuple[str, ...]) -> Iterator[Path]:
    """A multi-file output written whole or not at all: yield a temporary folder beside `out_dir`;
    when the block succeeds, move the files `names` from it into `out_dir` (the last name is the
    one whose presence marks the output complete: it is removed first and moved in last). When the
    block fails, `out_dir` is left exactly as it was."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        missing = [n for n in names if not (tmp / n).is_file()]
        if missing:
            raise RuntimeError(f"staged output lacks {missing}")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / names[-1]).unlink(missing_ok=True)
        for n in names:
            os.replace(tmp / n, out_dir / n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class Chunks:
    """An array that `write_npz` writes piece by piece, never whole in memory: `pieces` yields
    C-ordered arrays of `dtype` whose first axes add up to shape[0] (e.g. a few hundred images
    at a time out of a memory-mapped test set)."""

    def __init__(self, shape: tuple[int, ...], dtype, pieces: Iterable[np.ndarray]):
        self.shape, self.dtype, self.pieces = tuple(int(d) for d in shape), np.dtype(dtype), pieces


def write_npz(path: str | os.PathLike, **arrays: np.ndarray | Chunks) -> None:
    """np.savez_compressed, atomically. Zip timestamps are fixed by numpy, so bytes are stable.
    With a `Chunks` value the archive is written straight to the file, entry by entry, with the
    same bytes np.savez_compressed would write for the whole array."""
    if not any(isinstance(v, Chunks) for v in arrays.values()):
        buf = _io.BytesIO()
        np.savez_compressed(buf, **arrays)
        write_bytes(path, buf.getvalue())
        return
    import zipfile

    from numpy.lib import format as npformat

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for key, val in arrays.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as fid:  # as numpy's _savez
                    if not isinstance(val, Chunks):
                        npformat.write_array(fid, np.asanyarray(val))
                        continue
                    npformat.write_array_header_1_0(fid, {"descr": npformat.dtype_to_descr(val.dtype),
                                                          "fortran_order": False, "shape": val.shape})
                    rows, rest = 0, val.shape[1:]
                    for piece in val.pieces:
                        piece = np.ascontiguousarray(piece)
                        if piece.dtype != val.dtype or piece.shape[1:] != rest:
                            raise ValueError(f"write_npz: a piece of {key} is {piece.dtype} {piece.shape}, "
                                             f"expected {val.dtype} (n, {', '.join(map(str, rest))})")
                        fid.write(piece.data)
                        rows += len(piece)
                    if rows != val.shape[0]:
                        raise ValueError(f"write_npz: the pieces of {key} hold {rows} rows, expected {val.shape[0]}")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read a block at a time (memory stays flat for any size)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_images(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (N, C, H, W) -> uint8, as a picture stores them (4x smaller than float32)."""
    x = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float32)), 0.0, 1.0)
    return (x * 255.0 + 0.5).astype(np.uint8)


def unpack_images(images: np.ndarray) -> np.ndarray:
    """uint8 (or, from older chunks, float) images -> float32 in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return np.asarray(images, dtype=np.float32)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    buf = _io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())
