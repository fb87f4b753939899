"""The data measure of `featviz circuits`: gradient × activation on test images, for the units the
report shows.

For a pair of layers A -> B, S[j, i] = mean over images of sum over positions of dR_j/dA_i * A_i,
with R_j B's unit j (a conv channel's spatial mean, a dense unit's value), for each measured unit j
of B (the units the report shows) and every unit i of A.

How it is computed, and what bounds its cost and memory:

* One forward pass per batch of images feeds every pair. A forward hook on A replaces its output,
  for the rest of the pass, by a copy of a new leaf tensor: the pair's graph starts at A (the
  network's parameters take no gradient), so nothing before A is kept for backward. A hook on B
  measures the pair there and then (B is the next pair's A: the graph ends there), and the pass
  stops after the last B. At most the graphs of the pairs open at one moment (one) are held.
* Per measured unit j, one backward pass of R_j summed over the batch: the images of a batch are
  independent (eval mode), so it gives every image's gradient at once. On the CPU this measured
  fastest (docs/circuits.md, "Cost"): batched gradients over units (`is_grads_batched`, torch's
  vmap) run a depthwise convolution's backward once per unit and concatenate (1.6-2x slower on
  MobileNetV2's blocks, even without them), and a batch of K copies of A through the pair's layers
  pays their forward pass K times as well.
* Images per batch: the memory budget divided by what one image needs, measured on the first image
  by the graph's saved tensors (torch.autograd.graph.saved_tensors_hooks) plus the gradients and
  activations a backward pass holds beside them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import FeatvizError


@dataclass
class Pair:
    """One pair to measure: modules `a` -> `b`, their unit counts, and the units of b (`rows`) whose
    drivers are measured. `sums` accumulates S over images, one row per unit of `rows`."""
    a: str
    b: str
    units_a: int
    units_b: int
    rows: list[int]
    sums: torch.Tensor | None = None
    seconds: float = 0.0
    unconnected: bool = False
    saved: int = 0  # calibration: bytes the pair's graph saved for one image
    largest: int = 0  # calibration: the largest of them
    a_bytes: int = 0  # calibration: a's output for one image
    done: bool = field(default=False, repr=False)


class _Stop(Exception):
    """Raised by the last B's hook: the rest of the forward pass is not needed."""


def _reduce(out: torch.Tensor) -> torch.Tensor:
    """A later layer's units per image: spatial mean of a conv channel, the value of a dense unit."""
    return out.flatten(2).mean(2) if out.dim() > 2 else out


def _per_channel(contrib: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (C,): the sum over the batch and the positions."""
    return contrib.flatten(2).sum(2).sum(0) if contrib.dim() > 2 else contrib.sum(0)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _Hooks:
    """The forward hooks of one measure: a leaf at each A, the pair measured at each B."""

    def __init__(self, net: nn.Module, pairs: list[Pair]):
        mods = dict(net.named_modules())
        names = sorted({p.a for p in pairs} | {p.b for p in pairs})
        missing = [n for n in names if n not in mods]  # "": the network itself (logits no module returns)
        if missing:
            raise FeatvizError(f"circuits: the model has no module '{missing[0]}' (from units.json); "
                               f"re-run `featviz units`")
        self.pairs = pairs
        self.handles = [mods[n].register_forward_hook(self._hook(n)) for n in names]
        self.calibrating = False
        self.largest_output = 0
        self.leaves: dict[str, torch.Tensor] = {}
        self.seen: set[str] = set()
        self.open: list[Pair] = []
        self.counted: set = set()

    def start(self) -> None:
        self.leaves, self.seen, self.open = {}, set(), []
        for p in self.pairs:
            p.done = False

    def _hook(self, name: str):
        def hook(_mod, _inputs, out):
            if name in self.seen:
                return None  # a module called again: its first call is the one measured
            self.seen.add(name)
            if not isinstance(out, torch.Tensor):
                raise FeatvizError(f"circuits: module '{name}' gave no tensor output in a forward pass; "
                                   f"re-run `featviz units`")
            for p in self.pairs:
                if p.b == name and not p.done:
                    self._measure(p, out)
            result = None
            if any(p.a == name for p in self.pairs):
                leaf = out.detach().requires_grad_(True)
                self.leaves[name] = leaf
                self.open += [p for p in self.pairs if p.a == name and not p.done]
                if self.calibrating:
                    for p in self.pairs:
                        p.a_bytes = _nbytes(out) if p.a == name else p.a_bytes
                result = leaf.clone()  # what the network goes on with (an in-place step may change it)
            if all(p.done for p in self.pairs):
                raise _Stop
            return result
        return hook

    def _measure(self, p: Pair, out: torch.Tensor) -> None:
        p.done = True
        self.open = [q for q in self.open if q is not p]
        leaf = self.leaves.get(p.a)
        if leaf is None or not out.requires_grad:
            p.unconnected = True  # b is computed before a, or from other tensors only
            return
        later = _reduce(out)
        if leaf.shape[1] != p.units_a or later.shape[1] != p.units_b:
            raise FeatvizError(f"circuits: '{p.a}' or '{p.b}' has not the unit count of units.json; "
                               f"re-run `featviz units`")
        t = time.perf_counter()
        act = leaf.detach()
        seed = torch.zeros_like(later)
        rows = []
        for k, j in enumerate(p.rows):
            seed.zero_()
            seed[:, j] = 1.0
            (g,) = torch.autograd.grad(later, leaf, grad_outputs=seed, retain_graph=k + 1 < len(p.rows),
                                       allow_unused=True)
            if g is None:
                p.unconnected = True
                return
            rows.append(_per_channel(g * act))
        got = torch.stack(rows).double().cpu() if rows else torch.zeros(0, p.units_a, dtype=torch.float64)
        p.sums = got if p.sums is None else p.sums + got
        p.seconds += time.perf_counter() - t

    def watch(self, _mod, _inputs, out) -> None:
        """A forward hook on every module during calibration: the largest output of the pass."""
        if isinstance(out, torch.Tensor):
            self.largest_output = max(self.largest_output, _nbytes(out))

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """saved_tensors_hooks' pack: count what the open pairs' graphs keep (calibration)."""
        strided = t.layout == torch.strided
        size = t.untyped_storage().nbytes() if strided else _nbytes(t)
        for p in self.open:
            key = (id(p), t.untyped_storage().data_ptr() if strided else id(t))
            if key not in self.counted:
                self.counted.add(key)
                p.saved += size
                p.largest = max(p.largest, size)
        return t

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _forward(net: nn.Module, x: torch.Tensor, hooks: _Hooks) -> None:
    hooks.start()
    try:
        with torch.enable_grad():
            net(x)
    except _Stop:
        pass
    finally:
        hooks.leaves, hooks.open = {}, []
    for p in hooks.pairs:
        if not p.done:
            raise FeatvizError(f"circuits: module '{p.b}' was not called in a forward pass; re-run `featviz units`")


def image_bytes(hooks: _Hooks, pairs: list[Pair], input_bytes: int) -> int:
    """What one image needs, from the calibration pass: the largest pair's saved graph, plus during
    its backward passes three tensors of its largest saved size and three of A's (its leaf, its
    gradient, their product), plus three of the largest output of the forward pass and the input."""
    need = max((p.saved + 3 * p.largest + 3 * p.a_bytes for p in pairs), default=0)
    return need + 3 * hooks.largest_output + 2 * input_bytes


def data_strengths(model, pairs: list[Pair], images: torch.Tensor, device, memory: int,
                   log=None) -> dict[tuple[str, str], np.ndarray | None]:
    """S (len(rows), units_a) for each pair over `images` (uint8), None for a pair where b does not
    depend on a. The first image calibrates the images per batch for `memory` bytes. `log(line)`:
    one line per batch."""
    net = model.net
    hooks = _Hooks(net, pairs)
    n = len(images)
    try:
        # the first image alone, counting what each pair's graph keeps
        hooks.calibrating = True
        x = model.to_input(images[:1], device)
        watching = [m.register_forward_hook(hooks.watch) for m in net.modules()]
        try:
            with torch.autograd.graph.saved_tensors_hooks(hooks.pack, lambda t: t):
                _forward(net, x, hooks)
        finally:
            for h in watching:
                h.remove()
        hooks.calibrating = False
        per_image = image_bytes(hooks, pairs, _nbytes(x))
        batch = int(max(1, min(n - 1, memory // max(1, per_image))))
        if log:
            log(f"circuits: about {per_image / 2 ** 20:.2f} MB per image: {batch} images per batch "
                f"in {memory / 2 ** 20:.0f} MB")
        for s in range(1, n, batch):
            t = time.perf_counter()
            _forward(net, model.to_input(images[s:s + batch], device), hooks)
            if log:
                log(f"circuits: images {s + 1}-{min(n, s + batch)} of {n}: {time.perf_counter() - t:.1f} s")
    finally:
        hooks.close()
    if log:
        for p in pairs:
            log(f"circuits: {p.a} -> {p.b}: {len(p.rows)} of {p.units_b} units measured, {p.seconds:.1f} s")
    return {(p.a, p.b): (None if p.unconnected or p.sums is None else (p.sums / max(1, n)).numpy()) for p in pairs}
