"""A layer on real images (OpenAI Microscope's per-layer views), with a recipe's parameterization,
transforms, optimizer and steps:

* **DeepDream** (Mordvintsev et al. 2015; Lucid's `objectives.deepdream`): starting from the image
  itself, maximize the layer's mean squared activation: whatever the layer sees in it, amplified.
* **caricature** (Lucid's `lucid/recipes/caricature.py`, `dot_compare`): starting from noise, as
  Lucid does, maximize the dot product of the layer's activations with the image's own (times their
  cosine to the power `cossim_pow`): what the layer keeps of the image, redrawn.

Both read the layer after a ReLU (what it passes on: a no-op for a block's rectified output).
Batch element i is image i, with its own generator (unit_seed(seed, i)), so a batch equals separate runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import objectives, optimize
from . import transforms as T
from .hooks import ActivationReader
from .param import image_param, make_param
from .recipes import get_recipe
from .render import _gens, deprocess, input_affine

MODES = ("deepdream", "caricature")


@dataclass
class DreamResult:
    images: np.ndarray   # float32 (N, C, H, W) in [0, 1]
    start: np.ndarray    # float32 (N,): the objective of the starting point (the image / the noise)
    final: np.ndarray    # float32 (N,): the objective of the result
    image: np.ndarray    # float32 (N,): the objective of the test image itself (caricature: |t|^2 * 1)
    recipe: dict


def dream(net, layer: str, images: torch.Tensor, mode: str, recipe: str = "lucid-scaled", overrides=None,
          seed: int = 0, device="cpu", normalize=None, cossim_pow: float = 1.0) -> DreamResult:
    """DeepDream or caricature (``mode``) of ``images`` (N, C, H, W, float in [0, 1]) at ``layer``
    (a module name). ``overrides``: recipe parameters (e.g. ``{"steps": 128}``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    rec = get_recipe(recipe, overrides)
    device = torch.device(device)
    normalize = normalize or (lambda v: v)
    x0 = images.detach().float().to(device)
    n, shape = x0.shape[0], tuple(x0.shape[1:])
    gens = _gens(seed, list(range(n)), 0)
    with ActivationReader(net, [layer]) as reader:
        if mode == "caricature":
            with torch.no_grad():
                target = torch.relu(reader(normalize(x0))[layer]).detach()
            obj = objectives.rectified(objectives.dot_compare(layer, target, cossim_pow))
            param = make_param(rec, shape, gens, device)
        else:
            obj = objectives.rectified(objectives.layer(layer))
            param = image_param(rec, x0, device)

        def evaluate(x, idx):
            return obj(reader(normalize(x)), idx)

        affine = input_affine(normalize, shape[0], device) if rec["standardize_space"] == "input" else None
        with torch.no_grad():
            start = evaluate(deprocess(param.picture(), rec["deprocess"]), torch.arange(n)).cpu().numpy()
            own = evaluate(x0, torch.arange(n)).cpu().numpy()
        optimize.ascend(param, evaluate, T.build(rec, shape[1:]), gens, rec, int(rec["steps"]), float(rec["lr"]),
                        False, affine)
        with torch.no_grad():
            out = deprocess(param.picture().detach(), rec["deprocess"])
            final = evaluate(out, torch.arange(n)).cpu().numpy()
    return DreamResult(out.cpu().numpy().astype(np.float32), start.astype(np.float32), final.astype(np.float32),
                       own.astype(np.float32), rec)
