"""Test-set evaluation: accuracy, per-class accuracy (with each class's number of test images), the
strongest confusions (the matrix where it is readable: featviz/confusion.py), misclassified examples.

From the test predictions of the probe's one pass over the test set (`predictions`:
probe/predictions.npz, the workflow's way), or, run alone, from a pass of its own at the
machine's pace (featviz.inference.predict: bf16 where native, top-1 made fp32's). Labels are the
network's outputs (an imported network's folder may hold a few of its classes: model.json's
`label_to_output`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import confusion as _confusion
from .artifacts import REMAKE_PROBE, read_prepared
from .device import resolve_device
from .errors import FeatvizError
from .figures import confusion_png, image_grid_png, note_png
from .io import write_json, write_npz
from .model import LoadedModel
from .results import Predictions, read_predictions

MAX_MISCLASSIFIED = 64
SHOWN_PX = 112  # misclassified images are kept at most this high and wide (the report shows them 56 px high)


def chance_warning(accuracy: float, n_outputs: int, n_images: int, what: str) -> str | None:
    """A warning when a network reads its test images about as well as chance: at most twice 1 /
    outputs, and at most a tenth of the way from chance to 1 (0.55 for two classes): a wrong
    normalization (the 0-255 scale), input size or class order makes every answer a guess."""
    chance = 1.0 / max(1, n_outputs)
    if n_images >= 10 and accuracy <= min(2 * chance, chance + 0.1 * (1 - chance)):
        return (f"{what} {accuracy:.3f} is at chance level ({chance:.3f} for {n_outputs} outputs): the network "
                f"cannot read these images; check model.import.mean/std (in [0, 1] units), the input size and "
                f"the class order (model.class_names)")
    return None


def shown_size(images_u8: np.ndarray) -> np.ndarray:
    """uint8 images (N, C, H, W) averaged down by a whole factor until neither side exceeds
    SHOWN_PX (unchanged where they already fit)."""
    f = -(-max(images_u8.shape[-2:]) // SHOWN_PX)
    if f <= 1 or not len(images_u8):
        return images_u8
    x = torch.nn.functional.avg_pool2d(torch.from_numpy(images_u8).float(), f, ceil_mode=True)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def own_predictions(model: LoadedModel, test, device: str) -> Predictions:
    """The test set's predictions from a pass of evaluate's own (featviz.inference.predict)."""
    from .inference import predict, top_predictions

    dev = resolve_device(device)
    model.to(dev)
    settled = predict(model, test.images, dev)
    top_class, top_prob = top_predictions(settled.logits)
    return Predictions(top_class.numpy(), top_prob.numpy(), test.labels.numpy(), settled.fp32.numpy(),
                       {**settled.record, "pass": "evaluate"})


def evaluate(model: LoadedModel, data_dir: Path, out_dir: Path, device: str = "auto",
             predictions: Path | None = None) -> dict:
    """Evaluate `model` on the prepared test set of `data_dir` into `out_dir`; `predictions`: the
    probe's predictions.npz of this model and test set (None: a pass of its own)."""
    test = read_prepared(data_dir, "test", mmap=True)  # only the misclassified images are read
    if predictions is None:
        p = own_predictions(model, test, device)
    else:
        p = read_predictions(predictions)
        if not np.array_equal(p.labels, test.labels.numpy()):
            raise FeatvizError(f"test predictions file {predictions} was made from another test set than "
                               f"{data_dir} ({len(p.labels)} images, {len(test.labels)} here): {REMAKE_PROBE}")
    pred = torch.as_tensor(p.top_class[:, 0], dtype=torch.int64)
    confidence = torch.as_tensor(p.top_prob[:, 0])
    true = model.output_labels(test.labels)
    k = len(model.classes)
    conf = _confusion.summarize(true.numpy(), pred.numpy(), model.classes)
    correct = np.bincount(true[pred == true].numpy(), minlength=k)
    n_images = conf["per_class_images"]
    # over the network's classes; a class without test images has no accuracy (null)
    per_class = {c: (float(correct[i]) / n_images[c]) if n_images[c] else None for i, c in enumerate(model.classes)}
    wrong = torch.nonzero(pred != true).flatten()
    # the most confident mistakes first: the most telling ones
    order = torch.argsort(confidence[wrong], descending=True, stable=True)[:MAX_MISCLASSIFIED]
    picked = wrong[order]
    misclassified = [
        {"index": int(i), "true": model.classes[int(true[i])], "predicted": model.classes[int(pred[i])],
         "confidence": round(float(confidence[i]), 4)}
        for i in picked
    ]
    accuracy = float((pred == true).float().mean()) if len(true) else 0.0
    low = chance_warning(accuracy, k, len(true), f"test accuracy on {len(true)} images")
    if low:
        print(f"warning: {low}", flush=True)
    metrics = {
        "test_accuracy": accuracy,
        "warnings": [low] if low else [],
        "n_test": int(len(true)),
        "per_class_accuracy": per_class,
        "classes": model.classes,
        **conf,
        "misclassified": misclassified,
        "n_misclassified": int(len(wrong)),
        "inference": p.record,  # how the predictions were computed (featviz.inference)
    }
    out_dir = Path(out_dir)
    shown = shown_size(test.images[picked].numpy() if len(picked) else np.zeros((0, *model.input_shape), np.uint8))
    write_npz(out_dir / "misclassified.npz", images=shown)  # uint8, at most SHOWN_PX: what the report shows
    images = shown.astype(np.float32) / 255.0
    if "confusion" in conf:
        confusion_png(out_dir / "confusion.png", np.asarray(conf["confusion"]), model.classes)
    else:  # the rule's declared picture, saying where the confusions are
        note_png(out_dir / "confusion.png", f"{k} classes: the matrix is not drawn beyond "
                 f"{_confusion.MATRIX_CLASSES}; the strongest confusions are in metrics.json (`confusions`) "
                 f"and on the report's run page")
    labels = [f"{m['true']}→{m['predicted']} {m['confidence']:.2f}" for m in misclassified]
    image_grid_png(out_dir / "misclassified.png", images, labels)
    write_json(out_dir / "metrics.json", metrics)
    return metrics
