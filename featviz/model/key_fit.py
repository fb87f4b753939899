"""Fitting a checkpoint's state_dict to the network that should hold it, the way training code saved
it, and saying what was adapted.

Real checkpoints carry their training code's wrappers in their keys: `module.` (nn.DataParallel,
DistributedDataParallel), `_orig_mod.` (torch.compile), a LightningModule's attribute (`model.`,
`net.`), a wrapper's (`backbone.`). `fit_state_dict` tries the network's keys as they are, with one
such prefix stripped (any prefix of the checkpoint's keys: the one under which the most keys match
the network), or with the network's own wrapper prefix added, and then, for a state_dict saved
under other names in the same order (a plain nn.Sequential's `0.weight`, ...), by order and shape.
The best candidate is loaded with the network's own `load_state_dict(strict=True)`, which also
fills BatchNorm's `num_batches_tracked` for checkpoints older than that key: featviz trusts its
answer rather than comparing key sets by hand. When nothing fits, one message says what came
closest ("after stripping 'backbone.', 47 of 97 keys match; missing: ...").
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import FeatvizError, plain

_WRAPPERS = {
    "module.": "nn.DataParallel / DistributedDataParallel",
    "_orig_mod.": "torch.compile",
}
_BN_COUNTER = "num_batches_tracked"


def _prefixes(keys, max_parts: int = 3) -> set[str]:
    """Every dotted prefix (with its trailing dot) of up to `max_parts` parts of these keys."""
    out = set()
    for k in keys:
        parts = k.split(".")
        for i in range(1, min(max_parts, len(parts) - 1) + 1):
            out.add(".".join(parts[:i]) + ".")
    return out


def _renamed(state: dict, strip: str = "", add: str = "") -> OrderedDict:
    """The state_dict with `strip` removed from the keys that start with it (the others dropped) and
    `add` put in front, its `_metadata` (BatchNorm's version, read by load_state_dict) renamed alike."""
    out = OrderedDict((add + k[len(strip):], v) for k, v in state.items() if k.startswith(strip))
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        new_meta = OrderedDict()
        for k, v in meta.items():
            dotted = k + "."
            if k == strip.rstrip(".") and strip:
                new_meta[add.rstrip(".")] = v
            elif dotted.startswith(strip):
                new_meta[(add + k[len(strip):]).rstrip(".")] = v
        out._metadata = new_meta
    return out


def _score(own: dict, state: dict) -> int:
    """How many of the network's tensors (BatchNorm's counters aside) the state gives, in shape."""
    return sum(1 for k, v in state.items()
               if k in own and not k.endswith(_BN_COUNTER) and tuple(own[k].shape) == tuple(v.shape))


def _by_order(own: dict, state: dict) -> OrderedDict | None:
    """The tensors renamed to the network's keys when they line up one to one in order and shape."""
    own_keys = [k for k in own if not k.endswith(_BN_COUNTER)]
    values = [v for k, v in state.items() if not k.endswith(_BN_COUNTER)]
    if len(own_keys) != len(values) or set(own_keys) == {k for k in state if not k.endswith(_BN_COUNTER)}:
        return None
    if not all(tuple(own[k].shape) == tuple(v.shape) for k, v in zip(own_keys, values)):
        return None
    return OrderedDict(zip(own_keys, values))


def _candidates(own: dict, state: dict):
    """(how, renamed state) for every renaming worth trying, as-is first."""
    yield "", state
    for p in sorted(_prefixes(state), key=len):
        yield f"strip:{p}", _renamed(state, strip=p)
    for p in sorted(_prefixes(own), key=len):
        if not any(k.startswith(p) for k in state):
            yield f"add:{p}", _renamed(state, add=p)


def _describe(how: str) -> str:
    kind, _, p = how.partition(":")
    if kind == "strip":
        return f"stripping '{p}'"
    if kind == "add":
        return f"adding '{p}'"
    return "as saved"


def _problems(own: dict, state: dict) -> tuple[list[str], list[str], list[tuple[str, tuple, tuple]]]:
    """Missing keys (BatchNorm's counters aside: load_state_dict decides those), unexpected keys,
    shape mismatches."""
    missing = [k for k in own if k not in state and not k.endswith(_BN_COUNTER)]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    return missing, unexpected, shapes


def _listing(keys: list[str], n: int = 4) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(f"'{k}'" for k in keys[:n]) + more


def _closest_message(source, what: str, own: dict, how: str, state: dict) -> str:
    missing, unexpected, shapes = _problems(own, state)
    matched = _score(own, state)
    parts = [f"{'after ' if how else ''}{_describe(how)}, {matched} of {len([k for k in own if not k.endswith(_BN_COUNTER)])} "
             f"network keys match"]
    if missing:
        parts.append(f"missing: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected: {_listing(unexpected)}")
    if shapes:
        k, got, want = shapes[0]
        parts.append(f"'{k}' is {got} in the file but {want} in the network"
                     + (f" (+{len(shapes) - 1} more shape mismatches)" if len(shapes) > 1 else ""))
    return f"checkpoint {source} does not fit {what}: " + "; ".join(parts)


def fit_state_dict(net: nn.Module, state: dict, source, what: str = "the network") -> list[str]:
    """Load `state` into `net` (strict), renamed as needed; returns what was adapted, one line each
    (empty when it loaded as saved). Raises FeatvizError saying what came closest."""
    own = net.state_dict()
    n_own = len([k for k in own if not k.endswith(_BN_COUNTER)])
    best_how, best = "", state
    best_score = -1
    for how, cand in _candidates(own, state):
        s = _score(own, cand)
        if s > best_score:
            best_how, best, best_score = how, cand, s
        if s == n_own:
            break
    adapted: list[str] = []
    missing, unexpected, shapes = _problems(own, best)
    if missing or unexpected or shapes:
        ordered = _by_order(own, best) or _by_order(own, state)
        if ordered is None:
            raise FeatvizError(_closest_message(source, what, own, best_how, best))
        best_how, best = "order", ordered
        adapted.append(f"renamed {len(ordered)} tensors to the network's names by their order and shapes")
    kind, _, prefix = best_how.partition(":")
    if kind == "strip":
        dropped = len(state) - len(best)
        why_prefix = _WRAPPERS.get(prefix, "a wrapper's attribute, e.g. a LightningModule's")
        adapted.insert(0, f"stripped the key prefix '{prefix}' ({why_prefix})")
        if dropped:
            outside = [k for k in state if not k.startswith(prefix)]
            adapted.append(f"ignored {dropped} tensors outside '{prefix}' ({_listing(outside, 3)})")
    elif kind == "add":
        adapted.insert(0, f"added the key prefix '{prefix}' (the network wraps the saved one)")
    filled = [k for k in own if k.endswith(_BN_COUNTER) and k not in best]
    try:
        net.load_state_dict(best, strict=True)
    except RuntimeError as exc:
        raise FeatvizError(f"checkpoint {source} does not fit {what} ({_describe(best_how)}): "
                           f"{plain(str(exc), 400)}") from None
    if filled:
        adapted.append(f"filled {len(filled)} BatchNorm num_batches_tracked counters (a checkpoint older than "
                       f"that key; torch's load_state_dict fills them)")
    stored = {v.dtype for v in state.values() if v.is_floating_point()}
    held = {v.dtype for v in own.values() if v.is_floating_point()}
    if stored and stored != held:
        adapted.append(f"weights stored as {', '.join(sorted(str(d).replace('torch.', '') for d in stored))}, "
                       f"loaded as {', '.join(sorted(str(d).replace('torch.', '') for d in held))}")
    return adapted


def fits(net: nn.Module, state: dict) -> bool:
    """Whether `state` would fit `net` (some renaming matching every key and shape), without loading."""
    own = net.state_dict()
    n_own = len([k for k in own if not k.endswith(_BN_COUNTER)])
    for _, cand in _candidates(own, state):
        if _score(own, cand) == n_own and not _problems(own, cand)[1]:
            return True
    return _by_order(own, state) is not None

