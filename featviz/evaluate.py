"""Test-set evaluation: accuracy, per-class accuracy, confusion matrix, misclassified examples.

From the test predictions of the probe's one pass over the test set (`predictions`:
probe/predictions.npz, the workflow's way), or, run alone, from a pass of its own at the
machine's pace (featviz.inference.predict: bf16 where native, top-1 made fp32's)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .artifacts import REMAKE_PROBE, read_prepared
from .errors import FeatvizError
from .figures import confusion_png, image_grid_png
from .io import write_json, write_npz
from .device import resolve_device
from .model import LoadedModel
from .results import Predictions, read_predictions

MAX_MISCLASSIFIED = 64
SHOWN_PX = 112  # misclassified images are kept at most this high and wide (the report shows them 56 px high)


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
    true = test.labels
    k = len(model.classes)
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((true, pred), torch.ones_like(true), accumulate=True)
    per_class = {
        c: (float(confusion[i, i]) / float(confusion[i].sum())) if confusion[i].sum() else None
        for i, c in enumerate(model.classes)
    }
    wrong = torch.nonzero(pred != true).flatten()
    # the most confident mistakes first: the most telling ones
    order = torch.argsort(confidence[wrong], descending=True, stable=True)[:MAX_MISCLASSIFIED]
    picked = wrong[order]
    misclassified = [
        {"index": int(i), "true": model.classes[int(true[i])], "predicted": model.classes[int(pred[i])],
         "confidence": round(float(confidence[i]), 4)}
        for i in picked
    ]
    metrics = {
        "test_accuracy": float((pred == true).float().mean()) if len(true) else 0.0,
        "n_test": int(len(true)),
        "per_class_accuracy": per_class,
        "classes": model.classes,
        "confusion": confusion.tolist(),
        "misclassified": misclassified,
        "n_misclassified": int(len(wrong)),
    }
    metrics["inference"] = p.record  # how the predictions were computed (featviz.inference)
    out_dir = Path(out_dir)
    shown = shown_size(test.images[picked].numpy() if len(picked) else np.zeros((0, *model.input_shape), np.uint8))
    write_npz(out_dir / "misclassified.npz", images=shown)  # uint8, at most SHOWN_PX: what the report shows
    images = shown.astype(np.float32) / 255.0
    confusion_png(out_dir / "confusion.png", confusion.numpy(), model.classes)
    labels = [f"{m['true']}→{m['predicted']} {m['confidence']:.2f}" for m in misclassified]
    image_grid_png(out_dir / "misclassified.png", images, labels)
    write_json(out_dir / "metrics.json", metrics)
    return metrics
