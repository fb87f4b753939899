"""Test-set evaluation: accuracy, per-class accuracy (with each class's number of test images), the
strongest confusions (the matrix where it is readable: featviz/confusion.py), misclassified examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .artifacts import read_prepared
from . import confusion as _confusion
from .figures import confusion_png, image_grid_png, note_png
from .io import write_json, write_npz
from .device import resolve_device
from .model import LoadedModel

MAX_MISCLASSIFIED = 64


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


def evaluate(model: LoadedModel, data_dir: Path, out_dir: Path, device: str = "auto") -> dict:
    dev = resolve_device(device)
    model.to(dev)
    test = read_prepared(data_dir, "test")
    probs = model.predict(test.images, dev)
    pred = probs.argmax(1)
    true = model.output_labels(test.labels)
    k = len(model.classes)
    conf = _confusion.summarize(true.numpy(), pred.numpy(), model.classes)
    correct = np.bincount(true[pred == true].numpy(), minlength=k)
    n_images = conf["per_class_images"]
    # over the network's classes; a class without test images has no accuracy (null)
    per_class = {c: (float(correct[i]) / n_images[c]) if n_images[c] else None for i, c in enumerate(model.classes)}
    wrong = torch.nonzero(pred != true).flatten()
    # the most confident mistakes first: the most telling ones
    confidence = probs[wrong, pred[wrong]]
    order = torch.argsort(confidence, descending=True, stable=True)[:MAX_MISCLASSIFIED]
    picked = wrong[order]
    misclassified = [
        {"index": int(i), "true": model.classes[int(true[i])], "predicted": model.classes[int(pred[i])],
         "confidence": round(float(probs[i, pred[i]]), 4)}
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
    }
    out_dir = Path(out_dir)
    images = test.images[picked].float().div(255.0).numpy() if len(picked) else np.zeros((0, *model.input_shape), np.float32)
    write_npz(out_dir / "misclassified.npz", images=images.astype(np.float32))
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
