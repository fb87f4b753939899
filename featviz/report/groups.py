"""A network's layers grouped by stage or block, for the run page's layers table and every page's
layer menu.

Layers are named by their module path (`layer1.0.conv2`, `features.3`, `classes`), so the
stages and blocks are the names' dotted prefixes. A network of at most FLAT_LAYERS layers (the
quick MNIST net) is listed flat. Otherwise consecutive layers sharing their first `depth` name
parts form a group; `depth` starts at 1 (`layer1`, `layer2`: a CIFAR ResNet's stages) and goes one
part deeper while one prefix holds most of the layers (MobileNet's `features` holds them all: its
blocks `features.3` are the groups). A group of more than FLAT_LAYERS layers has sections by the
next name part (a stage's blocks). Nothing here knows an architecture.
"""
from __future__ import annotations

FLAT_LAYERS = 12  # at most this many layers: one flat list, no groups
DOMINANT = 2 / 3  # a prefix holding more than this share of the layers is too coarse to group by


def _key(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth])


def _runs(layers: list[dict], depth: int) -> list[tuple[str, list[dict]]]:
    """Consecutive layers with the same first `depth` name parts, in order."""
    out: list[tuple[str, list[dict]]] = []
    for layer in layers:
        k = _key(layer["name"], depth)
        if out and out[-1][0] == k:
            out[-1][1].append(layer)
        else:
            out.append((k, [layer]))
    return out


def _depth(layers: list[dict]) -> int:
    deepest = max(len(layer["name"].split(".")) for layer in layers)
    depth = 1
    while depth < deepest and max(len(ls) for _, ls in _runs(layers, depth)) > DOMINANT * len(layers):
        depth += 1
    return depth


def _sections(key: str, layers: list[dict], depth: int) -> list[dict]:
    """A big group's layers under headings by the next name part (single layers stay unheaded)."""
    if len(layers) <= FLAT_LAYERS:
        return [{"name": None, "layers": layers}]
    out: list[dict] = []
    for k, ls in _runs(layers, depth + 1):
        name = k if len(ls) > 1 and k != key else None
        if name is None and out and out[-1]["name"] is None:
            out[-1]["layers"].extend(ls)
        else:
            out.append({"name": name, "layers": list(ls)})
    return out


def _totals(layers: list[dict]) -> dict:
    return {"units": sum(layer["units"] for layer in layers),
            "visualized": sum(len(layer["cells"]) for layer in layers),
            "dead": sum(layer["n_dead"] for layer in layers),
            "weak": sum(layer["n_weak"] for layer in layers),
            "unnatural": sum(layer.get("n_unnatural") or 0 for layer in layers)}


def group_layers(layers: list[dict]) -> list[dict]:
    """The layers (view records with name, units, cells, n_dead, n_weak) as segments in order: a
    `group` (name, layers, sections, totals) or a run of ungrouped layers (`group` False)."""
    if len(layers) <= FLAT_LAYERS:
        return [{"group": False, "name": None, "layers": list(layers)}] if layers else []
    depth = _depth(layers)
    segments: list[dict] = []
    for key, ls in _runs(layers, depth):
        if len(ls) > 1:
            segments.append({"group": True, "name": key, "layers": ls, "sections": _sections(key, ls, depth),
                             **_totals(ls)})
        elif segments and not segments[-1]["group"]:
            segments[-1]["layers"].extend(ls)
        else:
            segments.append({"group": False, "name": None, "layers": list(ls)})
    return segments


def neighbours(layers: list[dict]) -> dict[str, tuple[dict | None, dict | None]]:
    """Each layer's previous and next layer (by name), for the layer pages' arrows."""
    out = {}
    for i, layer in enumerate(layers):
        out[layer["name"]] = (layers[i - 1] if i > 0 else None, layers[i + 1] if i + 1 < len(layers) else None)
    return out
