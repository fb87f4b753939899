"""Probe a trained network with its test set: what each unit responds to in real data.

Forward hooks read every layer of `units.json` by name while the test set streams through in
batches (no per-sample Python). For every unit we keep:

* its activation per test image (the layer's output before any ReLU, spatial mean for conv
  channels: the same quantity the ascent stage maximizes), stored as float16;
* a dataset baseline: max, mean, and the fraction of images that activate it (conv: any position
  > 0, dense/class: the value > 0). A unit no test image activates is *dead*;
* its top-k test images (conv: ranked by the strongest position, with the receptive-field crop
  around it);
* near-duplicates (correlation of activations over every test image and position) and, per layer, a pruning curve:
  units zeroed by a hook in order of importance, test accuracy after each step.

Plus activation maps of a few sample inputs for every conv layer, saliency maps for those samples
(`featviz.attribution`) and the first conv layer's weights with their analytic optimal input.

Outputs (in `out_dir`): `probe.json` (everything small), `probe.npz` (arrays, keys `<kind>_<i>`
with i the layer's index in units.json), `pruning.png`, `saliency.png`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .attribution import saliency
from .data import load_prepared
from .errors import FeatvizError
from .io import write_json, write_npz
from .device import resolve_device
from .model import LoadedModel

PASSTHROUGH = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Dropout2d,
               nn.BatchNorm2d, nn.Identity)


def module_of(net: nn.Module, layer: dict) -> nn.Module:
    name = layer.get("module") or layer["name"]
    mods = dict(net.named_modules())
    if name not in mods:
        raise FeatvizError(f"probe: the model has no module '{name}' (from units.json); re-run `featviz units`")
    return mods[name]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(net: nn.Module, layer_name: str, input_shape) -> dict:
    """Size, stride (jump) and offset of one output position of a conv layer, in input pixels.

    Analytic along the module chain when every module before the layer is a conv, a pool or
    elementwise; otherwise measured with gradients (the bounding box of the input pixels that
    influence the centre position, with max pooling treated as average pooling)."""
    size, jump, start = 1, 1, 0.0
    for name, mod in net.named_modules():
        if mod is net or len(list(mod.children())):
            continue
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(mod.kernel_size)[0]
            s = _pair(mod.stride)[0] if mod.stride is not None else k
            p = mod.padding if not isinstance(mod.padding, str) else ((k - 1) // 2 if mod.padding == "same" else 0)
            p = _pair(p)[0]
            d = _pair(getattr(mod, "dilation", 1))[0]
            k_eff = d * (k - 1) + 1
            start += ((k_eff - 1) / 2 - p) * jump
            size += (k_eff - 1) * jump
            jump *= s
        elif not isinstance(mod, PASSTHROUGH):
            return _receptive_field_empirical(net, layer_name, input_shape)
        if name == layer_name:
            return {"size": int(size), "stride": int(jump), "offset": int(round(start - (size - 1) / 2)),
                    "method": "analytic"}
    return _receptive_field_empirical(net, layer_name, input_shape)


def _receptive_field_empirical(net, layer_name, input_shape) -> dict:
    mod = dict(net.named_modules())[layer_name]
    out = {}
    h = mod.register_forward_hook(lambda m, i, o: out.__setitem__("a", o))
    x = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    try:
        net(x)
    finally:
        h.remove()
    a = out["a"]
    hh, ww = a.shape[-2:]
    cy, cx = hh // 2, ww // 2
    g, = torch.autograd.grad(a[0, :, cy, cx].sum(), x)
    nz = torch.nonzero(g[0].abs().sum(0))
    if len(nz) == 0:
        return {"size": 1, "stride": 1, "offset": 0, "method": "empirical"}
    size = int((nz.max(0).values - nz.min(0).values).max()) + 1
    stride = max(1, round(input_shape[-1] / ww))
    offset = int(nz[:, 0].min()) - cy * stride
    return {"size": size, "stride": stride, "offset": offset, "method": "empirical"}


def _topk_merge(vals, idx, pos, new_vals, new_idx, new_pos, k):
    """Keep the k largest per unit: vals (U, k') merged with new (U, B)."""
    v = torch.cat([vals, new_vals], 1)
    i = torch.cat([idx, new_idx], 1)
    p = torch.cat([pos, new_pos], 1)
    top = torch.topk(v, min(k, v.shape[1]), dim=1)
    return top.values, torch.gather(i, 1, top.indices), torch.gather(p, 1, top.indices)


def _crops(images_u8: torch.Tensor, idx: torch.Tensor, pos: torch.Tensor, out_w: int, rf: dict) -> torch.Tensor:
    """Receptive-field crops (U, k, C, S, S) around the argmax positions, zero-padded at borders."""
    s, stride, off = rf["size"], rf["stride"], rf["offset"]
    u, k = idx.shape
    imgs = images_u8[idx.flatten()]  # (U*k, C, H, W)
    pad = s + abs(off)
    padded = torch.nn.functional.pad(imgs, (pad, pad, pad, pad))
    py, px = (pos.flatten() // out_w), (pos.flatten() % out_w)
    y0 = py * stride + off + pad
    x0 = px * stride + off + pad
    ar = torch.arange(s)
    rows = (y0[:, None] + ar[None]).clamp(0, padded.shape[-2] - 1)  # (n, s)
    cols = (x0[:, None] + ar[None]).clamp(0, padded.shape[-1] - 1)
    n = torch.arange(len(imgs))[:, None, None]
    out = padded.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]  # (n, s, s, C)
    return out.permute(0, 3, 1, 2).reshape(u, k, imgs.shape[1], s, s)


def _pick_samples(labels: torch.Tensor, n: int) -> list[int]:
    """The first test image of each class, in class order (then the next images): deterministic."""
    picked = []
    for c in torch.unique(labels).tolist()[:n]:
        picked.append(int(torch.nonzero(labels == c).flatten()[0]))
    for i in range(len(labels)):
        if len(picked) >= n:
            break
        if i not in picked:
            picked.append(i)
    return picked


def _correlation_from_moments(s1: torch.Tensor, s2: torch.Tensor, n: int) -> np.ndarray:
    """Pearson correlation between units from sums and the Gram matrix over n values each (for a
    conv channel: every position of every test image, so two channels correlate only when their
    maps do, not merely their spatial means). Constant units correlate with nothing."""
    mean = s1 / max(n, 1)
    cov = s2 / max(n, 1) - torch.outer(mean, mean)
    sd = cov.diagonal().clamp(min=0).sqrt()
    ok = sd > 1e-9 * max(1.0, float(sd.max()) if len(sd) else 1.0)
    c = torch.zeros_like(cov)
    c[ok.outer(ok)] = (cov / torch.outer(sd.clamp(min=1e-300), sd.clamp(min=1e-300)))[ok.outer(ok)]
    c = c.clamp(-1, 1).numpy()
    np.fill_diagonal(c, 0.0)
    return c


@torch.no_grad()
def _accuracy(model, images, labels, dev, module=None, removed=(), batch_size=1000) -> float:
    removed = list(removed)
    h = None
    if module is not None and removed:
        idx = torch.tensor(removed, device=dev)

        def zero(m, i, o):
            o = o.clone()
            o[:, idx] = 0
            return o
        h = module.register_forward_hook(zero)
    try:
        correct = 0
        for s in range(0, len(images), batch_size):
            out = model.net(model.to_input(images[s:s + batch_size], dev))
            correct += int((out.argmax(1).cpu() == labels[s:s + batch_size]).sum())
    finally:
        if h is not None:
            h.remove()
    return correct / max(1, len(images))


def prune_order(relu_mean: np.ndarray, corr: np.ndarray) -> list[int]:
    """Greedy: repeatedly remove the unit with the least importance, where importance is how much
    the unit fires (after ReLU) discounted by its best correlation with a unit still present. Dead
    units (importance 0) go first; of two duplicates only the first loses its importance."""
    left = list(range(len(relu_mean)))
    c = np.clip(np.asarray(corr, np.float64), 0.0, 1.0)
    order = []
    while left:
        sub = c[np.ix_(left, left)]
        best = sub.max(1) if len(left) > 1 else np.zeros(1)
        imp = relu_mean[left] * (1.0 - best)
        # ties (e.g. 0 for dead units and for exact duplicates): the weaker unit first, then by index
        pick = left[int(np.lexsort((np.arange(len(left)), relu_mean[left], imp))[0])]
        order.append(pick)
        left.remove(pick)
    return order


def pruning_curve(model, images, labels, dev, module, order: list[int], tolerance: float, points: int = 12) -> dict:
    """Accuracy with the first k units of `order` zeroed, on a grid of k, refined by bisection
    around the largest k whose accuracy stays within `tolerance` of the unpruned network's."""
    n = len(order)
    cache: dict[int, float] = {}

    def acc(k):
        if k not in cache:
            cache[k] = _accuracy(model, images, labels, dev, module, order[:k])
        return cache[k]

    base = acc(0)
    grid = sorted({int(round(x)) for x in np.linspace(0, n, min(points, n) + 1)})
    good = 0
    for k in grid:
        if acc(k) >= base - tolerance:
            good = k
        else:
            break
    lo, hi = good, next((k for k in grid if k > good), None)
    while hi is not None and hi - lo > 1:  # the first failing grid point lies above lo
        mid = (lo + hi) // 2
        if acc(mid) >= base - tolerance:
            lo = mid
        else:
            hi = mid
    ks = sorted(cache)
    return {"order": [int(u) for u in order], "removed": ks, "accuracy": [round(cache[k], 5) for k in ks],
            "base_accuracy": base, "tolerance": tolerance, "removable": int(lo), "units": n}


def probe(model: LoadedModel, units: dict, data_dir: Path, out_dir: Path, device: str = "auto",
          top_k: int = 9, samples: int = 4, corr_threshold: float = 0.9, prune_images: int = 2000,
          prune_tolerance: float = 0.005, batch_size: int = 500, bins: int = 30) -> dict:
    if top_k < 1 or samples < 1:
        raise FeatvizError("probe: top_k and samples must be at least 1")
    dev = resolve_device(device)
    model.to(dev)
    net = model.net
    net.eval()
    test = load_prepared(data_dir, train=False)
    images, labels = test.images, test.labels
    n = len(images)
    if n == 0:
        raise FeatvizError(f"probe: the test set in {data_dir} is empty")
    layers = units["layers"]
    mods = [module_of(net, layer) for layer in layers]
    captured: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, j=j: captured.__setitem__(j, o)) for j, m in enumerate(mods)]
    k = min(top_k, n)
    means = {j: [] for j in range(len(layers))}
    active = {j: torch.zeros(layer["units"], dtype=torch.int64) for j, layer in enumerate(layers)}
    best = {}
    for j, layer in enumerate(layers):
        u = layer["units"]
        best[j] = (torch.full((u, 0), -math.inf), torch.zeros((u, 0), dtype=torch.int64),
                   torch.zeros((u, 0), dtype=torch.int64))
    m1 = {j: torch.zeros(layer["units"], dtype=torch.float64) for j, layer in enumerate(layers)}
    m2 = {j: torch.zeros(layer["units"], layer["units"], dtype=torch.float64) for j, layer in enumerate(layers)}
    cnt = {j: 0 for j in range(len(layers))}
    correct = 0
    try:
        with torch.no_grad():
            for s in range(0, n, batch_size):
                out = net(model.to_input(images[s:s + batch_size], dev))
                correct += int((out.argmax(1).cpu() == labels[s:s + batch_size]).sum())
                for j, layer in enumerate(layers):
                    a = captured[j].detach().float().cpu()
                    b = a.shape[0]
                    if a.dim() == 4:
                        flat = a.flatten(2)  # (B, U, HW)
                        means[j].append(flat.mean(2))
                        mx, pos = flat.max(2)
                    else:
                        a = a.flatten(1)
                        means[j].append(a)
                        mx, pos = a, torch.zeros_like(a, dtype=torch.int64)
                    active[j] += (mx > 0).sum(0)
                    # for redundancy: moments of the unit values over every image and position
                    flat_all = (a.transpose(0, 1).flatten(1) if a.dim() == 4 else a.T).double()  # (U, B*HW)
                    m1[j] += flat_all.sum(1)
                    m2[j] += flat_all @ flat_all.T
                    cnt[j] += flat_all.shape[1]
                    ids = torch.arange(s, s + b).expand(mx.shape[1], b)
                    best[j] = _topk_merge(*best[j], mx.T, ids, pos.T, k)
                captured.clear()
        sample_idx = _pick_samples(labels, min(samples, n))
        sample_maps = {}
        with torch.no_grad():
            logits = net(model.to_input(images[sample_idx], dev))
            for j, layer in enumerate(layers):
                if layer["kind"] == "conv":
                    sample_maps[j] = captured[j].detach().float().cpu()
            captured.clear()
    finally:
        for h in hooks:
            h.remove()
    accuracy = correct / n
    arrays: dict[str, np.ndarray] = {}
    summary_layers = []
    prune_x, prune_y = images[:prune_images], labels[:prune_images]
    for j, layer in enumerate(layers):
        acts = torch.cat(means[j]).numpy()  # (N, U)
        vals, idx, pos = best[j]
        entry = {"index": j, "name": layer["name"], "kind": layer["kind"], "units": layer["units"]}
        per_unit = []
        amax, amean = acts.max(0), acts.mean(0)
        frac = active[j].numpy() / n
        hist_counts = np.zeros((layer["units"], bins), np.int32)
        hist_edges = np.zeros((layer["units"], bins + 1), np.float32)
        for u in range(layer["units"]):  # per unit, not per sample: cheap
            lo, hi = float(acts[:, u].min()), float(acts[:, u].max())
            if hi <= lo:
                hi = lo + 1e-6
            c, e = np.histogram(acts[:, u], bins=bins, range=(lo, hi))
            hist_counts[u], hist_edges[u] = c, e
        corr = _correlation_from_moments(m1[j], m2[j], cnt[j]) if layer["units"] > 1 else np.zeros((1, 1))
        partner = corr.argmax(1) if layer["units"] > 1 else np.zeros(1, int)
        max_corr = corr.max(1) if layer["units"] > 1 else np.zeros(1)
        pairs = [(int(a), int(b), round(float(corr[a, b]), 4))
                 for a, b in zip(*np.nonzero(np.triu(corr, 1) > corr_threshold))]
        pairs.sort(key=lambda t: -t[2])
        relu_mean = np.maximum(acts, 0).mean(0)
        for u in range(layer["units"]):
            per_unit.append({
                "unit": u, "max": round(float(amax[u]), 5), "mean": round(float(amean[u]), 5),
                "frac_active": round(float(frac[u]), 5), "dead": bool(active[j][u] == 0),
                "max_corr": round(float(max_corr[u]), 4), "partner": int(partner[u]),
                "top_index": idx[u].tolist(), "top_value": [round(float(v), 5) for v in vals[u]],
                "top_label": [int(labels[i]) for i in idx[u]],
            })
        entry.update(per_unit=per_unit, redundant_pairs=pairs, corr_threshold=corr_threshold,
                     dead=int(sum(p["dead"] for p in per_unit)))
        arrays[f"act_{j}"] = acts.astype(np.float16)
        arrays[f"hist_{j}"] = hist_counts
        arrays[f"edges_{j}"] = hist_edges
        arrays[f"topimg_{j}"] = images[idx.flatten()].reshape(layer["units"], k, *images.shape[1:]).numpy()
        if layer["kind"] == "conv":
            rf = receptive_field(net, layer["name"], tuple(model.input_shape))
            entry["receptive_field"] = rf
            out_w = layer["output_shape"][-1]
            arrays[f"crops_{j}"] = _crops(images, idx, pos, out_w, rf).numpy()
            entry["top_pos"] = pos.tolist()
            arrays[f"maps_{j}"] = sample_maps[j].numpy().astype(np.float16)
        if layer["kind"] in ("conv", "dense") and layer["units"] > 1:
            # importance: how much the unit fires (after ReLU), discounted by how well another unit
            # already carries the same signal; dead units (0) go first
            order = prune_order(relu_mean, corr)
            entry["pruning"] = pruning_curve(model, prune_x, prune_y, dev, mods[j], order, prune_tolerance)
        summary_layers.append(entry)
    # samples, saliency, first-layer weights
    arrays["sample_images"] = images[sample_idx].numpy()
    sal, sal_class = saliency(model, images[sample_idx], dev)
    arrays["saliency"] = sal.astype(np.float32)
    probs = torch.softmax(logits, 1).cpu()
    classes = units["classes"]
    samples_meta = [{"index": int(i), "true": classes[int(labels[i])], "predicted": classes[int(probs[r].argmax())],
                     "confidence": round(float(probs[r].max()), 4), "saliency_class": classes[int(sal_class[r])]}
                    for r, i in enumerate(sample_idx)]
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    first_layer = None
    if first is not None:
        w = first.weight.detach().float().cpu()
        arrays["conv1_weights"] = w.numpy()
        arrays["conv1_optimal"] = (w > 0).float().numpy()
        mean = torch.tensor(model.mean).view(1, -1, 1, 1)
        std = torch.tensor(model.std).view(1, -1, 1, 1)
        # the largest pre-activation any input in [0, 1] can reach at a position where the whole
        # kernel lies inside the image: 1 where the weight is positive, 0 where it is negative
        wn = w / std
        analytic = (wn.clamp(min=0) - (wn * mean)).flatten(1).sum(1)
        if first.bias is not None:
            analytic = analytic + first.bias.detach().cpu()
        first_layer = {"name": next(n for n, m in net.named_modules() if m is first),
                       "analytic_max": [round(float(v), 5) for v in analytic]}
    summary = {"n_test": n, "test_accuracy": accuracy, "top_k": k, "samples": samples_meta,
               "prune_images": int(len(prune_x)), "layers": summary_layers, "first_layer": first_layer,
               "device": str(dev)}
    out_dir = Path(out_dir)
    from .figures import pruning_png, saliency_png

    pruning_png(out_dir / "pruning.png", [e for e in summary_layers if "pruning" in e])
    saliency_png(out_dir / "saliency.png", arrays["sample_images"], arrays["saliency"],
                 [f"{m['true']} → {m['predicted']}" for m in samples_meta])
    write_npz(out_dir / "probe.npz", **arrays)
    write_json(out_dir / "probe.json", summary)
    return summary
