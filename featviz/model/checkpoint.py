"""Checkpoints: a model on disk is a folder, `model.pt` (a plain state_dict, loaded with
weights_only=True, or the imported archive itself) and `model.json` (architecture, classes, input
shape and the input normalization the net expects). `import_weights` loads a checkpoint that other
training code saved (`checkpoint_files` reads it, `key_fit` fits its keys to the network)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import FeatvizError
from ..io import save_torch, write_json
from .checkpoint_files import describe_contents, entry_at, read_checkpoint, state_dict_entries
from .key_fit import fit_state_dict, fits


def save_model(out_dir: Path, net: nn.Module, meta: dict) -> None:
    """Write model.pt (state_dict) and model.json atomically; model.json last, so that a folder
    with model.json is complete."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_torch(out_dir / "model.pt", state)
    write_json(out_dir / "model.json", meta)


def load_state_dict(path: Path, trust: bool = False, key: str | None = None) -> dict:
    """The state_dict of a checkpoint file (bare, at `key`, or the first one nested in it)."""
    obj, _ = read_checkpoint(Path(path), trust)
    entries = [(key, entry_at(obj, key, Path(path)))] if key else state_dict_entries(obj)
    if not entries:
        raise FeatvizError(f"checkpoint {path} does not hold a state_dict (a dict of tensors): it holds "
                           f"{describe_contents(obj)}")
    return entries[0][1]


def load_weights(net: nn.Module, state: dict, source: Path) -> None:
    """Load a state_dict featviz wrote (or any that fits as saved, or with its wrapper's prefix)."""
    fit_state_dict(net, state, source)


def import_weights(net: nn.Module, path: Path, trust: bool = False, key: str | None = None,
                   what: str = "the network") -> dict:
    """Load the checkpoint at `path` into `net` as its training code saved it; returns what was
    read and adapted: {"file_format", "entry" (the key path of the state_dict, None at the top),
    "adapted": [one line each]}. `key` (model.import.key) picks the entry when several fit."""
    path = Path(path)
    obj, file_format = read_checkpoint(path, trust)
    entries = [(key, entry_at(obj, key, path))] if key else state_dict_entries(obj)
    if not entries:
        raise FeatvizError(f"checkpoint {path} does not hold a state_dict (a dict of tensors): it holds "
                           f"{describe_contents(obj)}")
    if len(entries) > 1:
        fitting = [(k, s) for k, s in entries if fits(net, s)]
        distinct = []
        for k, s in fitting:
            if not any(s is t or (s.keys() == t.keys() and all(s[n] is t[n] for n in s)) for _, t in distinct):
                distinct.append((k, s))
        if len(distinct) > 1:
            names = ", ".join(f"'{k}'" for k, _ in distinct)
            raise FeatvizError(f"model.import.key: checkpoint {path} holds several state_dicts that fit {what} "
                               f"({names}); set model.import.key to the one to import")
        if fitting:
            entries = fitting[:1]
    entry, state = entries[0]
    adapted = fit_state_dict(net, state, path, what)
    if entry is not None:
        adapted.insert(0, f"took the state_dict under '{entry}'")
    return {"file_format": file_format, "entry": entry, "adapted": adapted}
