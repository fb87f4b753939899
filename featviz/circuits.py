"""Circuits: which units of the previous visualized layer drive each unit most (positively and
negatively), and which units of the next visualized layer each unit drives.

For every pair of consecutive layers (A, B) of units.json, one of two measures gives a signed
strength S[j, i] of A's unit i on B's unit j:

* **weights**, where B is a Conv2d or Linear layer that reads A's output through a plain chain of
  per-channel monotone steps only (ReLU-like activations, max/avg pooling, dropout, identity,
  BatchNorm, flatten): S[j, i] is the sum of B's weight slice W[j, i] over its kernel positions
  (conv) or over channel i's positions after flatten (dense), times the BatchNorm scale
  gamma / sqrt(var + eps) of any BatchNorm on the chain: the change of B's unit j (before its
  activation) when channel i, after the chain, rises by 1 everywhere. No data needed.
* **data**, everywhere else (a residual add, a conv in between, a block output, an imported
  network that cannot be traced): gradient x activation over a budget of test images, S[j, i] =
  mean over images of sum over positions of dR_j/dA_i * A_i, with R_j the later unit's spatial
  mean (conv) or value (dense), for the units j of B the report shows (featviz/circuits_data.py:
  one backward pass per shown unit and batch, images per batch from `memory_mb`).

`measure: data` uses the data measure for every pair (the weight measure is then only a check).

Only the units the report shows have pages: `shown` ({layer: [units]}, the run's ascent.units) and
`layers` (ascent.layers) say which. Output (`circuits.json`, version 2): per pair, its measure, a
sentence saying what it is and `measured` (the units of B whose strengths were measured: all of
them for weights, the shown ones for data), and per shown unit the strongest `top` positive and
negative partners in each direction, as [unit, strength] pairs: `in` (keyed by B's shown units:
every unit of A ranked) and `out` (keyed by A's shown units: the measured units of B ranked).
"""
from __future__ import annotations

import itertools
import json
import shlex
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .circuits_data import Pair, data_strengths
from .errors import FeatvizError, why
from .io import write_json
from .units import check_selection, selected_units

MEASURES = ("auto", "data")
VERSION = 2  # circuits.json's layout: `in` and `out` keyed by unit, for the units the report shows
# per-element steps that never flip the sign of a change (nondecreasing functions)
MONOTONE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
            nn.Softplus, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
MONOTONE_FUNCTIONS = (torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.relu6,
                      nn.functional.leaky_relu, nn.functional.elu, nn.functional.dropout,
                      nn.functional.max_pool2d, nn.functional.avg_pool2d, nn.functional.adaptive_avg_pool2d,
                      nn.functional.adaptive_max_pool2d)
FLATTEN_FUNCTIONS = (torch.flatten,)
FLATTEN_METHODS = ("flatten", "view", "reshape")


def _module_name(layer: dict) -> str:
    """The module a layer is read from; "" (the network itself) for class logits no module returns."""
    if layer.get("kind") == "class" and not layer.get("module"):
        return ""
    return layer.get("module") or layer["name"]


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping the visualized modules whole (a block output is then one node)."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def _trace(net: nn.Module, leaves: set[str]):
    """The network's torch.fx graph with `leaves` as single nodes, or None where it cannot be traced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _Tracer(leaves).trace(net)
    except Exception:  # noqa: BLE001 - any tracing failure: no weight measure, the data measure instead
        return None


def _nested(a: str, b: str) -> bool:
    """One module inside the other (a block and its own conv): not two steps of one chain."""
    return a == b or b.startswith(a + ".") or a.startswith(b + ".")


def _is_flatten(node) -> bool:
    """torch.flatten(x, 1), x.flatten(1), or x.view/reshape(x.size(0), -1): the batch kept, the rest one axis."""
    if node.op == "call_function" and node.target in FLATTEN_FUNCTIONS:
        return True
    if node.op == "call_method" and node.target in FLATTEN_METHODS:
        if node.target == "flatten":
            return True
        rest = node.args[1:]
        return len(rest) == 2 and rest[-1] == -1
    return False


def weight_path(net: nn.Module, graph, a: str, b: str) -> list | None:
    """The steps from module `a`'s output to module `b` (a Conv2d or Linear) when `b` reads `a`
    only through per-channel monotone steps, BatchNorm and flatten, as [(kind, module or None,
    name)]; None otherwise (a branch merging in, a step that mixes channels, an untraceable net)."""
    if graph is None:
        return None
    mods = dict(net.named_modules())
    target = mods.get(b)
    if not isinstance(target, (nn.Conv2d, nn.Linear)) or (isinstance(target, nn.Conv2d) and target.groups != 1):
        return None
    starts = [n for n in graph.nodes if n.op == "call_module" and n.target == a]
    ends = [n for n in graph.nodes if n.op == "call_module" and n.target == b]
    if len(starts) != 1 or len(ends) != 1:
        return None  # a module called twice: which call feeds which is not one weight slice
    end = ends[0]

    def walk(node, steps):
        for user in node.users:
            if [n for n in user.all_input_nodes if not _size_of(n, node)] != [node]:
                continue  # it merges another tensor in (a residual add, a concatenation)
            if user is end:
                return steps
            step = _step(user, mods)
            if step is not None:
                found = walk(user, steps + [step])
                if found is not None:
                    return found
        return None

    return walk(starts[0], [])


def _size_of(n, node) -> bool:
    """`node.size(...)`: read by x.view(x.size(0), -1) along with node itself, not another tensor."""
    return n.op == "call_method" and n.target == "size" and n.all_input_nodes == [node]


def _step(node, mods) -> tuple | None:
    if node.op == "call_module":
        mod = mods.get(node.target)
        if isinstance(mod, NORMS):
            return ("norm", mod, node.target)
        if isinstance(mod, nn.Flatten):
            return ("flatten", mod, node.target)
        if isinstance(mod, MONOTONE + POOLS):
            return ("pool" if isinstance(mod, POOLS) else "monotone", mod, node.target)
        return None
    if node.op == "call_function" and node.target in MONOTONE_FUNCTIONS:
        return ("monotone", None, getattr(node.target, "__name__", str(node.target)))
    if _is_flatten(node):
        return ("flatten", None, str(node.target))
    return None


def _norm_scale(mod: nn.Module) -> torch.Tensor:
    """BatchNorm's per-channel factor in eval mode: gamma / sqrt(running_var + eps)."""
    var = mod.running_var if mod.running_var is not None else torch.ones(mod.num_features)
    gamma = mod.weight if mod.weight is not None else torch.ones_like(var)
    return (gamma / torch.sqrt(var + mod.eps)).detach().float().cpu()


def weight_strengths(net: nn.Module, steps: list, b: str, units_a: int) -> tuple[np.ndarray, str] | None:
    """S (units of b, units_a) from b's weights through `steps`, and the sentence for the page;
    None where the shapes do not line up (then the data measure is used)."""
    mod = dict(net.named_modules())[b]
    w = mod.weight.detach().float().cpu()
    scale = torch.ones(units_a)
    flat = False
    for kind, m, _name in steps:
        if kind == "flatten":
            flat = True
        elif kind == "norm":
            s = _norm_scale(m)
            if flat or len(s) != units_a:
                return None  # a BatchNorm1d over flattened positions is not per channel
            scale = scale * s
    if isinstance(mod, nn.Conv2d):
        if w.shape[1] != units_a:
            return None
        s = w.sum(dim=(2, 3))
        what = f"the sum of {b}'s kernel slice W[j, i] over its {w.shape[2]}×{w.shape[3]} positions"
    else:
        if w.shape[1] == units_a:
            s = w
            what = f"{b}'s weight W[j, i]"
        elif flat and w.shape[1] % units_a == 0:
            per = w.shape[1] // units_a
            s = w.view(w.shape[0], units_a, per).sum(2)
            what = f"the sum of {b}'s weights W[j, i·{per}:(i+1)·{per}] from channel i's {per} positions after flatten"
        else:
            return None
    if any(kind == "norm" for kind, _, _ in steps):
        what += " times the BatchNorm scale γ/√(σ²+ε) of " + ", ".join(n for k, _, n in steps if k == "norm")
    via = [n for k, _, n in steps]
    what += f", through {' → '.join(via)}" if via else ", read directly"
    return (s * scale[None, :]).numpy().astype(np.float64), what


def ranked(values: np.ndarray, top: int, index=None) -> dict:
    """The `top` largest positive and most negative entries of a vector as [[unit, value], ...];
    `index`: the unit each entry stands for (default its position)."""
    index = range(len(values)) if index is None else index
    order = np.argsort(-values, kind="stable")
    pos = [[int(index[i]), float(f"{values[i]:.4g}")] for i in order[:top] if values[i] > 0]
    neg = [[int(index[i]), float(f"{values[i]:.4g}")] for i in order[::-1][:top] if values[i] < 0]
    return {"pos": pos, "neg": neg}


def _edges(s: np.ndarray, rows: list[int], shown_a: list[int], shown_b: list[int], top: int) -> dict:
    """A pair's edges from S (len(rows), units of a), the strengths on the units `rows` of b: `in`
    for each shown unit of b (every unit of a ranked), `out` for each shown unit of a (the units
    `rows` of b ranked), keyed by unit."""
    row_of = {j: r for r, j in enumerate(rows)}
    return {"measured": len(rows),
            "in": {str(j): ranked(s[row_of[j]], top) for j in shown_b if j in row_of},
            "out": {str(i): ranked(s[:, i], top, rows) for i in shown_a},
            "max_abs": float(f"{float(np.abs(s).max()) if s.size else 0.0:.4g}")}


def layer_pairs(units: dict, layers: list[str] | None = None) -> list[tuple[dict, dict]]:
    """Consecutive visualized layers of units.json (only `layers`, in units.json order, when given)."""
    from .units import layer_names

    chosen = [layer for layer in units["layers"] if not layers or layer_names(layer) & set(layers)]
    return list(itertools.pairwise(chosen))


def check_settings(images, top, measure, memory_mb=1) -> None:
    for key, v in (("images", images), ("top", top), ("memory_mb", memory_mb)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise FeatvizError(f"circuits.{key}: must be a positive integer, got {v!r}")
    if measure not in MEASURES:
        raise FeatvizError(f"circuits.measure: {measure!r} is not one of {', '.join(MEASURES)}")


def resolve_circuits(cfg) -> dict | None:
    """runs[i].circuits with the schema's defaults of missing keys filled; None: the stage is off."""
    from .schema import with_defaults

    return None if cfg is None else with_defaults("circuits", cfg)


def shown_selection(ascent: dict) -> dict:
    """What circuits measures of a run's ascent settings: the visualized layers (ascent.layers) and,
    for those, the units ascent.units lists; nothing else of the ascent (its steps, recipes) counts."""
    layers = ascent.get("layers") or None
    # units by number or (classes) by name, as given (a layer's name or an alias: featviz resolves both)
    units = {k: sorted({u for u in v if isinstance(u, int)}) + list(dict.fromkeys(u for u in v if isinstance(u, str)))
             for k, v in (ascent.get("units") or {}).items()}
    return {"layers": layers, "units": units}


def selection_args(ascent: dict) -> str:
    """`--layers ... --shown JSON` of shown_selection, for the workflow's command line."""
    sel = shown_selection(ascent)
    args = (["--layers", *sel["layers"]] if sel["layers"] else []) + (
        ["--shown", json.dumps(sel["units"], sort_keys=True)] if sel["units"] else [])
    return shlex.join(args)


def spread(n: int, k: int) -> torch.Tensor:
    """k test-image indices spread evenly over n (a test set sorted by class still gives every class)."""
    k = min(n, k)
    return torch.from_numpy(np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)))


def circuits(model, units: dict, test_images: torch.Tensor, *, images: int = 256, top: int = 6,
             measure: str = "auto", layers: list[str] | None = None, shown: dict | None = None,
             memory_mb: int | None = None, device: str = "cpu", log=None) -> dict:
    """The circuits of every consecutive pair of layers (module docstring), for the units `shown`
    ({layer: [units]}, ascent.units; every unit of a layer it leaves out)."""
    from .schema import with_defaults

    memory_mb = with_defaults("circuits", {})["memory_mb"] if memory_mb is None else memory_mb
    check_settings(images, top, measure, memory_mb)
    check_selection(units, {"layers": layers, "units": shown}, "circuits")
    net = model.net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    pairs = layer_pairs(units, layers)
    traceable = measure == "auto" and _trace(net, set()) is not None
    out_pairs, need_data = [], []
    for la, lb in pairs:
        a, b = _module_name(la), _module_name(lb)
        shown_a, shown_b = selected_units(la, {"units": shown}), selected_units(lb, {"units": shown})
        entry = {"from": la["name"], "to": lb["name"], "from_units": la["units"], "to_units": lb["units"]}
        # traced per pair, with a and b kept whole: a block's output is then one node
        steps = weight_path(net, _trace(net, {a, b}), a, b) if traceable and not _nested(a, b) else None
        got = weight_strengths(net, steps, b, la["units"]) if steps is not None else None
        if got is not None:
            s, what = got
            entry.update(measure="weights", how=f"weights: {what}",
                         **_edges(s, list(range(lb["units"])), shown_a, shown_b, top))
        else:
            need_data.append(Pair(a, b, la["units"], lb["units"], shown_b))
            entry.update(measure="data", _pair=need_data[-1], _shown=(shown_a, shown_b),
                         _spatial=len(lb.get("output_shape") or [1]) > 1,
                         _positions=len(la.get("output_shape") or [1]) > 1)
        out_pairs.append(entry)
    n_used = 0
    if need_data:
        idx = spread(len(test_images), images)
        n_used = len(idx)
        found = data_strengths(model, need_data, test_images[idx], device, memory_mb * 2 ** 20, log=log)
        for entry in out_pairs:
            pair = entry.pop("_pair", None)
            if pair is None:
                continue
            (shown_a, shown_b), spatial, positions = entry.pop("_shown"), entry.pop("_spatial"), entry.pop("_positions")
            s = found[(pair.a, pair.b)]
            if s is None:
                entry.update(measure="none", how=f"{entry['to']} does not depend on {entry['from']}",
                             **_edges(np.zeros((len(pair.rows), pair.units_a)), pair.rows, shown_a, shown_b, top))
                continue
            later = "its spatial mean" if spatial else "its value"
            summed = ", summed over positions" if positions else ""
            entry.update(how=(f"data: gradient × activation of unit i of {entry['from']} on unit j of {entry['to']} "
                              f"({later}){summed}, mean over {n_used} test images"),
                         **_edges(s, pair.rows, shown_a, shown_b, top))
    return {"version": VERSION, "measure": measure, "top": top, "images": n_used, "pairs": out_pairs}


def run_circuits(model_dir: Path, units_path: Path, data_dir: Path, out: Path, *, images: int, top: int,
                 measure: str, layers: list[str] | None, device: str, shown: dict | None = None,
                 memory_mb: int | None = None, trust: bool = False) -> dict:
    """`featviz circuits`: inputs checked before any compute, then circuits.json written atomically."""
    from .artifacts import check_prepared_file, read_prepared, read_units
    from .device import resolve_device
    from .model import load_model
    from .schema import with_defaults

    memory_mb = with_defaults("circuits", {})["memory_mb"] if memory_mb is None else memory_mb
    check_settings(images, top, measure, memory_mb)
    units = read_units(units_path)
    check_selection(units, {"layers": layers, "units": shown}, "circuits")
    check_prepared_file(data_dir, "test")  # before the model is loaded; read_prepared checks it against info.json
    model = load_model(Path(model_dir), trust)
    if list(units["input_shape"]) != list(model.input_shape):
        raise FeatvizError(f"units file {units_path} was made for inputs {units['input_shape']}, the model in "
                           f"{model_dir} takes {list(model.input_shape)}: re-run `featviz units`")
    test = read_prepared(data_dir, "test", mmap=True)
    if list(test.images.shape[1:]) != list(model.input_shape):
        raise FeatvizError(f"prepared dataset {data_dir} holds {list(test.images.shape[1:])} images, the model "
                           f"in {model_dir} takes {list(model.input_shape)}")
    dev = resolve_device(device)
    model.to(dev)
    try:
        result = circuits(model, units, test.images, images=images, top=top, measure=measure, layers=layers,
                          shown=shown, memory_mb=memory_mb, device=dev, log=lambda line: print(line, flush=True))
    except torch.OutOfMemoryError as exc:  # one line, not a traceback
        raise FeatvizError(f"circuits: out of memory on {dev} ({why(exc)}); lower circuits.memory_mb") from None
    write_json(out, result)
    return result
