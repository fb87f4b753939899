"""Image parameterizations: the optimized tensor and how it maps to an image
in [0, 1] pixel space.  Random draws come from one ``torch.Generator`` per
batch element, so a batch gives the same images as separate runs."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Lucid's colour correlation (ImageNet), square root of its SVD.
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


def _draw(kind, shape, gen):
    return torch.rand(shape, generator=gen) if kind == "uniform" else torch.randn(shape, generator=gen)


def standardize_image(x: torch.Tensor) -> torch.Tensor:
    """Per-element standardization like ``tf.image.per_image_standardization``."""
    flat = x.flatten(1)
    mean = flat.mean(1)
    std = flat.std(1, unbiased=False).clamp_min(1.0 / np.sqrt(flat.shape[1]))
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (x - mean.view(shape)) / std.view(shape)


def multiscale_noise(shape, scales, weights, gen) -> torch.Tensor:
    """Seed 002: superposition of U[-1, 1] fluctuations on coarse grids of the
    given sizes, each upsampled bicubically to (H, W), then standardized."""
    c, h, w = shape
    total = torch.zeros(1, c, h, w)
    for s, wt in zip(scales, weights):
        gh, gw = max(1, min(int(s), h)), max(1, min(int(s), w))
        f = 2.0 * (torch.rand((1, c, gh, gw), generator=gen) - 0.5)
        if (gh, gw) != (h, w):
            f = F.interpolate(f, size=(h, w), mode="bicubic", align_corners=False)
        total = total + float(wt) * f
    return standardize_image(total)[0]


def pixel_init(recipe: dict, shape, gens, amp: float = 1.0) -> torch.Tensor:
    """Initial images (N, C, H, W) in [0, 1] for the pixel parameterization."""
    out = []
    off, scale = float(recipe["init_offset"]), float(recipe["init_scale"]) * amp
    for g in gens:
        if recipe["init"] == "multiscale":
            z = multiscale_noise(shape, recipe["init_scales"], recipe["init_weights"], g)
        else:
            z = _draw(recipe["init"], tuple(shape), g)
        out.append(off + scale * z)
    return torch.stack(out).clamp_(0.0, 1.0)


class PixelParam:
    """The image itself is optimized (seeds 000-003)."""
    is_pixel = True

    def __init__(self, x0: torch.Tensor):
        self.tensor = x0.detach().clone().requires_grad_(True)

    def image(self, idx=None):
        return self.tensor if idx is None else self.tensor[idx]


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


class FourierParam:
    """Lucid's ``fft_image`` + ``to_valid_rgb``: a spectrum scaled by 1/f**decay,
    inverse real FFT, /4, optional colour decorrelation (RGB), sigmoid."""
    is_pixel = False

    def __init__(self, shape, gens, sd=0.01, decay=1.0, decorrelate=True, sigmoid=True,
                 device="cpu", amp: float = 1.0):
        c, h, w = shape
        self.c, self.h, self.w = c, h, w
        freqs = rfft2d_freqs(h, w)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay * np.sqrt(w * h)
        self.scale = torch.as_tensor(scale, dtype=torch.float32, device=device)
        spec = torch.stack([torch.randn((c,) + freqs.shape + (2,), generator=g) * (sd * amp) for g in gens])
        self.tensor = spec.to(device).requires_grad_(True)
        self.decorrelate = decorrelate and c == 3
        self.color = torch.as_tensor(COLOR_CORRELATION, device=device)
        self.sigmoid = sigmoid

    def image(self, idx=None):
        s = self.tensor if idx is None else self.tensor[idx]
        spec = torch.complex(s[..., 0], s[..., 1]) * self.scale
        img = torch.fft.irfft2(spec, s=(self.h, self.w)) / 4.0
        if self.decorrelate:
            img = torch.einsum("nchw,dc->ndhw", img, self.color)
        if self.sigmoid:
            return torch.sigmoid(img)
        u = 2 * img - 1  # Lucid constrain_L_inf
        m = u.flatten(1).abs().amax(1).clamp_min(1.0).view(-1, 1, 1, 1)
        return (u / m) / 2 + 0.5


def make_param(recipe: dict, shape, gens, device, amp: float = 1.0):
    if recipe["param"] == "fourier":
        return FourierParam(shape, gens, recipe["fourier_sd"], recipe["fourier_decay"],
                            recipe["decorrelate"], recipe["sigmoid"], device=device, amp=amp)
    return PixelParam(pixel_init(recipe, shape, gens, amp).to(device))
