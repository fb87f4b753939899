"""Dataset registry: torchvision MNIST / FashionMNIST / CIFAR10 / SVHN and image folders, turned
into one cached form that every later stage reads fast: uint8 image tensors (N, C, H, W), int64
labels and class names, plus the training set's per-channel mean and std.

Files already under `data_root` are used as they are; a download is tried only when they are
missing and `download` is on. Offline with no files, the error says which files to put where.
"""
from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError
from .io import read_json, save_torch, write_json

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DIGITS = [str(i) for i in range(10)]


@dataclass(frozen=True)
class Builtin:
    """A torchvision dataset: where its files live under data_root and what they are called."""

    folder: str
    files: tuple[str, ...]
    classes: tuple[str, ...]


BUILTINS = {
    "mnist": Builtin(
        "MNIST/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        tuple(DIGITS),
    ),
    "fashion-mnist": Builtin(
        "FashionMNIST/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": Builtin(
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "svhn": Builtin("SVHN", ("train_32x32.mat", "test_32x32.mat"), tuple(DIGITS)),
}
DATASET_NAMES = tuple(BUILTINS) + ("imagefolder",)


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def to_dict(self) -> dict:
        return {"images": self.images, "labels": self.labels, "classes": list(self.classes)}


# --------------------------------------------------------------------------- raw files


def import_raw_files(name: str, source: Path, data_root: Path) -> None:
    """Copy (and gunzip) a dataset's original files from `source` into torchvision's layout."""
    spec = BUILTINS[name]
    dest = data_root / spec.folder
    for fname in spec.files:
        if (dest / fname).exists():
            continue
        plain, gz = source / fname, source / (fname + ".gz")
        if plain.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plain, dest / fname)
        elif gz.exists():
            dest.mkdir(parents=True, exist_ok=True)
            tmp = dest / (fname + ".part")
            with gzip.open(gz, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            tmp.replace(dest / fname)
        else:
            raise FeatvizError(f"data.source: {source} has neither {fname} nor {fname}.gz")


def _missing(name: str, data_root: Path) -> list[Path]:
    spec = BUILTINS[name]
    return [data_root / spec.folder / f for f in spec.files if not (data_root / spec.folder / f).exists()]


def _not_found(name: str, data_root: Path, missing: list[Path], why: str = "") -> FeatvizError:
    listing = "\n".join(f"  {p}" for p in missing)
    hint = f" ({why})" if why else ""
    return FeatvizError(
        f"dataset '{name}' not found under data_root={data_root}{hint}. Put these files there "
        f"(or set data.source to a folder holding them, or data.download: true with network):\n{listing}"
    )


def _torchvision(name: str, root: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    if name == "mnist":
        return tvd.MNIST(str(root), train=train, download=download)
    if name == "fashion-mnist":
        return tvd.FashionMNIST(str(root), train=train, download=download)
    if name == "cifar10":
        return tvd.CIFAR10(str(root), train=train, download=download)
    if name == "svhn":
        return tvd.SVHN(str(root / "SVHN"), split="train" if train else "test", download=download)
    raise AssertionError(name)


def _to_split(name: str, ds) -> Split:
    if name in ("mnist", "fashion-mnist"):
        images = ds.data.unsqueeze(1).to(torch.uint8)
        labels = ds.targets.to(torch.int64)
    elif name == "cifar10":
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(ds.targets, dtype=torch.int64)
    else:  # svhn: torchvision maps label 10 to 0 already
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).to(torch.uint8)
        labels = torch.from_numpy(np.asarray(ds.labels)).to(torch.int64)
    return Split(images, labels, list(BUILTINS[name].classes))


def load_builtin(name: str, data_root: Path, train: bool, download: bool, source: Path | None) -> Split:
    if source is not None:
        import_raw_files(name, Path(source), data_root)
    missing = _missing(name, data_root)
    wanted = missing if train else [p for p in missing if "train" not in p.name and "data_batch" not in p.name]
    if missing and not download:
        raise _not_found(name, data_root, missing, "download is off")
    try:
        ds = _torchvision(name, data_root, train, download=bool(wanted) and download)
    except FeatvizError:
        raise
    except Exception as exc:  # network errors, corrupt files, md5 mismatches
        still_missing = _missing(name, data_root)
        if still_missing:
            raise _not_found(name, data_root, still_missing, f"download failed: {exc}") from None
        raise FeatvizError(f"dataset '{name}' under {data_root} could not be read: {exc}") from None
    try:
        return _to_split(name, ds)
    except Exception as exc:
        raise FeatvizError(f"dataset '{name}' under {data_root} could not be read: {exc}") from None


# --------------------------------------------------------------------------- image folders


def _class_folders(split_dir: Path) -> dict[str, list[Path]]:
    classes = {}
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith("."))
        bad = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            raise FeatvizError(f"image folder {split_dir}: '{bad[0]}' is not an image file "
                               f"(expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
        classes[d.name] = files
    if not classes or not any(classes.values()):
        raise FeatvizError(f"image folder {split_dir} has no images: expected {split_dir}/<class>/<image>")
    empty = [c for c, files in classes.items() if not files]
    if empty:
        raise FeatvizError(f"image folder {split_dir}: class folder '{empty[0]}' has no images")
    return classes


def _read_images(files: list[Path], channels: int, size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), size[0], size[1], channels), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(size[0], size[1], channels)
        except (OSError, ValueError) as exc:
            raise FeatvizError(f"image folder: cannot read image {f}: {exc}") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _probe_format(first: Path, channels: int | None, size) -> tuple[int, tuple[int, int]]:
    from PIL import Image

    try:
        with Image.open(first) as im:
            if channels is None:
                channels = 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3
            if size is None:
                size = (im.size[1], im.size[0])
    except OSError as exc:
        raise FeatvizError(f"image folder: cannot read image {first}: {exc}") from None
    return channels, (int(size[0]), int(size[1]))


def load_imagefolder(path: Path, train: bool, channels: int | None, size, test_fraction: float, seed: int) -> Split:
    path = Path(path)
    if not (path / "train").is_dir():
        raise FeatvizError(f"data.path: {path} has no train/ folder (expected {path}/train/<class>/<image>)")
    train_classes = _class_folders(path / "train")
    names = list(train_classes)
    has_test = (path / "test").is_dir()
    if has_test:
        test_classes = _class_folders(path / "test")
        if list(test_classes) != names:
            raise FeatvizError(
                f"data.path: {path}: train/ and test/ have different classes "
                f"(train: {', '.join(names)}; test: {', '.join(test_classes)})")
    first = next(iter(train_classes.values()))[0]
    channels, size = _probe_format(first, channels, size)
    if has_test:
        chosen = test_classes if not train else train_classes
        files = [f for c in names for f in chosen[c]]
        labels = [i for i, c in enumerate(names) for _ in chosen[c]]
    else:  # hold out a fixed, seeded fraction of train/ for testing
        files_all = [f for c in names for f in train_classes[c]]
        labels_all = [i for i, c in enumerate(names) for _ in train_classes[c]]
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(files_all), generator=g).tolist()
        n_test = max(1, int(round(test_fraction * len(files_all))))
        idx = sorted(perm[n_test:] if train else perm[:n_test])
        files = [files_all[i] for i in idx]
        labels = [labels_all[i] for i in idx]
    images = _read_images(files, channels, size)
    return Split(images, torch.tensor(labels, dtype=torch.int64), names)


# --------------------------------------------------------------------------- the cached form


def _subset(split: Split, limit: int | None, seed: int) -> Split:
    if not limit or limit >= len(split.labels):
        return split
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split.labels), generator=g)[:limit].sort().values
    return Split(split.images[idx].contiguous(), split.labels[idx].contiguous(), split.classes)


def load_split(data_cfg: dict, data_root: Path, train: bool) -> Split:
    name = data_cfg["dataset"]
    if name == "imagefolder":
        split = load_imagefolder(
            Path(data_cfg["path"]), train, data_cfg.get("channels"), data_cfg.get("image_size"),
            data_cfg.get("test_fraction", 0.1), data_cfg.get("split_seed", 0))
    elif name in BUILTINS:
        source = data_cfg.get("source")
        split = load_builtin(name, Path(data_root), train, data_cfg.get("download", True),
                             Path(source) if source else None)
    else:
        raise FeatvizError(f"dataset: unknown dataset '{name}' (known: {', '.join(DATASET_NAMES)})")
    return _subset(split, data_cfg.get("limit_train" if train else "limit_test"), data_cfg.get("split_seed", 0))


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (float64 accumulation)."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def prepare(data_cfg: dict, data_root: Path, out_dir: Path) -> dict:
    """Load both splits, check them, and write the cached form: train.pt, test.pt, info.json."""
    train = load_split(data_cfg, data_root, train=True)
    test = load_split(data_cfg, data_root, train=False)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise FeatvizError(f"dataset: train and test images differ in shape "
                           f"({tuple(train.images.shape[1:])} vs {tuple(test.images.shape[1:])})")
    mean, std = channel_stats(train.images)
    info = {
        "dataset": data_cfg["dataset"],
        "classes": train.classes,
        "input_shape": list(train.images.shape[1:]),
        "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)),
        "mean": mean,
        "std": std,
    }
    out_dir = Path(out_dir)
    save_torch(out_dir / "train.pt", train.to_dict())
    save_torch(out_dir / "test.pt", test.to_dict())
    write_json(out_dir / "info.json", info)
    return info


def load_prepared(data_dir: Path, train: bool) -> Split:
    path = Path(data_dir) / ("train.pt" if train else "test.pt")
    try:
        d = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise FeatvizError(f"prepared dataset missing: {path} (run `featviz data` first)") from None
    return Split(d["images"], d["labels"], list(d["classes"]))


def load_info(data_dir: Path) -> dict:
    return read_json(Path(data_dir) / "info.json")
