"""Dataset registry: torchvision MNIST / FashionMNIST / CIFAR10 / SVHN and image folders, turned
into one cached form that every later stage reads fast: uint8 image tensors (N, C, H, W), int64
labels and class names, plus the training set's per-channel mean and std.

Files already under `data_root` are used as they are; a download is tried only when they are
missing and `download` is on. Offline with no files, the error says which files to put where.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError
from .io import atomic_path, read_json, save_torch, staged_files, write_json
from .schema import with_defaults

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
    """Copy (and gunzip) a dataset's original files from `source` into torchvision's layout, e.g.
    Debian's /usr/share/datasets/fashion-mnist/*.gz into <data_root>/FashionMNIST/raw/."""
    spec = BUILTINS[name]
    dest = data_root / spec.folder
    source = Path(source)
    if not source.is_dir():
        raise FeatvizError(f"data.source: folder {source} does not exist")
    for fname in spec.files:
        if (dest / fname).exists():
            continue
        plain, gz = source / fname, source / (fname + ".gz")
        if not plain.exists() and not gz.exists():
            raise FeatvizError(f"data.source: {source} has neither {fname} nor {fname}.gz")
        dest.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(dest / fname) as tmp:
                if plain.exists():
                    shutil.copyfile(plain, tmp)
                else:
                    with gzip.open(gz, "rb") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            bad = plain if plain.exists() else gz
            raise FeatvizError(f"data.source: cannot import {bad}: {exc} (truncated or corrupt file?)") from None


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


def _corrupt(path: Path, why: str) -> FeatvizError:
    return FeatvizError(f"dataset file {path} is truncated or corrupt: {why}. Delete it and download or "
                        f"import it again")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (MNIST's format) of unsigned bytes with `ndim` dimensions, checked for size."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4 + 4 * ndim:
        raise _corrupt(path, f"only {len(data)} bytes")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise _corrupt(path, f"not an IDX file of {ndim}-d unsigned bytes (magic {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise _corrupt(path, f"{len(data)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batch files (dicts, lists, bytes and numpy arrays) and nothing else: no
    arbitrary code runs when reading a dataset."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(d, dict):
        raise _corrupt(path, "not a CIFAR batch (a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def _read_cifar10(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for fname in names:
        d = _read_cifar_batch(folder / fname)
        if "data" not in d or "labels" not in d:
            raise _corrupt(folder / fname, "no 'data' or 'labels' entry")
        x = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d["labels"], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise _corrupt(folder / fname, f"data has shape {x.shape} for {len(y)} labels, expected (N, 3072)")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise _corrupt(folder / fname, "labels outside 0..9")
        images.append(x.reshape(-1, 3, 32, 32))
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        m = scipy.io.loadmat(str(path), variable_names=["X", "y"])
        x, y = m["X"], m["y"]
    except Exception as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise _corrupt(path, f"X has shape {x.shape} and y {y.shape}; expected (32, 32, 3, N) and (N, 1)")
    y = y.reshape(-1).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 10):
        raise _corrupt(path, "labels outside 0..10")
    # SVHN stores the digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8), y % 10


def read_builtin(name: str, data_root: Path, train: bool) -> Split:
    """Read a builtin dataset's original files with featviz's own checked readers (no md5: the
    files may come from elsewhere, e.g. Debian's Fashion-MNIST)."""
    folder = Path(data_root) / BUILTINS[name].folder
    if name in ("mnist", "fashion-mnist"):
        prefix = "train" if train else "t10k"
        x = read_idx(folder / f"{prefix}-images-idx3-ubyte", 3)
        y = read_idx(folder / f"{prefix}-labels-idx1-ubyte", 1)
        if len(x) != len(y):
            raise _corrupt(folder / f"{prefix}-labels-idx1-ubyte", f"{len(y)} labels for {len(x)} images")
        if len(y) and y.max() > 9:
            raise _corrupt(folder / f"{prefix}-labels-idx1-ubyte", "labels outside 0..9")
        x = x[:, None]
    elif name == "cifar10":
        x, y = _read_cifar10(folder, train)
    else:
        x, y = _read_svhn(folder / ("train_32x32.mat" if train else "test_32x32.mat"))
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)),
                 list(BUILTINS[name].classes))


def _download(name: str, root: Path) -> None:
    """torchvision's download (with its md5 checks) into the layout read_builtin reads."""
    import torchvision.datasets as tvd

    if name == "mnist":
        for train in (True, False):
            tvd.MNIST(str(root), train=train, download=True)
    elif name == "fashion-mnist":
        for train in (True, False):
            tvd.FashionMNIST(str(root), train=train, download=True)
    elif name == "cifar10":
        tvd.CIFAR10(str(root), train=True, download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(str(root / "SVHN"), split=split, download=True)


def load_builtin(name: str, data_root: Path, train: bool, download: bool, source: Path | None) -> Split:
    data_root = Path(data_root)
    if source is not None:
        import_raw_files(name, Path(source), data_root)
    missing = _missing(name, data_root)
    if missing and not download:
        raise _not_found(name, data_root, missing, "data.download is off")
    if missing:
        try:
            _download(name, data_root)
        except Exception as exc:  # network errors, md5 mismatches
            raise _not_found(name, data_root, _missing(name, data_root) or missing,
                             f"download failed: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
        missing = _missing(name, data_root)
        if missing:
            raise _not_found(name, data_root, missing, "download did not produce them")
    return read_builtin(name, data_root, train)


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


def resize_center_crop(im, resize: int, size: tuple[int, int]):
    """torchvision's `Resize(resize)` then `CenterCrop(size)` on a PIL image: the shorter side
    becomes `resize` (bilinear, antialiased), then the centre `size` (h, w) is cut out."""
    from PIL import Image

    w, h = im.size
    if w <= h:
        nw, nh = resize, max(1, int(resize * h / w))
    else:
        nw, nh = max(1, int(resize * w / h)), resize
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size[0]) / 2.0)), int(round((nw - size[1]) / 2.0))
    return im.crop((left, top, left + size[1], top + size[0]))


def _read_images(files: list[Path], channels: int, size: tuple[int, int], resize: int | None = None,
                 seen: dict | None = None) -> torch.Tensor:
    """Decode (and resize, or resize and centre-crop) images into one uint8 (N, C, H, W) tensor;
    PIL releases the GIL while decoding, so a few threads read a large folder (CIFAR-10's 50,000
    JPEGs) in parallel. `seen`, if given, collects the images' original sizes and modes."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), size[0], size[1], channels), dtype=np.uint8)

    def read(i: int) -> None:
        f = files[i]
        try:
            with Image.open(f) as im:
                if seen is not None:
                    seen[i] = (im.size, im.mode)
                im = im.convert(mode)
                if resize:
                    im = resize_center_crop(im, resize, size)
                elif im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(size[0], size[1], channels)
        except (OSError, ValueError, SyntaxError) as exc:
            raise FeatvizError(f"image folder: cannot read image {f}: {exc}") from None

    workers = min(8, os.cpu_count() or 1)
    if workers > 1 and len(files) > 256:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(read, range(len(files)), chunksize=256))
    else:
        for i in range(len(files)):
            read(i)
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


MIN_CLASSES = 2


def check_classes(names: list[str], where: str) -> None:
    """A classifier needs at least two classes: with one, every image is that class, the loss is zero
    from the start and there is nothing to visualize."""
    if len(names) < MIN_CLASSES:
        raise FeatvizError(f"{where}: the dataset needs at least two classes (one folder per class), "
                           f"found {len(names)}{': ' + names[0] if names else ''}")


def load_imagefolder(path: Path, train: bool, channels: int | None, size, test_fraction: float, seed: int,
                     resize: int | None = None) -> Split:
    path = Path(path)
    if not (path / "train").is_dir():
        if not (path / "test").is_dir():
            raise FeatvizError(f"data.path: {path} has neither a train/ nor a test/ folder (expected "
                               f"{path}/train/<class>/<image>, and for an imported network test/<class>/<image> is enough)")
        return _test_only(path, train, channels, size, resize)
    train_classes = _class_folders(path / "train")
    names = list(train_classes)
    check_classes(names, f"data.path: {path}/train")
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
    seen: dict = {}
    images = _read_images(files, channels, size, resize, seen)
    _note_mixed(path / ("train" if train or not has_test else "test"), seen, size, resize)
    return Split(images, torch.tensor(labels, dtype=torch.int64), names)


def _test_only(path: Path, train: bool, channels, size, resize) -> Split:
    """A folder with test/ only (an imported network needs no training images): the train split
    is empty, with the test split's classes."""
    test_classes = _class_folders(path / "test")
    names = list(test_classes)
    first = next(iter(test_classes.values()))[0]
    channels, size = _probe_format(first, channels, size)
    if train:
        return Split(torch.zeros((0, channels, *size), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), names)
    files = [f for c in names for f in test_classes[c]]
    labels = [i for i, c in enumerate(names) for _ in test_classes[c]]
    seen: dict = {}
    images = _read_images(files, channels, size, resize, seen)
    _note_mixed(path / "test", seen, size, resize)
    return Split(images, torch.tensor(labels, dtype=torch.int64), names)


def _note_mixed(where: Path, seen: dict, size: tuple[int, int], resize: int | None) -> None:
    """Images of mixed sizes or modes are all brought to one size and mode (featviz's decision: a
    network takes one input shape); the log says how many, so that it is not a surprise."""
    sizes = {s for s, _ in seen.values()}
    modes = {m for _, m in seen.values()}
    if len(sizes) > 1 and not resize:
        print(f"note: {where}: images of {len(sizes)} different sizes, all resized to {size[1]}x{size[0]} "
              f"(width x height; set data.image_size, or data.resize to keep the aspect ratio)", flush=True)
    if len(modes) > 1:
        print(f"note: {where}: images in {len(modes)} modes ({', '.join(sorted(modes))}), all converted to one "
              f"(set data.channels to choose gray or RGB)", flush=True)


# --------------------------------------------------------------------------- the cached form


def _subset(split: Split, limit: int | None, seed: int) -> Split:
    if not limit or limit >= len(split.labels):
        return split
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split.labels), generator=g)[:limit].sort().values
    return Split(split.images[idx].contiguous(), split.labels[idx].contiguous(), split.classes)


def load_split(data_cfg: dict, data_root: Path, train: bool) -> Split:
    """One split of the dataset a `{"dataset": NAME, **runs[i].data}` config names (the schema's
    defaults for the data keys it leaves out)."""
    name = data_cfg["dataset"]
    data_cfg = with_defaults("data", {k: v for k, v in data_cfg.items() if k != "dataset"})
    if name == "imagefolder":
        split = load_imagefolder(
            Path(data_cfg["path"]), train, data_cfg["channels"], data_cfg["image_size"],
            data_cfg["test_fraction"], data_cfg["split_seed"], data_cfg["resize"])
    elif name in BUILTINS:
        source = data_cfg["source"]
        split = load_builtin(name, Path(data_root), train, data_cfg["download"], Path(source) if source else None)
    else:
        raise FeatvizError(f"dataset: unknown dataset '{name}' (known: {', '.join(DATASET_NAMES)})")
    return _subset(split, data_cfg["limit_train" if train else "limit_test"], data_cfg["split_seed"])


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (float64 accumulation)."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def prepare(data_cfg: dict, data_root: Path, out_dir: Path) -> dict:
    """Load both splits, check them, and write the cached form: train.pt, test.pt, info.json (moved
    into out_dir together at the end: a failure leaves a previous preparation as it was). The
    config is checked against the schema by the caller (`featviz data`: config.check_sections)."""
    if not isinstance(data_cfg.get("dataset"), str):
        raise FeatvizError("dataset: not given (e.g. {\"dataset\": \"mnist\"})")
    train = load_split(data_cfg, data_root, train=True)
    test = load_split(data_cfg, data_root, train=False)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise FeatvizError(f"dataset: train and test images differ in shape "
                           f"({tuple(train.images.shape[1:])} vs {tuple(test.images.shape[1:])})")
    check_classes(train.classes, "dataset")
    held_out = data_cfg["dataset"] == "imagefolder" and not (Path(data_cfg["path"]) / "test").is_dir()
    test_only = data_cfg["dataset"] == "imagefolder" and not (Path(data_cfg["path"]) / "train").is_dir()
    for name, split in (("train", train), ("test", test)):
        if len(split.labels) == 0 and not (test_only and name == "train"):
            how = " after holding out data.test_fraction" if held_out else ""
            raise FeatvizError(f"dataset: the {name} split is empty{how}; give more images "
                               f"(or a test/ folder beside train/)")
    counts = torch.bincount(train.labels, minlength=len(train.classes)).tolist()
    lacking = [] if test_only else [c for c, n in zip(train.classes, counts) if n == 0]
    if lacking:
        raise FeatvizError(f"dataset: class '{lacking[0]}' has no training images"
                           f"{' after holding out data.test_fraction' if held_out else ''}"
                           f"{' within data.limit_train' if data_cfg.get('limit_train') else ''}: "
                           f"give it more images")
    single = [] if test_only else [c for c, n in zip(train.classes, counts) if n == 1]
    if single:  # allowed (a demo of a few images), but said: such a class can only be memorized
        print(f"note: {len(single)} class(es) have a single training image ({', '.join(single[:5])}): the network "
              f"can only memorize it, and its test accuracy says little", flush=True)
    untested = [c for c, n in zip(train.classes, torch.bincount(test.labels, minlength=len(train.classes)).tolist())
                if n == 0]
    if untested:
        print(f"note: {len(untested)} class(es) have no test images ({', '.join(untested[:5])}): their test "
              f"accuracy is not measured", flush=True)
    # the normalization of a network featviz trains; a folder with test/ only serves imported networks,
    # which bring their own (or take these, of the test images)
    mean, std = channel_stats(train.images if len(train.labels) else test.images)
    info = {
        "dataset": data_cfg["dataset"],
        "classes": train.classes,
        "input_shape": list(train.images.shape[1:]),
        "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)),
        "mean": mean,
        "std": std,
    }
    with staged_files(out_dir, ("train.pt", "test.pt", "info.json")) as tmp:
        save_torch(tmp / "train.pt", train.to_dict())
        save_torch(tmp / "test.pt", test.to_dict())
        write_json(tmp / "info.json", info)
    return info


def load_prepared(data_dir: Path, train: bool, mmap: bool = False) -> Split:
    """A prepared split. With `mmap` the images stay in the file and are paged in as they are
    read (a slice per batch), so a large test set is never held in memory at once."""
    path = Path(data_dir) / ("train.pt" if train else "test.pt")
    try:
        d = torch.load(path, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise FeatvizError(f"prepared dataset missing: {path} (run `featviz data` first)") from None
    return Split(d["images"], d["labels"], list(d["classes"]))


def load_info(data_dir: Path) -> dict:
    return read_json(Path(data_dir) / "info.json")
