"""A synthetic run of a network featviz did not train, as the report meets one (issue 25): a CIFAR
ResNet-56-shaped module tree (conv1; layer1..3 of 9 blocks, each conv1 and conv2; linear) of 2
channels on 3×8×8 images with 1000 outputs, of which the test folder covers 19; model.json and
model/metrics.json as import-model writes them (the `imported` record of the contract: file,
sha256, format, file format, entry, what was adapted, architecture, parameters; or, with
`legacy=True`, only what older model folders have); eval/metrics.json with a chance-level
warning; pictures for a few layers only (`ascent.layers`) and the probe over all 56 layers; an
invalid transfer model in transfer.json.

Runs the real `evaluate`, `units` and `probe` code; the ascent results are written directly.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featviz.evaluate import evaluate
from featviz.io import read_json, write_json
from featviz.model import LoadedModel, input_description, save_model
from featviz.probe import probe
from featviz.units import enumerate_units
from tests.synthetic_run import write_ascent

OUTPUTS = 1000
PRESENT = [1, 7, 42, 99, 100, 207, 281, 340, 386, 417, 430, 471, 508, 562, 620, 717, 805, 888, 954]  # 19
SHAPE = (3, 8, 8)
ASCENDED = {"conv1": None, "layer2.0.conv1": None, "classes": [1, 7, 42, 99, 954, 3]}  # None: every unit


class Block(nn.Module):
    def __init__(self, width: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.stride == 1 else F.avg_pool2d(x, self.stride)
        return F.relu(out + short)


class TinyCifarResNet(nn.Module):
    """akamaster's CIFAR ResNet layout (conv1, layer1..3 of `blocks` blocks, linear), `width` channels."""

    def __init__(self, blocks: int = 9, width: int = 2, num_classes: int = OUTPUTS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(*[Block(width, 1) for _ in range(blocks)])
        self.layer2 = nn.Sequential(*[Block(width, 2 if i == 0 else 1) for i in range(blocks)])
        self.layer3 = nn.Sequential(*[Block(width, 2 if i == 0 else 1) for i in range(blocks)])
        self.linear = nn.Linear(width, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _imported(path: Path, sha: str, params: int, legacy: bool) -> dict:
    rec = {"path": str(path), "sha256": sha, "format": "class",
           "how": "state_dict loaded into tests.synthetic_imported:TinyCifarResNet (strict)"}
    if not legacy:
        rec.update({"file_format": "legacy torch pickle", "entry": "state_dict",
                    "adapted": ["stripped prefix 'module.' (nn.DataParallel/DDP)",
                                "filled 55 BatchNorm num_batches_tracked (legacy checkpoint)"],
                    "architecture": "class tests.synthetic_imported:TinyCifarResNet (cifar_resnet:resnet56)",
                    "parameters": params})
    return rec


def make_imported_run(root: Path, name: str = "resnet56-9f8e7d6c", per_class: int = 3, legacy: bool = False,
                      transfer_valid: bool = False) -> Path:
    """Write `root/results/<name>/...` and `root/results/data/<name>/`; returns the run folder."""
    root = Path(root)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    classes = [f"n{i:08d}" for i in range(OUTPUTS)]
    data = root / "results" / "data" / name
    data.mkdir(parents=True, exist_ok=True)
    labels = torch.tensor(PRESENT, dtype=torch.int64).repeat_interleave(per_class)
    # a colour per class, plus noise: the network's answers differ between classes (varied confusions)
    colour = torch.rand(len(PRESENT), 3, 1, 1, generator=g).repeat_interleave(per_class, 0)
    images = (torch.rand(len(labels), *SHAPE, generator=g) * 80 + colour * 175).to(torch.uint8)
    torch.save({"images": images, "labels": labels, "classes": classes}, data / "test.pt")

    run = root / "results" / name
    net = TinyCifarResNet().eval()
    with torch.no_grad():
        net.linear.weight.mul_(30)  # logits far apart: a clear prediction per image
    params = sum(p.numel() for p in net.parameters())
    checkpoint = root / "checkpoints" / "resnet56-4bfd9763.th"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, checkpoint)
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    imported = _imported(checkpoint, sha, params, legacy)
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    dataset_classes = [classes[i] for i in PRESENT]
    meta = {"format": "class", "run": name, "dataset": "cifar-like", "classes": classes, "class_names": "imagenet",
            "input_shape": list(SHAPE), "mean": mean, "std": std,
            "input": input_description(3, mean, std, "model.import.mean/std", False),
            "output": {"softmax_removed": None, "warnings": []},
            "model": {"import": {"path": str(checkpoint), "class": "tests.synthetic_imported:TinyCifarResNet"}},
            "imported": imported, "import": {"class": "tests.synthetic_imported:TinyCifarResNet"}}
    if not legacy:
        # (no `label_to_output`: test.pt's labels are already the network's output indices, so the
        # identity mapping holds, whether or not the stages map labels through model.json)
        meta.update(dataset_classes=dataset_classes)
    save_model(run / "model", net, meta)
    model = LoadedModel(net, classes, SHAPE, mean, std, meta)
    ev = evaluate(model, data, run / "eval", "cpu")
    write_json(run / "model" / "metrics.json", {
        "epochs": [], "check_accuracy": {"accuracy": ev["test_accuracy"], "images": 20, "of": 20}, "train_wall_s": None, "import_wall_s": 1.37,
        "device": "cpu", "parameters": params, "imported": {k: imported[k] for k in ("path", "sha256", "format", "how")}})
    ev = read_json(run / "eval" / "metrics.json")
    ev["warnings"] = [f"test accuracy {ev['test_accuracy']:.3f} is at chance level for {len(PRESENT)} classes: check "
                      f"model.import.mean/std and the class order"]
    write_json(run / "eval" / "metrics.json", ev)

    units = enumerate_units(model.net, SHAPE, classes)
    write_json(run / "units.json", units)
    rng = np.random.default_rng(0)
    for layer in units["layers"]:
        if layer["name"] in ASCENDED:
            picked = ASCENDED[layer["name"]] or list(range(layer["units"]))
            write_ascent(run, layer, picked, 4, rng, channels=3)
    probe(model, units, data, run / "probe", "cpu", top_k=4, samples=2, prune_images=len(labels),
          prune_passes=40)  # pruning curves for the first layers, "budget spent" for the rest
    accuracy = 0.8 if transfer_valid else 0.019
    write_json(run / "transfer.json", {"images": [], "transfer_model": {
        "model": {"preset": "auto"}, "seed": 1, "test_accuracy": accuracy, "valid": transfer_valid,
        "invalid_reason": None if transfer_valid else
        f"the transfer model's test accuracy {accuracy:.3f} is not well above chance (0.001)"}})
    return run
