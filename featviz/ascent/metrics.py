"""Quality metrics of visualizations."""
from __future__ import annotations

import numpy as np
import torch

from . import transforms as T


def _as_tensor(images, device):
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
    return x.to(device=device, dtype=torch.float32)


@torch.no_grad()
def class_confidence(net, images, normalize=None, targets=None, device=None, batch_size=256) -> np.ndarray:
    """Softmax probability that ``net`` gives class ``targets[i]`` for image ``i``.

    ``images``: (N, C, H, W) in [0, 1] pixel space (numpy or tensor);
    ``normalize`` maps pixels to the net's input (None = identity).  Used e.g.
    for the transfer score of images optimized on another model.
    """
    if device is None:
        device = next((q.device for q in net.parameters()), torch.device("cpu"))
    x = _as_tensor(images, device)
    tg = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device).reshape(-1)
    if tg.numel() != x.shape[0]:
        raise ValueError("targets must have one entry per image")
    normalize = normalize or (lambda v: v)
    out = []
    for s in range(0, x.shape[0], batch_size):
        logits = net(normalize(x[s:s + batch_size]))
        prob = torch.softmax(logits.float(), dim=1)
        out.append(prob.gather(1, tg[s:s + batch_size, None])[:, 0])
    return torch.cat(out).cpu().numpy().astype(np.float32)


@torch.no_grad()
def robustness(evaluate, images, gens, samples=4, specs=None):
    """Fraction of the objective kept under random jitter/rotation of the final
    images: mean_k obj(T_k(x)) / obj(x) per element (None where obj(x) <= 0 or
    is not finite).  ``evaluate(x, idx)`` returns per-element objectives."""
    n = images.shape[0]
    if samples <= 0 or n == 0:
        return [None] * n
    idx = torch.arange(n)
    base = evaluate(images, idx).double().cpu().numpy()
    tf = T.Compose(specs if specs is not None else T.ROBUSTNESS, images.shape[-2:])
    acc = np.zeros(n)
    for _ in range(samples):
        acc += evaluate(tf(images, gens), idx).double().cpu().numpy()
    acc /= samples
    return [float(a / b) if np.isfinite(b) and b > 0 and np.isfinite(a) else None for a, b in zip(acc, base)]
