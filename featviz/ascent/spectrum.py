"""MACO's fixed Fourier magnitude (Fel et al. 2023): the average amplitude spectrum of natural
images, colour-decorrelated for RGB (the space `param.MacoParam` builds its image in before it
recorrelates the colours), one channel as it is for gray, resampled to the canvas of a recipe.

A magnitude is a float32 array (C, H, W // 2 + 1): the mean over images of |rfft2(image)| per
channel, images in [0, 1]. Its overall scale does not matter (MACO standardizes the image it
builds), its shape over frequencies and channels does.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

# Lucid's colour correlation (ImageNet), square root of its SVD, columns scaled to norm <= 1: the map
# from the decorrelated colour space to RGB that the Fourier parameterizations apply
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

# pixels per batch of `mean_amplitude` (float64): about 32 MB whatever the image size
BATCH_VALUES = 2 ** 22


def decorrelate(x: torch.Tensor) -> torch.Tensor:
    """RGB images (N, 3, H, W) into the decorrelated colour space: the inverse of the map
    `MacoParam` / `FourierParam` apply (Lucid's colour correlation of ImageNet)."""
    inv = torch.linalg.inv(torch.as_tensor(COLOR_CORRELATION, dtype=x.dtype, device=x.device))
    return torch.einsum("nchw,dc->ndhw", x, inv)


def mean_amplitude(batches: Iterable[torch.Tensor]) -> tuple[np.ndarray, int]:
    """The mean |rfft2| per channel of every image of `batches` (each (B, C, H, W), floats in [0, 1]
    or uint8, all of one shape), RGB decorrelated first; float64 sums in the order given, so the
    same images give the same bytes. Returns (magnitude float32 (C, H, W // 2 + 1), image count)."""
    total, count = None, 0
    for x in batches:
        x = torch.as_tensor(x)
        if x.dtype == torch.uint8:
            x = x.to(torch.float64) / 255.0
        x = x.to(torch.float64)
        if x.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
        if total is not None and x.shape[1:] != shape:
            raise ValueError(f"images differ in shape: {tuple(x.shape[1:])} after {tuple(shape)}")
        shape = x.shape[1:]
        if x.shape[1] == 3:
            x = decorrelate(x)
        a = torch.fft.rfft2(x).abs().sum(0)
        total = a if total is None else total + a
        count += x.shape[0]
    if not count:
        raise ValueError("no images to average the amplitude spectrum over")
    return (total / count).to(torch.float32).numpy(), count


def batches_of(images: torch.Tensor, values: int = BATCH_VALUES):
    """`images` (N, C, H, W) in consecutive batches of about `values` pixel values each."""
    per = max(1, values // max(1, int(np.prod(images.shape[1:]))))
    for s in range(0, images.shape[0], per):
        yield images[s:s + per]


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """|frequency| in cycles per pixel of each coefficient of an (h, w) image's rfft2."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


def power_law(channels: int, h: int, w: int, decay: float = 1.0) -> np.ndarray:
    """The closed-form natural-image magnitude 1 / max(f, 1 / max(h, w))**decay (Lucid's spectrum
    scale), the same for every channel: the magnitude `visualize` falls back to without a measured one."""
    f = rfft2d_freqs(h, w)
    m = 1.0 / np.maximum(f, 1.0 / max(h, w)) ** decay
    return np.repeat(m[None].astype(np.float32), channels, 0)


def resample(magnitude, h: int, w: int) -> torch.Tensor:
    """A magnitude (C, H0, W0 // 2 + 1) resampled (bilinear, antialiased) to (C, h, w // 2 + 1), as
    Xplique's `init_maco_buffer` and Horama's `init_maco_buffer` do: an index of the resampled array
    lands on the same frequency in cycles per pixel."""
    m = torch.as_tensor(np.asarray(magnitude, np.float32))
    if m.ndim != 3:
        raise ValueError(f"a magnitude spectrum is (C, H, W // 2 + 1), got shape {tuple(m.shape)}")
    size = (int(h), int(w) // 2 + 1)
    if tuple(m.shape[1:]) == size:
        return m.clone()
    return F.interpolate(m[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
