"""Activations in place again for a pass without gradients, where the network's graph allows it.

Every loaded network has its activations out of place (featviz.model.hookable.no_inplace: a hook
that holds a conv's output must not see it overwritten by the ReLU after it, and gradients need
both). That costs a tensor per activation: MobileNetV2's forward at 224 px takes 1.3x the CPU time
of torchvision's in-place one (bench_inference, one thread). A pass whose hooks reduce each output
as it is produced and hold none (the probe's activation pass, evaluate's pass, the fp32 recheck)
can run the activations in place again where that changes nothing: `in_place(net)` turns them on
for the duration of a `with` block and off again after.

Which: an activation module (with an `inplace` attribute; not dropout) whose input, at every call
(torchvision's ResNet blocks call one ReLU two or three times), is used by nothing else and is a
fresh tensor (the output of a conv, linear or norm module, or of an addition), as a torch.fx trace
of the network shows. A network that cannot be traced keeps every activation out of place.
"""
from __future__ import annotations

import operator
import warnings
from contextlib import contextmanager

import torch
from torch import fx, nn

# modules whose output is a new tensor (never a view of their input)
FRESH_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                 nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
FRESH_FUNCTIONS = (operator.add, torch.add, operator.mul, torch.mul, operator.sub, torch.sub)


def _fresh(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether `node`'s value is a tensor of its own (no other node's storage)."""
    if node.op == "call_module":
        return isinstance(mods.get(node.target), FRESH_MODULES)
    if node.op == "call_function" and node.target in FRESH_FUNCTIONS:
        return True
    if node.op == "call_function" and node.target is operator.iadd:  # `out += identity`: out's storage
        first = node.args[0]
        return isinstance(first, fx.Node) and len(first.users) == 1 and _fresh(first, mods)
    return False


def safe_in_place(net: nn.Module) -> list[nn.Module]:
    """The activation modules of `net` that may run in place in a pass without gradients."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = fx.symbolic_trace(net).graph
    except Exception:  # noqa: BLE001 - any tracing failure: keep every activation out of place
        return []
    mods = dict(net.named_modules())
    verdict: dict[str, bool] = {}  # per activation module: every call so far may run in place
    for node in graph.nodes:
        mod = mods.get(node.target) if node.op == "call_module" else None
        if mod is None or not hasattr(mod, "inplace") or isinstance(mod, (nn.Dropout, nn.Dropout2d)):
            continue
        src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        ok = isinstance(src, fx.Node) and len(src.users) == 1 and _fresh(src, mods)
        verdict[node.target] = verdict.get(node.target, True) and ok
    return [mods[name] for name, ok in verdict.items() if ok]


@contextmanager
def in_place(net: nn.Module):
    """Within the block, `safe_in_place(net)`'s activations run in place; out of place after."""
    mods = [m for m in safe_in_place(net) if m.inplace is False]
    for m in mods:
        m.inplace = True
    try:
        yield mods
    finally:
        for m in mods:
            m.inplace = False
