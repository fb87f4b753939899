"""Datasets: every format featviz reads, the cached form, and a clear error for each way the
files can be wrong. All data here is synthetic and tiny."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from featviz.data import channel_stats, load_info, load_prepared, load_split, prepare
from featviz.errors import FeatvizError
from tests.test_data_fixtures import cifar_like, image_folder, mnist_like, svhn_like, write_idx

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def cfg(dataset, **data):
    return {"dataset": dataset, "download": False, **data}


def test_mnist_idx_files(tmp_path):
    mnist_like(tmp_path / "MNIST/raw")
    s = load_split(cfg("mnist"), tmp_path, train=True)
    assert s.images.shape == (40, 1, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.tolist()[:3] == [0, 1, 2] and s.classes[0] == "0"
    assert len(load_split(cfg("mnist"), tmp_path, train=False).labels) == 20


def test_fashion_mnist_imported_from_gz_source(tmp_path):
    src = mnist_like(tmp_path / "debian", gz=True)
    root = tmp_path / "data"
    root.mkdir()
    info = prepare(cfg("fashion-mnist", source=str(src)), root, tmp_path / "out")
    assert (root / "FashionMNIST/raw/train-images-idx3-ubyte").stat().st_size == 16 + 40 * 28 * 28
    assert info["classes"][0] == "T-shirt/top" and info["n_train"] == 40 and info["input_shape"] == [1, 28, 28]
    assert not list((root / "FashionMNIST/raw").glob("*.tmp")) and not list((root / "FashionMNIST/raw").glob(".*"))


def test_missing_files_offline_names_each_file(tmp_path):
    (tmp_path / "MNIST/raw").mkdir(parents=True)
    write_idx(tmp_path / "MNIST/raw/train-images-idx3-ubyte", np.zeros((2, 28, 28)))
    with pytest.raises(FeatvizError) as e:
        load_split(cfg("mnist"), tmp_path, train=True)
    msg = str(e.value)
    assert "download is off" in msg and "train-labels-idx1-ubyte" in msg and "t10k-images-idx3-ubyte" in msg
    assert "train-images-idx3-ubyte\n" not in msg + "\n"  # present files are not listed


def test_download_failure_offline_names_files(tmp_path, monkeypatch):
    import featviz.data as data

    def no_network(name, root):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(FeatvizError, match=r"download failed.*name resolution(.|\n)*test_32x32.mat"):
        load_split({"dataset": "svhn", "download": True}, tmp_path, train=True)


def test_truncated_idx_file(tmp_path):
    folder = mnist_like(tmp_path / "MNIST/raw")
    f = folder / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(FeatvizError, match="train-images-idx3-ubyte is truncated or corrupt"):
        load_split(cfg("mnist"), tmp_path, train=True)


def test_labels_and_images_disagree(tmp_path):
    folder = mnist_like(tmp_path / "MNIST/raw")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(FeatvizError, match="3 labels for 20 images"):
        load_split(cfg("mnist"), tmp_path, train=False)


def test_truncated_gz_source(tmp_path):
    src = mnist_like(tmp_path / "src", gz=True)
    gz = src / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(FeatvizError, match="cannot import .*train-images-idx3-ubyte.gz"):
        load_split(cfg("fashion-mnist", source=str(src)), root, train=True)
    assert not (root / "FashionMNIST/raw/train-images-idx3-ubyte").exists()  # nothing half-written


def test_source_missing_a_file(tmp_path):
    src = mnist_like(tmp_path / "src", gz=True)
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FeatvizError, match="neither t10k-labels-idx1-ubyte nor t10k-labels-idx1-ubyte.gz"):
        load_split(cfg("fashion-mnist", source=str(src)), tmp_path, train=True)


def test_cifar10_pickles(tmp_path):
    cifar_like(tmp_path)
    s = load_split(cfg("cifar10"), tmp_path, train=True)
    assert s.images.shape == (30, 3, 32, 32) and s.labels.max() == 9 and s.classes[-1] == "truck"
    t = load_split(cfg("cifar10"), tmp_path, train=False)
    assert t.images.shape == (10, 3, 32, 32)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    folder = cifar_like(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(FeatvizError, match="test_batch is truncated or corrupt.*refusing to load builtins.print"):
        load_split(cfg("cifar10"), tmp_path, train=False)


def test_cifar10_corrupt_batch(tmp_path):
    folder = cifar_like(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00")
    with pytest.raises(FeatvizError, match="data_batch_3 is truncated or corrupt"):
        load_split(cfg("cifar10"), tmp_path, train=True)


def test_svhn_mat(tmp_path):
    svhn_like(tmp_path)
    s = load_split(cfg("svhn"), tmp_path, train=True)
    assert s.images.shape == (20, 3, 32, 32)
    assert s.labels.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # 10 means the digit 0


def test_svhn_corrupt_mat(tmp_path):
    folder = svhn_like(tmp_path)
    f = folder / "test_32x32.mat"
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(FeatvizError, match="test_32x32.mat is truncated or corrupt"):
        load_split(cfg("svhn"), tmp_path, train=False)


def test_image_folder_rgb_resized(tmp_path):
    root = image_folder(tmp_path / "imgs", size=(12, 10))
    s = load_split(cfg("imagefolder", path=str(root), image_size=[8, 8]), tmp_path, train=True)
    assert s.images.shape == (12, 3, 8, 8) and s.classes == ["cat", "dog"]
    t = load_split(cfg("imagefolder", path=str(root), image_size=[8, 8]), tmp_path, train=False)
    assert t.images.shape == (6, 3, 8, 8) and t.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_grayscale_native_size(tmp_path):
    root = image_folder(tmp_path / "imgs", mode="L", size=(9, 7), ext=".jpg")
    s = load_split(cfg("imagefolder", path=str(root)), tmp_path, train=True)
    assert s.images.shape == (12, 1, 9, 7)


def test_image_folder_held_out_split_is_disjoint_and_seeded(tmp_path):
    root = image_folder(tmp_path / "imgs", with_test=False, n_train=20, classes=("a", "b", "c"))
    c = cfg("imagefolder", path=str(root), test_fraction=0.25, split_seed=3)
    tr, te = load_split(c, tmp_path, train=True), load_split(c, tmp_path, train=False)
    assert len(tr.labels) == 45 and len(te.labels) == 15
    rows = {bytes(x.numpy().tobytes()) for x in tr.images}
    assert not any(bytes(x.numpy().tobytes()) in rows for x in te.images)  # no test image is trained on
    assert torch.equal(load_split(c, tmp_path, train=False).images, te.images)


def test_image_folder_no_images(tmp_path):
    (tmp_path / "imgs/train/cat").mkdir(parents=True)
    with pytest.raises(FeatvizError, match="has no images"):
        load_split(cfg("imagefolder", path=str(tmp_path / "imgs")), tmp_path, train=True)


def test_image_folder_without_train(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(FeatvizError, match="has neither a train/ nor a test/ folder"):
        load_split(cfg("imagefolder", path=str(tmp_path / "imgs")), tmp_path, train=True)


def test_image_folder_non_image_file(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "train/dog/notes.txt").write_text("hello")
    with pytest.raises(FeatvizError, match="notes.txt' is not an image file"):
        load_split(cfg("imagefolder", path=str(root)), tmp_path, train=True)


def test_image_folder_corrupt_image(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "train/dog/001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(FeatvizError, match="cannot read image .*001.png"):
        load_split(cfg("imagefolder", path=str(root)), tmp_path, train=True)


def test_image_folder_train_test_classes_differ(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "test/dog").rename(root / "test/bird")
    with pytest.raises(FeatvizError, match="different classes.*train: cat, dog; test: bird, cat"):
        load_split(cfg("imagefolder", path=str(root)), tmp_path, train=False)


def test_prepare_writes_cache_and_stats(tmp_path):
    root = image_folder(tmp_path / "imgs", mode="L")
    info = prepare(cfg("imagefolder", path=str(root)), tmp_path, tmp_path / "out")
    assert load_info(tmp_path / "out") == info
    tr = load_prepared(tmp_path / "out", train=True)
    mean, std = channel_stats(tr.images)
    assert info["mean"] == mean and len(mean) == 1
    assert abs(mean[0] - tr.images.double().mean().item() / 255) < 1e-5


def test_limits(tmp_path):
    mnist_like(tmp_path / "MNIST/raw")
    s = load_split(cfg("mnist", limit_train=7), tmp_path, train=True)
    assert len(s.labels) == 7


@pytest.mark.slow
def test_real_mnist_when_present(tmp_path):
    if not (SHARED / "MNIST/raw/train-images-idx3-ubyte").exists():
        pytest.skip("no ../shared/data/MNIST")
    s = load_split(cfg("mnist"), SHARED, train=False)
    assert s.images.shape == (10000, 1, 28, 28) and s.labels[:3].tolist() == [7, 2, 1]
