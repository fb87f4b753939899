"""Batch norms folded into the convolutions before them, for a pass without gradients.

In eval mode a batch norm is a fixed per-channel affine map, so a convolution followed by one is
the same function as one convolution with its weights scaled and its bias shifted:
w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta. PyTorch's eager forward runs
the two separately (MobileNetV2 at 224 px, one thread: the batch norms are about a third of its
time, docs/scale-out.md); `folded_batchnorms(net, read)` runs them as one for the duration of a
`with` block (the probe's activation pass, evaluate's pass, the fp32 recheck) and puts every
weight back after.

Which: a `Conv2d` whose output, at its one call, goes to nothing but a `BatchNorm2d` in eval mode
with running statistics (called once too), as a torch.fx trace of the network shows, and which is
not in `read` (a module whose own output a hook reads: folding would hand it the batch norm's
output). The batch norm itself may be read: it passes the folded conv's output on unchanged, which
is its own output up to rounding. A network that cannot be traced keeps every batch norm.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import fx, nn


def foldable(net: nn.Module, read=()) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The (conv, batch norm) pairs of `net` that `folded_batchnorms` folds."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = fx.symbolic_trace(net).graph
    except Exception:  # noqa: BLE001 - any tracing failure: fold nothing
        return []
    mods = dict(net.named_modules())
    read_ids = {id(m) for m in read}
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        conv = mods.get(node.target) if node.op == "call_module" else None
        if type(conv) is not nn.Conv2d or calls[node.target] != 1 or id(conv) in read_ids or len(node.users) != 1:
            continue
        (user,) = node.users
        bn = mods.get(user.target) if user.op == "call_module" else None
        if (type(bn) is nn.BatchNorm2d and calls[user.target] == 1 and not bn.training and bn.track_running_stats
                and bn.running_mean is not None and user.args == (node,) and not user.kwargs):
            pairs.append((conv, bn))
    return pairs


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def folded_batchnorms(net: nn.Module, read=()):
    """Within the block, `foldable(net, read)`'s batch norms live in their convolutions' weights
    and pass their input on; every weight and forward is the network's own again after."""
    saved = []
    try:
        with torch.no_grad():
            for conv, bn in foldable(net, read):
                scale = torch.rsqrt(bn.running_var.float() + bn.eps)
                if bn.weight is not None:
                    scale = scale * bn.weight.float()
                shift = -bn.running_mean.float() * scale
                if bn.bias is not None:
                    shift = shift + bn.bias.float()
                w, b = conv.weight, conv.bias
                new_b = shift if b is None else b.float() * scale + shift
                conv.weight = nn.Parameter((w.float() * scale.view(-1, 1, 1, 1)).to(w.dtype), requires_grad=False)
                conv.bias = nn.Parameter(new_b.to(w.dtype), requires_grad=False)
                bn.forward = _identity
                saved.append((conv, w, b, bn))
        yield [conv for conv, *_ in saved]
    finally:
        for conv, w, b, bn in reversed(saved):
            conv.weight = w
            conv.bias = b
            del bn.forward
