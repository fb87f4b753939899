"""Seeded training of a spec-built CNN on a prepared dataset, with a progress bar, per-epoch
metrics, and an atomic checkpoint (state_dict + spec + classes + input normalization).

Data stays in memory as uint8 tensors; a batch is indexed, converted and normalized in one go,
so the hot loop has no per-sample Python.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .artifacts import read_info, read_prepared
from .checks import check_sections
from .device import resolve_device, resolve_precision
from .errors import FeatvizError
from .io import staged_files, write_json
from .model import LoadedModel, input_description, load_model, save_model
from .model.architecture import build_architecture, describe
from .model.torchvision_archs import main_output
from .schema import with_defaults


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def augment(x: torch.Tensor, cfg: dict, g: torch.Generator) -> torch.Tensor:
    """Random crop (zero-pad by `crop_padding`, then a random window of the original size) and
    random horizontal flip, drawn independently per image, on a uint8 (N, C, H, W) batch: one
    gather for the whole batch, no per-image Python."""
    pad = int(cfg.get("crop_padding") or 0)
    n, c, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))  # zeros, as torchvision's RandomCrop(padding=...)
        dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=g)
        hp, wp = h + 2 * pad, w + 2 * pad
        # flat index of every output pixel's source in its padded plane
        src = (dy + torch.arange(h).view(1, h, 1)) * wp + (dx + torch.arange(w).view(1, 1, w))
        x = padded.reshape(n, c, hp * wp).gather(2, src.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    if cfg.get("flip"):
        flip = torch.rand(n, generator=g) < 0.5
        if flip.any():
            x = x.clone() if not pad else x
            x[flip] = x[flip].flip(3)
    return x


def _precision(cfg: dict, dev: torch.device) -> torch.dtype | None:
    """The autocast dtype (`train.precision`: auto = bf16 where the hardware does it natively);
    None means plain float32."""
    want = resolve_precision(cfg["precision"], dev, "train.precision")
    return torch.bfloat16 if want == "bf16" else None


def make_optimizer(net, cfg: dict, steps_total: int):
    """The optimizer and learning-rate schedule of a `train` section (the schema's defaults for
    the keys it leaves out)."""
    cfg = with_defaults("train", cfg)
    name = cfg["optimizer"]
    lr = float(cfg["lr"])
    wd = float(cfg["weight_decay"])
    if name == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    elif name == "sgd":
        momentum = float(cfg["momentum"])
        # Nesterov needs a momentum: `momentum: 0` (the schema's minimum) is plain SGD
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=wd, nesterov=momentum > 0)
    else:
        raise FeatvizError(f"train.optimizer: unknown optimizer '{name}' (known: adam, sgd)")
    schedule = cfg["schedule"]
    if schedule == "onecycle" and steps_total >= 3:
        # OneCycleLR needs at least one step in each phase (tiny datasets have few steps)
        pct = float(cfg["warmup_fraction"])
        pct = min(max(pct, 1.5 / steps_total), 1.0 - 1.0 / steps_total)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps_total, pct_start=pct)
    elif schedule == "onecycle":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    elif schedule == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    else:
        raise FeatvizError(f"train.schedule: unknown schedule '{schedule}' (known: onecycle, constant)")
    return opt, sched


def train(data_dir: Path, model_cfg: dict, train_cfg: dict, out_dir: Path, seed: int = 0,
          device: str = "auto", run_name: str = "", progress: bool = True, threads: int | None = None) -> dict:
    """Train the configured network and write model.pt, model.json and metrics.json to out_dir.

    Speed on CPU: data stays in memory as uint8 tensors (a batch is one gather), bf16 autocast where
    the CPU does bf16 natively (`train.precision`), optional channels_last and torch.compile
    (`train.channels_last`, `train.compile`; see docs/training.md for what each buys).

    The config is checked against the workflow's schema first (as the DAG does), and the three
    files replace a previous model in out_dir only once all of them are written and read back:
    a failed run leaves the previous model byte-identical."""
    check_sections(model=model_cfg, train=train_cfg)
    train_cfg = with_defaults("train", train_cfg)
    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    info = read_info(data_dir)
    train_split = read_prepared(data_dir, "train")
    test_split = read_prepared(data_dir, "test")
    g = seed_everything(seed)
    arch = describe(model_cfg)
    shape = tuple(info["input_shape"])
    net = build_architecture(arch, shape, len(info["classes"])).to(dev)
    model = LoadedModel(net, info["classes"], shape, info["mean"], info["std"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False
    dtype = _precision(train_cfg, dev)
    fmt = torch.channels_last if train_cfg["channels_last"] else torch.contiguous_format
    net = net.to(memory_format=fmt)
    forward = torch.compile(net) if train_cfg["compile"] else net

    epochs = int(train_cfg["epochs"])
    bs = int(train_cfg["batch_size"])
    n = len(train_split.labels)
    steps_per_epoch = math.ceil(n / bs)
    opt, sched = make_optimizer(net, train_cfg, epochs * steps_per_epoch)
    aug = train_cfg["augment"]
    label_smoothing = float(train_cfg["label_smoothing"])

    curves = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        perm = torch.randperm(n, generator=g)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{run_name} epoch {epoch}/{epochs}", disable=not progress,
                   mininterval=2.0, leave=True)
        for step in bar:
            idx = perm[step * bs:(step + 1) * bs]
            xb = train_split.images[idx]
            if aug:
                xb = augment(xb, aug, g)
            yb = train_split.labels[idx].to(dev)
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = main_output(forward(model.to_input(xb, dev).contiguous(memory_format=fmt)))
                loss = F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
            if not torch.isfinite(loss):
                raise FeatvizError(
                    f"training diverged: loss is {loss.item()} at epoch {epoch}, step {step + 1} "
                    f"(lower train.lr, now {train_cfg.get('lr', 1e-3)})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        test_acc = model.accuracy(test_split.images, test_split.labels, dev, dtype=dtype, memory_format=fmt)
        curves.append({
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_accuracy": test_acc,
            "elapsed_s": round(time.perf_counter() - started, 2),
        })
        print(f"epoch {epoch}: train_loss={loss_sum / seen:.4f} train_acc={correct / seen:.4f} "
              f"test_acc={test_acc:.4f}", flush=True)

    net.eval()
    meta = {
        **arch,
        "run": run_name,
        "dataset": info["dataset"],
        "classes": info["classes"],
        "input_shape": list(shape),
        "mean": info["mean"],
        "std": info["std"],
        "input": input_description(shape[0], info["mean"], info["std"], "dataset",
                                   arch["format"] in ("torchvision", "timm") and shape[0] == 1),
        "model": model_cfg,
        "train": train_cfg,
        "seed": seed,
    }
    metrics = {
        "epochs": curves,
        "final_test_accuracy": curves[-1]["test_accuracy"] if curves else None,
        "train_wall_s": round(time.perf_counter() - started, 2),
        "device": str(dev),
        "parameters": sum(p.numel() for p in net.parameters()),
        "precision": "bf16" if dtype is not None else "fp32",
        "threads": torch.get_num_threads(),
    }
    with staged_files(out_dir, ("metrics.json", "model.pt", "model.json")) as tmp:
        write_json(tmp / "metrics.json", metrics)
        save_model(tmp, net.cpu().to(memory_format=torch.contiguous_format), meta)
        load_model(tmp)  # reads back: what replaces the previous model is complete and loads
    return metrics
