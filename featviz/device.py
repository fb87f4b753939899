"""The one place that decides which device a job computes on.

`resolve_device`: `auto` is cuda, then mps, then cpu; anything else as given, checked.
`wants_gpu`: whether jobs with this device setting should declare a `gpu` resource.

One GPU per job on a local multi-GPU machine:

Snakemake's `gpu` resource is only a counter: it never sets CUDA_VISIBLE_DEVICES, so two jobs
started at once would both use cuda:0. `claim_device` picks the first GPU whose lock file is free
and holds the lock (an flock, released by the OS when the process ends, even on kill -9) for the
life of the process. Under Slurm, or wherever CUDA_VISIBLE_DEVICES is already set, the device is
left as it is.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import torch

from .errors import FeatvizError

_held = []  # open lock files, kept for the life of the process


def lock_dir() -> Path:
    d = Path(os.environ.get("FEATVIZ_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "featviz-gpu-locks")
    d.mkdir(parents=True, exist_ok=True)
    return d


def claim_gpu(n_gpus: int, folder: Path | None = None) -> int | None:
    """Lock and return the index of a free GPU among n_gpus, or None if all are taken."""
    folder = folder or lock_dir()
    for i in range(n_gpus):
        f = open(folder / f"gpu{i}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _held.append(f)
        return i
    return None


def claim_device(device: str) -> str:
    """`cuda`/`auto` on a machine with several visible GPUs and no CUDA_VISIBLE_DEVICES: a
    locked `cuda:i`. Anything else: unchanged."""
    if device not in ("auto", "cuda") or os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return device
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n <= 1:
        return device
    i = claim_gpu(n)
    return f"cuda:{i}" if i is not None else device


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FeatvizError(f"device: unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FeatvizError(f"device: '{device}' requested but CUDA is not available here (use auto or cpu)")
    return dev


def wants_gpu(device: str) -> bool:
    """True when jobs configured with `device` compute on a GPU (declare a `gpu` resource)."""
    if device.startswith("cuda"):
        return True
    return device == "auto" and torch.cuda.is_available()


def native_bf16(dev: torch.device) -> bool:
    """Whether `dev` computes bf16 natively: a CPU with AVX512-BF16/AMX (oneDNN's check), a GPU
    with bf16 support. Elsewhere bf16 is emulated and slower than fp32."""
    if dev.type == "cpu":
        return bool(getattr(torch.backends, "mkldnn", None) and torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


def resolve_precision(want: str, dev: torch.device, key: str = "precision") -> str:
    """`fp32` or `bf16` for a `precision` setting (`auto`: bf16 where `dev` does it natively)."""
    if want not in ("auto", "fp32", "bf16"):
        raise FeatvizError(f"{key}: unknown precision '{want}' (known: auto, fp32, bf16)")
    if want == "auto":
        return "bf16" if native_bf16(dev) else "fp32"
    return want
