"""`featviz import-model`: bring your own trained network, so that it is evaluated, enumerated,
visualized and reported like one featviz trained (the formats: `featviz.model.formats`; torchvision
architectures: `featviz.model.torchvision_archs`).

The imported file is copied into `results/<run>/model/model.pt` (a state_dict for `spec`,
`torchvision` and `class`; the archive itself for `torchscript` and `export`), `model.json` records
the format, the classes and the input the network expects (channel order, value range,
normalization), and `metrics.json` holds the test accuracy on the configured dataset (`epochs` is
empty). A final softmax is removed so that class images maximize the logits (seed 003); where it
cannot be removed, model.json's `warnings` say so and the report shows it.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import torch

from .artifacts import read_info, read_prepared
from .checks import check_sections
from .device import resolve_device
from .errors import FeatvizError
from .io import staged_files, write_json
from .model import LoadedModel, input_description, load_state_dict, load_weights, save_model
from .model import torchvision_archs as tv
from .model.architecture import build_architecture, check_fits, describe
from .model.formats import build_class, from_export, from_torchscript, guard_inputs, identity, match_by_order
from .model.hookable import no_inplace
from .model.logits import looks_like_probabilities, strip_softmax
from .schema import with_defaults

_WORDNET_ID = re.compile(r"^n\d{8}$")


def class_names(choice: str, dataset_classes: list[str], n_outputs: int, torchvision: bool) -> tuple[list[str], str]:
    """The names of the network's outputs and where they come from: the dataset's class names, or
    torchvision's ImageNet categories (`imagenet`; `auto` picks them for a 1000-output torchvision
    network on a dataset whose classes are WordNet IDs, ImageNet's folder names, in whose sorted
    order torchvision's outputs are)."""
    if choice == "dataset":
        return list(dataset_classes), "dataset"
    imagenet = n_outputs == 1000 and len(dataset_classes) == 1000
    if choice == "imagenet":
        if not imagenet:
            raise FeatvizError(f"model.class_names: imagenet needs 1000 outputs and 1000 dataset classes "
                               f"(the network has {n_outputs}, the dataset {len(dataset_classes)})")
        return tv.imagenet_categories(), "imagenet"
    if choice != "auto":
        raise FeatvizError(f"model.class_names: unknown choice '{choice}' (known: auto, dataset, imagenet)")
    if torchvision and imagenet and all(_WORDNET_ID.match(c) for c in dataset_classes):
        return tv.imagenet_categories(), "imagenet"
    return list(dataset_classes), "dataset"


def _network(fmt: str, model_cfg: dict, imp: dict, path: Path | None, shape, n_classes: int, trust: bool):
    """The imported network, weights loaded, and a line saying how it was read."""
    how = fmt
    if fmt == "spec":
        net = build_architecture(describe(model_cfg), shape, n_classes)
        load_weights(net, match_by_order(net, load_state_dict(path, trust)), path)
    elif fmt == "torchvision" and path is None:  # torchvision's own pretrained weights
        net, w = tv.pretrained(model_cfg["torchvision"], model_cfg["weights"])
        how = f"torchvision {model_cfg['torchvision']} weights {w['weights']}"
    elif fmt == "torchvision":
        state = load_state_dict(path, trust)
        n_out = _outputs_of_state(state, n_classes)
        net = tv.build(model_cfg["torchvision"], n_out, model_cfg.get("kwargs"))
        load_weights(net, state, path)
        how = f"torchvision {model_cfg['torchvision']} state_dict"
    elif fmt == "class":
        net = build_class(imp["class"], imp.get("kwargs"), imp.get("code_path"))
        load_weights(net, match_by_order(net, load_state_dict(path, trust)), path)
    elif fmt == "torchscript":
        net, how = from_torchscript(path, shape)
    else:
        net, how = from_export(path, shape)
    return net, how


def _outputs_of_state(state: dict, n_classes: int) -> int:
    """The number of outputs a torchvision state_dict's last layer has (its last 2-d weight)."""
    last = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(last[-1].shape[0]) if last else n_classes


def import_model(model_cfg: dict, data_dir: Path, out_dir: Path, trust: bool = False, device: str = "auto",
                 run_name: str = "") -> dict:
    """Read the configured model, check it against the dataset, evaluate it, and write model.pt,
    model.json and metrics.json to out_dir like `train` does."""
    check_sections(model=model_cfg)
    imp = dict(model_cfg.get("import") or {})
    weights_only = bool(model_cfg.get("weights")) and not imp
    if not imp and not weights_only:
        raise FeatvizError("model.import: not set (name the file to import in model.import.path, or "
                           "torchvision's pretrained weights in model.weights)")
    if weights_only:
        fmt, path, sha = "torchvision", None, None
        describe(model_cfg)
    else:
        ident = identity(imp, model_cfg)
        fmt, path, sha = ident["format"], Path(imp["path"]), ident["sha256"]
    info = read_info(data_dir)
    shape = tuple(info["input_shape"])
    dataset_classes = list(info["classes"])
    is_tv = fmt == "torchvision"
    if imp.get("mean") or imp.get("std"):
        mean, std, normalization = imp.get("mean") or info["mean"], imp.get("std") or info["std"], "model.import.mean/std"
    elif is_tv:
        mean, std, normalization = tv.IMAGENET_MEAN, tv.IMAGENET_STD, "imagenet"
        if shape[0] == 1:
            mean, std = [sum(mean) / 3], [sum(std) / 3]
    else:
        mean, std, normalization = info["mean"], info["std"], "dataset"
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise FeatvizError(f"model.import.mean/std: need {shape[0]} values (one per channel), got {len(mean)} and {len(std)}")

    started = time.perf_counter()
    net, how = _network(fmt, model_cfg, imp, path, shape, len(dataset_classes), trust)
    gray = tv.adapt_channels(net, shape[0]) if is_tv else False
    if fmt not in ("spec", "torchvision"):
        guard_inputs(net)
    no_inplace(net)
    net.eval()
    check_fits(net, shape, "model.import: the model")
    removed = strip_softmax(net, shape) if fmt in ("class", "torchscript", "export") else None
    warnings = []
    if removed is None and looks_like_probabilities(net, shape):
        warnings.append("the model's outputs are probabilities (each row sums to 1) and featviz could not remove "
                        "the softmax: class images maximize the softmax, not the logits (seed 003's pitfall; "
                        "export the network without its final softmax)")
    with torch.no_grad():
        out = net(torch.zeros(2, *shape))
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FeatvizError(f"model.import: the model outputs {got} for a batch of 2; it must output (batch, classes) logits")
    if out.shape[1] != len(dataset_classes):
        raise FeatvizError(f"model.import: the model has {out.shape[1]} outputs but the dataset has "
                           f"{len(dataset_classes)} classes; they must match (one output per class, in the "
                           f"dataset's sorted class order)")
    classes, names_from = class_names(with_defaults("model", model_cfg)["class_names"], dataset_classes, int(out.shape[1]), is_tv)

    dev = resolve_device(device)
    model = LoadedModel(net.to(dev), classes, shape, list(mean), list(std))
    test = read_prepared(data_dir, "test")
    acc = model.accuracy(test.images, test.labels, dev)
    net.cpu()

    imported = {"path": str(path) if path else None, "sha256": sha, "format": fmt, "how": how}
    meta = {
        "format": "featviz-spec" if fmt == "spec" else fmt,
        "run": run_name,
        "dataset": info["dataset"],
        "classes": classes,
        "class_names": names_from,
        "input_shape": list(shape),
        "mean": list(mean),
        "std": list(std),
        "input": input_description(shape[0], mean, std, normalization, gray),
        "output": {"softmax_removed": removed, "warnings": warnings},
        "model": model_cfg,
        "imported": imported,
        "import": {k: imp.get(k) for k in ("class", "kwargs", "code_path") if imp.get(k) is not None},
    }
    if fmt in ("spec", "torchvision"):
        meta.update({k: v for k, v in describe(model_cfg).items() if k != "format"})
    if fmt == "torchvision":
        meta["num_outputs"] = int(out.shape[1])
    metrics = {
        "epochs": [],
        "final_test_accuracy": acc,
        "train_wall_s": None,
        "import_wall_s": round(time.perf_counter() - started, 2),
        "device": str(dev),
        "parameters": sum(p.numel() for p in net.parameters()),
        "imported": imported,
    }
    # the three files replace a previous import only once all of them are written
    with staged_files(out_dir, ("metrics.json", "model.pt", "model.json")) as tmp:
        write_json(tmp / "metrics.json", metrics)
        if fmt in ("spec", "class", "torchvision"):
            save_model(tmp, net, meta)
        else:
            shutil.copyfile(path, tmp / "model.pt")
            write_json(tmp / "model.json", meta)
    return metrics

