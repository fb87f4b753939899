"""torchvision's classification architectures by name: `model: {torchvision: resnet50, kwargs: {...}}`.

Any builder of `torchvision.models` (resnet18/34/50, vgg11_bn/vgg16, alexnet, googlenet,
mobilenet_v2/v3_small, efficientnet_b0, densenet121, convnext_tiny, ...) is built with the dataset's
number of classes and trained like any featviz network, or loaded from a torchvision-format
state_dict (`model.import.path`: what torchvision's weight files hold and what users save from a
fine-tuning), or with torchvision's own pretrained `weights` (a download: offline, it fails with one
message saying so and how to import a downloaded file instead).

The ImageNet category names and the ImageNet input normalization ship inside torchvision
(`torchvision.models._meta`, the weights' `transforms`): no download for them.
"""
from __future__ import annotations

import difflib

import torch
from torch import nn

from ..errors import FeatvizError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# builders whose eval-mode output is not a plain logits tensor in training mode
_AUX = ("googlenet", "inception_v3")


def architectures() -> list[str]:
    """Every classification architecture of torchvision.models."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def check_name(name: str, where: str = "model.torchvision") -> None:
    names = architectures()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise FeatvizError(f"{where}: '{name}' is not a classification architecture of torchvision.models{hint}; "
                           f"known: {', '.join(names)}")


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in torchvision's output order (shipped with torchvision)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def build_kwargs(name: str, kwargs: dict | None) -> dict:
    """The builder's keyword arguments: the config's, plus `aux_logits: false, init_weights: false`
    for googlenet and inception_v3 unless set."""
    kw = dict(kwargs or {})
    if name in _AUX:
        # the auxiliary heads only change the output in training mode; torchvision's future default
        # init (and no scipy truncnorm, which takes seconds)
        kw.setdefault("aux_logits", False)
        kw.setdefault("init_weights", False)
    if "num_classes" in kw:
        raise FeatvizError("model.kwargs.num_classes: set by featviz from the dataset's classes; leave it out")
    if "weights" in kw:
        raise FeatvizError("model.kwargs.weights: use model.weights (a torchvision weights name, e.g. IMAGENET1K_V1)")
    return kw


def build(name: str, num_classes: int, kwargs: dict | None = None, where: str = "model") -> nn.Module:
    """A randomly initialised torchvision architecture with `num_classes` outputs."""
    import torchvision.models as tvm

    check_name(name, f"{where}.torchvision")
    kw = build_kwargs(name, kwargs)
    try:
        net = tvm.get_model(name, weights=None, num_classes=int(num_classes), **kw)
    except (TypeError, ValueError) as exc:
        raise FeatvizError(f"{where}.kwargs: torchvision.models.{name}(**{kw}) failed: {exc}") from None
    return net


def pretrained(name: str, weights: str, where: str = "model") -> tuple[nn.Module, dict]:
    """torchvision's pretrained network `name` with `weights` (e.g. IMAGENET1K_V2 or DEFAULT), and
    what the weights say about it (categories, mean/std). Downloads the weights file when it is not in
    torch's hub cache; offline that fails with one message."""
    import torchvision.models as tvm

    check_name(name, f"{where}.torchvision")
    try:
        enum = tvm.get_model_weights(name)
        w = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except (KeyError, ValueError):
        known = ", ".join(["DEFAULT"] + [m.name for m in tvm.get_model_weights(name)])
        raise FeatvizError(f"{where}.weights: torchvision's {name} has no weights '{weights}' (known: {known})") from None
    try:
        net = tvm.get_model(name, weights=w)
    except Exception as exc:  # noqa: BLE001 - network errors of every kind
        raise FeatvizError(
            f"{where}.weights: cannot get torchvision's {name} weights {w.name} from {w.url} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no network?'}). Offline, "
            f"download the file elsewhere and import it: model: {{torchvision: {name}, import: {{path: <file>}}}}") from None
    meta = w.meta
    tf = w.transforms()
    return net, {"weights": w.name, "categories": list(meta.get("categories") or []),
                 "mean": list(getattr(tf, "mean", IMAGENET_MEAN)), "std": list(getattr(tf, "std", IMAGENET_STD))}


def main_output(out):
    """The logits of a forward pass: googlenet/inception_v3 return named tuples in training mode."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


def _gray_to_rgb(module, args):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 1:
        return (x.expand(-1, 3, -1, -1),) + tuple(args[1:])
    return None


def adapt_channels(net: nn.Module, channels: int) -> bool:
    """torchvision's networks take RGB: a 1-channel dataset's images are repeated to 3 channels by
    a pre-hook on the root (module names unchanged). Returns whether it was needed."""
    if channels == 3:
        return False
    if channels != 1:
        raise FeatvizError(f"model.torchvision: torchvision's architectures take 1 or 3 input channels, not {channels}")
    net.register_forward_pre_hook(_gray_to_rgb)
    return True
