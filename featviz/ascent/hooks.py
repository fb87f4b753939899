"""Read activations by module name with forward hooks, stopping the forward
pass as soon as every requested activation has been seen."""
from __future__ import annotations

import torch
import torch.nn.utils.parametrize
from torch import nn

OUTPUT = None  # key of the network output in an activation dict


# the modules whose weights autocast runs in bf16 (its lower-precision list on CPU and CUDA)
_AUTOCAST_BF16 = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.Linear)


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
    which case the full forward pass is run. While the reader is open the network's parameters are
    frozen (``requires_grad`` off, restored on exit): gradients flow to the input only, so the
    backward pass computes no weight gradients (3% of the quick MNIST net's step on CPU). In bf16 the
    convolution and linear weights are cast to bf16 once, for as long as the reader is open, instead
    of by autocast in every forward pass (the same values: autocast casts them the same way; the
    originals are put back on exit and whenever ``bf16`` is set to False).
    """

    def __init__(self, net: nn.Module, layers, precision: str = "fp32", channels_last: bool = False):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
        self.net = net
        # bf16: the forward pass under autocast, activations handed back in fp32 (the objective and
        # its gradient's accumulation stay fp32); channels_last: NHWC input (the net converted by the caller)
        self._bf16 = precision == "bf16"
        self._fp32_weights: list = []  # (module, name, original Parameter) while bf16 copies stand in
        self.channels_last = bool(channels_last)
        self.layers = set(layers)
        self.need_output = OUTPUT in self.layers
        self.named = sorted(n for n in self.layers if n is not OUTPUT)
        self._mods = {n: resolve_module(net, n) for n in self.named}
        self._handles = []
        self._open = False
        self._frozen: list = []
        self._acts: dict = {}

    @property
    def bf16(self) -> bool:
        return self._bf16

    @bf16.setter
    def bf16(self, on: bool) -> None:
        self._bf16 = bool(on)
        if self._open:  # swap the weights now
            self._cast_weights() if self._bf16 else self._restore_weights()

    def _cast_weights(self) -> None:
        """bf16 copies of the fp32 conv/linear weights and biases (what autocast would cast them to)."""
        if self._fp32_weights:
            return
        for mod in self.net.modules():
            if not isinstance(mod, _AUTOCAST_BF16) or torch.nn.utils.parametrize.is_parametrized(mod):
                continue
            for name in ("weight", "bias"):
                p = mod._parameters.get(name)
                if p is not None and p.dtype == torch.float32:
                    self._fp32_weights.append((mod, name, p))
                    mod._parameters[name] = nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)

    def _restore_weights(self) -> None:
        for mod, name, p in reversed(self._fp32_weights):
            mod._parameters[name] = p
        self._fp32_weights = []

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
        self._frozen = [p for p in self.net.parameters() if p.requires_grad]
        for p in self._frozen:
            p.requires_grad_(False)
        if self._bf16:
            self._cast_weights()
        self._open = True
        return self

    def __exit__(self, *exc):
        self._open = False
        self._restore_weights()
        for h in self._handles:
            h.remove()
        self._handles = []
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        return False

    def __call__(self, x: torch.Tensor) -> dict:
        self._acts = {}
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.net(x)
        except _StopForward:
            out = None
        acts, self._acts = self._acts, {}
        if self.bf16:
            acts = {k: v.float() for k, v in acts.items()}
            out = out.float() if out is not None else None
        if self.need_output:
            acts[OUTPUT] = out
        missing = [n for n in self.named if n not in acts]
        if missing:
            raise RuntimeError(f"layer(s) {missing} were not reached by the forward pass")
        return acts
