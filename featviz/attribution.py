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



# ---------------------------------------------------------------- per-class views (featviz attribute)
# Grad-CAM (Selvaraju et al. 2017) and SmoothGrad (Smilkov et al. 2017) as tf-keras-vis and Captum
# compute them; the vanilla gradient above stays the seeds' saliency.

def _unit_max(m: torch.Tensor) -> torch.Tensor:
    """Each map (N, H, W) divided by its maximum (all-zero maps stay zero)."""
    return m / m.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)


def gradcam(model: LoadedModel, images_u8: torch.Tensor, module: torch.nn.Module, targets: torch.Tensor, device,
            batch_size: int = 64) -> np.ndarray:
    """Grad-CAM of class targets[i] on image i at the output A (N, K, h, w) of `module` (a conv
    stage): ReLU(sum_k alpha_k ReLU(A_k)) with alpha_k the spatial mean of d logit / d A_k, upsampled
    bilinearly to the input's size, each map scaled to [0, 1]. Grad-CAM's feature maps are rectified
    ones; a featviz conv layer is the conv's own output, before its ReLU (where a negative A_k times
    a negative alpha_k would light up the silent background), hence ReLU(A_k): a no-op on a block's
    rectified output. Returns (N, H, W) float32."""
    net = model.net
    was_training = net.training
    net.eval()
    kept: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, o: kept.append(o) if not kept and isinstance(o, torch.Tensor) else None)
    maps = []
    try:
        for s in range(0, len(images_u8), batch_size):
            kept.clear()
            x = model.to_input(images_u8[s:s + batch_size], device)
            with torch.enable_grad():
                logits = net(x)
                if not kept or kept[0].dim() != 4:
                    raise ValueError("grad-cam: the layer gave no (N, K, h, w) output in the forward pass")
                a = kept[0]
                if not a.requires_grad:  # e.g. a TorchScript network: its submodules' hooks see no graph
                    raise ValueError("grad-cam: the layer's output in the forward pass carries no gradient")
                t = targets[s:s + batch_size].to(logits.device)
                grad, = torch.autograd.grad(logits.gather(1, t.view(-1, 1)).sum(), a)
            cam = torch.relu((grad.mean((2, 3), keepdim=True) * torch.relu(a)).sum(1, keepdim=True)).detach().float()
            cam = torch.nn.functional.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
            maps.append(_unit_max(cam[:, 0]).cpu().numpy())
    finally:
        handle.remove()
        net.train(was_training)
    return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, *images_u8.shape[2:]), np.float32)


def smoothgrad(model: LoadedModel, images_u8: torch.Tensor, targets: torch.Tensor, device, samples: int = 16,
               noise: float = 0.15, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """SmoothGrad: |d logit[targets[i]] / d input| averaged over `samples` copies of image i with
    Gaussian noise of standard deviation `noise` (a fraction of the [0, 1] pixel range: Smilkov et
    al.'s 10-20 %), max over channels, each map scaled to [0, 1]. The noise is drawn from one
    generator per row, seeded by (seed, row): the same maps for the same rows whatever the batch size.
    Returns (N, H, W) float32."""
    net = model.net
    was_training = net.training
    net.eval()
    maps = []
    try:
        for s in range(0, len(images_u8), batch_size):
            x0 = images_u8[s:s + batch_size].float().div(255.0)
            t = targets[s:s + batch_size]
            gens = [torch.Generator().manual_seed(int(seed) * 1_000_003 + s + i) for i in range(len(x0))]
            total = torch.zeros(x0.shape[0], *x0.shape[2:])
            for _ in range(int(samples)):
                eps = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]) * float(noise)
                x = (x0 + eps).to(device).requires_grad_(True)
                with torch.enable_grad():
                    logits = net(model.normalize(x))
                    grad, = torch.autograd.grad(logits.gather(1, t.to(logits.device).view(-1, 1)).sum(), x)
                total += grad.abs().amax(1).detach().float().cpu()
            maps.append(_unit_max(total / max(1, int(samples))).numpy())
    finally:
        net.train(was_training)
    return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, *images_u8.shape[2:]), np.float32)
