"""Read activations by module name with forward hooks, stopping the forward
pass as soon as every requested activation has been seen."""
from __future__ import annotations

import torch
from torch import nn

OUTPUT = None  # key of the network output in an activation dict


class _StopForward(Exception):
    """Raised from a hook to abort the forward pass after the last needed layer."""


def resolve_module(net: nn.Module, name: str) -> nn.Module:
    modules = dict(net.named_modules())
    if name not in modules or name == "":
        known = ", ".join(n for n in modules if n) or "(none)"
        raise KeyError(f"layer {name!r} not found in the network (known: {known})")
    return modules[name]


class ActivationReader:
    """Context manager; ``reader(x)`` returns ``{name: activation}``.

    ``layers`` may contain :data:`OUTPUT` (``None``) for the network output, in
    which case the full forward pass is run.
    """

    def __init__(self, net: nn.Module, layers):
        self.net = net
        self.layers = set(layers)
        self.need_output = OUTPUT in self.layers
        self.named = sorted(n for n in self.layers if n is not OUTPUT)
        self._mods = {n: resolve_module(net, n) for n in self.named}
        self._handles = []
        self._acts: dict = {}

    def _hook(self, name):
        def hook(_module, _inputs, output):
            if name not in self._acts:
                self._acts[name] = output
            if not self.need_output and len(self._acts) == len(self.named):
                raise _StopForward
        return hook

    def __enter__(self):
        for n, m in self._mods.items():
            self._handles.append(m.register_forward_hook(self._hook(n)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def __call__(self, x: torch.Tensor) -> dict:
        self._acts = {}
        try:
            out = self.net(x)
        except _StopForward:
            out = None
        acts, self._acts = self._acts, {}
        if self.need_output:
            acts[OUTPUT] = out
        missing = [n for n in self.named if n not in acts]
        if missing:
            raise RuntimeError(f"layer(s) {missing} were not reached by the forward pass")
        return acts
