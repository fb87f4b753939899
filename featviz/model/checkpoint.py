"""Checkpoints: a model on disk is a folder, `model.pt` (a plain state_dict, loaded with
weights_only=True, or the imported archive itself) and `model.json` (architecture, classes, input
shape and the input normalization the net expects)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import FeatvizError, why
from ..io import save_torch, write_json


def save_model(out_dir: Path, net: nn.Module, meta: dict) -> None:
    """Write model.pt (state_dict) and model.json atomically; model.json last, so that a folder
    with model.json is complete."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_torch(out_dir / "model.pt", state)
    write_json(out_dir / "model.json", meta)


def refused_global(exc: BaseException) -> str | None:
    """The class or function that torch's weights_only unpickler refused to load ('GLOBAL
    __main__.Payload'), or None when `exc` is any other failure (a truncated or corrupt file)."""
    import pickle

    if not isinstance(exc, pickle.UnpicklingError):
        return None
    m = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return m.group(1) if m else None


def load_state_dict(path: Path, trust: bool = False) -> dict:
    path = Path(path)
    if not path.exists():
        raise FeatvizError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = refused_global(exc)
        if not trust:
            if refused:
                raise FeatvizError(
                    f"checkpoint {path} needs arbitrary unpickling: it refers to `{refused}`, a class or function "
                    f"the safe loader (torch.load with weights_only=True) refuses. If you trust its source, set "
                    f"trust_checkpoint: true (--trust-checkpoint); better, save a plain state_dict") from None
            raise FeatvizError(f"checkpoint {path} is truncated, corrupt or not a PyTorch file ({why(exc)}): "
                               f"re-create it") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise FeatvizError(f"checkpoint {path} is truncated, corrupt or not a PyTorch file ({why(exc2)}): "
                               f"re-create it") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FeatvizError(f"checkpoint {path} does not hold a state_dict (a dict of tensors)")
    return obj


def load_weights(net: nn.Module, state: dict, source: Path) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise FeatvizError(
            f"checkpoint {source} does not match the architecture: "
            + (f"missing keys {missing[:5]}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected keys {unexpected[:5]}" if unexpected else ""))
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        k, got, want = wrong[0]
        raise FeatvizError(f"checkpoint {source} does not match the architecture: '{k}' has shape {got}, the model expects {want}")
    net.load_state_dict(state)
