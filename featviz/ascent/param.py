"""Image parameterizations: the optimized tensor and how it maps to an image
in [0, 1] pixel space.  Random draws come from one ``torch.Generator`` per
batch element, so a batch gives the same images as separate runs."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .spectrum import COLOR_CORRELATION, power_law, resample, rfft2d_freqs  # noqa: F401 (re-exported)
from .transforms import size_strength


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

    def to_picture(self, canvas):
        return canvas

    def picture(self, idx=None):
        return self.image(idx)


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

    def to_picture(self, canvas):
        return canvas

    def picture(self, idx=None):
        return self.image(idx)


def _standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per element: (x - mean) / (std + eps) over all its values (Xplique's MACO, per image)."""
    flat = x.flatten(1)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (x - flat.mean(1).view(shape)) / (flat.std(1, unbiased=False).view(shape) + eps)


def recorrelate(img: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nchw,dc->ndhw", img, color)


class MacoParam:
    """MACO (Fel et al. 2023; Xplique's `maco_image_parametrization`): the image's Fourier phase is
    optimized, its magnitude is fixed (`magnitude`, (C, h, w // 2 + 1) on the canvas). Per element:
    phase standardized, spectrum = magnitude * exp(i phase), inverse real FFT, standardized, colours
    recorrelated (RGB), sigmoid. The image is a canvas `canvas_scale` times the input's size; the
    picture (`picture`) is the central `view` fraction of it resampled to the input's size."""
    is_pixel = False

    def __init__(self, shape, gens, magnitude, canvas_scale=1.0, view=1.0, device="cpu", amp: float = 1.0):
        c, h, w = shape
        self.c, self.h, self.w = c, h, w
        self.ch, self.cw = max(h, int(round(canvas_scale * h))), max(w, int(round(canvas_scale * w)))
        mag = torch.as_tensor(magnitude, dtype=torch.float32)
        if mag.ndim != 3 or mag.shape[0] != c:
            raise ValueError(f"the MACO magnitude spectrum has shape {tuple(mag.shape)}; the input has {c} "
                             f"channel(s): it needs ({c}, H, W // 2 + 1)")
        self.magnitude = resample(mag, self.ch, self.cw).to(device)
        fshape = (c, self.ch, self.cw // 2 + 1)
        # the phase is standardized before use: `amp` (dead-unit retries) only changes the draw
        phase = torch.stack([torch.randn(fshape, generator=g) * amp for g in gens])
        self.tensor = phase.to(device).requires_grad_(True)
        self.decorrelate = c == 3
        self.color = torch.as_tensor(COLOR_CORRELATION, device=device)
        vh, vw = max(1, int(round(view * self.ch))), max(1, int(round(view * self.cw)))
        self.window = ((self.ch - vh) // 2, (self.cw - vw) // 2, vh, vw)

    def image(self, idx=None):
        """The canvas (n, C, canvas h, canvas w) in [0, 1]."""
        phase = _standardize(self.tensor if idx is None else self.tensor[idx])
        spec = torch.complex(torch.cos(phase) * self.magnitude, torch.sin(phase) * self.magnitude)
        img = _standardize(torch.fft.irfft2(spec, s=(self.ch, self.cw)))
        if self.decorrelate:
            img = recorrelate(img, self.color)
        return torch.sigmoid(img)

    def to_picture(self, canvas: torch.Tensor) -> torch.Tensor:
        """A canvas-sized (n, C', ch, cw) tensor -> its central view resampled to the input's size."""
        y0, x0, vh, vw = self.window
        v = canvas[..., y0:y0 + vh, x0:x0 + vw]
        if (vh, vw) == (self.h, self.w):
            return v
        return F.interpolate(v, size=(self.h, self.w), mode="bilinear", align_corners=False, antialias=True)

    def picture(self, idx=None):
        return self.to_picture(self.image(idx))


def make_param(recipe: dict, shape, gens, device, amp: float = 1.0, spectrum=None):
    """The parameterization a recipe names. `spectrum`: MACO's magnitude (C, H, W // 2 + 1) at any
    size (the run's images' average, featviz.ascent.spectrum); None: the 1/f power law."""
    if recipe["param"] == "maco":
        c, h, w = shape
        mag = spectrum if spectrum is not None else power_law(c, h, w, float(recipe["fourier_decay"]))
        # `transforms_size`: below that input size the canvas shrinks towards the input like the crops
        scale = 1.0 + (float(recipe["canvas_scale"]) - 1.0) * size_strength(recipe, (h, w))
        return MacoParam(shape, gens, mag, scale, recipe["canvas_view"], device=device, amp=amp)
    if recipe["param"] == "fourier":
        return FourierParam(shape, gens, recipe["fourier_sd"], recipe["fourier_decay"],
                            recipe["decorrelate"], recipe["sigmoid"], device=device, amp=amp)
    return PixelParam(pixel_init(recipe, shape, gens, amp).to(device))


def image_param(recipe: dict, images: torch.Tensor, device):
    """The parameterization a recipe names, starting from `images` (N, C, H, W) in [0, 1] instead of
    noise (DeepDream): pixel as they are; Fourier with the spectrum whose picture is the images
    (the inverse of FourierParam.image: logit, colours decorrelated back, x4, real FFT / scale).
    MACO's magnitude is fixed, so it cannot start from an arbitrary image: ValueError."""
    x = images.detach().float().to(device)
    if recipe["param"] == "pixel":
        return PixelParam(x)
    if recipe["param"] != "fourier":
        raise ValueError(f"parameterization {recipe['param']!r} cannot start from an image (pixel or fourier can)")
    n, c, h, w = x.shape
    p = FourierParam((c, h, w), [torch.Generator() for _ in range(n)], 0.0, recipe["fourier_decay"],
                     recipe["decorrelate"], recipe["sigmoid"], device=device)
    eps = 1e-3
    y = torch.logit(x.clamp(eps, 1 - eps)) if p.sigmoid else 2 * x - 1
    if p.decorrelate:
        y = torch.einsum("nchw,dc->ndhw", y, torch.linalg.inv(p.color))
    spec = torch.fft.rfft2(4.0 * y) / p.scale
    with torch.no_grad():
        p.tensor.copy_(torch.stack([spec.real, spec.imag], -1))
    return p
