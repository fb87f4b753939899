"""Composable per-batch-element objectives (Lucid optvis style).

An :class:`Objective` maps ``(acts, idx)`` to a tensor of shape ``(len(idx),)``:
``acts`` is the activation dict of the current forward pass (which holds only
the batch elements ``idx``, positions into the full batch) and the result is
the value each of those elements maximizes.  Objectives combine with ``+``,
``-`` and scalar ``*`` / ``/``.  Unit indices are per batch element: element
``i`` of the batch looks at unit ``units[i]``.
"""
from __future__ import annotations

import numbers

import torch

from .hooks import OUTPUT


class Objective:
    """``coupled``: an element's value depends on other elements of the batch (a diversity term)."""

    def __init__(self, fn, layers, name: str = "objective", coupled: bool = False):
        self.fn = fn
        self.layers = frozenset(layers)
        self.name = name
        self.coupled = bool(coupled)

    def __call__(self, acts: dict, idx: torch.Tensor) -> torch.Tensor:
        return self.fn(acts, idx)

    def _combine(self, other, op, sym):
        if isinstance(other, Objective):
            return Objective(lambda a, i: op(self(a, i), other(a, i)),
                             self.layers | other.layers, f"({self.name} {sym} {other.name})",
                             self.coupled or other.coupled)
        if isinstance(other, numbers.Number):
            return Objective(lambda a, i: op(self(a, i), other), self.layers, f"({self.name} {sym} {other})",
                             self.coupled)
        return NotImplemented

    def __add__(self, other):
        return self._combine(other, lambda a, b: a + b, "+")

    __radd__ = __add__

    def __sub__(self, other):
        return self._combine(other, lambda a, b: a - b, "-")

    def __rsub__(self, other):
        return (-self) + other

    def __neg__(self):
        return Objective(lambda a, i: -self(a, i), self.layers, f"-{self.name}", self.coupled)

    def __mul__(self, other):
        if not isinstance(other, numbers.Number):
            return NotImplemented
        return Objective(lambda a, i: other * self(a, i), self.layers, f"{other}*{self.name}", self.coupled)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not isinstance(other, numbers.Number):
            return NotImplemented
        return self * (1.0 / other)

    def __repr__(self):
        return f"Objective({self.name})"


def _unit_index(units, idx, device):
    u = torch.as_tensor(units, dtype=torch.long).reshape(-1)
    if u.numel() == 1:
        u = u.expand(int(idx.max()) + 1 if idx.numel() else 1)
    return u[idx.cpu()].to(device)


def channel(layer, units, reduce: str = "mean") -> Objective:
    """Mean (or sum) of output channel ``units[i]`` of ``layer`` (seeds 000-003)."""
    def fn(acts, idx):
        a = acts[layer]
        sel = a[torch.arange(a.shape[0], device=a.device), _unit_index(units, idx, a.device)]
        sel = sel.flatten(1)
        return sel.sum(1) if reduce == "sum" else sel.mean(1)
    return Objective(fn, [layer], f"channel({layer})")


def neuron(layer, units, pos=None) -> Objective:
    """One neuron of channel ``units[i]`` at spatial position ``pos`` (y, x); centre if None (seed 001)."""
    def fn(acts, idx):
        a = acts[layer]
        h, w = a.shape[-2:]
        y, x = (h // 2, w // 2) if pos is None else (int(pos[0]), int(pos[1]))
        return a[torch.arange(a.shape[0], device=a.device), _unit_index(units, idx, a.device), y, x]
    return Objective(fn, [layer], f"neuron({layer})")


def dense(layer, units) -> Objective:
    """Output ``units[i]`` of a dense layer (any output, flattened per element)."""
    def fn(acts, idx):
        a = acts[layer].flatten(1)
        return a[torch.arange(a.shape[0], device=a.device), _unit_index(units, idx, a.device)]
    return Objective(fn, [layer], f"dense({layer})")


def class_logit(units) -> Objective:
    """Logit (pre-softmax network output) of class ``units[i]``."""
    o = dense(OUTPUT, units)
    o.name = "class_logit"
    return o


def layer(layer_name) -> Objective:
    """Whole layer, DeepDream-like: mean of the squared activations."""
    def fn(acts, idx):
        return (acts[layer_name].flatten(1) ** 2).mean(1)
    return Objective(fn, [layer_name], f"layer({layer_name})")


def diversity(layer_name) -> Objective:
    """Lucid's diversity term: per element, mean cosine similarity of its Gram
    matrix with the other elements' (subtract it, weighted, to diversify).
    Unlike every other objective this couples the batch elements."""
    def fn(acts, idx):
        a = acts[layer_name]
        n = a.shape[0]
        if n < 2:
            return a.new_zeros(n)
        f = a.flatten(2) if a.dim() > 2 else a.unsqueeze(2)   # (n, C, S)
        grams = torch.bmm(f, f.transpose(1, 2)).flatten(1)
        grams = grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-10)
        sim = grams @ grams.T
        return (sim.sum(1) - sim.diagonal()) / n
    return Objective(fn, [layer_name], f"diversity({layer_name})", coupled=True)


def group_diversity(layer_name, groups) -> Objective:
    """Lucid's diversity term inside groups of the batch: per element ``i``, the summed cosine
    similarity of its Gram matrix with those of the other elements of its group (``groups[i]``: the
    group of full-batch element ``i``); elements of different groups never meet. Summed over one
    group this is B times Lucid's ``diversity`` of that group as a batch (Lucid divides by B, and
    averages its channel objective over the batch too), so ``channel - w * group_diversity`` per
    element is Lucid's ``channel - w * diversity`` with the same weight ``w``. Crops of one element
    (repeated ``idx``: MACO's transforms) are not compared with each other, and another element's
    crops count as one element (their similarities averaged)."""
    g_all = torch.as_tensor(groups, dtype=torch.long).reshape(-1)

    def fn(acts, idx):
        a = acts[layer_name]
        f = (a.flatten(2) if a.dim() > 2 else a.unsqueeze(2)).float()   # (n, C, S)
        grams = torch.bmm(f, f.transpose(1, 2)).flatten(1)
        grams = grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-10)
        sim = grams @ grams.T
        i = idx.cpu()
        twins = i[:, None] == i[None, :]
        same = (g_all[i][:, None] == g_all[i][None, :]) & ~twins
        weight = same.to(sim.dtype) / twins.sum(1).to(sim.dtype)[None, :]   # 1 / crops of the other element
        return (sim * weight.to(sim.device)).sum(1)
    return Objective(fn, [layer_name], f"group_diversity({layer_name})", coupled=True)


def by_element(parts, which) -> Objective:
    """Element ``i`` of the full batch maximizes ``parts[which[i]]``. A part that couples its
    elements (a diversity term) sees only the activations and positions of its own elements, so it
    couples only those; the others are computed over the whole batch (cheaper than slicing it) and
    each element keeps its own part's value."""
    which_all = torch.as_tensor(which, dtype=torch.long).reshape(-1)

    def fn(acts, idx):
        i = idx.cpu()
        w = which_all[i]
        out = None
        for k, part in enumerate(parts):
            mask = w == k
            if not bool(mask.any()):
                continue
            if part.coupled:
                sel = mask.nonzero().squeeze(1)
                v = part({name: a[sel.to(a.device)] for name, a in acts.items()}, i[sel])
                value = v.new_zeros(len(i)).index_put((sel.to(v.device),), v)
            else:
                value = part(acts, idx)
            if out is None:
                out = value
            else:
                out = torch.where(mask.to(value.device), value.to(out.dtype), out)
        return out
    layers = set().union(*(p.layers for p in parts))
    return Objective(fn, layers, f"by_element({', '.join(p.name for p in parts)})",
                     any(p.coupled for p in parts))


def rectified(obj: Objective) -> Objective:
    """``obj`` read after a ReLU: the layer's activations go through max(0, .) first (seed 003's
    Keras layers output after their ReLU; for a conv followed by a ReLU this is that ReLU's output)."""
    return Objective(lambda acts, idx: obj({k: torch.relu(v) for k, v in acts.items()}, idx), obj.layers,
                     f"relu({obj.name})", obj.coupled)


def for_kind(kind: str, layer_name, units, recipe: dict) -> Objective:
    """The objective a recipe uses for a unit ``kind`` ("conv", "dense", "class"); with the recipe's
    ``rectify``, conv and dense units are read after a ReLU (the logit of a class never is)."""
    if kind == "class":
        if layer_name is not None:
            raise ValueError("kind 'class' reads the network output; pass layer=None")
        obj = class_logit(units)
    elif layer_name is None:
        raise ValueError(f"kind {kind!r} needs a layer name")
    elif kind == "conv":
        if recipe["conv_objective"] == "neuron":
            obj = neuron(layer_name, units, recipe["neuron_pos"])
        else:
            obj = channel(layer_name, units, recipe["conv_reduce"])
    elif kind == "dense":
        obj = dense(layer_name, units)
    else:
        raise ValueError(f"unknown unit kind {kind!r} (known: conv, dense, class)")
    if kind != "class" and recipe.get("rectify"):
        obj = rectified(obj)
    return obj


def dot_compare(layer_name, target: torch.Tensor, cossim_pow: float = 0.0) -> Objective:
    """Caricature (Lucid's `dot_compare`, lucid/recipes/caricature.py; Microscope's caricatures):
    element i maximizes dot(a_i, t_i) * max(0, cos(a_i, t_i)) ** cossim_pow, with a_i its activations
    of ``layer_name`` and t_i = ``target[i]`` the activations of the image it caricatures. Lucid
    divides the dot product by |t| only; here the cosine is the true one (bounded, so that a
    non-integer power of a negative dot product is never taken)."""
    def fn(acts, idx):
        a = acts[layer_name].flatten(1)
        t = target.to(a.device)[idx.to(a.device)].flatten(1)
        dot = (a * t).sum(1)
        if not cossim_pow:
            return dot
        cos = dot / (a.norm(dim=1) * t.norm(dim=1)).clamp_min(1e-6)
        return dot * cos.clamp_min(0) ** float(cossim_pow)
    return Objective(fn, [layer_name], f"dot_compare({layer_name})")
