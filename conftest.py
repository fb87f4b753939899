"""Shared pytest fixtures: tiny synthetic data and models, no network."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory) -> Path:
    from tests.synthetic import make_imagefolder

    return make_imagefolder(tmp_path_factory.mktemp("shapes") / "shapes")


@pytest.fixture(scope="session")
def prepared_shapes(shapes_folder, tmp_path_factory) -> Path:
    from featviz.data import prepare

    out = tmp_path_factory.mktemp("prepared") / "shapes"
    prepare({"dataset": "imagefolder", "path": str(shapes_folder)}, Path("unused"), out)
    return out


@pytest.fixture(scope="session")
def trained_shapes(prepared_shapes, tmp_path_factory) -> Path:
    from featviz.train import train
    from tests.synthetic import TINY_LAYERS

    out = tmp_path_factory.mktemp("model") / "model"
    train(prepared_shapes, {"layers": TINY_LAYERS}, {"epochs": 8, "batch_size": 16, "lr": 0.01}, out,
          seed=0, device="cpu", run_name="shapes", progress=False)
    return out


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    raw = SHARED_DATA / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not present at {raw}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny ops on a shared 2-core machine are fastest single-threaded."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
