"""Regularizers.  Projections act on pixel images (N, C, H, W) after a step,
independently per batch element; penalties are per-element terms subtracted
from the objective."""
from __future__ import annotations


import torch
import torch.nn.functional as F


def decay(x, amount, center=0.5):
    """Yosinski L2 decay: pull towards ``center`` by a fraction ``amount``."""
    return center + (1.0 - amount) * (x - center)


def gaussian_blur(x, sigma, ksize=0):
    """Separable Gaussian blur over H, W (reflect border), channels untouched."""
    if sigma <= 0:
        return x
    r = (ksize // 2) if ksize else int(4.0 * sigma + 0.5)
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    if r < 1:
        return x
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def median_filter(x, size):
    """Median filter of ``size`` x ``size`` over H, W (reflect border), seed 003."""
    if size <= 1:
        return x
    r = min(size // 2, x.shape[-1] - 1, x.shape[-2] - 1)
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    patches = F.unfold(y, 2 * r + 1)  # (n*c, k*k, h*w)
    return patches.median(dim=1).values.reshape(n, c, h, w)


def _clip_below_pct(x, score, pct, center):
    if pct <= 0:
        return x
    thr = torch.quantile(score.flatten(1), pct / 100.0, dim=1).view(-1, 1, 1)
    keep = (score >= thr).unsqueeze(1)
    return torch.where(keep, x, torch.full_like(x, center))


def clip_small_norm(x, pct, center=0.5):
    """Yosinski: pixels whose norm (over channels, around ``center``) is below the
    ``pct`` percentile of the image are set to ``center``."""
    return _clip_below_pct(x, (x - center).norm(dim=1), pct, center)


def clip_small_contribution(x, grad, pct, center=0.5):
    """Yosinski: pixels whose contribution |sum_c (x-center)*grad| is below the
    ``pct`` percentile are set to ``center``."""
    return _clip_below_pct(x, ((x - center) * grad).sum(1).abs(), pct, center)


def standardize(x, mean=0.5, std=0.2):
    """Seed 002 per-step standardization, mapped to pixel space."""
    from .param import standardize_image
    return mean + std * standardize_image(x)


def standardize_input(x, affine):
    """Seed 002 per-step standardization in the network's input space: the image the network takes,
    ``a * x + b`` per channel (``affine = (a, b)``, each (1, C, 1, 1)), gets mean 0 and std 1 (over all
    its pixels and channels, like ``tf.image.per_image_standardization``); returned in pixel space."""
    from .param import standardize_image
    a, b = affine
    return (standardize_image(a * x + b) - b) / a


def project(x, grad, step, recipe, last=False, input_affine=None):
    """All image-space regularizers of a recipe for optimization step ``step``. ``input_affine``:
    the network's input normalization as (a, b), needed by ``standardize_space: input``."""
    c = float(recipe["center"])
    if not (last and recipe["final_unregularized"]):
        if recipe["standardize"] and recipe["standardize_space"] == "input":
            if input_affine is None:
                raise ValueError("standardize_space 'input' needs the network's input normalization")
            x = standardize_input(x, input_affine)
        elif recipe["standardize"]:
            x = standardize(x, recipe["standardize_mean"], recipe["standardize_std"])
        if recipe["decay"] > 0:
            x = decay(x, recipe["decay"], c)
        if recipe["blur_sigma"] > 0 and step % recipe["blur_every"] == 0:
            x = gaussian_blur(x, recipe["blur_sigma"], recipe["blur_ksize"])
        if recipe["median_size"] > 1 and step % recipe["median_every"] == 0:
            x = median_filter(x, recipe["median_size"])
        if recipe["clip_norm_pct"] > 0:
            x = clip_small_norm(x, recipe["clip_norm_pct"], c)
        if recipe["clip_contrib_pct"] > 0:
            x = clip_small_contribution(x, grad, recipe["clip_contrib_pct"], c)
    if recipe["clamp"]:
        x = x.clamp(0.0, 1.0)
    return x


# ---- penalties (per element, differentiable) -------------------------------

def total_variation(x):
    return (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1) + \
        (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)


def lp_norm(x, p=6.0, center=0.5):
    return ((x - center).abs() ** p).flatten(1).mean(1) ** (1.0 / p)


def l2(x, center=0.5):
    return ((x - center) ** 2).flatten(1).mean(1)


def penalty(x, recipe):
    """Sum of the weighted penalties of a recipe, shape (N,), or None."""
    c = float(recipe["center"])
    terms = []
    if recipe["tv_weight"] > 0:
        terms.append(recipe["tv_weight"] * total_variation(x))
    if recipe["lp_weight"] > 0:
        terms.append(recipe["lp_weight"] * lp_norm(x, recipe["lp_p"], c))
    if recipe["l2_weight"] > 0:
        terms.append(recipe["l2_weight"] * l2(x, c))
    return sum(terms) if terms else None


