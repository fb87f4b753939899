"""`featviz spectrum`: the average amplitude spectrum of a run's own images, the fixed Fourier
magnitude of MACO (recipe `maco`, param `maco`; docs/ascent.md), written to results/<run>/spectrum.npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FeatvizError
from .results import read_spectrum, write_spectrum

SPLITS = ("train", "test")


def run_spectrum(data_dir: Path, out: Path, split: str = "train") -> dict:
    """The mean |rfft2| per channel over every image of a prepared split (RGB colour-decorrelated),
    read from the file a batch at a time; byte-identical for the same images."""
    from .ascent.spectrum import batches_of, mean_amplitude
    from .data import load_prepared

    if split not in SPLITS:
        raise FeatvizError(f"spectrum --split: {split!r} is not one of {', '.join(SPLITS)}")
    images = load_prepared(Path(data_dir), train=split == "train", mmap=True).images
    if len(images) == 0:
        raise FeatvizError(f"spectrum: the {split} split of {data_dir} has no images")
    magnitude, n = mean_amplitude(batches_of(images))
    write_spectrum(out, magnitude, n, split)
    return {"shape": list(magnitude.shape), "n_images": n, "split": split}


def spectrum_for(path: Path | None, recipe: dict, channels: int, where: str) -> np.ndarray | None:
    """The magnitude a job's recipe needs: read from `path` for `param: maco` (an error naming
    `where` without it, or with one of other channels), None for every other recipe."""
    if recipe["param"] != "maco":
        return None
    if path is None:
        raise FeatvizError(f"{where}: recipe '{recipe['name']}' (param maco) needs the run's magnitude spectrum: "
                           f"give --spectrum results/<run>/spectrum.npz (made by `featviz spectrum`)")
    mag = read_spectrum(path)
    if mag.shape[0] != channels:
        raise FeatvizError(f"{where}: magnitude spectrum {path} has {mag.shape[0]} channel(s), the network's input "
                           f"{channels}: it was made from other images (re-run `featviz spectrum` on the run's data)")
    return mag
