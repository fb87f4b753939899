"""Placeholder activation maximization (seed 000's recipe) until the full engine lands."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


class RecipeError(ValueError):
    pass


RECIPES = {"hvass": {"steps": 30, "class_steps": 30}}


def list_recipes():
    return list(RECIPES)


def get_recipe(name, overrides=None):
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe '{name}' (known: {', '.join(RECIPES)})")
    r = dict(RECIPES[name], name=name)
    for k, v in (overrides or {}).items():
        if k not in r:
            raise RecipeError(f"recipe '{name}' has no parameter '{k}'")
        r[k] = v
    return r


@dataclass
class AscentResult:
    images: np.ndarray
    objective: np.ndarray
    stats: list
    snapshots: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)


def visualize(net, layer, units, kind, input_shape, normalize=None, recipe="hvass", overrides=None,
              seed=0, device="cpu", progress=False):
    r = get_recipe(recipe, overrides)
    normalize = normalize or (lambda x: x)
    g = torch.Generator().manual_seed(seed)
    n = len(units)
    x = (0.1 * torch.rand(n, *input_shape, generator=g) + 0.45).to(device)
    idx = torch.tensor(units, device=device)
    acts = {}
    if layer is not None:
        mod = dict(net.named_modules())[layer]
        h = mod.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    steps = r["class_steps"] if kind == "class" else r["steps"]
    try:
        for _ in range(steps):
            x.requires_grad_(True)
            out = net(normalize(x))
            a = out if layer is None else acts["a"]
            sel = a[torch.arange(n, device=device), idx]
            obj = sel.flatten(1).mean(1) if sel.dim() > 1 else sel
            grad, = torch.autograd.grad(obj.sum(), x)
            std = grad.flatten(1).std(1).view(-1, 1, 1, 1)
            x = (x.detach() + grad / (std + 1e-8)).clamp(0, 1)
        with torch.no_grad():
            out = net(normalize(x))
            a = out if layer is None else acts["a"]
            sel = a[torch.arange(n, device=device), idx]
            obj = sel.flatten(1).mean(1) if sel.dim() > 1 else sel
            probs = torch.softmax(out, 1)
    finally:
        if layer is not None:
            h.remove()
    stats = []
    for i, u in enumerate(units):
        s = {"unit": int(u), "objective": float(obj[i]), "steps": steps, "converged": False,
             "nonfinite": False, "dead": bool(abs(float(obj[i])) < 1e-8)}
        if kind == "class":
            s["target_softmax"] = float(probs[i, u])
            s["predicted"] = int(probs[i].argmax())
        stats.append(s)
    return AscentResult(x.cpu().numpy().astype(np.float32), obj.cpu().numpy().astype(np.float32), stats, {}, r)
