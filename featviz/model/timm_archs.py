"""timm's architectures by name: `model: {timm: resnet50, kwargs: {...}}`, where timm is installed
(`pip install 'featviz[timm]'`).

Built with `timm.create_model(name, pretrained=False, num_classes=...)` for the dataset's classes
(trained like any featviz network) or for a checkpoint's (`model.import.path`: a timm state_dict,
`.pth` or `.safetensors` as the Hugging Face hub ships them), or with timm's own pretrained weights
(`model.weights: pretrained`: a download from the hub; offline it fails with one message saying how
to import a downloaded file instead). timm's pretrained config (`pretrained_cfg`) gives the input
normalization and size where the config gives none.
"""
from __future__ import annotations

import difflib

from torch import nn

from ..errors import FeatvizError, why


def _timm(where: str):
    try:
        import timm
    except ImportError:
        raise FeatvizError(f"{where}: timm architectures need the timm package (pip install 'featviz[timm]' "
                           f"or pip install timm)") from None
    return timm


def check_name(name: str, where: str = "model.timm") -> None:
    timm = _timm(where)
    names = timm.list_models()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise FeatvizError(f"{where}: '{name}' is not an architecture of timm {timm.__version__}{hint}; "
                           f"timm.list_models() lists them")


def build_kwargs(name: str, kwargs: dict | None) -> dict:
    kw = dict(kwargs or {})
    for key in ("num_classes", "pretrained"):
        if key in kw:
            raise FeatvizError(f"model.kwargs.{key}: set by featviz (num_classes from the dataset or the checkpoint, "
                               f"pretrained by model.weights); leave it out")
    return kw


def build(name: str, num_classes: int, kwargs: dict | None = None, where: str = "model") -> nn.Module:
    """A randomly initialised timm architecture with `num_classes` outputs."""
    timm = _timm(f"{where}.timm")
    check_name(name, f"{where}.timm")
    kw = build_kwargs(name, kwargs)
    try:
        return timm.create_model(name, pretrained=False, num_classes=int(num_classes), **kw)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise FeatvizError(f"{where}.kwargs: timm.create_model('{name}', **{kw}) failed: {why(exc)}") from None


def pretrained_config(name: str) -> dict:
    """What timm says of its pretrained weights for `name`: mean, std, input_size (C, H, W), crop_pct
    and num_classes ({} where timm has no pretrained config for it)."""
    timm = _timm("model.timm")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown names, old timm versions
        cfg = None
    if cfg is None:
        return {}
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return {k: cfg.get(k) for k in ("mean", "std", "input_size", "crop_pct", "num_classes") if cfg.get(k) is not None}


def pretrained(name: str, where: str = "model") -> nn.Module:
    """timm's pretrained `name`: a download from the Hugging Face hub (or torch's hub cache)."""
    timm = _timm(f"{where}.timm")
    check_name(name, f"{where}.timm")
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - network errors of every kind
        raise FeatvizError(
            f"{where}.weights: cannot get timm's pretrained {name} ({type(exc).__name__}: {why(exc)[:160]}). "
            f"Offline, download its weights file (e.g. model.safetensors from the Hugging Face hub) elsewhere and "
            f"import it: model: {{timm: {name}, import: {{path: <file>}}}}") from None


def stage_modules(net: nn.Module) -> list[str]:
    """The modules timm names as the network's feature stages (`feature_info`: `layer1`, `stages.0`,
    `blocks.2`...), in order; [] where the model has none."""
    info = getattr(net, "feature_info", None) or []
    names = []
    for entry in info:
        module = entry.get("module") if isinstance(entry, dict) else None
        if module:
            names.append(module)
    return names
