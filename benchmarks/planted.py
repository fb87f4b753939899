"""Planted features: small networks whose units have a KNOWN best input, saved as ordinary featviz
model folders (featviz-spec layers + a state_dict), so that `featviz.model.load_model` and the real
`featviz.ascent` recipes run on them unchanged. Used by benchmarks/bench_planted.py and
tests/test_planted.py (docs/ascent.md, "Planted features").

Three networks on 1x28x28 inputs (MNIST's normalization):

- conv: `conv1` (7x7, valid) holds chosen filters (Gabor 0 deg / 45 deg, checkerboard, a vertical
  stroke, an "L" corner), zero-mean and unit-norm, bias 0; relu1, a pool and a random fc follow.
- dense: `fc1` units are the correlation (dot product) of the image with a known 28x28 template,
  behind a ReLU (relu1), then a random fc.
- class: the class logits themselves are such template correlations.

Within the engine's [0, 1] pixel box, a linear unit <t, x> is maximized by x = 1 where t > 0 and 0
where t < 0. For the binary templates (letters T, X, O, L: +a on the stroke, -b elsewhere, zero
mean) that optimum IS the template up to an affine map, so the recovery ceiling is a Pearson
correlation of 1. For a non-binary pattern (Gabor, the smooth blob) the box optimum is sign(t):
`ceiling` gives its correlation with the pattern.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featviz.model import save_model
from featviz.model.spec import build

SIZE = 28
KERNEL = 7
MEAN, STD = [0.1307], [0.3081]


def _unit(p: np.ndarray) -> np.ndarray:
    """Zero mean, unit L2 norm."""
    p = np.asarray(p, np.float64)
    p = p - p.mean()
    return (p / np.linalg.norm(p)).astype(np.float32)


def _binary(mask: np.ndarray) -> np.ndarray:
    return _unit(np.where(mask, 1.0, 0.0))


def gabor(k: int, theta: float, wavelength: float = 4.0, sigma: float = 2.0) -> np.ndarray:
    r = np.arange(k) - (k - 1) / 2
    y, x = np.meshgrid(r, r, indexing="ij")
    u = x * np.cos(theta) + y * np.sin(theta)
    return np.exp(-(x * x + y * y) / (2 * sigma * sigma)) * np.cos(2 * np.pi * u / wavelength)


def conv_patterns(k: int = KERNEL) -> dict[str, np.ndarray]:
    """The planted conv1 filters, k x k each."""
    yy, xx = np.mgrid[0:k, 0:k]
    mid = k // 2
    return {
        "gabor-0": _unit(gabor(k, 0.0)),
        "gabor-45": _unit(gabor(k, np.pi / 4)),
        "checker": _binary(((yy // 2) + (xx // 2)) % 2 == 0),
        "v-stroke": _binary(np.abs(xx - mid) <= 1),
        "L-corner": _binary(((xx >= 1) & (xx <= 2) & (yy >= 1)) | ((yy >= k - 3) & (yy <= k - 2) & (xx >= 1))),
    }


def templates(size: int = SIZE) -> dict[str, np.ndarray]:
    """The planted 28x28 templates: four binary letters and one smooth blob."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    r = np.hypot(yy - c, xx - c)
    lo, hi = size // 5, size - size // 5
    stroke = 2
    t_mask = ((yy >= lo) & (yy < lo + 2 * stroke) & (xx >= lo) & (xx < hi)) | \
             ((np.abs(xx - c) <= stroke - 0.5) & (yy >= lo) & (yy < hi))
    x_mask = ((np.abs((yy - c) - (xx - c)) <= stroke - 0.5) | (np.abs((yy - c) + (xx - c)) <= stroke - 0.5)) & \
             (np.abs(yy - c) <= c - lo + 1)
    o_mask = np.abs(r - size * 0.3) <= stroke
    l_mask = ((xx >= lo) & (xx < lo + 2 * stroke) & (yy >= lo) & (yy < hi)) | \
             ((yy >= hi - 2 * stroke) & (yy < hi) & (xx >= lo) & (xx < hi))
    blob = np.exp(-((yy - c + 4) ** 2 + (xx - c - 3) ** 2) / (2 * 4.0 ** 2)) \
        - 0.6 * np.exp(-((yy - c - 5) ** 2 + (xx - c + 5) ** 2) / (2 * 5.0 ** 2))
    return {"T": _binary(t_mask), "X": _binary(x_mask), "O": _binary(o_mask), "L": _binary(l_mask),
            "blob": _unit(blob)}


def ceiling(pattern: np.ndarray) -> float:
    """Pearson correlation of the box-optimal input (sign of the pattern) with the pattern."""
    return pearson(np.sign(pattern), pattern)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def best_window(image: np.ndarray, pattern: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The highest Pearson correlation of any pattern-sized window of `image` (H, W) with `pattern`,
    and that window's top-left corner (y, x)."""
    k_h, k_w = pattern.shape
    h, w = image.shape
    best, where = -np.inf, (0, 0)
    for y in range(h - k_h + 1):
        for x in range(w - k_w + 1):
            r = pearson(image[y:y + k_h, x:x + k_w], pattern)
            if r > best:
                best, where = r, (y, x)
    return float(best), where


def recovery(image: np.ndarray, pattern: np.ndarray) -> float:
    """Recovery of a planted pattern by a visualization (C, H, W) in [0, 1] (the valid-range mapped
    image a report shows): whole-image Pearson correlation for a full-size template, the best
    window's for a smaller (conv filter) pattern."""
    img = np.asarray(image, np.float64).mean(0)
    if img.shape == pattern.shape:
        return pearson(img, pattern)
    return best_window(img, pattern)[0]


# ---------------------------------------------------------------------------------------------
# the networks, as featviz-spec model folders

def _layers(kind: str, n: int, n_classes: int) -> list[dict]:
    if kind == "conv":
        return [{"type": "conv", "out": n, "kernel": KERNEL, "padding": "valid", "stride": 1}, {"type": "relu"},
                {"type": "maxpool", "kernel": 2}, {"type": "flatten"}, {"type": "fc"}]
    if kind == "dense":
        return [{"type": "flatten"}, {"type": "fc", "out": n}, {"type": "relu"}, {"type": "fc"}]
    if kind == "class":
        return [{"type": "flatten"}, {"type": "fc"}]
    raise ValueError(kind)


def planted_patterns(kind: str) -> dict[str, np.ndarray]:
    return conv_patterns() if kind == "conv" else templates()


def build_planted(kind: str, out_dir: Path, seed: int = 0) -> dict:
    """Write a planted network (kind conv, dense or class) to `out_dir` (model.pt + model.json);
    returns {"layer": the layer whose units are planted, "kind": their unit kind, "patterns": name ->
    array in unit order}."""
    pats = planted_patterns(kind)
    names = list(pats)
    n = len(names)
    n_classes = n if kind == "class" else 10
    layers = _layers(kind, n, n_classes)
    torch.manual_seed(seed)
    net = build(layers, (1, SIZE, SIZE), n_classes)
    stack = torch.from_numpy(np.stack([pats[k] for k in names]))
    with torch.no_grad():
        first = net.conv1 if kind == "conv" else net.fc1
        first.weight.copy_(stack.view_as(first.weight))
        first.bias.zero_()
    classes = names if kind == "class" else [f"c{i}" for i in range(n_classes)]
    meta = {"format": "featviz-spec", "layers": layers, "classes": classes, "input_shape": [1, SIZE, SIZE],
            "mean": MEAN, "std": STD, "run": f"planted-{kind}", "dataset": "planted",
            "model": {"layers": layers}, "seed": seed}
    save_model(Path(out_dir), net, meta)
    layer = {"conv": "conv1", "dense": "fc1", "class": None}[kind]
    return {"layer": layer, "kind": "class" if kind == "class" else kind, "names": names,
            "patterns": [pats[k] for k in names]}


def transform_ceiling(recipe: dict, pattern: np.ndarray, draws: int = 256) -> float | None:
    """What a recipe's random transforms leave of a full-size planted template: the expected
    objective E_A[<t, A(x)>] over the recipe's transforms A is the linear unit <E_A[A^T t], x>, whose
    box optimum is sign(E_A[A^T t]); returns that optimum's Pearson correlation with t (1.0 without
    transforms). Estimated from `draws` transform draws of featviz's own transform pipeline. None for
    MACO's crops (they read a canvas larger than the picture: no box optimum of the picture)."""
    from featviz.ascent import transforms

    tf = transforms.build(recipe, pattern.shape)
    if isinstance(tf, transforms.Crops):
        return None
    if not tf:
        return ceiling(pattern)
    t = torch.from_numpy(np.asarray(pattern, np.float32))[None, None].repeat(draws, 1, 1, 1)
    x = torch.full_like(t, 0.5, requires_grad=True)
    gens = [torch.Generator().manual_seed(i) for i in range(draws)]
    (g,) = torch.autograd.grad((tf(x, gens) * t).sum(), x)
    return pearson(np.sign(g.mean(0)[0].numpy()), pattern)


def magnitude_ceiling(pattern: np.ndarray, magnitude: np.ndarray) -> float:
    """MACO's bound on a full-size planted template: its image has the fixed Fourier `magnitude`
    (C, H, W // 2 + 1, resampled to the pattern's size) whatever its phase, so the closest it comes to
    the template t is (about) the image with t's own phase: irfft2(|M| exp(i angle(rfft2(t)))),
    standardized and through MACO's sigmoid; returns its Pearson correlation with t."""
    from featviz.ascent.spectrum import resample

    h, w = pattern.shape
    m = resample(magnitude, h, w).numpy()[0].astype(np.float64)
    x = np.fft.irfft2(m * np.exp(1j * np.angle(np.fft.rfft2(pattern))), s=(h, w))
    x = (x - x.mean()) / (x.std() + 1e-5)
    return pearson(1.0 / (1.0 + np.exp(-x)), pattern)


# ---------------------------------------------------------------------------------------------
# two paths to one unit (docs/ascent.md, "How far to trust a picture")

PATHS_SIZE = 20
PATHS_CLASSES = ["vertical", "horizontal"]
PATHS_GAIN = 4.0  # weight of the colour path into the units that can be reached through it


def paths_filters(k: int = 5) -> np.ndarray:
    """conv1 of the two-paths net, (7, 3, k, k): five grey detectors (a vertical, a horizontal and
    two diagonal strokes, a centre-surround blob: the same kernel on R, G and B) and two colour
    opponents (red - green, blue - yellow: a k x k box). On a grey image (R = G = B) the colour
    opponents are exactly zero: a path no natural image of the planted data set uses."""
    yy, xx = np.mgrid[0:k, 0:k]
    m = k // 2
    grey = [_binary(np.abs(xx - m) <= 0), _binary(np.abs(yy - m) <= 0), _binary(xx == yy),
            _binary(xx + yy == k - 1), _unit(np.exp(-((xx - m) ** 2 + (yy - m) ** 2) / 2.0))]
    box = np.ones((k, k), np.float32) / k
    colour = [np.stack([box, -box, 0 * box]), np.stack([-box / 2, -box / 2, box])]
    return np.stack([np.stack([f, f, f]) / np.sqrt(3) for f in grey] + colour).astype(np.float32)


def paths_weights(gain: float = PATHS_GAIN) -> np.ndarray:
    """conv2 of the two-paths net (6 units x 7 conv1 channels, 1 x 1): every unit reads a grey
    stroke, the blob and a diagonal. Units 0 and 2 also read a colour opponent with `gain`: a
    picture can reach them through colour, a path natural images never use. Units 1 and 3 are
    inhibited by both: a picture cannot. Units 4 and 5 ignore colour: a picture may be coloured
    (the colour units below then fire), but it reaches them through grey strokes only."""
    w = np.zeros((6, 7), np.float32)
    w[0, [0, 4, 2, 5]] = [1.0, 0.4, 0.3, gain]
    w[1, [0, 4, 3]] = [1.0, 0.4, 0.3]
    w[1, 5:] = -gain
    w[2, [1, 4, 3, 6]] = [1.0, 0.4, 0.3, gain]
    w[3, [1, 4, 2]] = [1.0, 0.4, 0.3]
    w[3, 5:] = -gain
    w[4, [2, 4, 0]] = [1.0, 0.4, 0.3]
    w[5, [3, 4, 1]] = [1.0, 0.4, 0.3]
    return w


PATHS_UNNATURAL = [True, False, True, False, False, False]  # per conv2 unit: can a picture reach it through colour


def paths_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n grey 3 x 20 x 20 uint8 images of one to three short blurred strokes (vertical, horizontal
    or diagonal) on smooth noise; the label: whether the first stroke is vertical (0) or
    horizontal (1)."""
    from scipy.ndimage import gaussian_filter

    g = np.random.default_rng(seed)
    s = PATHS_SIZE
    yy, xx = np.mgrid[0:s, 0:s]
    x = np.zeros((n, s, s))
    labels = g.integers(0, 2, n)
    for i in range(n):
        for b in range(g.integers(1, 4)):
            o = labels[i] if b == 0 else g.integers(0, 4)
            cy, cx = g.integers(4, s - 4, size=2)
            dy, dx = yy - cy, xx - cx
            across, along = [(dx, dy), (dy, dx), (dx - dy, dx + dy), (dx + dy, dx - dy)][o]
            x[i] += (np.abs(across) <= (0.5 if o < 2 else 0.8)) & (np.abs(along) <= g.integers(3, 7))
        x[i] = gaussian_filter(np.clip(x[i], 0, 1), 0.6) * (0.6 + 0.4 * g.random()) \
            + gaussian_filter(g.random((s, s)), 2) * 0.3
    x = np.repeat(np.clip(x * 255, 0, 255)[:, None], 3, 1).astype(np.uint8)
    return torch.from_numpy(x), torch.from_numpy(labels)


def build_planted_paths(out_dir: Path, data_dir: Path, n_test: int = 400, gain: float = PATHS_GAIN) -> dict:
    """The two-paths net (conv1: paths_filters, relu, conv2: paths_weights, relu, global average,
    fc: the vertical and horizontal classes read units 1 and 3) as a model folder in `out_dir`, and
    its grey data set as a prepared data set in `data_dir` (train.pt, test.pt). Returns {"layer":
    "conv2", "unnatural": PATHS_UNNATURAL}."""
    layers = [{"type": "conv", "out": 7, "kernel": 5, "padding": "same"}, {"type": "relu"},
              {"type": "conv", "out": 6, "kernel": 1, "padding": "same"}, {"type": "relu"},
              {"type": "globalavgpool"}, {"type": "fc"}]
    xtr, ytr = paths_images(100, 0)
    xte, yte = paths_images(n_test, 1)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"images": xtr, "labels": ytr, "classes": PATHS_CLASSES}, data_dir / "train.pt")
    torch.save({"images": xte, "labels": yte, "classes": PATHS_CLASSES}, data_dir / "test.pt")
    m, sd = float(xtr.float().mean() / 255), float(xtr.float().std() / 255)
    net = build(layers, (3, PATHS_SIZE, PATHS_SIZE), len(PATHS_CLASSES))
    with torch.no_grad():
        net.conv1.weight.copy_(torch.from_numpy(paths_filters()))
        net.conv2.weight.copy_(torch.from_numpy(paths_weights(gain))[:, :, None, None])
        fc = torch.zeros(2, 6)
        fc[0, 1] = fc[1, 3] = 1.0
        net.fc1.weight.copy_(fc)
        for mod in (net.conv1, net.conv2, net.fc1):
            mod.bias.zero_()
    meta = {"format": "featviz-spec", "layers": layers, "classes": PATHS_CLASSES,
            "input_shape": [3, PATHS_SIZE, PATHS_SIZE], "mean": [m] * 3, "std": [sd] * 3, "run": "planted-paths",
            "dataset": "planted", "model": {"layers": layers}, "seed": 0}
    save_model(Path(out_dir), net, meta)
    return {"layer": "conv2", "unnatural": list(PATHS_UNNATURAL)}
