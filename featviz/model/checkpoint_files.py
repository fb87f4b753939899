"""Reading a checkpoint file as training code saved it: which file format it is, and where in it the
network's weights are.

A checkpoint is whatever the training code wrote (timm's `_helpers.load_state_dict` sees the same
zoo): a bare state_dict, or a dict holding one under `state_dict`, `model`, `model_state_dict`,
`net`, `network`, `ema`, `model_ema`, `state_dict_ema`... beside the epoch, the optimizer's state
and the best accuracy (a Lightning `.ckpt` is such a dict with `state_dict`). Files are

- torch's zip archives (`torch.save` since 1.6) and legacy (pre-zip) torch pickles, both read with
  `torch.load(weights_only=True)`; an arbitrary pickle only with `trust_checkpoint`;
- `.safetensors` files (the format of timm and the Hugging Face hub), read with the `safetensors`
  package.

`read_checkpoint` returns the object and a name for its file format; `state_dict_entries` lists
every state_dict inside it with the key path it sits under. Which of them fits the network is
`featviz.model.key_fit`'s question.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import FeatvizError, why

# where training code nests the weights, in the order a tie is reported
NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "model_ema", "ema",
                "state_dict_ema", "ema_state_dict", "weights", "params")
_SAFETENSORS_SUFFIXES = (".safetensors",)


def refused_global(exc: BaseException) -> str | None:
    """The class or function that torch's weights_only unpickler refused to load (`posix.system`,
    `__main__.Payload`), or None when `exc` is any other failure (a truncated or corrupt file).
    torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module ... is
    blocked" depending on its version and on the module."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return m.group(1) if m else None


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError):  # a corrupt file can look like a broken archive
        return False


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if path.suffix.lower() in _SAFETENSORS_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < (1 << 30)


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise FeatvizError(f"checkpoint {path} is a safetensors file: install the `safetensors` package "
                           f"(pip install safetensors)") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise FeatvizError(f"checkpoint {path} is not a readable safetensors file ({why(exc)}): re-create it") from None


def read_checkpoint(path: Path, trust: bool = False) -> tuple[object, str]:
    """The object a checkpoint file holds and its file format ("torch zip archive", "legacy torch
    pickle", "safetensors"). Raises FeatvizError for a missing, corrupt or refused file."""
    path = Path(path)
    if not path.is_file():
        raise FeatvizError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        return _read_safetensors(path), "safetensors"
    file_format = "torch zip archive" if _is_zip(path) else "legacy torch pickle"
    try:
        return torch.load(path, map_location="cpu", weights_only=True), file_format
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        refused = refused_global(exc)
        if not trust:
            if refused:
                raise FeatvizError(
                    f"checkpoint {path} was refused as unsafe: unpickling it would load `{refused}`, which the "
                    f"safe loader (torch.load with weights_only=True) does not allow. If you trust its source, set "
                    f"trust_checkpoint: true (--trust-checkpoint); better, save a plain state_dict") from None
            raise FeatvizError(f"checkpoint {path} is truncated, corrupt or not a PyTorch file ({why(exc)}): "
                               f"re-create it") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False), file_format + " (trusted pickle)"
    except Exception as exc:  # noqa: BLE001
        raise FeatvizError(f"checkpoint {path} is truncated, corrupt or not a PyTorch file ({why(exc)}): "
                           f"re-create it") from None


def _tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values()) \
        and all(isinstance(k, str) for k in obj)


def state_dict_entries(obj, depth: int = 2) -> list[tuple[str | None, dict]]:
    """Every state_dict in a checkpoint object, with the key path it sits under (None: the object
    itself), the usual nesting keys first. A module (a trusted whole-model pickle) gives its own."""
    if isinstance(obj, nn.Module):
        return [(None, obj.state_dict())]
    if _tensor_dict(obj):
        return [(None, obj)]
    if not isinstance(obj, dict) or depth == 0:
        return []
    keys = [k for k in NESTING_KEYS if k in obj] + [k for k in obj if k not in NESTING_KEYS]
    found = []
    for key in keys:
        if not isinstance(key, str):
            continue
        for sub, state in state_dict_entries(obj[key], depth - 1):
            found.append((key if sub is None else f"{key}.{sub}", state))
    return found


def entry_at(obj, key: str, path: Path) -> dict:
    """The state_dict at a dotted key path (`model.import.key`), checked."""
    cur = obj
    walked = []
    for part in key.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
            walked.append(part)
            continue
        here = ".".join(walked) or "the top level"
        keys = list(cur) if isinstance(cur, dict) else []
        raise FeatvizError(f"model.import.key: checkpoint {path} has no '{part}' at {here}"
                           + (f" (keys there: {', '.join(map(str, keys[:12]))})" if keys else ""))
    if isinstance(cur, nn.Module):
        return cur.state_dict()
    if not _tensor_dict(cur):
        raise FeatvizError(f"model.import.key: '{key}' in checkpoint {path} is not a state_dict (a dict of tensors)")
    return cur


def describe_contents(obj) -> str:
    """What a checkpoint holds, for a message when it holds no state_dict."""
    if isinstance(obj, dict):
        return "a dict with keys " + ", ".join(repr(k) for k in list(obj)[:12])
    return f"a {type(obj).__name__}"
