"""The probe's one pass over the test set: every layer of units.json reduced to running per-unit
statistics while the test images stream through the network, and the network's outputs kept.

Forward hooks read each layer by name (a module called more than once per forward is read at its
first call, as `featviz units` does) and reduce its output at once, so memory does not grow with the
number of test images. The pass runs in one featviz.inference `Mode` (bf16 autocast where native,
channels_last where the network takes it): the statistics are those of the outputs the network
computes in it, and the outputs (`_Pass.logits`) are those the test predictions are settled from
(featviz.inference.settle), so that evaluation needs no pass of its own.

Statistics are read in the layout the mode leaves a layer's output in: (images, positions, units),
a view of a channels_last conv output, and in its dtype, as matrix products (which run at the
machine's pace where elementwise reductions over positions do not): each unit's values are summed
per image by a batched product with ones, and their moments over every image and position (for
the correlations) are a Gram matrix per batch; both accumulate in fp32 inside the product and are
summed across batches in float64. A wide layer's Gram matrix reads a spread sample of its
positions (about CORR_VALUES values per image: 6-7 of the 49 positions of a 1280-channel layer at
7x7 over 10,000 test images, every position of the quick MNIST net's layers but conv1's), which
turns with each batch so that every position is read over the test set; the sample keeps at least
CORR_ROWS values per unit pair over the set (every position of a 1280-channel layer at 7x7 below
670 images). The correlations are estimates over images x sampled positions, at a fraction of the
product's cost, which grows with the square of the units. Under bf16 each product's
result is rounded to bf16 (about 0.4% of a batch's sum, the rounding of the activations
themselves), and those errors average out over the batches. Where a unit's mean in the first
batch exceeds its standard deviation, the layer's values are shifted by their means first, so
that the moments do not cancel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .inference import Mode, power_of_two_floor
from .model import LoadedModel

# a layer's output, in values, that one batch may hold, rounded down to a power of two of images (sets
# the batch size of big inputs: 32 images for MobileNetV2 at 224 px, where batch 32 ran 1.3x the
# images per CPU-second of batch 41 and of 64 on one thread; bench_inference, docs/scale-out.md)
BATCH_FLOATS = 2 ** 24
# positions per unit the shift of a layer is decided on (the first images of the first batch)
SHIFT_VALUES = 2 ** 12
# values per image (positions x units) a layer's Gram matrix reads: every position of a layer up to
# this size, a spread sample of the others' (the product costs positions x units^2 per image: for
# MobileNetV2's two 1280-channel layers at 7x7 it was a quarter of the probe's pass; docs/scale-out.md)
CORR_VALUES = 2 ** 13
# values per unit pair over the test set the sampled Gram matrix keeps at least (the correlations'
# sampling error about 1/sqrt(CORR_ROWS) = 0.008 where the values were independent)
CORR_ROWS = 2 ** 14


def _topk_merge(vals, idx, pos, new_vals, new_idx, new_pos, k):
    """Keep the k largest per unit: vals (U, k') merged with new (U, B)."""
    v = torch.cat([vals, new_vals], 1)
    i = torch.cat([idx, new_idx], 1)
    p = torch.cat([pos, new_pos], 1)
    top = torch.topk(v, min(k, v.shape[1]), dim=1)
    return top.values, torch.gather(i, 1, top.indices), torch.gather(p, 1, top.indices)


def pick_samples(labels: torch.Tensor, n: int) -> list[int]:
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


def positions(out: torch.Tensor) -> torch.Tensor:
    """A layer's output as (images, positions, units): a view of a channels_last (B, U, H, W)
    output (a copy of a contiguous one); a dense (B, U) output has one position."""
    if out.dim() == 4:
        b, u = out.shape[:2]
        return out.permute(0, 2, 3, 1).reshape(b, -1, u)
    return out.reshape(out.shape[0], 1, -1)


class Stats:
    """Running statistics of one layer's units over the test images streamed so far: memory of
    O(units^2 + units * (k + histogram images)), whatever the number of test images."""

    def __init__(self, units: int, k: int, hist_n: int, images: int | None = None):
        self.k = k
        self.images = images  # the test set's size, where known: the Gram matrix's sample keeps CORR_ROWS
        self.sum = torch.zeros(units, dtype=torch.float64)  # of the per-image activation
        self.relu_sum = torch.zeros(units, dtype=torch.float64)
        self.max = torch.full((units,), -math.inf, dtype=torch.float64)
        self.active = torch.zeros(units, dtype=torch.int64)
        # moments over every image and position of the values less `shift` (correlations do not
        # depend on it; it keeps the Gram matrices away from cancellation): decided on the first batch
        self.shift: torch.Tensor | None = None
        self.decided = False
        self._ones: torch.Tensor | None = None
        self.m1 = torch.zeros(units, dtype=torch.float64)  # over the values the Gram matrix reads
        self.m2 = torch.zeros(units, units, dtype=torch.float64)
        self.cnt = 0
        self.batches = 0
        self.top = (torch.full((units, 0), -math.inf), torch.zeros((units, 0), dtype=torch.int64),
                    torch.zeros((units, 0), dtype=torch.int64))
        self.acts = np.zeros((hist_n, units), np.float32)  # the first hist_n images

    def add(self, out: torch.Tensor, start: int) -> None:
        """One batch of the layer's output (B, U, H, W) or (B, U), test images start.. ."""
        vals = positions(out.detach())  # (B, P, U), in the pass's dtype
        b, p, u = vals.shape
        if not self.decided:
            self.decided = True
            first = vals[:max(1, min(b, SHIFT_VALUES // p))].reshape(-1, u).float()  # a few images' values
            var, mean = torch.var_mean(first, dim=0, correction=0)
            if bool((mean.abs() > var.sqrt()).any()):
                self.shift = mean.to(vals.dtype)
        shifted = vals if self.shift is None else vals - self.shift
        sums = torch.bmm(self._ones_for(vals), shifted)[:, 0].cpu().double()  # (B, U): per image
        mx, pos = _max_over_positions(out.detach(), vals)
        mx_c, pos_c = mx.float().cpu(), pos.cpu()
        m64 = sums / p  # per-image means
        if self.shift is not None:
            m64 += self.shift.cpu().double()
        mean_c = m64.float()
        self.sum += m64.sum(0)
        self.relu_sum += m64.clamp(min=0).sum(0)
        self.max = torch.maximum(self.max, m64.max(0).values)
        self.active += (mx_c > 0).sum(0)
        sample = self._sample(shifted)  # (B, P', U)
        flat = sample.reshape(-1, u)  # one product over the batch (in pieces it is slower)
        self.m1 += sums.sum(0) if sample is shifted else flat.float().sum(0).cpu().double()
        self.m2 += (flat.T @ flat).cpu().double()
        self.cnt += flat.shape[0]
        self.batches += 1
        ids = torch.arange(start, start + b).expand(u, b)
        self.top = _topk_merge(*self.top, mx_c.T, ids, pos_c.T, self.k)
        keep = min(b, len(self.acts) - start)
        if keep > 0:
            self.acts[start:start + keep] = mean_c[:keep].numpy()

    def _sample(self, vals: torch.Tensor) -> torch.Tensor:
        """The positions of (B, P, U) `vals` the Gram matrix reads: all of them up to CORR_VALUES
        values per image, else every `stride`-th from an offset that turns with each batch, with
        at least CORR_ROWS positions over the test set (`images`)."""
        p, u = vals.shape[1:]
        stride = -(-p * u // CORR_VALUES)
        if self.images:
            stride = min(stride, p * self.images // CORR_ROWS)
        if stride <= 1:
            return vals
        offset = self.batches % stride
        return vals[:, offset::stride]

    def _ones_for(self, vals: torch.Tensor) -> torch.Tensor:
        """(B, 1, P) ones of `vals`' dtype and device (kept: every batch but the last has the same)."""
        b, p = vals.shape[:2]
        if self._ones is None or self._ones.shape != (b, 1, p) or self._ones.dtype != vals.dtype:
            self._ones = torch.ones((b, 1, p), dtype=vals.dtype, device=vals.device)
        return self._ones


def _max_over_positions(out: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, U) maxima over positions and where they are (h * W + w): a conv output's by adaptive max
    pooling, which runs 4-8x faster than a max over the positions of its channels_last view on a CPU
    (bench: MobileNetV2's outputs at 224 px, bf16); a dense output's is its values."""
    if out.dim() == 4:
        mx, pos = F.adaptive_max_pool2d(out, 1, return_indices=True)
        return mx.flatten(1), pos.flatten(1)
    return vals.max(1)


def batch_size(layers: list[dict], input_shape, most: int) -> int:
    """At most `most` images, fewer where one layer's output for the batch would exceed
    BATCH_FLOATS values (large inputs, e.g. 224-px ImageNet images), a power of two of them."""
    per_image = max([math.prod(layer.get("output_shape") or [1]) for layer in layers] + [math.prod(input_shape)])
    return max(1, min(most, power_of_two_floor(BATCH_FLOATS // max(1, per_image))))


@dataclass
class Pass:
    """What the one pass over the test set leaves: per-layer running statistics, the network's
    outputs for every test image (float32, computed in `mode`), the sample inputs and their
    activation maps (conv layers)."""

    stats: list[Stats]
    logits: torch.Tensor
    mode: Mode
    sample_idx: list[int]
    sample_maps: dict[int, torch.Tensor]


def activation_pass(model: LoadedModel, mods: list[nn.Module], layers: list[dict], images, labels, dev,
                    bs: int, k: int, hist_n: int, samples: int, mode: Mode) -> Pass:
    """Stream the test set through the network once in `mode` with a hook on every layer (each
    hook reduces its layer's output at once: nothing of a batch is held past its layer), then
    capture the sample inputs' activations."""
    net, n = model.net, len(images)
    stats = [Stats(layer["units"], k, hist_n, n) for layer in layers]
    state = {"mode": "stream", "start": 0, "seen": set()}
    captured: dict[int, torch.Tensor] = {}

    def hook(j):
        def read(m, i, o):
            if j in state["seen"]:
                return
            state["seen"].add(j)
            if state["mode"] == "stream":
                stats[j].add(o, state["start"])
            else:
                # a copy of its own: an activation run in place (featviz.inplace) may overwrite `o`
                captured[j] = o.detach().to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format,
                                            copy=True)
        return read

    hooks = [m.register_forward_hook(hook(j)) for j, m in enumerate(mods)]
    outs = []
    try:
        with torch.no_grad():
            for s in range(0, n, bs):
                state.update(start=s, seen=set())
                x = model.to_input(images[s:s + bs], dev).contiguous(memory_format=mode.memory_format)
                with mode.autocast(dev):
                    outs.append(net(x).float().cpu())
            sample_idx = pick_samples(labels, min(samples, n))
            state.update(mode="capture", seen=set())
            x = model.to_input(images[sample_idx], dev).contiguous(memory_format=mode.memory_format)
            with mode.autocast(dev):
                net(x)
            sample_maps = {j: captured[j] for j, layer in enumerate(layers) if layer["kind"] == "conv"}
    finally:
        for h in hooks:
            h.remove()
    return Pass(stats, torch.cat(outs), mode, sample_idx, sample_maps)
