"""Pictures: single images as PNG (PIL), plots and grids (matplotlib, Agg). Written atomically."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from .io import write_bytes  # noqa: E402


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    img = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    img = (img * 255.0 + 0.5).astype(np.uint8)
    return img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    pil = Image.fromarray(to_uint8(image))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(path: Path, image: np.ndarray, scale: int = 1) -> None:
    write_bytes(path, png_bytes(image, scale))


PIXEL_ART = 32  # images this size or smaller are shown as crisp upscaled PNGs; larger ones as JPEGs


def save_image(stem: Path, image: np.ndarray, target: int) -> str:
    """Write one picture for display about `target` pixels high; returns the file name written.

    Small images (<= 32 px: MNIST, CIFAR) become PNGs upscaled by whole pixels (nearest), so every
    pixel stays visible; larger ones (64 px rehearsals, ImageNet-sized) become JPEGs (quality 90),
    downscaled to `target` when they are larger: a PNG of a noisy 64 px montage of 9 crops was 40 KB,
    of a 224 px visualization ~10x its JPEG."""
    stem = Path(stem)
    h = image.shape[-2]
    if h <= PIXEL_ART:
        path = stem.with_name(stem.name + ".png")
        write_bytes(path, png_bytes(image, display_scale(h, target)))
        return path.name
    pil = Image.fromarray(to_uint8(image))
    if pil.height > target:
        pil = pil.resize((max(1, round(pil.width * target / pil.height)), target), Image.BOX)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=90)
    path = stem.with_name(stem.name + ".jpg")
    write_bytes(path, buf.getvalue())
    return path.name


def display_scale(height: int, target: int = 112) -> int:
    return max(1, target // max(1, height))


def _save_fig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def confusion_png(path: Path, confusion: np.ndarray, classes: list[str]) -> None:
    k = len(classes)
    # a readable size up to ~50 classes; beyond, a fixed 12-inch picture without class names (1000
    # ImageNet classes at 0.45 in each asked for a 45,000-pixel square: gigabytes)
    size = min(max(4.0, 0.45 * k + 2), 12.0)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues", interpolation="nearest")
    if k <= 50:
        ax.set_xticks(range(k), classes, rotation=90)
        ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = confusion.max() if confusion.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if confusion[i, j] > top / 2 else "black")
    _save_fig(fig, path)


def image_grid_png(path: Path, images: np.ndarray, labels: list[str], cols: int = 8) -> None:
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, label in zip(axes.flat, images, labels):
        arr = to_uint8(img)
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(label, fontsize=7)
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    _save_fig(fig, path)


def curves_png(path: Path, epochs: list[dict]) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    x = [e["epoch"] for e in epochs]
    a.plot(x, [e["train_loss"] for e in epochs], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss")
    b.plot(x, [e["train_accuracy"] for e in epochs], marker="o", label="train")
    b.plot(x, [e["test_accuracy"] for e in epochs], marker="o", label="test")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.legend()
    fig.tight_layout()
    _save_fig(fig, path)


def normalize_maps(maps: np.ndarray, per_map: bool = True) -> np.ndarray:
    """Scale maps (..., H, W) to [0, 1] for display: each map by its own min and max."""
    m = np.nan_to_num(np.asarray(maps, dtype=np.float32))
    axes = (-2, -1) if per_map else tuple(range(m.ndim))
    lo, hi = m.min(axis=axes, keepdims=True), m.max(axis=axes, keepdims=True)
    return (m - lo) / np.maximum(hi - lo, 1e-12)


def montage(images: np.ndarray, cols: int, gap: int = 1, scale: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile images (N, C, H, W) in [0, 1] into one (C, H', W') image with `gap` pixels between."""
    images = np.asarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    out = np.full((c, rows * (h + gap) - gap, cols * (w + gap) - gap), fill, np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, r * (h + gap): r * (h + gap) + h, q * (w + gap): q * (w + gap) + w] = images[i]
    if scale > 1:
        out = out.repeat(scale, axis=1).repeat(scale, axis=2)
    return out


def pruning_png(path: Path, layers: list[dict]) -> None:
    """Accuracy vs units removed, one line per layer, the tolerance band shaded."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for e in layers:
        p = e["pruning"]
        frac = [k / max(1, p["units"]) for k in p["removed"]]
        ax.plot(frac, p["accuracy"], marker=".", label=f"{e['name']} ({p['removable']}/{p['units']} removable)")
    if layers:
        base = layers[0]["pruning"]["base_accuracy"]
        tol = layers[0]["pruning"]["tolerance"]
        ax.axhspan(base - tol, base + tol, color="0.85", zorder=0, label=f"within {100 * tol:.1f}% of {100 * base:.2f}%")
    ax.set_xlabel("fraction of the layer's units zeroed")
    ax.set_ylabel("test accuracy")
    if layers:
        ax.legend(fontsize=7)
    else:  # probe.prune_passes left no curve
        ax.text(0.5, 0.5, "no pruning curves", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    _save_fig(fig, path)


def saliency_png(path: Path, images_u8: np.ndarray, maps: np.ndarray, labels: list[str]) -> None:
    n = len(images_u8)
    fig, axes = plt.subplots(2, max(1, n), figsize=(1.6 * max(1, n), 3.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        arr = to_uint8(np.asarray(images_u8[i], np.float32) / 255.0)
        axes[0, i].imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255)
        axes[0, i].set_title(labels[i], fontsize=8)
        axes[1, i].imshow(maps[i], cmap="hot", vmin=0, vmax=1)
    fig.tight_layout()
    _save_fig(fig, path)


def note_png(path: Path, text: str) -> None:
    """A small picture holding one line of text: where a figure would be unreadable."""
    import textwrap

    fig, ax = plt.subplots(figsize=(4.5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 60), ha="center", va="center", fontsize=8, color="#5b6475")
    _save_fig(fig, path)
