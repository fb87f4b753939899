"""Training speed on this machine: wall time and test accuracy of featviz's own `train()`.

    python benchmarks/bench_train.py mnist --threads 1            # seed 000's net, 2 epochs
    python benchmarks/bench_train.py cifar10 --folder /work/cifar10-jpg --threads 1
    python benchmarks/bench_train.py cifar10 --torchvision resnet18 --epochs 15   # torchvision's resnet18

mnist reads ../shared/data/MNIST (the real files); cifar10 reads the CIFAR-10 JPEG training
images as an image folder and holds out `--test-fraction` of them (seeded) as the test split, so
the accuracy printed is on images never trained on. Prints one line per epoch and a summary with
the load average before and after (the machine may be shared: compare figures taken at similar
load only). Target: mnist >= 0.990 in <= 30 s, cifar10 >= 0.85 in <= 600 s of training.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from featviz.data import prepare  # noqa: E402
from featviz.train import train  # noqa: E402

PRESETS = {
    "mnist": {
        "data": {"dataset": "mnist", "download": False},
        "model": {"preset": "hvass-mnist"},
        "train": {"epochs": 2, "batch_size": 128, "lr": 0.002, "optimizer": "adam", "schedule": "onecycle"},
        "target": (0.990, 30.0),
    },
    "cifar10": {
        "data": {"dataset": "imagefolder", "test_fraction": 0.1, "split_seed": 0},
        "model": {"preset": "resnet-cifar"},
        "train": {"epochs": 12, "batch_size": 256, "lr": 0.2, "optimizer": "sgd", "momentum": 0.9,
                  "weight_decay": 5e-4, "schedule": "onecycle", "warmup_fraction": 0.2, "label_smoothing": 0.1,
                  "augment": {"crop_padding": 2, "flip": True}},
        "target": (0.85, 600.0),
    },
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=sorted(PRESETS))
    p.add_argument("--data-root", default=str(REPO / ".." / "shared" / "data"))
    p.add_argument("--folder", default="/work/cifar10-jpg", help="cifar10: the extracted JPEG image folder")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "featviz-bench"))
    for key in ("epochs", "batch_size", "lr"):
        p.add_argument("--" + key.replace("_", "-"), type=float if key == "lr" else int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW (channels_last is the default)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--preset", help="model preset instead of the default")
    p.add_argument("--torchvision", help="a torchvision architecture (e.g. resnet18) instead of the preset")
    p.add_argument("--crop-padding", type=int, help="augment.crop_padding instead of the default")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, = cores)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    cfg = json.loads(json.dumps(PRESETS[a.which]))
    if a.which == "cifar10":
        cfg["data"]["path"] = a.folder
    for key in ("epochs", "batch_size", "lr"):
        if getattr(a, key) is not None:
            cfg["train"][key] = getattr(a, key)
    cfg["train"].update(precision=a.precision, channels_last=not a.no_channels_last, compile=a.compile)
    if a.crop_padding is not None:
        cfg["train"].setdefault("augment", {})["crop_padding"] = a.crop_padding
    if a.preset:
        cfg["model"] = {"preset": a.preset}
    if a.torchvision:
        cfg["model"] = {"torchvision": a.torchvision}

    key = hashlib.sha256(json.dumps(cfg["data"], sort_keys=True).encode()).hexdigest()[:8]
    data_dir = Path(a.cache) / f"{a.which}-{key}"
    t = time.perf_counter()
    if not (data_dir / "info.json").exists():
        info = prepare(cfg["data"], Path(a.data_root), data_dir)
        print(f"prepared {info['n_train']} train / {info['n_test']} test in {time.perf_counter() - t:.1f} s", flush=True)

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        m = train(data_dir, cfg["model"], cfg["train"], Path(out), seed=a.seed, device="cpu", run_name=a.which,
                  progress=False, threads=a.threads)
    load1 = os.getloadavg()
    target_acc, budget = cfg["target"]
    reached = next((e for e in m["epochs"] if e["test_accuracy"] >= target_acc), None)
    print(json.dumps({"model": cfg["model"], "train": cfg["train"]}, sort_keys=True))
    print(f"{a.which}: test accuracy {m['final_test_accuracy']:.4f} after {len(m['epochs'])} epochs, "
          f"training wall {m['train_wall_s']:.1f} s ({m['precision']}, {m['threads']} threads, "
          f"torch {torch.__version__}); load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    if reached:
        ok = reached["elapsed_s"] <= budget
        print(f"target {target_acc:.3f} reached at epoch {reached['epoch']} after {reached['elapsed_s']:.1f} s "
              f"({'within' if ok else 'OVER'} the {budget:.0f} s budget)")
    else:
        print(f"target {target_acc:.3f} NOT reached (best {max(e['test_accuracy'] for e in m['epochs']):.4f})")


if __name__ == "__main__":
    main()
