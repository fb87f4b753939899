"""Read activations by module name with forward hooks, stopping the forward
pass as soon as every requested activation has been seen."""
from __future__ import annotations

import torch
import torch.nn.utils.parametrize
from torch import nn

from .fold import folded_batchnorms

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


def _strided_depthwise_on_cpu(mod: nn.Module) -> bool:
    """A Conv2d on a CPU with one filter group per input channel and a stride: the kind whose bf16
    backward pass is slow there (measured, torch 2.14 / oneDNN, 1 thread, channels_last, batch 8:
    MobileNetV2's 576 channels at 14 px 26.4 ms forward and backward against 1.1 ms in fp32; 144 at
    56 px 33.8 against 7.2; 96 at 112 px 66 against 50)."""
    return (type(mod) is nn.Conv2d and mod.groups > 1 and mod.groups == mod.in_channels
            and tuple(mod.stride) != (1, 1) and mod.padding_mode == "zeros" and mod.weight.device.type == "cpu")


def _fp32_forward(conv: nn.Conv2d):
    """`conv`'s forward in fp32 whatever the autocast: the input cast up, the output cast back to
    the input's dtype (what the layers after it would have had)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            y = conv._conv_forward(x.float(), conv.weight.float(), None if conv.bias is None else conv.bias.float())
        return y.to(x.dtype)
    return forward


class ActivationReader:
    """Context manager; ``reader(x)`` returns ``{name: activation}``.

    ``layers`` may contain :data:`OUTPUT` (``None``) for the network output, in
    which case the full forward pass is run. While the reader is open the network's parameters are
    frozen (``requires_grad`` off, restored on exit): gradients flow to the input only, so the
    backward pass computes no weight gradients (3% of the quick MNIST net's step on CPU). In bf16 the
    convolution and linear weights are cast to bf16 once, for as long as the reader is open, instead
    of by autocast in every forward pass (the same values: autocast casts them the same way; the
    originals are put back on exit and whenever ``bf16`` is set to False). On a CPU, strided
    depthwise convolutions (MobileNet's, EfficientNet's) run in fp32 instead: their bf16 backward
    pass takes 3-24x the fp32 one's time there (`_strided_depthwise_on_cpu`). While it is open,
    the batch norms that follow a convolution no hook reads are folded into it (featviz.ascent.fold).
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
        """bf16 copies of the fp32 conv/linear weights and biases (what autocast would cast them to);
        strided depthwise convolutions on a CPU keep theirs and compute in fp32."""
        if self._fp32_weights:
            return
        for mod in self.net.modules():
            if not isinstance(mod, _AUTOCAST_BF16) or torch.nn.utils.parametrize.is_parametrized(mod):
                continue
            if _strided_depthwise_on_cpu(mod):
                mod.forward = _fp32_forward(mod)
                self._fp32_weights.append((mod, "forward", None))
                continue
            for name in ("weight", "bias"):
                p = mod._parameters.get(name)
                if p is not None and p.dtype == torch.float32:
                    self._fp32_weights.append((mod, name, p))
                    mod._parameters[name] = nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)

    def _restore_weights(self) -> None:
        for mod, name, p in reversed(self._fp32_weights):
            if name == "forward":
                del mod.forward  # the class's own again
            else:
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
        # batch norms in the convolutions before them where no hook reads those (featviz.ascent.fold):
        # the same function, without the batch norms' passes forward and back
        self._folding = folded_batchnorms(self.net, read=self._mods.values())
        self._folding.__enter__()
        if self._bf16:
            self._cast_weights()
        self._open = True
        return self

    def __exit__(self, *exc):
        self._open = False
        self._restore_weights()
        self._folding.__exit__(None, None, None)
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
