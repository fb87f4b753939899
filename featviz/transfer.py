"""Transfer score of class visualizations: is a class image recognisable beyond the one
network it was optimized on? (the fooling-images problem of seeds 000-003)

An independently trained second model (another architecture and seed, trained by the
`transfer_train` rule with `featviz train`) classifies every class image of a run.
`featviz transfer` writes `results/<run>/transfer.json`:

* per class image: the target softmax and prediction on the visualized model, the target
  softmax and prediction on the independent model (`transfer_softmax`,
  `transfer_predicted`), and robustness (fraction of the target logit kept under random
  jitter +-2 px / rotation +-10 deg), the ascent job's, copied from its chunk record;
* a summary (counts and means) for the report.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError
from .schema import defaults_of, with_defaults

# The defaults of runs[i].ascent.transfer live in the schema only (workflow/schemas/config.schema.yaml,
# config/README.md): the transfer model's own optimizer settings train the small no-batch-norm presets
# on every dataset featviz ships (the run's own settings need not: SGD at lr 0.2, right for a ResNet,
# leaves allibhai-mnist at chance on CIFAR-10). Epochs, batch size, augmentation and precision are the run's.

# "auto" for inputs smaller than 16 px (where allibhai-mnist's two valid 5x5 convs do not fit):
# two 3x3 convs, no hidden dense layer. Works down to 4x4 inputs.
SMALL_TRANSFER_LAYERS = [
    {"type": "conv", "out": 16, "kernel": 3, "padding": "same", "stride": 1},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "conv", "out": 16, "kernel": 3, "padding": "same", "stride": 1},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "flatten"},
    {"type": "fc"},
]


def resolve_transfer(transfer_cfg, imported: bool = False) -> dict | None:
    """runs[i].ascent.transfer with the schema's defaults of missing keys filled; None = disabled.
    `auto` is every key at its default for a network featviz trains and disabled for an imported
    one (it gets a transfer model only when its config gives one)."""
    if transfer_cfg == "auto":
        transfer_cfg = None if imported else {}
    if transfer_cfg is None:
        return None
    return with_defaults(("ascent", "transfer"), transfer_cfg)


def transfer_train_defaults() -> dict:
    """The transfer model's optimizer settings where the config gives none (the schema's)."""
    return defaults_of("ascent", "transfer", "train")


def transfer_model_config(transfer_cfg: dict | None, run_model: dict | None = None,
                          input_shape=None) -> dict | None:
    """The `featviz train --model` config of a run's independent model, or None when the
    transfer score is disabled (`transfer: null` or `preset: null` without `layers`).

    `preset: auto` picks `allibhai-mnist` (seed 001's MNIST net: two valid 5x5 convs, no
    hidden dense layer) for inputs of at least 16 px, `hvass-mnist` if the run itself
    uses allibhai-mnist (so the two architectures differ), and SMALL_TRANSFER_LAYERS for
    smaller inputs. `input_shape` None = not known yet: assume a large enough input.
    """
    if not transfer_cfg:
        return None
    if transfer_cfg.get("layers"):
        return {"layers": copy.deepcopy(transfer_cfg["layers"])}
    preset = transfer_cfg.get("preset")
    if preset is None:
        return None
    if preset != "auto":
        return {"preset": preset}
    if input_shape is not None and min(int(input_shape[1]), int(input_shape[2])) < 16:
        return {"layers": copy.deepcopy(SMALL_TRANSFER_LAYERS)}
    if (run_model or {}).get("preset") == "allibhai-mnist":
        return {"preset": "hvass-mnist"}
    return {"preset": "allibhai-mnist"}


def transfer_train_config(transfer_cfg: dict, run_train: dict | None) -> dict:
    """The run's training settings with the transfer model's optimizer settings (`transfer.train`,
    the schema's defaults for the keys it leaves out) and `epochs` replaced where the transfer
    config sets it."""
    own = with_defaults(("ascent", "transfer", "train"), transfer_cfg.get("train") or {})
    cfg = {**dict(run_train or {}), **own}
    if transfer_cfg.get("epochs") is not None:
        cfg["epochs"] = int(transfer_cfg["epochs"])
    return cfg


def transfer_plans(runs) -> dict[str, dict | None]:
    """Per run (featviz.config.Run, in config order): what its transfer rules run, `{"model": the
    `featviz train --model` config, "train": its training settings, "seed": its seed}`, or None
    where the transfer score is off. The config is checked first (one FeatvizError naming the key)."""
    from .checks import expected_input

    out = {}
    for i, run in enumerate(runs):
        cfg = resolve_transfer(with_defaults("ascent", run.ascent)["transfer"], run.imported)
        if cfg is not None and run.dataset == "imagefolder" and not Path(run.data.get("path", ""), "train").is_dir():
            raise FeatvizError(f"runs[{i}].ascent.transfer: the transfer model is trained on the dataset's training "
                               f"images, and {run.data.get('path')} has no train/ folder (set transfer: null)")
        expected = expected_input({"dataset": run.dataset, "data": run.data})
        shape, n_classes = expected if expected else (None, 2)
        check_transfer_config(f"runs[{i}].ascent.transfer", cfg, shape, n_classes)
        model = transfer_model_config(cfg, run.model, shape)
        out[run.id] = None if model is None else {
            "model": model, "train": transfer_train_config(cfg, run.train), "seed": int(cfg["seed"])}
    return out


def class_layer(units_info: dict) -> dict:
    for layer in units_info["layers"]:
        if layer["kind"] == "class":
            return layer
    raise FeatvizError("units.json lists no class layer")


def read_class_images(run_dir: Path) -> tuple[np.ndarray, list[int], list[dict], dict]:
    """All class images of a run, in unit order: (images (N, C, H, W), units, stats, recipe)."""
    from .artifacts import read_units
    from .chunks import ascent_chunks, read_chunk_images, read_chunk_record
    from .results import RunFolder

    folder = RunFolder(run_dir)
    units_info = read_units(folder.units)
    layer = class_layer(units_info)
    images, units, stats, recipe = [], [], [], {}
    for chunk in ascent_chunks(folder.ascent_dir(layer["name"])):
        rec = read_chunk_record(chunk)
        imgs, us, _ = read_chunk_images(chunk)
        if us != [int(u) for u in rec["units"]] or len(imgs) != len(us):
            raise FeatvizError(f"{chunk.record}: units differ from those in {chunk.images.name}")
        images.append(imgs)
        units += us
        stats += rec["stats"]
        recipe = rec.get("recipe") or recipe
    shape = (0, *units_info["input_shape"])
    return (np.concatenate(images) if images else np.zeros(shape, np.float32)), units, stats, recipe


def _softmax(model, images: np.ndarray, device) -> np.ndarray:
    return model.predict(torch.as_tensor(images, dtype=torch.float32), device, batch_size=256).numpy()


def class_robustness(model, images: np.ndarray, targets, seed: int = 0, samples: int = 8, device="cpu"):
    """Fraction of the target logit kept under random jitter (+-2 px) and rotation (+-10 deg):
    mean over `samples` draws of logit(T(x)) / logit(x); None where logit(x) <= 0."""
    from .ascent.metrics import robustness
    from .ascent.render import _gens

    if len(images) == 0:
        return []
    x = torch.as_tensor(images, dtype=torch.float32, device=device)
    tg = torch.as_tensor(list(targets), dtype=torch.long, device=device)

    def evaluate(v, idx):
        idx = idx.to(device)
        return model.net(model.normalize(v)).float()[torch.arange(len(idx), device=device), tg[idx]]

    return robustness(evaluate, x, _gens(seed, list(targets), 2 ** 31 - 2), samples)


def score_images(model, transfer_model, images: np.ndarray, targets: list[int], seed: int = 0,
                 samples: int = 8, device="cpu", robustness: list | None = None) -> list[dict]:
    """One record per image; transfer keys are None when `transfer_model` is None. `robustness`:
    the images' robustness as already measured (the ascent job's, per image); None: measured here
    (`class_robustness`, `samples` draws seeded by `seed`), for images that come without it."""
    p = _softmax(model, images, device)
    q = _softmax(transfer_model, images, device) if transfer_model is not None else None
    rob = robustness if robustness is not None else class_robustness(model, images, targets, seed, samples, device)
    rows = []
    for i, t in enumerate(targets):
        row = {
            "unit": int(t),
            "class": model.classes[t],
            "target_softmax": float(p[i, t]),
            "predicted": int(p[i].argmax()),
            "transfer_softmax": None,
            "transfer_predicted": None,
            "transfer_predicted_softmax": None,
            "transfer_recognized": None,
            "robustness": rob[i],
        }
        if q is not None:
            row.update(transfer_softmax=float(q[i, t]), transfer_predicted=int(q[i].argmax()),
                       transfer_predicted_softmax=float(q[i].max()),
                       transfer_recognized=bool(q[i].argmax() == t))
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    def mean(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(vals)) if vals else None

    ts = [r["target_softmax"] for r in rows]
    has_transfer = bool(rows) and rows[0]["transfer_softmax"] is not None
    return {
        "n": len(rows),
        "target_softmax_mean": mean("target_softmax"),
        "target_softmax_min": float(min(ts)) if ts else None,
        "n_target_softmax_ge_0.99": sum(1 for v in ts if v >= 0.99),
        "n_predicted_as_target": sum(1 for r in rows if r["predicted"] == r["unit"]),
        "n_transfer_recognized": sum(1 for r in rows if r["transfer_recognized"]) if has_transfer else None,
        "transfer_softmax_mean": mean("transfer_softmax"),
        "transfer_softmax_min": (float(min(r["transfer_softmax"] for r in rows)) if has_transfer else None),
        "robustness_mean": mean("robustness"),
    }


def run_transfer(run_dir: Path, out: Path, transfer_model_dir: Path | None = None, device: str = "auto",
                 trust: bool = False) -> dict:
    """Score every class image of `run_dir` (results/<run>) and write `out` (transfer.json). The
    images' robustness is the ascent job's (its recipe's `robustness_samples` draws), copied: it is
    measured once."""
    from .device import resolve_device
    from .model import load_model
    from .results import write_transfer

    run_dir = Path(run_dir)
    dev = resolve_device(device)
    model = load_model(run_dir / "model", trust).to(dev)
    model.net.eval()
    tmodel, tinfo = load_transfer_model(transfer_model_dir, model, dev, trust)
    images, units, stats, recipe = read_class_images(run_dir)
    rows = score_images(model, tmodel, images, units, device=dev, robustness=[st.get("robustness") for st in stats])
    record = {
        "recipe": recipe.get("name"),
        "transfer_model": tinfo,
        "robustness_samples": recipe.get("robustness_samples"),
        "summary": summarize(rows),
        "images": rows,
    }
    write_transfer(out, record)
    s = record["summary"]
    line = (f"transfer: {s['n']} class images, target softmax mean {s['target_softmax_mean'] or 0:.4f}, "
            f"{s['n_target_softmax_ge_0.99']} >= 0.99")
    if tmodel is not None:
        line += f"; independent model recognizes {s['n_transfer_recognized']}/{s['n']}"
    print(line, flush=True)
    return record


def load_transfer_model(transfer_model_dir: Path | None, model, dev, trust: bool = False):
    """The independent model of a run, checked against the run's model (classes, input shape), and
    its info {model, seed, test_accuracy, valid, invalid_reason}; the model is None (its scores are
    not used) where its test accuracy is not well above chance. (None, None) without a folder."""
    from .artifacts import read_json_file, read_model_json
    from .model import load_model

    tmodel, tinfo = None, None
    if transfer_model_dir is not None:
        transfer_model_dir = Path(transfer_model_dir)
        tmodel = load_model(transfer_model_dir, trust).to(dev)
        tmodel.net.eval()
        if list(tmodel.classes) != list(model.classes):
            raise FeatvizError(f"{transfer_model_dir}: its classes differ from the run's model")
        if tuple(tmodel.input_shape) != tuple(model.input_shape):
            raise FeatvizError(f"{transfer_model_dir}: input shape {tuple(tmodel.input_shape)} differs from "
                               f"the run's {tuple(model.input_shape)}")
        meta = read_model_json(transfer_model_dir)
        metrics_file = transfer_model_dir / "metrics.json"
        metrics = read_json_file(metrics_file, "training metrics file", "re-run `featviz train` for the "
                                 "transfer model (or the workflow)") if metrics_file.is_file() else {}
        if not isinstance(metrics, dict):
            raise FeatvizError(f"training metrics file {metrics_file} is not a JSON object: re-run `featviz train`")
        tinfo = {"model": meta.get("model"), "seed": meta.get("seed"),
                 "test_accuracy": metrics.get("final_test_accuracy")}
        tinfo.update(transfer_validity(tinfo["test_accuracy"], len(model.classes)))
        if not tinfo["valid"]:
            print(f"transfer: {tinfo['invalid_reason']}: its scores are not used", flush=True)
            tmodel = None
    return tmodel, tinfo


def transfer_validity(test_accuracy, num_classes: int) -> dict:
    """A transfer model scores class images only when it classifies real images well above chance
    (at least twice chance accuracy on the held-out test set)."""
    chance = 1.0 / max(1, num_classes)
    if test_accuracy is None:
        return {"valid": False, "invalid_reason": "the transfer model has no test accuracy in metrics.json"}
    if float(test_accuracy) < 2 * chance:
        return {"valid": False, "invalid_reason": f"the transfer model's test accuracy {float(test_accuracy):.3f} is "
                                                  f"not well above chance ({chance:.3f})"}
    return {"valid": True, "invalid_reason": None}


def check_transfer_config(where: str, transfer_cfg: dict | None, input_shape=None, num_classes: int = 2) -> None:
    """Config checks for runs[i].ascent.transfer that need featviz's knowledge: preset names,
    and (where the input shape is known) that the network builds."""
    from .model import PRESETS, build

    if not transfer_cfg:
        return
    preset = transfer_cfg.get("preset")
    if not transfer_cfg.get("layers") and preset not in (None, "auto") and preset not in PRESETS:
        raise FeatvizError(f"{where}.preset: unknown preset '{preset}' (known: auto, {', '.join(PRESETS)})")
    if transfer_cfg.get("layers") and input_shape is not None:
        try:
            build(copy.deepcopy(transfer_cfg["layers"]), tuple(input_shape), num_classes)
        except FeatvizError as exc:
            raise FeatvizError(f"{where}.layers: {exc}") from None
