"""Tiny synthetic datasets for tests: an image folder of 3 learnable shape classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("hbar", "vbar", "diag")


def shape_image(kind: str, size: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    img = rng.uniform(0, 60, size=(size, size)).astype(np.float32)
    pos = int(rng.integers(2, size - 2))
    if kind == "hbar":
        img[pos - 1:pos + 1, 1:-1] = 255
    elif kind == "vbar":
        img[1:-1, pos - 1:pos + 1] = 255
    else:
        for i in range(1, size - 1):
            img[i, i] = 255
            img[i, max(0, i - 1)] = 255
    img = np.clip(img, 0, 255).astype(np.uint8)
    if channels == 3:
        img = np.stack([img, img // 2, 255 - img], axis=-1)
    return img


def make_imagefolder(root: Path, per_class: int = 24, test_per_class: int = 8, size: int = 12,
                     channels: int = 1, seed: int = 0, classes=CLASSES) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(shape_image(CLASSES[ci % 3], size, rng, channels)).save(d / f"{i:03d}.png")
    return root


TINY_LAYERS = [
    {"type": "conv", "out": 4, "kernel": 3, "padding": "same"},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "conv", "out": 6, "kernel": 3, "padding": "same"},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "flatten"},
    {"type": "fc", "out": 8},
    {"type": "relu"},
    {"type": "fc"},
]


# the smallest useful net: one conv, pooled, straight to the class logits (8x8 inputs)
MICRO_LAYERS = [
    {"type": "conv", "out": 3, "kernel": 3, "padding": "same"},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "flatten"},
    {"type": "fc"},
]
