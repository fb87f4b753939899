"""Foreign model formats: read a network trained elsewhere into an eager, hookable nn.Module.

A run's `model.import` names one file and how to read it (`format`, `auto` by default):

- `spec`: a state_dict for a featviz spec (`model.preset` or `model.layers` of the same run).
  Keys may be featviz's names (conv1, fc1, ...) or any names in the same order with the same
  shapes (e.g. a plain nn.Sequential's 0.weight, 3.weight, ...).
- `class`: a state_dict plus `class: package.module:Class` (built with `kwargs`; `code_path` is
  a folder put in front of sys.path to find the module).
- `torchscript`: a `torch.jit.save` archive.
- `export`: a `torch.export.save` archive (export with a dynamic batch dimension).

State dicts are read with `torch.load(weights_only=True)`; a file that needs arbitrary unpickling
is refused unless the config says `trust_checkpoint: true`.

Hooks do not work on TorchScript modules (`register_forward_hook is not supported on
ScriptModules`) and an exported program has no submodules at all, so both are turned into an eager
`torch.fx.GraphModule`: TorchScript is converted to an ExportedProgram (torch's TS2EPConverter),
and every `aten.conv2d` / `aten.linear` call whose weight is a parameter becomes a call of a real
`nn.Conv2d` / `nn.Linear` holding that parameter, named after the module that owned it in the
original network (`features.0`, `fc1`, ...). Units, probes and ascent then hook those modules like
any other. Where the conversion fails, the scripted module is used as a black box: its accuracy
and its classes are reported, and no hidden layer is listed.

The imported file is copied into `results/<run>/model/model.pt` (a state_dict for `spec` and
`class`; the archive itself for `torchscript` and `export`), `model.json` records the format, and
`metrics.json` holds the test accuracy on the configured dataset (`epochs` is empty).
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import FeatvizError, why
from ..io import file_sha256

FORMATS = ("auto", "spec", "torchvision", "timm", "class", "torchscript", "export")


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def detect_format(imp: dict, model_cfg: dict) -> str:
    """The import format: as configured, or guessed from the config and the file."""
    fmt = imp.get("format") or "auto"
    if fmt not in FORMATS:
        raise FeatvizError(f"model.import.format: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if fmt != "auto":
        return fmt
    if imp.get("class"):
        return "class"
    names = _zip_names(Path(imp["path"]))
    if any(n.endswith("/models/model.json") or "serialized_exported_program" in n for n in names):
        return "export"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    for zoo in ("torchvision", "timm"):
        if model_cfg.get(zoo):
            return zoo
    if model_cfg.get("preset") or model_cfg.get("layers"):
        return "spec"
    raise FeatvizError(
        f"model.import: cannot tell how to read {imp['path']}: it is neither a TorchScript nor a "
        f"torch.export archive. For a state_dict, give model.torchvision or model.timm (an architecture by name), "
        f"model.preset or model.layers (its featviz spec) or model.import.class (package.module:Class)")


def _code_file(class_path: str, code_path: str | None) -> Path | None:
    """The source file of `package.module` without importing it (for the run id)."""
    module = class_path.split(":", 1)[0]
    rel = Path(*module.split("."))
    for base in ([Path(code_path)] if code_path else []) + [Path(p) for p in sys.path if p]:
        for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if cand.is_file():
                return cand
    return None


def identity(imp: dict, model_cfg: dict, where: str = "model.import") -> dict:
    """What determines an imported model's weights, for the run id: the file's sha256 (and the
    class's source file's), the format, the class and its kwargs, the spec, the normalization."""
    path = Path(imp.get("path") or "")
    if not imp.get("path") or not path.is_file():
        raise FeatvizError(f"{where}.path: file '{imp.get('path')}' does not exist")
    fmt = detect_format(imp, model_cfg)
    ident = {"format": fmt, "sha256": file_sha256(path), "mean": imp.get("mean"), "std": imp.get("std")}
    if imp.get("key"):  # which state_dict of the file (hashed only when set: older run ids stay)
        ident["key"] = imp["key"]
    if fmt == "spec":
        from .spec import resolve_layers

        ident["layers"] = resolve_layers(model_cfg)
    if fmt in ("torchvision", "timm"):
        if not model_cfg.get(fmt):
            raise FeatvizError(f"{where}.format: {fmt} needs model.{fmt} (the architecture's name)")
        from .architecture import describe

        ident.update(describe(model_cfg), format=fmt)
    if fmt == "class":
        if not imp.get("class") or ":" not in imp["class"]:
            raise FeatvizError(f"{where}.class: expected 'package.module:Class', got '{imp.get('class')}'")
        ident["class"] = imp["class"]
        ident["kwargs"] = imp.get("kwargs") or {}
        src = _code_file(imp["class"], imp.get("code_path"))
        ident["code_sha256"] = file_sha256(src) if src else None
    return ident


# --------------------------------------------------------------------------- loading each format


def _import_class(class_path: str, code_path: str | None):
    module_name, _, cls_name = class_path.partition(":")
    if not module_name or not cls_name:
        raise FeatvizError(f"model.import.class: expected 'package.module:Class', got '{class_path}'")
    if code_path:
        code_path = str(Path(code_path).resolve())
        if code_path not in sys.path:
            sys.path.insert(0, code_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FeatvizError(f"model.import.class: cannot import module '{module_name}': {exc} "
                           f"(set model.import.code_path to the folder holding it)") from None
    cls = module
    for part in cls_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise FeatvizError(f"model.import.class: module '{module_name}' has no '{cls_name}'")
    return cls


def build_class(class_path: str, kwargs: dict | None, code_path: str | None) -> nn.Module:
    cls = _import_class(class_path, code_path)
    try:
        net = cls(**(kwargs or {}))
    except Exception as exc:
        raise FeatvizError(f"model.import.kwargs: {class_path}(**{kwargs or {}}) failed: {type(exc).__name__}: {why(exc)}") from None
    if not isinstance(net, nn.Module):
        raise FeatvizError(f"model.import.class: {class_path} did not build an nn.Module")
    return net


def _load_torchscript(path: Path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise FeatvizError(f"model.import: {path} is not a readable TorchScript archive (torch.jit.save): "
                               f"{why(exc)}") from None


@contextlib.contextmanager
def quiet_torch_logs():
    """Silence torch's own logging (export and the TorchScript converter log warnings and even
    tracebacks) while featviz reads a foreign format: featviz reports problems itself, in one line.
    Every logger is muted, whatever level torch's own logging set on its children."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _load_export(path: Path):
    try:
        with quiet_torch_logs():
            return torch.export.load(str(path))
    except Exception as exc:
        # torch's own text points at warnings it logged ("check the warnings above"), silenced here
        reason = "not an archive of torch.export.save" if "warnings above" in str(exc) else why(exc)
        raise FeatvizError(f"model.import: {path} is not a readable torch.export archive ({reason})") from None


def _holder_is_plain(mod: nn.Module, names: set[str]) -> bool:
    """True when `mod` holds only these parameters and nothing else (a placeholder that
    ExportedProgram.module() makes to carry the original names)."""
    own = {n for n, _ in mod.named_parameters(recurse=False)} | {n for n, _ in mod.named_buffers(recurse=False)}
    return not list(mod.children()) and own <= names and type(mod) in (nn.Module,)


def _set_submodule(root: nn.Module, name: str, mod: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, mod)


def _tensor_attr(gm: nn.Module, target: str):
    """The parameter or buffer at a dotted path (TorchScript's become buffers when converted)."""
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, torch.Tensor) else None


def _as_parameter(t: torch.Tensor) -> nn.Parameter:
    return t if isinstance(t, nn.Parameter) else nn.Parameter(t.detach(), requires_grad=False)


def _conv_or_linear(node):
    """(is_conv, input, weight, bias, (stride, padding, dilation, groups)) of an aten 2-d
    convolution or linear call, in any of the forms that export and the TorchScript converter
    produce (a traced net gives `_convolution_mode`, older graphs `convolution`/`_convolution`);
    None for anything else (transposed convolutions included)."""
    aten = torch.ops.aten
    t = node.target
    if node.kwargs:
        return None
    a = list(node.args) + [None] * 9
    if t == aten.linear.default:
        return False, a[0], a[1], a[2], None
    if t in (aten.conv2d.default, aten.conv2d.padding, aten._convolution_mode.default):
        return True, a[0], a[1], a[2], (a[3] if a[3] is not None else 1, a[4] if a[4] is not None else 0,
                                        a[5] if a[5] is not None else 1, a[6] if a[6] is not None else 1)
    if t in (aten.convolution.default, aten._convolution.default):
        if a[6]:  # transposed
            return None
        return True, a[0], a[1], a[2], (a[3], a[4], a[5], a[8])
    return None


def modules_from_graph(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite a GraphModule from ExportedProgram.module(): each aten conv2d / linear call on
    parameter weights becomes a call of a real nn.Conv2d / nn.Linear holding those parameters, so
    that forward hooks see it. Shape guards of the export are dropped (the batch may vary)."""
    graph = gm.graph
    made: dict[str, str] = {}  # weight target -> module name
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            graph.erase_node(node)
            continue
        if node.op != "call_function":
            continue
        call = _conv_or_linear(node)
        if call is None:
            continue
        conv, x, w, b, conv_args = call
        if getattr(w, "op", None) != "get_attr" or (b is not None and getattr(b, "op", None) != "get_attr"):
            continue
        wt = str(w.target)
        if wt not in made:
            weight = _tensor_attr(gm, wt)
            bias = _tensor_attr(gm, str(b.target)) if b is not None else None
            if weight is None or (b is not None and bias is None) or (conv and weight.dim() != 4):
                continue
            if conv:
                stride, padding, dilation, groups = conv_args
                mod = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride,
                                padding=padding, dilation=dilation, groups=groups, bias=bias is not None)
            else:
                mod = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            mod.weight = _as_parameter(weight)
            if bias is not None:
                mod.bias = _as_parameter(bias)
            owner, _, _ = wt.rpartition(".")
            names = {wt.rpartition(".")[2]} | ({str(b.target).rpartition(".")[2]} if b is not None else set())
            try:
                holder = gm.get_submodule(owner) if owner else None
            except AttributeError:
                holder = None
            same_owner = b is None or str(b.target).rpartition(".")[0] == owner
            if owner and holder is not None and same_owner and _holder_is_plain(holder, names):
                name = owner
            else:
                name = wt.replace(".", "_") + ("_conv" if conv else "_linear")
            _set_submodule(gm, name, mod)
            made[wt] = name
        with graph.inserting_before(node):
            new = graph.call_module(made[wt], (x,))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    out = torch.fx.GraphModule(gm, graph, class_name="ImportedNet")
    out.recompile()
    return out


class BlackBox(nn.Module):
    """A scripted network that could not be converted: callable, differentiable, but no hooks."""

    def __init__(self, scripted):
        super().__init__()
        self.scripted = scripted

    def forward(self, x):
        return self.scripted(x)


def _sample(input_shape) -> torch.Tensor:
    return torch.zeros(2, *input_shape)


def from_torchscript(path: Path, input_shape) -> tuple[nn.Module, str]:
    """An eager, hookable module from a TorchScript archive, and how it was made."""
    scripted = _load_torchscript(path)
    scripted.eval()
    try:
        from torch._export.converter import TS2EPConverter

        with quiet_torch_logs():
            ep = TS2EPConverter(scripted, (_sample(input_shape),)).convert()
            net = modules_from_graph(ep.module())
        with torch.no_grad():
            want = scripted(_sample(input_shape) + 0.5)
            got = net(_sample(input_shape) + 0.5)
        if not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
            raise RuntimeError("converted graph disagrees with the scripted module")
        return net, "torchscript converted to an fx graph with nn.Conv2d/nn.Linear modules"
    except Exception as exc:  # noqa: BLE001 - any conversion failure falls back to the black box
        return BlackBox(scripted), (f"torchscript used as a black box (hidden layers not visualized): "
                                    f"conversion failed: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")


def from_export(path: Path, input_shape) -> tuple[nn.Module, str]:
    ep = _load_export(path)
    net = modules_from_graph(ep.module())
    try:
        with torch.no_grad():
            net(torch.zeros(3, *input_shape))
    except Exception as exc:
        raise FeatvizError(
            f"model.import: {path} does not run on a batch of 3 inputs of shape {tuple(input_shape)}: "
            f"{why(exc)}. Export it with a dynamic batch dimension, e.g. "
            f"torch.export.export(net, (x,), dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}})") from None
    return net, "torch.export program as an fx graph with nn.Conv2d/nn.Linear modules"


def _contiguous_inputs(module, args):
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def guard_inputs(net: nn.Module) -> nn.Module:
    """Make the network's inputs contiguous NCHW before its forward: user code often calls
    `x.view(...)`, which fails on a permuted or channels_last input (a pre-hook on the root, so
    module names and the hooks of other stages are unchanged)."""
    net.register_forward_pre_hook(_contiguous_inputs)
    return net
