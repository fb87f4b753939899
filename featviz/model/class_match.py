"""Which of a network's outputs each class of a dataset is.

A network trained elsewhere has its own outputs (1000 for ImageNet); the image folder a user points
at it usually holds a few of them: WordNet-ID folders (`n01443537`, ImageNet's folder names) or
class-name folders (`goldfish`, `cat`). The network's output names come from `model.class_names`:

- `dataset`: the dataset's classes, one output per class, in the dataset's sorted order;
- `imagenet`: the 1000 ImageNet categories in torchvision's (and timm's) output order;
- a list: the network's output names, in output order (a 10-class CIFAR network's
  `[airplane, automobile, ...]` meets a folder holding 8 of them);
- `auto`: `dataset` when the network has one output per dataset class and the dataset's classes
  are not WordNet IDs or ImageNet names of a 1000-output network; `imagenet` for a 1000-output
  network whose folder names are WordNet IDs or ImageNet category names.

Each dataset class is then matched to an output by name: exactly, as a WordNet ID (ImageNet), or
with case, spaces, '_' and '-' ignored. `label_to_output[i]` is the output of dataset class i.
Unmatched folder names are one message, with the closest output names.

`imagenet_wnids.txt` is the list of the 1000 ILSVRC-2012 WordNet IDs in output order, as timm
ships it (timm/data/_info/imagenet_synsets.txt, Apache-2.0).
"""
from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path

from ..errors import FeatvizError

WORDNET_ID = re.compile(r"^n\d{8}$")
CHOICES = ("auto", "dataset", "imagenet")


@lru_cache(maxsize=1)
def imagenet_wnids() -> list[str]:
    return (Path(__file__).with_name("imagenet_wnids.txt")).read_text().split()


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in torchvision's output order (shipped with torchvision)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def _looks_imagenet(dataset_classes: list[str]) -> bool:
    if all(WORDNET_ID.match(c) for c in dataset_classes):
        return True
    names = {_norm(c) for c in imagenet_categories()}
    return all(_norm(c) in names for c in dataset_classes)


def output_names(choice, n_outputs: int, dataset_classes: list[str], where: str = "model.class_names"
                 ) -> tuple[list[str], str]:
    """The network's output names and where they come from ("dataset", "imagenet", "config")."""
    if isinstance(choice, list):
        if len(choice) != n_outputs:
            raise FeatvizError(f"{where}: lists {len(choice)} names but the network has {n_outputs} outputs "
                               f"(one name per output, in output order)")
        dupes = sorted({c for c in choice if choice.count(c) > 1})
        if dupes:
            raise FeatvizError(f"{where}: '{dupes[0]}' is listed more than once")
        return [str(c) for c in choice], "config"
    if choice == "dataset":
        if n_outputs != len(dataset_classes):
            raise FeatvizError(f"{where}: dataset needs one output per dataset class: the network has {n_outputs} "
                               f"outputs, the dataset {len(dataset_classes)} classes (list the network's output "
                               f"names in {where} to match a folder holding some of them)")
        return list(dataset_classes), "dataset"
    if choice == "imagenet":
        if n_outputs != 1000:
            raise FeatvizError(f"{where}: imagenet needs a network with 1000 outputs; this one has {n_outputs}")
        return imagenet_categories(), "imagenet"
    if choice != "auto":
        raise FeatvizError(f"{where}: unknown choice '{choice}' (known: {', '.join(CHOICES)}, or a list of the "
                           f"network's output names)")
    if n_outputs == 1000 and _looks_imagenet(dataset_classes):
        return imagenet_categories(), "imagenet"
    if n_outputs == len(dataset_classes):
        return list(dataset_classes), "dataset"
    raise FeatvizError(f"{where}: the network has {n_outputs} outputs and the dataset {len(dataset_classes)} classes: "
                       f"to use a folder holding some of the network's classes, list the network's output names in "
                       f"{where} (in output order), or use imagenet for a 1000-class ImageNet network")


def match_classes(dataset_classes: list[str], names: list[str], source: str,
                  where: str = "model.class_names") -> list[int]:
    """label_to_output: the output index of each dataset class, matched by name (module docstring)."""
    exact = {n: i for i, n in enumerate(names)}
    loose: dict[str, int] = {}
    for i, n in enumerate(names):
        loose.setdefault(_norm(n), i)
    wnids = {w: i for i, w in enumerate(imagenet_wnids())} if source == "imagenet" else {}
    out, unmatched = [], []
    for c in dataset_classes:
        i = exact.get(c, wnids.get(c, loose.get(_norm(c))))
        if i is None:
            unmatched.append(c)
        out.append(i)
    if unmatched:
        hints = []
        for c in unmatched[:3]:
            close = difflib.get_close_matches(_norm(c), list(loose), n=2)
            hints.append(f"'{c}'" + (f" (closest: {', '.join(close)})" if close else ""))
        more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
        raise FeatvizError(f"{where}: {len(unmatched)} of the dataset's {len(dataset_classes)} class folders match no "
                           f"output of the network ({source} names): {', '.join(hints)}{more}")
    taken: dict[int, str] = {}
    for c, i in zip(dataset_classes, out):
        if i in taken:
            raise FeatvizError(f"{where}: class folders '{taken[i]}' and '{c}' both match the output '{names[i]}'")
        taken[i] = c
    return out
