"""A synthetic ImageNet-like image folder and random-weight torchvision state_dicts, standing in for
ImageNet and torchvision's pretrained files where neither can be downloaded.

    python benchmarks/synthetic_imagenet.py --out /tmp/imagenet-synth --classes 1000 --per-class 1 \
        --size 224 --weights resnet50 resnet18

writes <out>/train/<class>/*.jpg and <out>/test/<class>/*.jpg (class folders named like WordNet IDs,
n00000000 ...; each image a few random coloured shapes on a textured background, larger than --size
with a random aspect so that data.resize + image_size centre-crop it as torchvision does), and
<out>/<arch>-random.pth, torchvision's architecture with random weights and 1000 outputs (seed 0),
saved as a plain state_dict like torchvision's own weight files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def image(rng: np.random.Generator, size: int) -> Image.Image:
    w = int(size * rng.uniform(1.15, 1.5))
    h = int(size * rng.uniform(1.15, 1.3))
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 25, (h // 8 + 1, w // 8 + 1, 3))
    bg = np.clip(base + np.kron(noise, np.ones((8, 8, 1)))[:h, :w], 0, 255).astype(np.uint8)
    im = Image.fromarray(bg)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return im


def make_folder(out: Path, classes: int, per_class: int, test_per_class: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c in range(classes):
            d = out / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image(rng, size).save(d / f"{i:04d}.jpg", quality=85)
    return out


def random_weights(arch: str, path: Path, num_classes: int = 1000, seed: int = 0) -> Path:
    import torch
    import torchvision

    torch.manual_seed(seed)
    kwargs = {"aux_logits": False, "init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    torch.save(net.state_dict(), path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=1, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=1)
    p.add_argument("--size", type=int, default=224, help="the crop size the images are made for")
    p.add_argument("--weights", nargs="*", default=[], help="torchvision architectures to save random weights of")
    a = p.parse_args()
    out = Path(a.out)
    if not (out / "train").is_dir():
        make_folder(out, a.classes, a.per_class, a.test_per_class, a.size)
    for arch in a.weights:
        random_weights(arch, out / f"{arch}-random.pth", a.classes)
    print(f"wrote {out} ({a.classes} classes x {a.per_class}+{a.test_per_class} images, weights: {a.weights or 'none'})")


if __name__ == "__main__":
    main()
