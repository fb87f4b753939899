"""Cross-network comparison: where does the same feature appear in another network?

Two networks trained on the same dataset (a run and its transfer model, or two runs the config
names in `runs[i].match.with`) see the same budgeted subset of the test set (`images`, a seeded
sample). Forward hooks read each layer by name (as the probe does), and every unit of network A
is correlated (Pearson r) with every unit of network B: two conv channels over every image and
position of their maps (the finer aligned to the coarser grid, `align`, as Li et al. 2016,
"Convergent learning", correlate units), any other pair over the images by its per-image value (a
conv channel's spatial mean, a dense unit's value, a class logit). Spatial means alone would not
do for conv layers: a first conv layer's channel mean is nearly the image's mean brightness times
the filter's sum, so every such pair correlates (|r| ~ 0.999 on MNIST).

Layers are paired *every comparable layer of A against every comparable layer of B* (conv and
dense layers with each other, the classes with the classes): for each pair the share of A's units
whose best match in B has |r| >= `close`, and the mean best-match |r|. For each layer of A the
layer of B with the highest mean best-match |r| is its *best layer* (SVCCA's layer-match plot,
with single units instead of subspaces); within that pair the units are matched one to one
(`scipy.optimize.linear_sum_assignment` maximizing the summed |r|; rectangular when the widths
differ) and each unit's best match (any unit of B) is kept beside its one-to-one partner.
A negative r counts as a match: one unit is the other's mirror.

`featviz match` writes `<out>.json` (the scores) and `<out>.npz` (pictures): `bank` (the test
images any shown unit ranks in its top `TOP`, uint8), `top_a_<i>` / `top_b_<j>` (rows of the bank,
per unit, strongest first) for layer i of A and layer j of B, `pos_a_<i>` / `pos_b_<j>` (a conv
unit's strongest position in each of them, for receptive-field crops; the .json gives each conv
layer's `receptive_field`), and, where B is a run with ascent images for a best layer,
`ascent_b_<j>` (uint8) with `ascent_b_units_<j>`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError

TOP = 4  # test images kept per unit (the picture of a unit without an ascent image)
TRANSFER = "transfer"  # the name of the comparison with the run's own transfer model
MEASURE = ("Pearson r of two units' activations: two conv channels over every test image and position of their "
           "maps (the finer aligned to the coarser grid of the two); otherwise over the test images, a conv channel by its "
           "spatial mean, a dense unit by its value, a class by its logit")


# ---------------------------------------------------------------------------- config
def match_config(cfg: dict | None) -> dict:
    """runs[i].match with the schema's defaults filled (workflow/schemas/config.schema.yaml)."""
    from .checks import check_sections
    from .schema import with_defaults

    check_sections(match=dict(cfg or {}))
    return with_defaults("match", dict(cfg or {}))


def partners(runs, has_transfer: dict[str, bool]) -> dict[str, list[str]]:
    """The comparisons of each run (by run id): `transfer` (its own transfer model, where
    `match.transfer` is on and the run has one), then the ids of the runs its `match.with` names.
    A name that is no run, is the run itself, or is a run on another dataset is an error."""
    runs = list(runs)
    by_name = {r.name: r for r in runs}
    out = {}
    for i, run in enumerate(runs):
        cfg = match_config(getattr(run, "match", None))
        where = f"runs[{i}].match.with"
        others = [TRANSFER] if cfg["transfer"] and has_transfer.get(run.id) else []
        for name in cfg["with"]:
            other = by_name.get(name)
            if other is None:
                raise FeatvizError(f"{where}: no run named '{name}' (runs: {', '.join(by_name)})")
            if other.id == run.id:
                raise FeatvizError(f"{where}: '{name}' is this run itself; name another run")
            if other.data_key != run.data_key:
                raise FeatvizError(f"{where}: run '{name}' is on another dataset ({other.dataset} "
                                   f"{other.data_key}, this run {run.dataset} {run.data_key}); compare runs on the same data")
            if other.id not in others:
                others.append(other.id)
        out[run.id] = others
    return out


# ---------------------------------------------------------------------------- activations
def sample_indices(n: int, images: int, seed: int = 0) -> np.ndarray:
    """`images` test-set indices (all when the test set is smaller), a seeded sample, sorted."""
    if images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, images, replace=False))


class LayerActs:
    """One layer's activations over the image sample: `mean` (N, units) float64, each unit's value
    per image (a conv channel's spatial mean), and for a conv layer `maps` (N, units, h, w)
    float32, its maps average-pooled to at most MAP_FLOATS values in all."""

    def __init__(self, mean: np.ndarray, maps: torch.Tensor | None = None):
        self.mean, self.maps = np.asarray(mean, np.float64), maps


# the values of one conv layer's maps kept for the correlation (float32: 512 MiB)
MAP_FLOATS = 2 ** 27


def map_grid(n: int, units: int, h: int, w: int, budget: int = MAP_FLOATS) -> tuple[int, int]:
    """The grid a conv layer's maps are kept at: full resolution where n * units * h * w values fit
    the budget, else the largest h' x w' (same aspect) that does (at least 1 x 1)."""
    if n * units * h * w <= budget:
        return h, w
    f = (budget / max(1, n * units * h * w)) ** 0.5
    return max(1, int(h * f)), max(1, int(w * f))


@torch.no_grad()
def layer_activations(model, layers: list[dict], images: torch.Tensor, device, batch_size: int | None = None
                      ) -> list[LayerActs]:
    """Per layer its LayerActs over `images`. A module called more than once per forward pass is
    read at its first call, as `featviz units` lists it."""
    from .probe import module_of

    net = model.net
    net.eval()
    mods = [module_of(net, layer) for layer in layers]
    n = len(images)
    seen: set[int] = set()
    batch: dict[int, tuple] = {}

    def hook(j):
        def read(m, i, o):
            if j in seen:
                return
            seen.add(j)
            o = o.detach().float()
            if o.dim() == 4:
                grid = map_grid(n, o.shape[1], o.shape[2], o.shape[3])
                pooled = o if tuple(o.shape[2:]) == grid else torch.nn.functional.adaptive_avg_pool2d(o, grid)
                batch[j] = (o.flatten(2).mean(2).double().cpu(), pooled.cpu())
            else:
                batch[j] = (o.flatten(1).double().cpu(), None)
        return read

    means: list[list[torch.Tensor]] = [[] for _ in layers]
    maps: list[list[torch.Tensor]] = [[] for _ in layers]
    hooks = [m.register_forward_hook(hook(j)) for j, m in enumerate(mods)]
    try:
        bs = model.batch_for(batch_size)
        for s in range(0, n, bs):
            seen.clear()
            batch.clear()
            net(model.to_input(images[s:s + bs], device))
            for j in range(len(layers)):
                means[j].append(batch[j][0])
                if batch[j][1] is not None:
                    maps[j].append(batch[j][1])
    finally:
        for h in hooks:
            h.remove()
    return [LayerActs(torch.cat(mu).numpy() if mu else np.zeros((0, layer["units"])),
                      torch.cat(mp) if mp else None) for mu, mp, layer in zip(means, maps, layers)]


ROWS = 2 ** 16  # rows of a correlation's inputs taken to float64 at a time


def correlation(a, b) -> np.ndarray:
    """Pearson r (Ua, Ub) between the columns of a (M, Ua) and b (M, Ub) (arrays or tensors),
    from float64 sums taken ROWS rows at a time (the inputs may be large float32 maps); a
    constant unit (dead, or firing the same everywhere) correlates with nothing (0)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    m = a.shape[0]
    # centre on the first rows' means first: the float64 sums then do not cancel
    ca, cb = (x[:ROWS].double().mean(0) if m else torch.zeros(x.shape[1], dtype=torch.float64) for x in (a, b))
    sa, sb = torch.zeros_like(ca), torch.zeros_like(cb)
    qa, qb = torch.zeros_like(ca), torch.zeros_like(cb)
    sab = torch.zeros(len(ca), len(cb), dtype=torch.float64)
    for s in range(0, m, ROWS):
        xa, xb = a[s:s + ROWS].double() - ca, b[s:s + ROWS].double() - cb
        sa += xa.sum(0)
        sb += xb.sum(0)
        qa += xa.square().sum(0)
        qb += xb.square().sum(0)
        sab += xa.T @ xb
    m = max(1, m)
    ma, mb = sa / m, sb / m
    cov = sab / m - torch.outer(ma, mb)
    sda, sdb = (qa / m - ma.square()).clamp(min=0).sqrt(), (qb / m - mb.square()).clamp(min=0).sqrt()

    def ok(sd):
        return sd > 1e-7 * max(1e-30, float(sd.max()) if len(sd) else 1.0)

    r = cov / torch.outer(sda.clamp(min=1e-300), sdb.clamp(min=1e-300))
    r = torch.where(torch.outer(ok(sda), ok(sdb)), r, torch.zeros_like(r))
    return np.clip(r.numpy(), -1.0, 1.0)


def align(maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Maps (N, U, H, W) on a grid of at most H x W: average-pooled by the whole factor H // h (a
    layer after one more 2x pooling), then the centre cut out (a valid convolution's map is its
    padded twin's less a border)."""
    h, w = grid
    kh, kw = maps.shape[2] // h, maps.shape[3] // w
    if kh > 1 or kw > 1:
        maps = torch.nn.functional.avg_pool2d(maps, (kh, kw))
    top, left = (maps.shape[2] - h) // 2, (maps.shape[3] - w) // 2
    return maps[:, :, top:top + h, left:left + w]


def layer_correlation(x: LayerActs, y: LayerActs) -> tuple[np.ndarray, str]:
    """r between two layers' units and how it was measured: two conv layers over every image and
    position of their maps (the finer aligned to the coarser grid: where each channel fires, not
    only how much), anything else over the per-image values (a spatial mean is nearly the image's
    brightness times the filter's sum in a first conv layer: every such pair would correlate)."""
    if x.maps is None or y.maps is None:
        return correlation(x.mean, y.mean), "per image"
    grid = (min(x.maps.shape[2], y.maps.shape[2]), min(x.maps.shape[3], y.maps.shape[3]))

    def flat(t):
        return align(t, grid).permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    return correlation(flat(x.maps), flat(y.maps)), f"per image and position ({grid[0]}x{grid[1]})"


def comparable(kind_a: str, kind_b: str) -> bool:
    """Conv and dense layers are compared with each other, the classes with the classes."""
    return (kind_a == "class") == (kind_b == "class")


# ---------------------------------------------------------------------------- matching
def one_to_one(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matching maximizing the summed |r| (units of A, their partners in B)."""
    from scipy.optimize import linear_sum_assignment

    if r.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    rows, cols = linear_sum_assignment(-np.abs(r))
    return rows, cols


def pair_scores(r: np.ndarray, close: float) -> dict:
    """A layer pair's summary: mean best-match |r| of A's units and the share of them with a close
    match (best |r| >= close), and the same over the one-to-one matching."""
    if r.size == 0:
        return {"mean_best": None, "close_share": None, "mean_matched": None, "matched_close_share": None}
    best = np.abs(r).max(1)
    rows, cols = one_to_one(r)
    matched = np.abs(r[rows, cols])
    return {"mean_best": round(float(best.mean()), 4), "close_share": round(float((best >= close).mean()), 4),
            "mean_matched": round(float(matched.mean()), 4),
            "matched_close_share": round(float((matched >= close).mean()), 4)}


def unit_matches(r: np.ndarray) -> list[dict]:
    """Per unit of A (in unit order): its one-to-one partner in B with r (None where B is narrower
    and the unit is left out), and its best match in B with r."""
    rows, cols = one_to_one(r)
    partner = dict(zip(rows.tolist(), cols.tolist()))
    out = []
    for u in range(r.shape[0]):
        b = int(np.abs(r[u]).argmax()) if r.shape[1] else None
        p = partner.get(u)
        out.append({"unit": u, "partner": p, "r": None if p is None else round(float(r[u, p]), 4),
                    "best": b, "best_r": None if b is None else round(float(r[u, b]), 4)})
    return out


def compare_layers(acts_a: list, acts_b: list, layers_a: list[dict], layers_b: list[dict],
                   close: float) -> tuple[list[dict], list[dict]]:
    """Every comparable layer pair's scores, and per layer of A its best layer of B with the units
    matched (module docstring). acts_*: per layer a LayerActs, or an (N, units) array."""
    def wrap(acts):
        return [x if isinstance(x, LayerActs) else LayerActs(x) for x in acts]

    acts_a, acts_b = wrap(acts_a), wrap(acts_b)
    pairs, per_layer = [], []
    for i, (la, xa) in enumerate(zip(layers_a, acts_a)):
        best = None
        for j, (lb, xb) in enumerate(zip(layers_b, acts_b)):
            if not comparable(la["kind"], lb["kind"]):
                continue
            r, how = layer_correlation(xa, xb)
            s = {"a": la["name"], "b": lb["name"], "a_index": i, "b_index": j, "measured": how, **pair_scores(r, close)}
            pairs.append(s)
            if s["mean_best"] is not None and (best is None or s["mean_best"] > best[0]["mean_best"]):
                best = (s, j, r)
        entry = {"name": la["name"], "kind": la["kind"], "units": la["units"], "index": i, "best": None}
        if best is not None:
            s, j, r = best
            entry.update(best=layers_b[j]["name"], best_index=j, **{k: s[k] for k in
                         ("measured", "mean_best", "close_share", "mean_matched", "matched_close_share")},
                         matches=unit_matches(r))
        per_layer.append(entry)
    return pairs, per_layer


def top_rows(x: LayerActs, k: int = TOP) -> np.ndarray:
    """Per unit the positions (in the image subset) of its k strongest images, strongest first: a
    conv channel's by its strongest position (as the probe ranks them; by the spatial mean, a first
    layer's top images would be the brightest digits), other units' by their value."""
    acts = x.maps.flatten(2).amax(2).numpy() if x.maps is not None else x.mean
    k = min(k, len(acts))
    return np.argsort(-acts, axis=0, kind="stable")[:k].T


def top_positions(x: LayerActs, rows: np.ndarray, output_shape) -> np.ndarray | None:
    """A conv layer's strongest position (row-major in its output) in each of a unit's top images,
    for receptive-field crops (featviz.crops.top_crops); None where the maps were pooled (their
    positions are not the layer's) or the layer is not conv."""
    if x.maps is None or list(x.maps.shape[2:]) != list(output_shape or [])[-2:]:
        return None
    units = np.arange(rows.shape[0])[:, None]
    picked = x.maps.flatten(2)[torch.as_tensor(rows), torch.as_tensor(units)]  # (U, k, H*W)
    return picked.argmax(2).numpy().astype(np.int32)


# ---------------------------------------------------------------------------- the job
class Side:
    """One network of a comparison: its model, the layers compared and (a run) its results folder."""

    def __init__(self, label: str, kind: str, model, layers: list[dict], results: Path | None, run: str | None):
        self.label, self.kind, self.model, self.layers, self.results, self.run = label, kind, model, layers, results, run

    def receptive_fields(self) -> dict[str, dict]:
        """Each conv layer's receptive field (featviz.receptive_field.receptive_fields), by layer name."""
        from .receptive_field import receptive_fields

        convs = [la for la in self.layers if la["kind"] == "conv"]
        names = [la.get("module") or la["name"] for la in convs]
        if not convs:
            return {}
        rfs = receptive_fields(self.model.net, names, tuple(self.model.input_shape))
        return {la["name"]: rfs[n] for la, n in zip(convs, names)}

    def describe(self) -> dict:
        meta = self.model.meta or {}
        rfs = self.receptive_fields()
        return {"label": self.label, "kind": self.kind, "run": self.run, "model": meta.get("model"),
                "layers": [{"name": la["name"], "kind": la["kind"], "units": la["units"],
                            "output_shape": la.get("output_shape"), "receptive_field": rfs.get(la["name"])}
                           for la in self.layers]}


def run_side(results: Path, trust: bool, label: str | None = None) -> Side:
    """A run's side: its model and the layers of its units.json."""
    from .artifacts import read_units
    from .model import load_model

    results = Path(results)
    units = read_units(results / "units.json")
    model = load_model(results / "model", trust)
    return Side(label or results.name, "run", model, list(units["layers"]), results, results.name)


def model_side(model_dir: Path, trust: bool, label: str) -> Side:
    """A model folder without units.json (the transfer model): its default layers and classes."""
    from .model import load_model
    from .units import default_family, enumerate_units

    model = load_model(Path(model_dir), trust)
    units = enumerate_units(model.net, model.input_shape, model.classes, None,
                            family=default_family(model.meta.get("format")))
    return Side(label, "model", model, list(units["layers"]), None, None)


def ascent_images(results: Path, layer: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's ascent images of one layer (uint8, N C H W) and their units, or None without any."""
    from .artifacts import read_npz

    folder = Path(results) / "ascent" / layer
    files = sorted(folder.glob("*.npz"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1) if folder.is_dir() else []
    images, units = [], []
    for f in files:
        z = read_npz(f, "ascent chunk images", "delete it and rerun its ascent job", ("images", "units"))
        img = z["images"]
        if img.dtype != np.uint8:
            from .io import pack_images

            img = pack_images(img)
        images.append(img)
        units.append(np.asarray(z["units"], np.int64))
    if not images:
        return None
    return np.concatenate(images), np.concatenate(units)


def check_pair(a: Side, b: Side) -> None:
    if list(a.model.classes) != list(b.model.classes):
        raise FeatvizError(f"match: {b.label} has other classes than {a.label}: they are not on the same dataset")
    if tuple(a.model.input_shape) != tuple(b.model.input_shape):
        raise FeatvizError(f"match: {b.label} takes input {tuple(b.model.input_shape)}, {a.label} "
                           f"{tuple(a.model.input_shape)}: they are not on the same dataset")


def run_match(a: Side, b: Side, data_dir: Path, cfg: dict, out: Path, device: str = "auto", seed: int = 0) -> dict:
    """Compare side a with side b over the prepared test set in data_dir; write out (.json) and
    its .npz beside it (the .npz first: the .json marks the comparison complete)."""
    import time

    from .artifacts import check_prepared_file, read_prepared
    from .device import resolve_device
    from .io import write_json, write_npz

    cfg = match_config(cfg)
    check_pair(a, b)
    check_prepared_file(data_dir, "test")
    started = time.perf_counter()
    dev = resolve_device(device)
    test = read_prepared(Path(data_dir), "test", mmap=True)
    if len(test.images) == 0:
        raise FeatvizError(f"match: the test set in {data_dir} is empty")
    idx = sample_indices(len(test.images), int(cfg["images"]), seed)
    images = test.images[torch.as_tensor(idx)]
    acts_a, acts_b = (layer_activations(side.model.to(dev), side.layers, images, dev) for side in (a, b))
    forward_s = time.perf_counter() - started
    pairs, per_layer = compare_layers(acts_a, acts_b, a.layers, b.layers, float(cfg["close"]))

    # pictures: the top test images of A's units and of B's units in the best layers, once each
    arrays: dict[str, np.ndarray] = {}
    tops = {}

    def top(side, key, x, layer):
        tops[key] = top_rows(x)
        pos = top_positions(x, tops[key], layer.get("output_shape"))
        if pos is not None:
            arrays[key.replace("top_", "pos_")] = pos

    for i, xa in enumerate(acts_a):
        top(a, f"top_a_{i}", xa, a.layers[i])
    for j in sorted({e["best_index"] for e in per_layer if e["best"] is not None}):
        top(b, f"top_b_{j}", acts_b[j], b.layers[j])
        if b.results is not None:
            asc = ascent_images(b.results, b.layers[j]["name"])
            if asc is not None:
                arrays[f"ascent_b_{j}"], arrays[f"ascent_b_units_{j}"] = asc
    used = np.unique(np.concatenate([t.ravel() for t in tops.values()])) if tops else np.zeros(0, np.int64)
    arrays["bank"] = images[torch.as_tensor(used, dtype=torch.long)].numpy().astype(np.uint8)
    arrays["bank_index"] = idx[used].astype(np.int64)
    for key, t in tops.items():
        arrays[key] = np.searchsorted(used, t).astype(np.int32)
    record = {
        "a": a.describe(), "b": b.describe(), "images": len(idx), "test_images": len(test.images),
        "seed": seed, "close": float(cfg["close"]), "measure": MEASURE, "top": TOP,
        "pairing": "every conv/dense layer of A against every conv/dense layer of B, the classes with the classes; "
                   "per layer of A the layer of B with the highest mean best-match |r|",
        "pairs": pairs, "layers": per_layer,
        "forward_s": round(forward_s, 3), "wall_s": round(time.perf_counter() - started, 3), "device": str(dev),
    }
    out = Path(out)
    write_npz(out.with_suffix(".npz"), **arrays)
    write_json(out, record)
    return record


def summary_lines(record: dict) -> list[str]:
    """One line per layer of A: its best layer of B, the share of close matches and the mean best r."""
    lines = []
    for e in record["layers"]:
        if e["best"] is None:
            lines.append(f"{e['name']:>16}  no comparable layer")
            continue
        lines.append(f"{e['name']:>16} ~ {e['best']:<16} {100 * e['close_share']:5.1f}% of {e['units']} units with "
                     f"|r| >= {record['close']}, mean best |r| {e['mean_best']:.3f}")
    return lines
