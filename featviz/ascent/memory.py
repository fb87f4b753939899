"""Choose how many units to optimize in one batch."""
from __future__ import annotations

import torch

from .hooks import ActivationReader

CPU_DEFAULT_BUDGET = 2 * 1024 ** 3
MAX_CHUNK = 4096


def bytes_per_image(net, layer, input_shape, device="cpu") -> int:
    """Forward-activation bytes of one image up to ``layer`` (the whole net when
    None), times 3 for the backward pass and the autograd buffers, plus the
    image, its gradient and optimizer state."""
    device = torch.device(device)
    sizes = []

    def hook(_m, _i, out):
        if torch.is_tensor(out):
            sizes.append(out.numel() * out.element_size())

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.zeros((1,) + tuple(input_shape), device=device)
        with torch.no_grad(), ActivationReader(net, [layer]) as reader:
            reader(x)
    finally:
        for h in handles:
            h.remove()
    img = 4 * int(torch.Size(input_shape).numel())
    return 3 * sum(sizes) + 6 * img


def auto_chunk_size(net, layer, input_shape, device="cpu", memory_budget_bytes=None) -> int:
    """Largest number of units whose ascent fits the memory budget (CUDA free
    memory * 0.8 on a GPU, 2 GiB on CPU unless given), at least 1."""
    device = torch.device(device)
    if memory_budget_bytes is None:
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            memory_budget_bytes = int(free * 0.8)
        else:
            memory_budget_bytes = CPU_DEFAULT_BUDGET
    per = max(1, bytes_per_image(net, layer, input_shape, device))
    return int(max(1, min(MAX_CHUNK, memory_budget_bytes // per)))
