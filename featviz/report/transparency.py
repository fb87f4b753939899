"""MACO's transparency map on the unit and class pages: the accumulated |gradient| of the image
(the chunk's `transparency`, each unit's map at most 1) shown beside the picture, and as its alpha
over the page's white, as Xplique's `plot_maco` shows it (the map clipped at its 80th percentile,
then divided by its largest value)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import save_image
from .templating import inside

PERCENTILE = 80  # Xplique plot_maco's percentile_alpha


def display_alpha(alpha: np.ndarray, percentile: float = PERCENTILE) -> np.ndarray:
    """(H, W) map -> alpha in [0, 1]: clipped at its `percentile`-th percentile, divided by its max."""
    a = np.clip(np.nan_to_num(np.asarray(alpha, np.float64)), 0.0, None)
    a = np.minimum(a, np.percentile(a, percentile))
    top = a.max()
    return (a / top if top > 0 else np.zeros_like(a)).astype(np.float32)


def over_white(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(C, H, W) picture in [0, 1] with alpha (H, W), composited over white."""
    return (image * alpha[None] + (1.0 - alpha[None])).astype(np.float32)


def transparency_pictures(site: Path, folder: str, u: int, image: np.ndarray, alpha: np.ndarray,
                          height: int) -> dict:
    """The map (gray, white = where the image mattered) and the picture with it as alpha, each about
    `height` pixels high; their paths relative to the site."""
    a = display_alpha(alpha)
    shown = save_image(inside(site, f"{folder}/{u}-alpha"), a[None], height)
    blended = save_image(inside(site, f"{folder}/{u}-maco"), over_white(image, a), height)
    return {"map": f"{folder}/{shown}", "blended": f"{folder}/{blended}"}
