"""`featviz import-model`: bring your own trained network, so that it is evaluated, enumerated,
visualized and reported like one featviz trained (the formats: `featviz.model.formats`; torchvision
architectures: `featviz.model.torchvision_archs`).

A checkpoint is read as its training code saved it (featviz.model.checkpoint_files: nested
state_dicts, legacy pickles, safetensors; featviz.model.key_fit: DataParallel/compile/Lightning
prefixes, legacy BatchNorm), and the dataset's class folders are matched to the network's outputs by
name (featviz.model.class_match: a folder may hold a few of a 1000-class network's classes).

The imported file is copied into `results/<run>/model/model.pt` (a state_dict for `spec`,
`torchvision` and `class`; the archive itself for `torchscript` and `export`); `model.json` records
the format, where the network came from and what was adapted (`imported`), its output names and
which output each dataset class is (`classes`, `dataset_classes`, `label_to_output`), and the input
the network expects (channel order, value range, normalization); `metrics.json` holds the accuracy
on a sample of the test images (`check_accuracy`; evaluate measures all of them) and the import's
time (`epochs` is empty). A final softmax is removed so that class images maximize the logits (seed
003); where it cannot be removed, or where the network reads the images at chance level, model.json's
`output.warnings` say so and the report shows it.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from .artifacts import read_info, read_prepared
from .checks import check_sections
from .device import resolve_device
from .errors import FeatvizError
from .evaluate import chance_warning
from .inference import accuracy as inference_accuracy
from .io import staged_files, write_json
from .model import LoadedModel, input_description, save_model
from .model import timm_archs
from .model import torchvision_archs as tv
from .model.architecture import ZOOS, build_architecture, build_named, check_fits, describe, zoo_of
from .model.checkpoint import import_weights, load_state_dict
from .model.class_match import match_classes, output_names
from .model.formats import build_class, from_export, from_torchscript, guard_inputs, identity
from .model.hookable import no_inplace
from .model.logits import looks_like_probabilities, strip_softmax
from .schema import with_defaults

# the accuracy import-model measures itself: on an evenly spread sample of the test images, to warn
# early of a network that cannot read them (wrong normalization, class order); evaluate measures it
# on every test image
CHECK_IMAGES = 500


def _network(fmt: str, model_cfg: dict, imp: dict, path: Path | None, shape, n_classes: int, trust: bool):
    """The imported network, weights loaded, a line saying how it was read, and what the checkpoint
    was and what was adapted ({"file_format", "entry", "adapted", "architecture"})."""
    key = imp.get("key")
    if fmt == "spec":
        net = build_architecture(describe(model_cfg), shape, n_classes)
        what = f"the featviz spec {model_cfg.get('preset') or 'model.layers'}"
        loaded = import_weights(net, path, trust, key, what)
        return net, "state_dict for a featviz spec", {**loaded, "architecture": what.removeprefix("the ")}
    if fmt in ZOOS:
        what = f"{fmt} {model_cfg[fmt]}"
        if path is None:  # the zoo's own pretrained weights (a download)
            if fmt == "torchvision":
                net, w = tv.pretrained(model_cfg["torchvision"], model_cfg["weights"])
                weights = w["weights"]
            else:
                net, weights = timm_archs.pretrained(model_cfg["timm"]), "pretrained"
            return net, f"{what} weights {weights}", {"file_format": f"{fmt} weights", "entry": None, "adapted": [],
                                                       "architecture": what}
        net = build_named(describe(model_cfg), n_classes)
        n_out = _outputs_of_state(net, load_state_dict(path, trust, key), n_classes)
        if n_out != n_classes:
            net = build_named(describe(model_cfg), n_out)
        loaded = import_weights(net, path, trust, key, what)
        return net, f"{what} state_dict", {**loaded, "architecture": what}
    if fmt == "class":
        net = build_class(imp["class"], imp.get("kwargs"), imp.get("code_path"))
        what = imp["class"] + (f"(**{imp['kwargs']})" if imp.get("kwargs") else "()")
        loaded = import_weights(net, path, trust, key, what)
        return net, "class + state_dict", {**loaded, "architecture": what}
    if fmt == "torchscript":
        net, how = from_torchscript(path, shape)
        return net, how, {"file_format": "TorchScript archive", "entry": None, "adapted": [], "architecture": "TorchScript"}
    net, how = from_export(path, shape)
    return net, how, {"file_format": "torch.export archive", "entry": None, "adapted": [], "architecture": "torch.export"}


def _outputs_of_state(net, state: dict, n_classes: int) -> int:
    """The number of outputs a checkpoint's classifier has: the first dimension of the weight of
    the network's last conv or linear module (in registration order: SqueezeNet's classifier is a
    1x1 conv), found in the state under any prefix (`module.fc.weight`)."""
    last = None
    for name, mod in net.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            last = name
    if last is None:
        return n_classes
    want = f"{last}.weight"
    hits = [v for k, v in state.items() if k == want or k.endswith("." + want)]
    return int(hits[0].shape[0]) if len(hits) == 1 and hits[0].dim() in (2, 4) else n_classes


def _normalization(imp: dict, info: dict, model_cfg: dict, shape) -> tuple[list, list, str]:
    """The input normalization: the config's, else a zoo architecture's (torchvision: ImageNet's;
    timm: its pretrained config's), else the dataset's."""
    zoo = zoo_of(model_cfg)
    if imp.get("mean") or imp.get("std"):
        mean, std, how = imp.get("mean") or info["mean"], imp.get("std") or info["std"], "model.import.mean/std"
    elif zoo:
        cfg = timm_archs.pretrained_config(model_cfg["timm"]) if zoo == "timm" else {}
        mean, std = list(cfg.get("mean") or tv.IMAGENET_MEAN), list(cfg.get("std") or tv.IMAGENET_STD)
        how = f"timm's pretrained config for {model_cfg['timm']}" if cfg.get("mean") else "imagenet"
        if shape[0] == 1 and len(mean) == 3:
            mean, std = [sum(mean) / 3], [sum(std) / 3]
    else:
        mean, std, how = info["mean"], info["std"], "dataset"
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise FeatvizError(f"model.import.mean/std: need {shape[0]} values (one per channel), got {len(mean)} and {len(std)}")
    return list(mean), list(std), how


def _check_sample(test, label_to_output: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """An evenly spread sample of at most CHECK_IMAGES test images, labels as network outputs."""
    n = len(test.labels)
    idx = torch.linspace(0, n - 1, min(n, CHECK_IMAGES)).round().long().unique() if n else torch.zeros(0, dtype=torch.long)
    labels = torch.as_tensor(label_to_output, dtype=torch.int64)[test.labels[idx]]
    return test.images[idx], labels


def config_network(model_cfg: dict, input_shape, n_classes: int, trust: bool = False):
    """The network a run's model section names, weights loaded where it imports a file (no dataset
    needed): for `featviz units --config`, which lists its modules before any run."""
    imp = dict(model_cfg.get("import") or {})
    if not imp:
        return build_architecture(describe(model_cfg), input_shape, n_classes)
    ident = identity(imp, model_cfg)
    net, _, _ = _network(ident["format"], model_cfg, imp, Path(imp["path"]), tuple(input_shape), n_classes, trust)
    if ident["format"] in ZOOS:
        tv.adapt_channels(net, int(input_shape[0]))
    return net.eval()


def import_model(model_cfg: dict, data_dir: Path, out_dir: Path, trust: bool = False, device: str = "auto",
                 run_name: str = "") -> dict:
    """Read the configured model, check it against the dataset, check it on a sample of the test
    images, and write model.pt, model.json and metrics.json to out_dir like `train` does."""
    check_sections(model=model_cfg)
    imp = dict(model_cfg.get("import") or {})
    weights_only = bool(model_cfg.get("weights")) and not imp
    if not imp and not weights_only:
        raise FeatvizError("model.import: not set (name the file to import in model.import.path, or "
                           "torchvision's pretrained weights in model.weights)")
    if weights_only:
        fmt, path, sha = zoo_of(model_cfg) or "torchvision", None, None
        describe(model_cfg)
    else:
        ident = identity(imp, model_cfg)
        fmt, path, sha = ident["format"], Path(imp["path"]), ident["sha256"]
    info = read_info(data_dir)
    shape = tuple(info["input_shape"])
    dataset_classes = list(info["classes"])
    is_tv = fmt in ZOOS
    mean, std, normalization = _normalization(imp, info, model_cfg, shape)

    started = time.perf_counter()
    net, how, loaded = _network(fmt, model_cfg, imp, path, shape, len(dataset_classes), trust)
    gray = tv.adapt_channels(net, shape[0]) if is_tv else False
    if fmt not in ("spec", *ZOOS):
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
    n_out = int(out.shape[1])
    choice = with_defaults("model", model_cfg)["class_names"]
    classes, names_from = output_names(choice, n_out, dataset_classes)
    label_to_output = match_classes(dataset_classes, classes, names_from)

    dev = resolve_device(device)
    model = LoadedModel(net.to(dev), classes, shape, mean, std)
    test = read_prepared(data_dir, "test")
    images, labels = _check_sample(test, label_to_output)
    acc = inference_accuracy(model, images, labels, dev)
    net.cpu()
    low = chance_warning(acc, n_out, len(labels), f"accuracy on {len(labels)} test images")
    if low:
        print(f"warning: {low}", flush=True)
        warnings.append(low)

    parameters = sum(p.numel() for p in net.parameters())
    imported = {"path": str(path) if path else None, "sha256": sha, "format": fmt, "how": how,
                **loaded, "parameters": parameters}
    meta = {
        "format": "featviz-spec" if fmt == "spec" else fmt,
        "run": run_name,
        "dataset": info["dataset"],
        "classes": classes,
        "class_names": names_from,
        "dataset_classes": dataset_classes,
        "label_to_output": label_to_output,
        "input_shape": list(shape),
        "mean": mean,
        "std": std,
        "input": input_description(shape[0], mean, std, normalization, gray),
        "output": {"softmax_removed": removed, "warnings": warnings},
        "model": model_cfg,
        "imported": imported,
        "import": {k: imp.get(k) for k in ("class", "kwargs", "code_path") if imp.get(k) is not None},
    }
    if fmt in ("spec", *ZOOS):
        meta.update({k: v for k, v in describe(model_cfg).items() if k != "format"})
    if fmt in ZOOS:
        meta["num_outputs"] = n_out
    metrics = {
        "epochs": [],
        "check_accuracy": {"accuracy": acc, "images": int(len(labels)), "of": int(len(test.labels))},
        "train_wall_s": None,
        "import_wall_s": round(time.perf_counter() - started, 2),
        "device": str(dev),
        "parameters": parameters,
        "imported": imported,
    }
    # the three files replace a previous import only once all of them are written
    with staged_files(out_dir, ("metrics.json", "model.pt", "model.json")) as tmp:
        write_json(tmp / "metrics.json", metrics)
        if fmt in ("spec", "class", *ZOOS):
            save_model(tmp, net, meta)
        else:
            shutil.copyfile(path, tmp / "model.pt")
            write_json(tmp / "model.json", meta)
    return metrics
