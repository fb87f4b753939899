"""`featviz import-model`: bring your own trained network, so that it is evaluated, enumerated,
visualized and reported like one featviz trained (the formats: `featviz.model.formats`).

The imported file is copied into `results/<run>/model/model.pt` (a state_dict for `spec` and
`class`; the archive itself for `torchscript` and `export`), `model.json` records the format, and
`metrics.json` holds the test accuracy on the configured dataset (`epochs` is empty).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from .data import load_info, load_prepared
from .device import resolve_device
from .errors import FeatvizError
from .io import atomic_path, write_json
from .model import LoadedModel, build, load_state_dict, load_weights, resolve_layers, save_model
from .model.formats import build_class, from_export, from_torchscript, guard_inputs, identity, match_by_order


def import_model(model_cfg: dict, data_dir: Path, out_dir: Path, trust: bool = False, device: str = "auto",
                 run_name: str = "") -> dict:
    """Read the configured model, check it against the dataset, evaluate it, and write model.pt,
    model.json and metrics.json to out_dir like `train` does."""
    imp = dict(model_cfg.get("import") or {})
    if not imp:
        raise FeatvizError("model.import: not set (name the file to import in model.import.path)")
    ident = identity(imp, model_cfg)
    fmt = ident["format"]
    path = Path(imp["path"])
    info = load_info(data_dir)
    shape = tuple(info["input_shape"])
    classes = list(info["classes"])
    mean = imp.get("mean") or info["mean"]
    std = imp.get("std") or info["std"]
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise FeatvizError(f"model.import.mean/std: need {shape[0]} values (one per channel), got {len(mean)} and {len(std)}")

    started = time.perf_counter()
    how = fmt
    if fmt == "spec":
        layers = resolve_layers(model_cfg)
        net = build(layers, shape, len(classes))
        load_weights(net, match_by_order(net, load_state_dict(path, trust)), path)
    elif fmt == "class":
        net = build_class(imp["class"], imp.get("kwargs"), imp.get("code_path"))
        state = load_state_dict(path, trust)
        load_weights(net, match_by_order(net, state), path)
    elif fmt == "torchscript":
        net, how = from_torchscript(path, shape)
    else:
        net, how = from_export(path, shape)
    if fmt != "spec":
        guard_inputs(net)
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *shape))
    except Exception as exc:
        raise FeatvizError(f"model.import: the model does not take this dataset's inputs of shape {shape}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, len(classes)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FeatvizError(f"model.import: the model outputs {got} for a batch of 2; the dataset has "
                           f"{len(classes)} classes, so it must output (batch, {len(classes)}) logits")

    dev = resolve_device(device)
    model = LoadedModel(net.to(dev), classes, shape, list(mean), list(std))
    test = load_prepared(data_dir, train=False)
    acc = model.accuracy(test.images, test.labels, dev)
    net.cpu()

    imported = {"path": str(path), "sha256": ident["sha256"], "format": fmt, "how": how}
    meta = {
        "format": "featviz-spec" if fmt == "spec" else fmt,
        "run": run_name,
        "dataset": info["dataset"],
        "classes": classes,
        "input_shape": list(shape),
        "mean": list(mean),
        "std": list(std),
        "model": model_cfg,
        "imported": imported,
        "import": {k: imp.get(k) for k in ("class", "kwargs", "code_path") if imp.get(k) is not None},
    }
    out_dir = Path(out_dir)
    if fmt == "spec":
        meta["layers"] = layers
    metrics = {
        "epochs": [],
        "final_test_accuracy": acc,
        "train_wall_s": None,
        "import_wall_s": round(time.perf_counter() - started, 2),
        "device": str(dev),
        "parameters": sum(p.numel() for p in net.parameters()),
        "imported": imported,
    }
    write_json(out_dir / "metrics.json", metrics)
    if fmt in ("spec", "class"):
        save_model(out_dir, net, meta)
    else:
        with atomic_path(out_dir / "model.pt") as tmp:
            shutil.copyfile(path, tmp)
        write_json(out_dir / "model.json", meta)
    return metrics
