"""Each local job gets its own GPU: lock files, released when the holder dies."""
from __future__ import annotations

import subprocess
import sys

from featviz import device as gpu_lock


def test_two_claims_get_two_gpus_and_a_third_gets_none(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from featviz.device import claim_gpu; "
         f"print(claim_gpu(2, Path({str(tmp_path)!r})), flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        assert gpu_lock.claim_gpu(2, tmp_path) == 1
        assert gpu_lock.claim_gpu(2, tmp_path) is None
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock is free again
    assert gpu_lock.claim_gpu(2, tmp_path) == 0


def test_device_left_alone_without_several_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_lock.claim_device("cpu") == "cpu"
    assert gpu_lock.claim_device("auto") == "auto"  # no GPU here, or one
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu_lock.claim_device("cuda") == "cuda"
