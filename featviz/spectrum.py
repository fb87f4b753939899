"""`featviz spectrum`: the average amplitude spectrum of a run's own images, the fixed Fourier
magnitude of MACO (recipe `maco`, param `maco`; docs/ascent.md), written to results/<run>/spectrum.npz."""
from __future__ import annotations

from pathlib import Path

from .errors import FeatvizError
from .results import write_spectrum

SPLITS = ("auto", "train", "test")


def run_spectrum(data_dir: Path, out: Path, split: str = "auto") -> dict:
    """The mean |rfft2| per channel over every image of a prepared split (RGB colour-decorrelated),
    read from the file a batch at a time; byte-identical for the same images. `auto`: the training
    images, or the test images of a folder that has none (an imported network's test/ only)."""
    from .ascent.spectrum import batches_of, mean_amplitude
    from .data import load_prepared

    if split not in SPLITS:
        raise FeatvizError(f"spectrum --split: {split!r} is not one of {', '.join(SPLITS)}")
    if split == "auto":
        split = "train" if len(load_prepared(Path(data_dir), train=True, mmap=True).labels) else "test"
    images = load_prepared(Path(data_dir), train=split == "train", mmap=True).images
    if len(images) == 0:
        raise FeatvizError(f"spectrum: the {split} split of {data_dir} has no images")
    magnitude, n = mean_amplitude(batches_of(images))
    write_spectrum(out, magnitude, n, split)
    return {"shape": list(magnitude.shape), "n_images": n, "split": split}


def needs_spectrum(ascent_cfg: dict, input_size=None) -> bool:
    """Whether any recipe a run's ascent or its comparison uses is MACO's (`param: maco`): then its
    jobs read results/<run>/spectrum.npz (`featviz spectrum`). Every kind's recipe and each layer's
    own (`recipe.layers`, `overrides.layers`), resolved with their overrides; `auto` at `input_size`
    ((C, H, W), or (H, W): colour), or as any of its choices where the size is not known."""
    from .ascent import get_recipe
    from .ascent.recipes import AUTO, AUTO_RECIPES
    from .ascent_job import KINDS, recipe_for
    from .compare import resolve_compare
    from .schema import with_defaults

    ascent_cfg = with_defaults("ascent", ascent_cfg)
    named = set((ascent_cfg.get("recipe") or {}).get("layers") or {}) | set(
        (ascent_cfg.get("overrides") or {}).get("layers") or {})
    recipes = []
    for kind in KINDS:
        for layer in [None, *sorted(named)]:
            name, overrides = recipe_for(kind, ascent_cfg, layer, input_size)
            # `auto` at an input size not known yet: maco if any of its choices is
            recipes += [(choice, {**settings, **overrides})
                        for choice, settings in (AUTO_RECIPES[kind] if name == AUTO else [(name, {})])]
    compare = resolve_compare(ascent_cfg.get("compare"), check=False)
    recipes += [(e["recipe"], e["overrides"]) for e in (compare or {}).get("entries", [])]
    return any(get_recipe(name, overrides)["param"] == "maco" for name, overrides in recipes)
