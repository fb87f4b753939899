"""The contract between stages: the layout of one run's results folder (`results/<run>/`) and a
reader/writer per artifact, so that no two modules rediscover or parse the same file.

    model/        model.pt, model.json, metrics.json          featviz train / import-model
    units.json                                                 featviz units
    spectrum.npz                                               featviz spectrum (runs with a maco recipe)
    eval/         metrics.json, confusion.png, misclassified.png, misclassified.npz   featviz evaluate
    probe/        probe.json, probe.npz, bank.npz, predictions.npz, pruning.png, saliency.png   featviz probe
    ascent/<layer>/<chunk>.npz + <chunk>.json                  featviz ascend (one job per chunk; featviz.chunks)
    compare/<entry>/<layer>.npz + .json                        featviz compare
    transfer_model/  (as model/)                               featviz train (rule transfer_train)
    transfer.json                                              featviz transfer
    trust.json                                                 featviz trust
    attribution/  attribution.json, attribution.npz            featviz attribute (the class pages)
    layer_views/  layer_views.json, layer_views.npz            featviz dream (the layer pages)

The readers here build on featviz.artifacts' checked readers (a missing or corrupt file is one
FeatvizError naming it and the stage that remakes it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import artifacts
from .artifacts import REMAKE_EVAL, REMAKE_PROBE, read_json_object, read_npz
from .errors import FeatvizError
from .chunks import AscentChunk
from .io import write_json, write_npz


@dataclass(frozen=True)
class RunFolder:
    """Where each artifact of one run lives (`root` = results/<run>)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_id(self) -> str:
        return self.root.name

    # model (featviz train / import-model)
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def model_json(self) -> Path:
        return self.model_dir / "model.json"

    @property
    def train_metrics(self) -> Path:
        return self.model_dir / "metrics.json"

    @property
    def units(self) -> Path:
        return self.root / "units.json"

    @property
    def spectrum(self) -> Path:
        return self.root / SPECTRUM

    # evaluation
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def eval_metrics(self) -> Path:
        return self.eval_dir / "metrics.json"

    @property
    def confusion_png(self) -> Path:
        return self.eval_dir / "confusion.png"

    @property
    def misclassified_npz(self) -> Path:
        return self.eval_dir / "misclassified.npz"

    # probe
    @property
    def probe_dir(self) -> Path:
        return self.root / "probe"

    @property
    def probe_json(self) -> Path:
        return self.probe_dir / PROBE_JSON

    @property
    def probe_npz(self) -> Path:
        return self.probe_dir / PROBE_NPZ

    @property
    def probe_bank(self) -> Path:
        return self.probe_dir / PROBE_BANK

    @property
    def predictions(self) -> Path:
        return self.probe_dir / PREDICTIONS

    @property
    def pruning_png(self) -> Path:
        return self.probe_dir / "pruning.png"

    # ascent, comparison, transfer
    def ascent_dir(self, layer: str) -> Path:
        return self.root / "ascent" / layer

    def ascent_chunk(self, layer: str, chunk: int) -> AscentChunk:
        folder = self.ascent_dir(layer)
        return AscentChunk(int(chunk), folder / f"{int(chunk)}.json", folder / f"{int(chunk)}.npz")

    @property
    def compare_dir(self) -> Path:
        return self.root / "compare"

    @property
    def transfer_model_dir(self) -> Path:
        return self.root / "transfer_model"

    @property
    def transfer_json(self) -> Path:
        return self.root / "transfer.json"

    @property
    def trust_json(self) -> Path:
        return self.root / "trust.json"


# ---------------------------------------------------------------- small JSON artifacts

def read_eval_metrics(path: str | Path) -> dict:
    """eval/metrics.json (featviz evaluate), checked (featviz.artifacts)."""
    return artifacts.read_eval_metrics(path)


def read_train_metrics(path: str | Path) -> dict | None:
    """model/metrics.json (featviz train / import-model), or None where the model has none."""
    path = Path(path)
    if not path.is_file():
        return None
    return read_json_object(path, "training metrics file", "re-run `featviz train` or `featviz import-model`")


def read_misclassified_images(path: str | Path) -> np.ndarray | None:
    """The misclassified test images eval/misclassified.npz holds (uint8; float in [0, 1] from
    older runs) as float32 in [0, 1], or None where there is none."""
    path = Path(path)
    if not path.exists():
        return None
    images = read_npz(path, "misclassified images file", REMAKE_EVAL, ("images",))["images"]
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


# ---------------------------------------------------------------- MACO's magnitude spectrum

SPECTRUM = "spectrum.npz"
REMAKE_SPECTRUM = "delete it and re-run `featviz spectrum --data <prepared dataset> --out <it>` (or the workflow)"


def write_spectrum(path: str | Path, magnitude: np.ndarray, n_images: int, split: str) -> None:
    """spectrum.npz: `magnitude` float32 (C, H, W // 2 + 1), the mean |rfft2| of the run's `split`
    images (RGB colour-decorrelated), and how many images it averages."""
    write_npz(path, magnitude=np.asarray(magnitude, np.float32), n_images=np.asarray(int(n_images), np.int64),
              split=np.asarray(split))


def read_spectrum(path: str | Path) -> np.ndarray:
    """The magnitude (C, H, W // 2 + 1) float32 of spectrum.npz, checked."""
    mag = read_npz(path, "magnitude spectrum", REMAKE_SPECTRUM, ("magnitude",))["magnitude"]
    if mag.ndim != 3 or mag.shape[0] < 1 or mag.shape[2] < 1 or not np.isfinite(mag).all() or (mag < 0).any():
        raise FeatvizError(f"magnitude spectrum {path} is not what featviz wrote (a finite, non-negative "
                           f"(C, H, W // 2 + 1) array; shape {list(mag.shape)}): {REMAKE_SPECTRUM}")
    return mag.astype(np.float32)


# ---------------------------------------------------------------- probe

PROBE_JSON, PROBE_NPZ, PROBE_BANK = "probe.json", "probe.npz", "bank.npz"
# bank.npz, the probe's working file of full-resolution images (the report cuts its thumbnails and
# receptive-field crops from it; an archive leaves it out: featviz.archive.NOT_ARCHIVED):
BANK = "topk_bank"  # (R, C, H, W) uint8: every test image in some unit's top-k, once, in test-set order
# probe.npz: arrays of the whole probe ...
BANK_INDEX = "topk_bank_index"  # (R,) int64: the test-set indices of the bank's rows
SAMPLE_IMAGES = "sample_images"  # (S, C, H, W) uint8
SALIENCY = "saliency"  # (S, H, W) float16 in [0, 1]
CONV1_WEIGHTS = "conv1_weights"  # the first conv layer's weights
CONV1_OPTIMAL = "conv1_optimal"  # and their analytic optimal input
# ... and per layer j of units.json, `<kind>_<j>`:
LAYER_ARRAYS = {
    "act": "(N_hist, U) float16: activation per image of the first histogram_images test images",
    "hist": "(U, bins) int32: histogram counts per unit",
    "edges": "(U, bins + 1) float32: histogram bin edges per unit",
    "topk": "(U, k) int32: each unit's top-k test images, as rows of topk_bank",
    "maps": "(S, U, h, w) uint8: activation maps of the sample images (conv layers; the first 64 units, averaged down to about 28 px, as the run page shows them), each scaled to its own range",
    "maps_range": "(S, U, 2) float32: each map's (min, max): value = min + byte / 255 * (max - min)",
}


def layer_key(kind: str, j: int) -> str:
    """The probe.npz key of layer j's array of `kind` (LAYER_ARRAYS)."""
    if kind not in LAYER_ARRAYS:
        raise ValueError(f"no probe array {kind!r} (known: {', '.join(LAYER_ARRAYS)})")
    return f"{kind}_{int(j)}"


class ProbeArrays(dict):
    """probe.npz's arrays by key (a dict, read whole: they are small), with an accessor per
    array of the contract above."""

    def layer(self, kind: str, j: int | None) -> np.ndarray | None:
        """Layer j's array of `kind`, or None (no such layer index, or not written for it)."""
        return None if j is None else self.get(layer_key(kind, j))

    @property
    def bank(self) -> np.ndarray | None:
        return self.get(BANK)

    @property
    def sample_images(self) -> np.ndarray | None:
        return self.get(SAMPLE_IMAGES)

    @property
    def saliency(self) -> np.ndarray | None:
        return self.get(SALIENCY)


def write_probe(out_dir: str | Path, summary: dict, arrays: dict, bank, predictions: Predictions) -> None:
    """bank.npz (`bank`: the BANK array, or featviz.io.Chunks of it), predictions.npz, probe.npz
    (the arrays, keys as above), then probe.json (the summary)."""
    out_dir = Path(out_dir)
    write_npz(out_dir / PROBE_BANK, **{BANK: bank})
    write_predictions(out_dir / PREDICTIONS, predictions)
    write_npz(out_dir / PROBE_NPZ, **arrays)
    write_json(out_dir / PROBE_JSON, summary)


def read_probe(folder: RunFolder) -> tuple[dict | None, ProbeArrays]:
    """probe.json and the arrays of probe.npz (with bank.npz's where the run has it: an archived
    run does not), or (None, empty) where the run has no probe."""
    js, npz = folder.probe_json, folder.probe_npz
    if not (js.exists() and npz.exists()):
        return None, ProbeArrays()
    arrays = ProbeArrays(read_npz(npz, "probe arrays file", REMAKE_PROBE, None))
    if folder.probe_bank.exists():
        arrays.update(read_npz(folder.probe_bank, "probe image bank", REMAKE_PROBE, (BANK,)))
    return artifacts.read_probe_summary(js), arrays


# ---------------------------------------------------------------- test predictions

PREDICTIONS = "predictions.npz"
PREDICTION_KEYS = ("top_class", "top_prob", "labels", "fp32", "record")


@dataclass
class Predictions:
    """The test images' predictions, from the probe's one pass (probe/predictions.npz: written by
    featviz probe, read by featviz evaluate), or from evaluate's own pass when it runs alone."""

    top_class: np.ndarray  # (N, k) int32: each image's k most probable outputs, most probable first
    top_prob: np.ndarray  # (N, k) float32: their softmax probabilities
    labels: np.ndarray  # (N,) int64: the test set's labels as the writer read them (a consistency check)
    fp32: np.ndarray  # (N,) bool: the rows computed in fp32 (featviz.inference.settle)
    record: dict  # how they were computed (mode, calibration, fp32 rows)


def write_predictions(path: str | Path, p: Predictions) -> None:
    write_npz(path, top_class=np.asarray(p.top_class, np.int32), top_prob=np.asarray(p.top_prob, np.float32),
              labels=np.asarray(p.labels, np.int64), fp32=np.asarray(p.fp32, bool),
              record=np.asarray(json.dumps(p.record, sort_keys=True)))


def read_predictions(path: str | Path) -> Predictions:
    """predictions.npz, checked: one row per image in every array, at least one prediction each."""
    path = Path(path)
    z = read_npz(path, "test predictions file", REMAKE_PROBE, PREDICTION_KEYS)
    n = len(z["labels"])
    ok = (z["top_class"].ndim == 2 and z["top_class"].shape == z["top_prob"].shape and z["top_class"].shape[1] >= 1
          and len(z["top_class"]) == n and z["fp32"].shape == (n,) and z["record"].ndim == 0)
    try:
        record = json.loads(str(z["record"])) if ok else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise FeatvizError(f"test predictions file {path} is not what featviz wrote (arrays of different lengths "
                           f"or no record): {REMAKE_PROBE}")
    return Predictions(z["top_class"], z["top_prob"], z["labels"], z["fp32"], record)


# ---------------------------------------------------------------- transfer

# the per-image fields of transfer.json the report adds to the class images' ascent stats
# (robustness is the ascent's own: transfer.json copies it, it does not compute it again)
TRANSFER_STATS = ("transfer_softmax", "transfer_predicted", "transfer_recognized")


def read_transfer(path: str | Path) -> dict | None:
    """transfer.json (featviz transfer), or None where there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return artifacts.read_transfer_file(path)


def write_transfer(path: str | Path, record: dict) -> None:
    write_json(path, record)


# ---------------------------------------------------------------- trust

REMAKE_TRUST = "re-run `featviz trust` (or the workflow)"
TRUST_UNIT_KEYS = ("unit", "score", "unnatural", "picture", "random", "top", "percentile")


def read_trust(path: str | Path) -> dict | None:
    """trust.json (featviz trust: how far to trust each picture), checked: a list of layers, each
    with its layers below and one entry per unit holding TRUST_UNIT_KEYS; None where there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    rec = read_json_object(path, "trust score file", REMAKE_TRUST, ("layers", "threshold"))
    layers = rec["layers"]
    ok = isinstance(layers, list) and all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("below"), list)
        and isinstance(e.get("units"), list)
        and all(isinstance(r, dict) and all(k in r for k in TRUST_UNIT_KEYS) for r in e["units"]) for e in layers)
    if not ok:
        raise FeatvizError(f"trust score file {path} is not what featviz wrote (each layer needs a name, its layers "
                           f"below and per unit {', '.join(TRUST_UNIT_KEYS)}): {REMAKE_TRUST}")
    return rec


def write_trust(path: str | Path, record: dict) -> None:
    write_json(path, record)


# ---------------------------------------------------------------- class and layer views on real images
# attribution/ (featviz attribute: featviz.class_views) and layer_views/ (featviz dream:
# featviz.layer_views): a JSON record and the pictures it names, as uint8 arrays in one .npz.

CLASS_VIEWS = ("attribution", "re-run `featviz attribute` (or the workflow)")
LAYER_VIEWS = ("layer_views", "re-run `featviz dream` (or the workflow)")


def _views_write(out_dir: str | Path, stem: str, record: dict, arrays: dict) -> None:
    out_dir = Path(out_dir)
    write_npz(out_dir / f"{stem}.npz", **arrays)
    write_json(out_dir / f"{stem}.json", record)  # last: its presence says the pair is whole


def _views_read(folder: str | Path, which: tuple[str, str], required: tuple[str, ...]) -> tuple[dict, dict] | None:
    stem, remake = which
    folder = Path(folder)
    if not (folder / f"{stem}.json").is_file():
        return None
    rec = read_json_object(folder / f"{stem}.json", f"{stem} record", remake, required)
    return rec, read_npz(folder / f"{stem}.npz", f"{stem} pictures", remake, None)


def write_class_views(out_dir: str | Path, record: dict, arrays: dict) -> None:
    _views_write(out_dir, CLASS_VIEWS[0], record, arrays)


def read_class_views(folder: str | Path) -> tuple[dict, dict] | None:
    """results/<run>/attribution/ (record, arrays), or None where there is none (or only its record:
    an archive leaves the arrays out, featviz.archive.NOT_ARCHIVED)."""
    if not (Path(folder) / f"{CLASS_VIEWS[0]}.npz").is_file():
        return None
    return _views_read(folder, CLASS_VIEWS, ("rows", "classes", "maps"))


def write_layer_views(out_dir: str | Path, record: dict, arrays: dict) -> None:
    _views_write(out_dir, LAYER_VIEWS[0], record, arrays)


def read_layer_views(folder: str | Path) -> tuple[dict, dict] | None:
    """results/<run>/layer_views/ (record, arrays), or None where there is none."""
    return _views_read(folder, LAYER_VIEWS, ("layers", "images"))
