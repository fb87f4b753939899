"""Tiny synthetic datasets in every on-disk format featviz reads (imported by the data, train,
model and BYO tests; no tests here)."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    arr = np.asarray(arr, dtype=np.uint8)
    blob = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)
    return path


def mnist_like(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = False, seed: int = 0) -> Path:
    """The four MNIST files in `folder` (e.g. <root>/MNIST/raw): images whose brightness encodes
    the label, so a tiny net can learn them."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = (rng.integers(0, 40, (n, 28, 28)) + (y * 20)[:, None, None]).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)
    return folder


def cifar_like(root: Path, n_per_batch: int = 6, n_test: int = 10, seed: int = 0) -> Path:
    """A tiny `cifar-10-batches-py` in torchvision's pickle format."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(name, n, offset=0):
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in (offset + np.arange(n)) % 10],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)

    for i in range(1, 6):
        batch(f"data_batch_{i}", n_per_batch, (i - 1) * n_per_batch)
    batch("test_batch", n_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n_per_batch}, f, protocol=2)
    return folder


def svhn_like(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    """A tiny SVHN in torchvision's format: <root>/SVHN/{train,test}_32x32.mat with X (32,32,3,N)
    and y (N,1), the digit 0 stored as 10."""
    import scipy.io

    rng = np.random.default_rng(seed)
    folder = root / "SVHN"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10) + 1  # 1..10
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        scipy.io.savemat(str(folder / f"{split}_32x32.mat"), {"X": x, "y": y.reshape(-1, 1).astype(np.uint8)})
    return folder


def image_folder(root: Path, classes=("cat", "dog"), n_train: int = 6, n_test: int = 3, size=(12, 10),
                 mode: str = "RGB", with_test: bool = True, ext: str = ".png", seed: int = 0) -> Path:
    """<root>/train/<class>/*.png (and test/): class i is a bright square on a dark ground at a
    place that depends on i, so a tiny net can learn it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    splits = (("train", n_train), ("test", n_test)) if with_test else (("train", n_train),)
    for split, n in splits:
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                a = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                y0 = (ci * h // max(1, len(classes))) % max(1, h - 3)
                a[y0:y0 + 4, 1:w - 1] = 230
                im = Image.fromarray(a, "RGB").convert(mode)
                im.save(d / f"{k:03d}{ext}")
    return root
