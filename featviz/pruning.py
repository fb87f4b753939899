"""Pruning curves: test accuracy with a layer's units zeroed one after another, least important first
(how much a unit fires after ReLU, discounted by how well another unit already carries its signal),
on a grid of counts refined by bisection around the largest count the accuracy survives. The probe
draws one per layer while a budget of forward passes lasts (`PruneBudget`).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from .inference import Mode


@torch.no_grad()
def _accuracy(model, images, labels, dev, module=None, removed=(), batch_size=1000,
              dtype: torch.dtype | None = None, memory_format=torch.contiguous_format) -> float:
    """Top-1 accuracy with the units `removed` of `module`'s output zeroed, under autocast to
    `dtype` (None: fp32) with inputs in `memory_format`."""
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
            x = model.to_input(images[s:s + batch_size], dev).contiguous(memory_format=memory_format)
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model.net(x)
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


def _grid(n: int, points: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n, min(points, n) + 1)})


def curve_passes(n: int, points: int = 12) -> int:
    """The most forward passes `pruning_curve` makes over its images for a layer of n units, not
    counting the unpruned network's (given as `base`): every grid point, then the bisection of the
    widest gap between two of them."""
    grid = _grid(n, points)
    gap = max((b - a for a, b in itertools.pairwise(grid)), default=1)
    return len(grid) - 1 + (math.ceil(math.log2(gap)) if gap > 1 else 0)


def pruning_curve(model, images, labels, dev, module, order: list[int], tolerance: float, points: int = 12,
                  base: float | None = None, batch_size: int = 1000, **mode) -> dict:
    """Accuracy with the first k units of `order` zeroed, on a grid of k, refined by bisection
    around the largest k whose accuracy stays within `tolerance` of the unpruned network's
    (`base`: that accuracy on these images, if already known; measured otherwise). `mode`: the
    passes' `dtype` and `memory_format` (`_accuracy`)."""
    n = len(order)
    cache: dict[int, float] = {} if base is None else {0: base}

    def acc(k):
        if k not in cache:
            cache[k] = _accuracy(model, images, labels, dev, module, order[:k], batch_size, **mode)
        return cache[k]

    base = acc(0)
    grid = _grid(n, points)
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


class PruneBudget:
    """Pruning curves of the layers in units.json order while a budget of forward passes over the
    pruning images lasts (None: no budget). The passes run under autocast to `precision` (`fp32`,
    `bf16`) in the activation pass's memory format (`pass_mode`); the unpruned network's accuracy
    is the activation pass's own (`pass_correct`, per pruning image) where that pass ran in the same
    precision, else measured once."""

    def __init__(self, model, images, labels, dev, budget: int | None, tolerance: float, batch_size: int,
                 precision: str, pass_mode: Mode, pass_correct: torch.Tensor):
        self.model, self.images, self.labels, self.dev = model, images, labels, dev
        self.budget, self.tolerance, self.batch_size = budget, tolerance, batch_size
        self.passes, self.base, self.skipped = 0, None, False
        self.precision = precision
        self.mode = {"dtype": torch.bfloat16 if precision == "bf16" else None,
                     "memory_format": pass_mode.memory_format}
        self.base_from_pass = precision == pass_mode.precision and len(pass_correct) > 0
        if self.base_from_pass:
            self.base = float(pass_correct.float().mean())

    def finish(self) -> dict:
        """The passes' mode, for probe.json."""
        return {"precision": self.precision, "channels_last": self.mode["memory_format"] == torch.channels_last,
                "base_from_activation_pass": self.base_from_pass}

    def curve(self, module: nn.Module, nu: int, relu_mean: np.ndarray, corr: np.ndarray) -> dict:
        """The entry keys `pruning` (and `pruning_skipped` once the budget is spent)."""
        need = curve_passes(nu) + (self.base is None)
        if self.skipped or (self.budget is not None and self.passes + need > self.budget):
            self.skipped = True
            return {"pruning": None, "pruning_skipped": f"budget of {self.budget} passes spent"}
        if self.base is None:
            self.base = _accuracy(self.model, self.images, self.labels, self.dev, batch_size=self.batch_size,
                                  **self.mode)
            self.passes += 1
        # importance: how much the unit fires (after ReLU), discounted by how well another unit
        # already carries the same signal; dead units (0) go first
        order = prune_order(relu_mean, corr)
        curve = pruning_curve(self.model, self.images, self.labels, self.dev, module, order, self.tolerance,
                              base=self.base, batch_size=self.batch_size, **self.mode)
        self.passes += len(curve["removed"]) - 1
        return {"pruning": curve}
