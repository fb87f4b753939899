"""Seed 003's pitfall: maximize the logits, not the softmax. A network whose last step is a softmax
(or log-softmax) gets it removed, so its output is the logits; where featviz cannot remove it (a
softmax inside a class's own forward code), the model is flagged and the report says so."""
from __future__ import annotations

import torch
from torch import nn

_SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)


def _softmax_targets():
    aten = torch.ops.aten
    return {aten._softmax.default, aten._log_softmax.default, aten.softmax.int, aten.log_softmax.int,
            torch.softmax, torch.log_softmax, torch.nn.functional.softmax, torch.nn.functional.log_softmax}


def _set_submodule(root: nn.Module, name: str, mod: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, mod)


def strip_softmax(net: nn.Module, input_shape) -> str | None:
    """Remove a final softmax / log-softmax from `net` in place (an nn.Softmax module, or the last
    call of an fx graph). Returns what was removed, or None."""
    if isinstance(net, torch.fx.GraphModule):
        out_node = next(n for n in net.graph.nodes if n.op == "output")
        res = out_node.args[0]
        res = res[0] if isinstance(res, (tuple, list)) and len(res) == 1 else res
        if isinstance(res, torch.fx.Node) and res.op == "call_function" and res.target in _softmax_targets():
            out_node.args = (res.args[0],) if not isinstance(out_node.args[0], (tuple, list)) else ((res.args[0],),)
            net.graph.eliminate_dead_code()
            net.recompile()
            return f"the graph's final {res.target}"
    last = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: last.update({id(o): n}))
             for n, m in net.named_modules() if n and isinstance(m, _SOFTMAX_MODULES)]
    try:
        with torch.no_grad():
            out = net.eval()(torch.rand(2, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    name = last.get(id(out))
    if name is None:
        return None
    removed = type(net.get_submodule(name)).__name__
    _set_submodule(net, name, nn.Identity())
    return f"the final {removed} module '{name}'"


def looks_like_probabilities(net: nn.Module, input_shape) -> bool:
    """True when the outputs of random inputs are probabilities (rows >= 0 summing to 1) or
    log-probabilities (rows <= 0 whose exp sums to 1)."""
    with torch.no_grad():
        out = net.eval()(torch.rand(4, *input_shape)).float()
    if out.dim() != 2 or out.shape[1] < 2:
        return False
    ones = torch.ones(out.shape[0])
    if (out >= 0).all() and torch.allclose(out.sum(1), ones, atol=1e-4):
        return True
    return bool((out <= 0).all() and torch.allclose(out.exp().sum(1), ones, atol=1e-4))
