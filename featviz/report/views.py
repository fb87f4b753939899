"""The views on real images in the report: where the network looks on each class page (Grad-CAM,
SmoothGrad and the gradient of the class's strongest test images and most confident mistakes:
featviz attribute, results/<run>/attribution/) and each layer's DeepDream and caricature of a few
test images on its layer page (featviz dream, results/<run>/layer_views/). One picture per row."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import montage, save_image
from ..results import read_class_views, read_layer_views
from .samples import colormap
from .templating import inside as _inside

VIEW_PX = 112  # each panel's display height on the class pages (4 panels a row)
LAYER_PX = 224  # the layer pages' strips of ImageNet-sized images (MNIST and CIFAR: VIEW_PX)
MAP_NAMES = {"gradcam": "Grad-CAM", "smoothgrad": "SmoothGrad", "gradient": "gradient"}


def _rgb(images_u8: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, 3, H, W) float in [0, 1]."""
    x = images_u8.astype(np.float32) / 255.0
    return np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x[:, :3]


def _overlay(image: np.ndarray, map01: np.ndarray) -> np.ndarray:
    """Grad-CAM over its image: the map's colours blended in where it is high (alpha = the map)."""
    from matplotlib import colormaps

    heat = np.transpose(colormaps["jet"](map01)[..., :3], (2, 0, 1)).astype(np.float32)
    a = 0.6 * map01[None]
    return (1 - a) * image * 0.8 + a * heat


def _panels(image: np.ndarray, maps: dict[str, np.ndarray]) -> np.ndarray:
    """One row: the image, then each map (Grad-CAM over the image, the others colour-mapped)."""
    out = [image]
    for name, m in maps.items():
        out.append(_overlay(image, m) if name == "gradcam" else colormap(m[None])[0])
    return np.stack(out)


def attach_class_views(site: Path, results: Path, class_layer: dict | None, classes: list[str]) -> dict | None:
    """Each class cell's `views` (its rows: picture and prediction), the pictures written into the
    site; returns the record's summary for the pages (None where the run has no class views)."""
    got = read_class_views(Path(results) / "attribution")
    if got is None or class_layer is None:
        return None
    rec, arrays = got
    if not rec["classes"]:
        return None
    images = _rgb(arrays["images"])
    maps = {k: arrays[k].astype(np.float32) / 255.0 for k in rec["maps"] if k in arrays}

    def name(c):
        return classes[c] if 0 <= c < len(classes) else str(c)

    pictures = {}
    for entry in rec["classes"]:
        cell = class_layer.get("by_unit", {}).get(entry["class"])
        if cell is None:
            continue
        views = {}
        for kind in ("top", "mistakes"):
            views[kind] = []
            for r in entry[kind]:
                row = rec["rows"][r]
                if r not in pictures:
                    sheet = montage(_panels(images[r], {k: m[r] for k, m in maps.items()}), cols=1 + len(maps), gap=2)
                    pictures[r] = f"views/classes/{save_image(_inside(site, f'views/classes/{r}'), sheet, VIEW_PX)}"
                views[kind].append({**row, "image": pictures[r], "label_name": name(row["label"]),
                                    "predicted_name": name(row["predicted"])})
        cell["views"] = views
    class_layer["views_info"] = {"layer": rec.get("layer"), "maps": [MAP_NAMES.get(k, k) for k in maps], "settings": rec["settings"]}
    return class_layer["views_info"]


def attach_layer_views(site: Path, results: Path, layers: list[dict]) -> None:
    """Each layer's `views` (its test images, DeepDream and caricature, one strip each, with their
    objectives), the pictures written into the site; nothing where the run has no layer views."""
    got = read_layer_views(Path(results) / "layer_views")
    if got is None:
        return
    rec, arrays = got
    by_name = {layer["name"]: layer for layer in layers}
    originals = arrays["images"].astype(np.float32) / 255.0
    n = len(originals)
    px = VIEW_PX if originals.shape[-2] <= 64 else LAYER_PX
    strip = save_image(_inside(site, "views/layers/test"), montage(originals, cols=n, gap=2), px)
    base = f"views/layers/{strip}"
    for j, entry in enumerate(rec["layers"]):
        layer = by_name.get(entry["name"])
        if layer is None:
            continue
        views = {"test": base, "images": rec["images"], "recipe": rec["settings"]["recipe"],
                 "steps": rec["recipe"].get("steps"), "cossim_pow": rec["settings"]["cossim_pow"]}
        for mode in ("deepdream", "caricature"):
            key = f"{mode}_{j}"
            if key not in arrays:
                continue
            pics = arrays[key].astype(np.float32) / 255.0
            name = save_image(_inside(site, f"views/layers/{layer['slug']}-{mode}"), montage(pics, cols=n, gap=2), px)
            views[mode] = {"image": f"views/layers/{name}", "own": float(np.mean(entry[mode]["image"])),
                           "start": float(np.mean(entry[mode]["start"])), "final": float(np.mean(entry[mode]["final"]))}
        layer["views"] = views
