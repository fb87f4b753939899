"""What can be visualized in any nn.Module, and which of it a run visualizes.

One dummy forward pass with hooks on every module lists the *candidates*: each module (at any
depth, nested names like `layer3.1` or `features.28`) whose output is a tensor of shape (N, C, H, W)
(kind "conv": one unit per channel) or (N, F) (kind "dense": one unit per output), in the order the
forward pass computes them, with its role (conv, linear, activation, pool, norm, block, other) and
module type. A module called more than once (torchvision's BasicBlock reuses one `relu`) is read at
its first call. Modules that only reshape or pass their input on (Flatten, Dropout, Identity...)
are not candidates, and neither is the module producing the class logits: the classes are their
own layer, `classes`. Two modules returning the very same tensor (a stage and its last block)
are one layer: the first one selected keeps it, the other is listed as an alias.

`ascent.targets` chooses among the candidates: a list whose items are module names or globs
(`"layer*.*"`, `"features.*"`: `*` stays within a dotted part, `**` crosses them), `{type: <role>,
name: <glob>}` objects, or `default`. The default:
- spec-built and imported networks: every conv and every dense (Linear) layer, as featviz always did;
- torchvision architectures: the stem conv, the block and stage outputs (containers reached from the
  root through nn.Sequential containers only: ResNet's `layer2` and `layer2.1`, MobileNet's
  `features.3`, EfficientNet's `features.2.1`), the final conv of each innermost block (the last
  conv in registration order, outside `downsample`/`shortcut` branches), for plain conv trunks
  (VGG, AlexNet `features`) the last conv and last activation before each pooling, and every
  hidden Linear layer.
The classes are always a layer.
"""
from __future__ import annotations

import difflib
import math
import re

import torch
from torch import nn

from .errors import FeatvizError
from .model.hookable import no_inplace

CLASS_LAYER = "classes"
ROLES = ("conv", "linear", "activation", "pool", "norm", "block", "other")

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm)
_PASS_ON = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Softmax,
            nn.LogSoftmax)
_SKIP_BRANCHES = ("downsample", "shortcut")


def role_of(mod: nn.Module) -> str:
    if isinstance(mod, nn.Conv2d):
        return "conv"
    if isinstance(mod, nn.Linear):
        return "linear"
    if isinstance(mod, _ACTIVATIONS):
        return "activation"
    if isinstance(mod, _POOLS):
        return "pool"
    if isinstance(mod, _NORMS):
        return "norm"
    if any(True for _ in mod.children()):
        return "block"
    return "other"


def _passes_on(mod: nn.Module) -> bool:
    name = type(mod).__name__
    return isinstance(mod, _PASS_ON) or name in ("Permute", "StochasticDepth")


def candidates(net: nn.Module, input_shape) -> tuple[list[dict], str | None, torch.Tensor]:
    """Every module with a (N, C, H, W) or (N, F) tensor output, in computation order; the name of
    the module producing the network output (the class logits); the network output."""
    first: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor | None]] = {}
    order: list[str] = []
    calls: dict[str, int] = {}
    hooks = []

    def hook(name):
        def fn(mod, inputs, out):
            calls[name] = calls.get(name, 0) + 1
            if name in first:
                return
            x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            first[name] = (mod, out, x)
            order.append(name)
        return fn

    no_inplace(net)
    for name, mod in net.named_modules():
        if name:
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    logits = next((name for name in order if first[name][1] is out), None)
    if logits is None:  # the output is a copy of the last module's (e.g. `return self.fc(x) * 1`)
        last = next((n for n in reversed(order) if isinstance(first[n][1], torch.Tensor)), None)
        if last is not None and first[last][1].shape == out.shape and torch.equal(first[last][1], out):
            logits = last
    found, owner = [], {}
    for name in order:
        mod, o, x = first[name]
        if o is out or name == logits:
            continue
        if not isinstance(o, torch.Tensor) or o.dim() not in (2, 4) or o.shape[0] != 1 or o.numel() == 0:
            continue
        if _passes_on(mod) or o is x:
            continue
        if isinstance(mod, nn.Linear) and o.dim() != 2:
            continue  # a Linear on channels-last maps (inside ConvNeXt blocks): dim 1 is not its units
        entry = {"name": name, "kind": "conv" if o.dim() == 4 else "dense", "role": role_of(mod),
                 "module_type": type(mod).__name__, "units": int(o.shape[1]), "output_shape": list(o.shape[1:]),
                 "calls": calls[name], "_input": id(x) if x is not None else None}
        same = owner.get(id(o))
        if same is not None:
            entry["same_as"] = same
        else:
            owner[id(o)] = name
        found.append(entry)
    return found, logits, out


def _is_flat_trunk(mod: nn.Module) -> bool:
    """A plain conv trunk (VGG's or AlexNet's `features`): an nn.Sequential of leaf modules with
    at least two poolings."""
    kids = list(mod.children())
    return (isinstance(mod, nn.Sequential) and kids and all(not list(k.children()) for k in kids)
            and sum(isinstance(k, (nn.MaxPool2d, nn.AvgPool2d)) for k in kids) >= 2)


def torchvision_default(net: nn.Module, found: list[dict]) -> list[str]:
    """The default targets of a torchvision architecture (see the module docstring)."""
    mods = dict(net.named_modules())
    listed = {e["name"]: e for e in found}
    picked: list[str] = []
    convs = [e["name"] for e in found if e["role"] == "conv"]
    if convs:
        picked.append(convs[0])

    def through_sequentials(name: str) -> bool:
        parts = name.split(".")
        return all(isinstance(mods[".".join(parts[:i])], nn.Sequential) for i in range(1, len(parts)))

    blocks = [e["name"] for e in found if e["role"] == "block" and e["kind"] == "conv"
              and through_sequentials(e["name"]) and not _is_flat_trunk(mods[e["name"]])]
    inputs = {e["name"]: e["_input"] for e in found}
    for b in blocks:
        picked.append(b)
        if any(o.startswith(b + ".") for o in blocks):
            continue  # a stage: its blocks say it
        fed = [k for k, _ in mods[b].named_children()
               if k not in _SKIP_BRANCHES and f"{b}.{k}" in inputs and inputs[f"{b}.{k}"] == inputs[b]]
        if len(fed) > 1:
            continue  # parallel branches (Inception): no single final conv
        last = None
        for sub, m in mods[b].named_modules():
            if isinstance(m, nn.Conv2d) and not any(p in _SKIP_BRANCHES for p in sub.split(".")):
                last = f"{b}.{sub}"
        if last in listed:
            picked.append(last)
    for name, m in mods.items():
        if not (name and _is_flat_trunk(m)):
            continue
        kids = list(m.named_children())
        stretch: list[str] = []
        for i, (k, km) in enumerate(kids):
            full = f"{name}.{k}"
            if isinstance(km, (nn.MaxPool2d, nn.AvgPool2d)) or i == len(kids) - 1:
                last_conv = next((s for s in reversed(stretch) if isinstance(mods[s], nn.Conv2d)), None)
                last_act = next((s for s in reversed(stretch) if isinstance(mods[s], _ACTIVATIONS)), None)
                picked += [s for s in (last_conv, last_act) if s in listed]
                stretch = []
            else:
                stretch.append(full)
    picked += [e["name"] for e in found if e["role"] == "linear"]
    order = {e["name"]: i for i, e in enumerate(found)}
    return sorted(set(picked), key=order.__getitem__)


def timm_default(net: nn.Module, found: list[dict]) -> list[str]:
    """timm architectures: torchvision's default, plus the stages timm names (`feature_info`:
    ConvNeXt's `stages.1`, EfficientNet's `blocks.2`) and the blocks inside each stage."""
    from .model.timm_archs import stage_modules

    listed = {e["name"] for e in found}
    picked = set(torchvision_default(net, found))
    mods = dict(net.named_modules())
    for stage in stage_modules(net):
        if stage not in mods:
            continue
        picked.add(stage)
        inner = mods[stage]
        holder = inner.blocks if isinstance(getattr(inner, "blocks", None), nn.Sequential) else inner
        prefix = f"{stage}.blocks" if holder is not inner else stage
        if isinstance(holder, nn.Sequential):
            picked |= {f"{prefix}.{k}" for k, _ in holder.named_children()}
    order = {e["name"]: i for i, e in enumerate(found)}
    return sorted((n for n in picked if n in listed), key=order.__getitem__)


def default_family(fmt: str | None) -> str:
    """Which default targets a model format gets (model.json's `format`)."""
    return fmt if fmt in ("torchvision", "timm") else "spec"


def spec_default(found: list[dict]) -> list[str]:
    return [e["name"] for e in found if e["role"] in ("conv", "linear")]


def glob_match(pattern: str, name: str) -> bool:
    """Module-name globs: `*` and `?` stay within one dotted part (`layer*.*` is every block of
    every ResNet stage, not their insides), `**` crosses parts (`layer1.**` is everything in layer1)."""
    rx = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            rx, i = rx + ".*", i + 2
        elif pattern[i] == "*":
            rx, i = rx + "[^.]*", i + 1
        elif pattern[i] == "?":
            rx, i = rx + "[^.]", i + 1
        else:
            rx, i = rx + re.escape(pattern[i]), i + 1
    return re.fullmatch(rx, name) is not None


def _describe(target) -> str:
    return target if isinstance(target, str) else "{" + ", ".join(f"{k}: {v}" for k, v in target.items()) + "}"


def select(found: list[dict], targets, default: list[str], where: str = "ascent.targets") -> list[dict]:
    """The candidates that `targets` names (None: `default`), in computation order, one layer per
    distinct tensor (aliases recorded). Raises FeatvizError for a target that matches nothing."""
    if targets is None:
        targets = ["default"]
    if not isinstance(targets, (list, tuple)):
        raise FeatvizError(f"{where}: expected a list of module names, globs or {{type, name}} objects")
    names = [e["name"] for e in found]
    wanted: set[str] = set()
    for i, t in enumerate(targets):
        if t == "default":
            hit = set(default)
        elif isinstance(t, str):
            hit = {n for n in names if glob_match(t, n)}
        elif isinstance(t, dict) and set(t) <= {"type", "name"} and t:
            role, pattern = t.get("type"), t.get("name", "**")
            if role is not None and role not in ROLES:
                raise FeatvizError(f"{where}[{i}].type: unknown module type '{role}' (known: {', '.join(ROLES)})")
            hit = {e["name"] for e in found if glob_match(str(pattern), e["name"])
                   and (role is None or e["role"] == role)}
        else:
            raise FeatvizError(f"{where}[{i}]: {t!r} is neither a module name/glob, `default`, nor {{type, name}}")
        if not hit and t != "default":
            top = [n for n in names if n.count(".") <= 1]
            shown = ", ".join(top[:40]) + (", ..." if len(top) > 40 else "") + (
                f" ({len(names)} in all; `featviz units` lists them)" if len(top) < len(names) else "")
            raise FeatvizError(f"{where}[{i}]: {_describe(t)} matches no module of the network (modules: {shown})")
        wanted |= hit
    out, kept = [], {}
    for e in found:
        if e["name"] not in wanted:
            continue
        key = e.get("same_as", e["name"])
        if key in kept:
            kept[key].setdefault("aliases", []).append(e["name"])
            continue
        layer = {k: v for k, v in e.items() if k != "same_as" and not k.startswith("_")}
        kept[key] = layer
        out.append(layer)
    # every other module returning the same tensor is a name of the layer too (a stage, `layer4`, is
    # its last block's output, `layer4.1`): configs may use either
    for e in found:
        layer = kept.get(e.get("same_as", e["name"]))
        if layer is not None and e["name"] != layer["name"] and e["name"] not in layer.get("aliases", []):
            layer.setdefault("aliases", []).append(e["name"])
    return out


def enumerate_units(net: nn.Module, input_shape, classes: list[str], targets=None, family: str = "spec") -> dict:
    """units.json: the selected layers (then the classes) and every candidate module (`available`)."""
    found, logits, out = candidates(net, input_shape)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != len(classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FeatvizError(f"the model's output has shape {shape}; expected (batch, {len(classes)}) class logits")
    if any(e["name"] == CLASS_LAYER for e in found):
        raise FeatvizError(f"the model has a module named '{CLASS_LAYER}', a name featviz reserves for the class logits")
    default = {"torchvision": torchvision_default, "timm": timm_default}.get(family, lambda n, f: spec_default(f))(net, found)
    layers = select(found, targets, default)
    for layer in layers:
        layer["receptive_field"] = None
    layers.append({"name": CLASS_LAYER, "kind": "class", "role": "class", "units": len(classes),
                   "output_shape": [len(classes)], "module": logits, "unit_names": list(classes)})
    return {"input_shape": list(input_shape), "classes": list(classes), "layers": layers,
            "available": [{k: e[k] for k in ("name", "kind", "role", "module_type", "units", "output_shape", "calls")}
                          for e in found]}


def layer_names(layer: dict) -> set[str]:
    """Every name a config may use for a layer: its own and its aliases' (modules returning the
    same tensor, e.g. a ResNet stage and its last block)."""
    return {layer["name"], *layer.get("aliases", [])}


def _unit_index(layer: dict, u) -> int | None:
    """A unit given by number, or (classes) by name; None when the layer has no such unit."""
    if isinstance(u, bool):
        return None
    if isinstance(u, int):
        return u if 0 <= u < layer["units"] else None
    names = layer.get("unit_names") or []
    return names.index(u) if u in names else None


def selected_units(layer: dict, ascent_cfg: dict) -> list[int]:
    """The units of a layer that the config asks to visualize: all of them, unless
    `ascent.layers` leaves the layer out or `ascent.units` lists some (by number, classes also by
    name). Layers may be named by any of their names (layer_names)."""
    names = layer_names(layer)
    wanted_layers = ascent_cfg.get("layers")
    if wanted_layers and not names & set(wanted_layers):
        return []
    picked = [u for key, us in (ascent_cfg.get("units") or {}).items() if key in names for u in us]
    if not picked:
        return list(range(layer["units"]))
    return sorted({i for i in (_unit_index(layer, u) for u in picked) if i is not None})


def check_selection(units: dict, ascent_cfg: dict, where: str = "ascent") -> None:
    """`ascent.layers` and `ascent.units` name layers of units.json and units they have."""
    for name in ascent_cfg.get("layers") or []:
        try:
            find_layer(units, name)
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.layers: {exc}") from None
    for name, picked in (ascent_cfg.get("units") or {}).items():
        try:
            layer = find_layer(units, name)
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.units: {exc}") from None
        bad = [u for u in picked if _unit_index(layer, u) is None]
        if bad and isinstance(bad[0], str):
            names = layer.get("unit_names") or []
            close = difflib.get_close_matches(bad[0], names, n=3)
            raise FeatvizError(f"{where}.units.{name}: '{bad[0]}' is not a unit name of {name}"
                               + (f" (did you mean {', '.join(close)}?)" if close else
                                  " (units are numbered; classes may also be named)"))
        if bad:
            raise FeatvizError(f"{where}.units.{name}: unit {bad[0]} is out of range "
                               f"({name} has {layer['units']} units: 0..{layer['units'] - 1})")


def chunks(units: list[int], chunk_size: int) -> list[list[int]]:
    return [units[s:s + chunk_size] for s in range(0, len(units), chunk_size)]


def n_chunks(n_units: int, chunk_size: int) -> int:
    return math.ceil(n_units / chunk_size)


def find_layer(units: dict, name: str) -> dict:
    """The layer of units.json a config name means (its own name or an alias)."""
    for layer in units["layers"]:
        if layer["name"] == name:
            return layer
    for layer in units["layers"]:
        if name in layer.get("aliases", []):
            return layer
    known = ", ".join(layer["name"] for layer in units["layers"])
    if any(e["name"] == name for e in units.get("available") or []):
        raise FeatvizError(f"'{name}' is a module of the network but not one of the layers ascent.targets selects "
                           f"(add it: ascent.targets: [default, {name}]; selected: {known})")
    raise FeatvizError(f"unknown layer '{name}' (known: {known})")
