"""The probe's sample inputs on the run page: each picture, its saliency and the activation maps of
every conv layer, one montage per layer, at display size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import montage, normalize_maps, save_image, save_png
from ..results import ProbeArrays
from .templating import inside as _inside

SAMPLE_MAPS = 64  # activation maps per layer and sample on the run page (MNIST- and CIFAR-sized inputs)
SAMPLE_MAPS_LARGE = 32  # the same for ImageNet-sized inputs (dozens of layers: 4 samples x 40 layers)
MAP_PX = 28  # an activation map's size on the run page (larger maps are averaged down to about this)


def colormap(maps01: np.ndarray) -> np.ndarray:
    """(N, H, W) in [0, 1] -> (N, 3, H, W) viridis."""
    from matplotlib import colormaps

    rgb = colormaps["viridis"](np.clip(maps01, 0, 1))[..., :3].astype(np.float32)
    return np.transpose(rgb, (0, 3, 1, 2))


def _shrink_maps(maps: np.ndarray, px: int) -> np.ndarray:
    """(N, H, W) maps averaged down by a whole factor until neither side exceeds about `px` (they are
    shown that small; at 224 px a network's early maps are 112 px and their montages megabytes)."""
    f = -(-max(maps.shape[-2:]) // px)
    if f <= 1:
        return maps
    n, h, w = maps.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(maps, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")
    return padded.reshape(n, hp // f, f, wp // f, f).mean(axis=(2, 4))


def _sample_maps(site: Path, s: int, arrays: ProbeArrays, layers: list[dict], large: bool) -> list[dict]:
    """Sample s's activation maps of every conv layer, one montage per layer (JPEG for `large`
    inputs, ImageNet-sized: a PNG of colour-mapped noise is 3-4x larger)."""
    out = []
    for layer in layers:
        maps_j = arrays.layer("maps", layer["pj"])
        if layer["kind"] != "conv" or maps_j is None:
            continue
        shown = _shrink_maps(maps_j[s][:SAMPLE_MAPS_LARGE if large else SAMPLE_MAPS].astype(np.float32), MAP_PX)
        maps = colormap(normalize_maps(shown))
        h = maps.shape[-2]
        sheet = montage(maps, cols=min(len(maps), 16), gap=1, scale=max(1, MAP_PX // h))
        if not large:  # MNIST, CIFAR: a PNG, every pixel visible
            rel = f"samples/{s}-{layer['slug']}.png"
            save_png(_inside(site, rel), sheet)
        else:
            stem = _inside(site, f"samples/{s}-{layer['slug']}")
            rel = f"samples/{save_image(stem, sheet, sheet.shape[-2])}"
        out.append({"layer": layer["name"], "image": rel, "units": len(maps), "of": layer["units"]})
    return out


def samples(site: Path, probe: dict | None, arrays: ProbeArrays, layers: list[dict]) -> list[dict]:
    """The probe's sample inputs: picture, saliency and activation maps of each."""
    if probe is None or arrays.sample_images is None:
        return []
    imgs = np.asarray(arrays.sample_images, np.float32) / 255.0
    sal = None if arrays.saliency is None else np.asarray(arrays.saliency, np.float32)
    samples = []
    for s, meta in enumerate(probe["samples"]):
        row = dict(meta, image=f"samples/{save_image(_inside(site, f'samples/{s}'), imgs[s], 84)}", maps=[],
                   saliency=None)
        if sal is not None:
            name = save_image(_inside(site, f"samples/{s}-saliency"), colormap(sal[s][None])[0], 84)
            row["saliency"] = f"samples/{name}"
        row["maps"] = _sample_maps(site, s, arrays, layers, large=imgs.shape[-2] > 64)
        samples.append(row)
    return samples
