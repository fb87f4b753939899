"""Probe a trained network with its test set: what each unit responds to in real data.

Forward hooks read every layer of `units.json` by name while the test set streams through in
batches, once (featviz.probe_pass: no per-sample Python; the test set is memory-mapped and paged in
a batch at a time, and each hook reduces its layer's output to per-unit statistics at once, so
memory does not grow with the number of test images). The pass runs in the mode of
`probe.precision` (bf16 autocast where native, channels_last where the network takes it;
featviz.inference) and also yields the test predictions, their top-1 made fp32's
(featviz.inference.settle), that `featviz evaluate` reads instead of a pass of its own. For every
unit we keep:

* a dataset baseline over every test image: max and mean of its activation (the layer's output
  before any ReLU, spatial mean for conv channels: the same quantity the ascent stage maximizes),
  and the fraction of images that activate it (conv: any position > 0, dense/class: the value
  > 0). A unit no test image activates is *dead*;
* its activation per image and a histogram of it, over the first `histogram_images` test images;
* its top-k test images (conv: ranked by the strongest position). The images themselves are
  stored once in a bank shared by every unit; `featviz.crops.top_crops` cuts the receptive-field
  crops around the argmax positions from it when they are shown;
* its receptive field per conv layer (featviz.receptive_field);
* near-duplicates (correlation of activations over every test image and position) and, per layer
  while a budget of forward passes lasts, a pruning curve (featviz.pruning): units zeroed by a hook
  in order of importance, test accuracy after each step.

Plus activation maps of a few sample inputs for every conv layer, saliency maps for those samples
(`featviz.attribution`) and the first conv layer's weights with their analytic optimal input.

Outputs (in `out_dir`): `probe.json` (everything small), `probe.npz` (arrays; their keys are
featviz.results' contract: `layer_key(kind, i)` per layer i of units.json, `BANK_INDEX`,
`SAMPLE_IMAGES`...), `bank.npz` (the top-k images at full resolution, for the report's crops;
archives leave it out), `predictions.npz` (the test predictions), `pruning.png`, `saliency.png`.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .ascent.fold import folded_batchnorms
from .attribution import saliency
from .artifacts import read_prepared
from .device import resolve_device, resolve_precision
from .errors import FeatvizError
from .inference import choose_mode, release, settle, top_predictions
from .inplace import in_place
from .io import Chunks
from .model import LoadedModel
from .probe_pass import Stats, activation_pass
from .probe_pass import batch_size as pass_batch
from .pruning import PruneBudget
from .receptive_field import receptive_fields
from .results import BANK_INDEX, CONV1_OPTIMAL, CONV1_WEIGHTS, SALIENCY, SAMPLE_IMAGES, Predictions, layer_key, \
    write_probe

# the images of the top-k bank read from the test set at a time, in bytes
BANK_BYTES = 2 ** 26
SAMPLE_MAPS_KEPT = 64  # activation maps per conv layer and sample image kept for the run page
SAMPLE_MAP_PX = 28  # larger sample maps are averaged down to about this side: the size the run page shows


def module_of(net: nn.Module, layer: dict) -> nn.Module:
    """The module whose output is the layer (the network itself for class logits that no module
    returns: SqueezeNet's are `torch.flatten` of its classifier's output)."""
    if layer.get("kind") == "class" and not layer.get("module"):
        return net
    name = layer.get("module") or layer["name"]
    mods = dict(net.named_modules())
    if name not in mods:
        raise FeatvizError(f"probe: the model has no module '{name}' (from units.json); re-run `featviz units`")
    return mods[name]


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


def _check_options(top_k, samples, prune_images, histogram_images, prune_passes) -> None:
    for key, v in (("top_k", top_k), ("samples", samples), ("prune_images", prune_images),
                   ("histogram_images", histogram_images)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise FeatvizError(f"probe: {key} must be a positive integer, got {v!r}")
    if prune_passes is not None and (not isinstance(prune_passes, int) or isinstance(prune_passes, bool)
                                     or prune_passes < 0):
        raise FeatvizError(f"probe: prune_passes must be an integer of at least 0, got {prune_passes!r}")


def _bank(stats: list[Stats], images) -> tuple[torch.Tensor, Chunks]:
    """The bank: every test image in some unit's top-k, once, in test-set order (written to
    bank.npz a few images at a time: it can hold most of a large test set), and its indices."""
    bank_index = torch.unique(torch.cat([st.top[1].flatten() for st in stats]))  # sorted
    step = max(1, BANK_BYTES // max(1, math.prod(images.shape[1:])))
    pieces = (images[bank_index[i:i + step]].numpy() for i in range(0, len(bank_index), step))
    return bank_index, Chunks((len(bank_index), *images.shape[1:]), np.uint8, pieces)


def _map_bytes(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Activation maps (S, U, h, w) as uint8, each scaled to its own min..max (as the report draws
    them), and those ranges (S, U, 2) float32: value = lo + byte / 255 * (hi - lo). Only what the run
    page can show is kept: the first SAMPLE_MAPS_KEPT units, averaged down to about SAMPLE_MAP_PX."""
    maps = maps[:, :SAMPLE_MAPS_KEPT].float()
    f = -(-max(maps.shape[-2:]) // SAMPLE_MAP_PX)
    if f > 1:
        maps = torch.nn.functional.avg_pool2d(maps, f, ceil_mode=True)
    lo, hi = maps.amin((-2, -1), keepdim=True), maps.amax((-2, -1), keepdim=True)
    q = ((maps - lo) / (hi - lo).clamp(min=1e-12) * 255).round().clamp(0, 255).to(torch.uint8)
    return q.numpy(), torch.cat([lo, hi], -1)[..., 0, :].float().numpy()


def _histograms(acts: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, a histogram of its activations (hist_n, U) over `bins` bins of its own range."""
    nu = acts.shape[1]
    counts = np.zeros((nu, bins), np.int32)
    edges = np.zeros((nu, bins + 1), np.float32)
    for u, col in enumerate(np.ascontiguousarray(acts.T)):  # per unit, not per sample: cheap
        lo, hi = float(col.min()), float(col.max())
        if hi <= lo:
            hi = lo + 1e-6
        counts[u], edges[u] = np.histogram(col, bins=bins, range=(lo, hi))
    return counts, edges


def _per_unit(st: Stats, n: int, labels, corr: np.ndarray) -> list[dict]:
    """Each unit's dataset baseline, its best-correlated partner and its top-k test images."""
    nu = len(st.max)
    vals, idx, _ = st.top
    amax, amean, frac = st.max.numpy(), (st.sum / n).numpy(), st.active.numpy() / n
    partner = corr.argmax(1) if nu > 1 else np.zeros(1, int)
    max_corr = corr.max(1) if nu > 1 else np.zeros(1)
    top_labels = labels[idx.flatten()].view(idx.shape).tolist()
    return [{
        "unit": u, "max": round(float(amax[u]), 5), "mean": round(float(amean[u]), 5),
        "frac_active": round(float(frac[u]), 5), "dead": bool(st.active[u] == 0),
        "max_corr": round(float(max_corr[u]), 4), "partner": int(partner[u]),
        "top_index": idx[u].tolist(), "top_value": [round(float(v), 5) for v in vals[u]],
        "top_label": top_labels[u],
    } for u in range(nu)]


def _redundant_pairs(corr: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    pairs = [(int(a), int(b), round(float(corr[a, b]), 4))
             for a, b in zip(*np.nonzero(np.triu(corr, 1) > threshold))]
    pairs.sort(key=lambda t: -t[2])
    return pairs


def _layer_analysis(j: int, layer: dict, st: Stats, n: int, labels, bank_index, corr_threshold: float,
                    bins: int) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """Layer j's summary entry and arrays from its running statistics, plus what pruning needs
    (the units' mean after ReLU and their correlation)."""
    nu = layer["units"]
    acts, st.acts = st.acts, None  # (hist_n, U)
    hist_counts, hist_edges = _histograms(acts, bins)
    corr = _correlation_from_moments(st.m1, st.m2, st.cnt) if nu > 1 else np.zeros((1, 1))
    st.m2 = None  # free the Gram matrix
    per_unit = _per_unit(st, n, labels, corr)
    entry = {"index": j, "name": layer["name"], "kind": layer["kind"], "units": nu, "per_unit": per_unit,
             "redundant_pairs": _redundant_pairs(corr, corr_threshold), "corr_threshold": corr_threshold,
             "dead": int(sum(p["dead"] for p in per_unit))}
    arrays = {layer_key("act", j): acts.astype(np.float16), layer_key("hist", j): hist_counts,
              layer_key("edges", j): hist_edges,
              layer_key("topk", j): torch.searchsorted(bank_index, st.top[1]).numpy().astype(np.int32)}
    return entry, arrays, (st.relu_sum / n).numpy(), corr


def _samples_meta(probs: torch.Tensor, labels, sample_idx: list[int], sal_class, classes: list[str]) -> list[dict]:
    return [{"index": int(i), "true": classes[int(labels[i])], "predicted": classes[int(probs[r].argmax())],
             "confidence": round(float(probs[r].max()), 4), "saliency_class": classes[int(sal_class[r])]}
            for r, i in enumerate(sample_idx)]


def _first_conv(model: LoadedModel) -> tuple[dict, dict | None]:
    """The first conv layer's weights and their analytic optimal input (arrays), with the layer's
    name and the largest pre-activation an input in [0, 1] can reach per unit (None: no conv)."""
    net = model.net
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        return {}, None
    w = first.weight.detach().float().cpu()
    arrays = {CONV1_WEIGHTS: w.numpy(), CONV1_OPTIMAL: (w > 0).float().numpy()}
    mean = torch.tensor(model.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.std).view(1, -1, 1, 1)
    # the largest pre-activation any input in [0, 1] can reach at a position where the whole
    # kernel lies inside the image: 1 where the weight is positive, 0 where it is negative
    wn = w / std
    analytic = (wn.clamp(min=0) - (wn * mean)).flatten(1).sum(1)
    if first.bias is not None:
        analytic = analytic + first.bias.detach().cpu()
    return arrays, {"name": next(n for n, m in net.named_modules() if m is first),
                    "analytic_max": [round(float(v), 5) for v in analytic]}


def probe(model: LoadedModel, units: dict, data_dir: Path, out_dir: Path, device: str = "auto", *,
          top_k: int, samples: int, corr_threshold: float = 0.9, prune_images: int | None = None,
          prune_tolerance: float = 0.005, histogram_images: int | None = None, prune_passes: int | None = None,
          prune_precision: str = "fp32", precision: str = "fp32", batch_size: int = 500, bins: int = 30) -> dict:
    """Probe `model` with the prepared test set in `data_dir` (module docstring): one activation
    pass, then small analyses per layer. None for prune_images / histogram_images: every test
    image; for prune_passes: no budget. precision (the activation pass's) and prune_precision:
    `auto`, `fp32` or `bf16` (the workflow passes the config's values,
    workflow/schemas/config.schema.yaml `probe`)."""
    _check_options(top_k, samples, prune_images, histogram_images, prune_passes)
    dev = resolve_device(device)
    prune_dtype = resolve_precision(prune_precision, dev, "probe.prune_precision")
    resolve_precision(precision, dev, "probe.precision")  # a wrong value stops here, before any compute
    model.to(dev)
    net = model.net
    net.eval()
    test = read_prepared(data_dir, "test", mmap=True)  # checked; images paged in batch by batch
    images, labels = test.images, model.output_labels(test.labels)
    n = len(images)
    layers = units["layers"]
    mods = [module_of(net, layer) for layer in layers]
    k = min(top_k, n)
    hist_n = min(histogram_images or n, n)
    bs = pass_batch(layers, tuple(images.shape[1:]), batch_size)
    mode = choose_mode(model, dev, precision, "probe.precision")  # the network in its memory format until release
    try:
        t0 = time.perf_counter()
        # its hooks hold no output (the receptive fields' gradients below need them out of place), and
        # read no conv that a batch norm follows unless that conv is a layer of units.json
        with in_place(net), folded_batchnorms(net, read=mods):
            seen = activation_pass(model, mods, layers, images, labels, dev, bs, k, hist_n, samples, mode)
            t1 = time.perf_counter()
            settled = settle(model, images, seen.logits, dev, mode, bs)
        timing = {"activation_pass_s": round(t1 - t0, 3), "settle_s": round(time.perf_counter() - t1, 3)}
        bank_index, bank = _bank(seen.stats, images)
        arrays = {BANK_INDEX: bank_index.numpy().astype(np.int64)}
        conv_names = [layer.get("module") or layer["name"] for layer in layers if layer["kind"] == "conv"]
        rfs = receptive_fields(net, conv_names, tuple(model.input_shape))
        n_prune = min(prune_images or n, n)
        pruner = PruneBudget(model, images[:n_prune], labels[:n_prune], dev, prune_passes, prune_tolerance, bs,
                              prune_dtype, mode, seen.logits[:n_prune].argmax(1) == labels[:n_prune])
        summary_layers = []
        for j, layer in enumerate(layers):
            entry, layer_arrays, relu_mean, corr = _layer_analysis(j, layer, seen.stats[j], n, labels, bank_index,
                                                                   corr_threshold, bins)
            arrays.update(layer_arrays)
            if layer["kind"] == "conv":
                entry["receptive_field"] = rfs[layer.get("module") or layer["name"]]
                entry["top_pos"] = seen.stats[j].top[2].tolist()
                arrays[layer_key("maps", j)], arrays[layer_key("maps_range", j)] = _map_bytes(seen.sample_maps[j])
            if layer["kind"] in ("conv", "dense") and layer["units"] > 1:
                entry.update(pruner.curve(mods[j], layer["units"], relu_mean, corr))
            summary_layers.append(entry)
    finally:
        release(model)
    # samples, saliency, first-layer weights
    arrays[SAMPLE_IMAGES] = images[seen.sample_idx].numpy()
    sal, sal_class = saliency(model, images[seen.sample_idx], dev)
    arrays[SALIENCY] = sal.astype(np.float16)  # in [0, 1], drawn with a colour map: float16 is plenty
    samples_meta = _samples_meta(torch.softmax(settled.logits[seen.sample_idx], 1), labels, seen.sample_idx,
                                 sal_class, units["classes"])
    conv_arrays, first_layer = _first_conv(model)
    arrays.update(conv_arrays)
    top_class, top_prob = top_predictions(settled.logits)
    # the test set's own labels: what evaluate checks them against
    record = {**settled.record, "pass": "probe"}
    predictions = Predictions(top_class.numpy(), top_prob.numpy(), test.labels.numpy(), settled.fp32.numpy(), record)
    accuracy = float((settled.logits.argmax(1) == labels).float().mean())
    summary = {"n_test": n, "test_accuracy": accuracy, "top_k": k, "samples": samples_meta,
               "prune_images": int(n_prune), "prune_passes": {"budget": prune_passes, "used": pruner.passes},
               "prune_mode": pruner.finish(), "inference": record, "timing": timing,
               "histogram_images": int(hist_n), "batch_size": bs, "layers": summary_layers,
               "first_layer": first_layer, "device": str(dev)}
    _write_outputs(Path(out_dir), summary, arrays, bank, predictions, summary_layers, samples_meta)
    return summary


def _write_outputs(out_dir: Path, summary: dict, arrays: dict, bank: Chunks, predictions: Predictions,
                   summary_layers: list[dict], samples_meta: list[dict]) -> None:
    from .figures import pruning_png, saliency_png

    pruning_png(out_dir / "pruning.png", [e for e in summary_layers if e.get("pruning")])
    saliency_png(out_dir / "saliency.png", arrays[SAMPLE_IMAGES], arrays[SALIENCY],
                 [f"{m['true']} → {m['predicted']}" for m in samples_meta])
    write_probe(out_dir, summary, arrays, bank, predictions)
