"""Receptive-field crops of a unit's strongest test images, from probe.npz's image bank. Numpy only:
the report (which never imports torch) cuts them when it writes a unit page."""
from __future__ import annotations

import numpy as np

from .errors import FeatvizError


def top_crops(bank: np.ndarray, rows: np.ndarray, pos: list[int], out_w: int, rf: dict) -> np.ndarray:
    """Receptive-field crops (k, C, s, s) uint8 of one unit's top-k images: `bank` (M, C, H, W)
    (probe.npz's topk_bank), `rows` (k,) the unit's rows of it (topk_<i>[unit]), `pos` (k,) the
    argmax positions (probe.json's top_pos[unit], row-major in a layer output `out_w` wide), `rf`
    the layer's receptive_field. The window of position (py, px) starts at py * stride + offset
    (likewise x), zero-padded where it leaves the image. s = min(rf size, max(H, W)): a receptive
    field larger than the image is clipped to a window of the image's size centred on it."""
    bank = np.asarray(bank)
    rows = np.asarray(rows, np.int64).reshape(-1)
    pos = np.asarray(pos, np.int64).reshape(-1)
    if bank.ndim != 4 or len(rows) != len(pos):
        raise FeatvizError(f"top_crops: need a (M, C, H, W) bank and as many rows as positions, got bank "
                           f"{bank.shape}, {len(rows)} rows, {len(pos)} positions")
    _, c, h, w = bank.shape
    size, stride, off = int(rf["size"]), int(rf["stride"]), int(rf["offset"])
    s = max(1, min(size, max(h, w)))
    shift = (size - s) // 2  # centre the clipped window on the receptive field's centre
    ar = np.arange(s)
    ys = (pos // out_w * stride + off + shift)[:, None] + ar  # (k, s)
    xs = (pos % out_w * stride + off + shift)[:, None] + ar
    inside = ((ys >= 0) & (ys < h))[:, None, :, None] & ((xs >= 0) & (xs < w))[:, None, None, :]
    out = bank[rows[:, None, None, None], np.arange(c)[None, :, None, None],
               ys.clip(0, h - 1)[:, None, :, None], xs.clip(0, w - 1)[:, None, None, :]]
    return np.where(inside, out, 0).astype(np.uint8)
