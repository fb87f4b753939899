"""Attribution: which input pixels a class score depends on (seed 001's saliency maps,
Simonyan et al. 2013): the gradient of the class logit with respect to the input image."""
from __future__ import annotations

import numpy as np
import torch

from .model import LoadedModel


def saliency(model: LoadedModel, images_u8: torch.Tensor, device, target: torch.Tensor | None = None,
             batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """|d logit[target] / d input|, max over channels, each map scaled to [0, 1].

    images_u8: (N, C, H, W) uint8. target: class per image (default: the predicted class).
    Returns (maps (N, H, W) float32, target classes (N,) int64). One batched backward pass per
    batch: the logits of different images do not interact (the net is in eval mode)."""
    net = model.net
    was_training = net.training
    net.eval()
    maps, targets = [], []
    try:
        for s in range(0, len(images_u8), batch_size):
            x = images_u8[s:s + batch_size].to(device).float().div(255.0).requires_grad_(True)
            logits = net(model.normalize(x))
            t = logits.argmax(1) if target is None else target[s:s + batch_size].to(device)
            score = logits.gather(1, t.view(-1, 1)).sum()
            grad, = torch.autograd.grad(score, x)
            m = grad.abs().amax(1)
            top = m.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
            maps.append((m / top).detach().cpu().numpy())
            targets.append(t.detach().cpu().numpy())
    finally:
        net.train(was_training)
    if not maps:
        return np.zeros((0, *images_u8.shape[2:]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(maps).astype(np.float32), np.concatenate(targets).astype(np.int64)

