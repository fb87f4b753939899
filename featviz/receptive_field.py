"""Where in the input one output position of a conv layer looks: size, stride (jump) and offset of
its receptive field, in input pixels. Analytic along the network's plain chain (the modules the
input flows through one after the other before anything branches: `plain_chain`), measured with
gradients elsewhere (residual and branching networks). The probe records it per conv layer; the
report cuts the top images' crops with it (featviz.crops); the comparison of two networks reads it.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

PASSTHROUGH = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Dropout2d,
               nn.BatchNorm2d, nn.Identity)
SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
# elementwise functions a plain chain may call between its modules (torch.relu(self.conv(x)))
ELEMENTWISE = (torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.leaky_relu,
               nn.functional.elu, nn.functional.gelu, nn.functional.silu, nn.functional.dropout)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def plain_chain(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules the input flows through one after the other before anything branches or
    merges, in execution order: the prefix of the network's torch.fx graph in which every node
    takes exactly the previous node's output and is a conv, a pool, an elementwise module or
    function, or batch norm. A residual block ends it (its add takes two inputs, its downsample
    conv reads the block's input, not the previous node), so does a module called twice with
    weights, or a network that cannot be traced (TorchScript, data-dependent control flow): []."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(net).graph
    except Exception:  # noqa: BLE001 - any tracing failure means: not a known plain chain
        return []
    mods = dict(net.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    chain, prev = [], None
    for node in graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                return []  # several inputs
            prev = node
            continue
        if prev is None or node.all_input_nodes != [prev]:
            break
        if node.op == "call_module":
            mod = mods.get(node.target)
            if not isinstance(mod, SPATIAL + PASSTHROUGH):
                break
            if calls[node.target] > 1 and not isinstance(mod, PASSTHROUGH):
                break  # a hook on it would read its last call, not this one
            chain.append((node.target, mod))
        elif not (node.op == "call_function" and node.target in ELEMENTWISE):
            break
        prev = node
    return chain


def _analytic(chain: list[tuple[str, nn.Module]], layer_name: str) -> dict:
    size, jump, start = 1, 1, 0.0
    for name, mod in chain:
        if isinstance(mod, SPATIAL):
            k = _pair(mod.kernel_size)[0]
            s = _pair(mod.stride)[0] if mod.stride is not None else k
            p = mod.padding if not isinstance(mod.padding, str) else ((k - 1) // 2 if mod.padding == "same" else 0)
            p = _pair(p)[0]
            d = _pair(getattr(mod, "dilation", 1))[0]
            k_eff = d * (k - 1) + 1
            start += ((k_eff - 1) / 2 - p) * jump
            size += (k_eff - 1) * jump
            jump *= s
        if name == layer_name:
            break
    return {"size": int(size), "stride": int(jump), "offset": int(round(start - (size - 1) / 2)),
            "method": "analytic"}


def receptive_fields(net: nn.Module, layer_names: list[str], input_shape) -> dict[str, dict]:
    """Size, stride (jump) and offset of one output position of each conv layer, in input pixels.

    Analytic when the layer lies on the network's plain chain (`plain_chain`: every module from
    the input to it is a conv, a pool or elementwise, one after the other); otherwise (residual
    and branching networks, untraceable ones) measured with gradients: the bounding box of the
    input pixels that influence the centre position (one forward for all such layers). A measured
    field is clipped to the image: its size is at most the image's."""
    chain = plain_chain(net)
    on_chain = {name for name, _ in chain}
    out = {name: _analytic(chain, name) for name in layer_names if name in on_chain}
    out.update(_receptive_fields_empirical(net, [n for n in layer_names if n not in on_chain], input_shape))
    return {name: out[name] for name in layer_names}


def receptive_field(net: nn.Module, layer_name: str, input_shape) -> dict:
    """`receptive_fields` of one layer."""
    return receptive_fields(net, [layer_name], input_shape)[layer_name]


def _receptive_field_empirical(net, layer_name, input_shape) -> dict:
    return _receptive_fields_empirical(net, [layer_name], input_shape)[layer_name]


def _receptive_fields_empirical(net, layer_names, input_shape) -> dict[str, dict]:
    if not layer_names:
        return {}
    mods = dict(net.named_modules())
    outs: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda m, i, o: outs.setdefault(name, o)  # the first call, as `featviz units` reads it

    hooks = [mods[name].register_forward_hook(keep(name)) for name in dict.fromkeys(layer_names)]
    dev = next(net.parameters(), torch.empty(0)).device
    x = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(dev).requires_grad_(True)
    try:
        with torch.enable_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    result = {}
    names = list(dict.fromkeys(layer_names))
    for n, name in enumerate(names):
        a = outs[name]
        hh, ww = a.shape[-2:]
        cy, cx = hh // 2, ww // 2
        with torch.enable_grad():
            g, = torch.autograd.grad(a[0, :, cy, cx].sum(), x, retain_graph=n < len(names) - 1, allow_unused=True)
        nz = torch.nonzero(g[0].abs().sum(0)).cpu() if g is not None else torch.zeros((0, 2), dtype=torch.int64)
        if len(nz) == 0:
            result[name] = {"size": 1, "stride": 1, "offset": 0, "method": "empirical"}
            continue
        size = int((nz.max(0).values - nz.min(0).values).max()) + 1
        stride = max(1, round(input_shape[-1] / ww))
        offset = int(nz[:, 0].min()) - cy * stride
        result[name] = {"size": size, "stride": stride, "offset": offset, "method": "empirical"}
    return result
