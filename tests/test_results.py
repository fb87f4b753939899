"""featviz.results: the run folder's layout and its readers/writers (the contract between stages)."""
from __future__ import annotations

import numpy as np
import pytest

from featviz.errors import FeatvizError
from featviz.io import pack_images, write_json
from featviz.chunks import ascent_chunks, read_chunk_images, read_chunk_record, read_layer_ascent, write_chunk
from featviz.results import (
    BANK,
    LAYER_ARRAYS,
    Predictions,
    ProbeArrays,
    RunFolder,
    layer_key,
    read_predictions,
    read_probe,
    read_transfer,
    write_probe,
)


def _chunk(folder: RunFolder, layer: str, chunk: int, units: list[int], steps=(0, 5)) -> None:
    c = folder.ascent_chunk(layer, chunk)
    c.record.parent.mkdir(parents=True, exist_ok=True)
    images = np.full((len(units), 1, 4, 4), chunk / 20, np.float32)
    write_chunk(c.images, c.record, images=pack_images(images), objective=np.zeros(len(units), np.float32),
                units=units, snapshots={st: pack_images(images) for st in steps},
                record={"layer": layer, "units": units, "stats": [{"unit": u} for u in units], "recipe": {"name": "r"},
                        "seed": 0, "device": "cpu", "chunk": chunk})


def test_layout_names_every_artifact(tmp_path):
    f = RunFolder(tmp_path / "shapes-0123abcd")
    assert f.run_id == "shapes-0123abcd"
    assert f.model_json == f.root / "model" / "model.json"
    assert f.confusion_png == f.root / "eval" / "confusion.png"
    assert f.probe_npz == f.root / "probe" / "probe.npz"
    c = f.ascent_chunk("conv1", 3)
    assert (c.index, c.record.name, c.images.name) == (3, "3.json", "3.npz")
    assert c.record.parent == f.root / "ascent" / "conv1"
    assert f.transfer_json == f.root / "transfer.json"


def test_chunks_sort_by_number_and_only_numbered_files_are_chunks(tmp_path):
    f = RunFolder(tmp_path)
    for chunk, units in ((10, [10]), (2, [2]), (0, [0, 1])):
        _chunk(f, "fc1", chunk, units)
    write_json(f.ascent_dir("fc1") / "notes.json", {})
    assert [c.index for c in ascent_chunks(f.ascent_dir("fc1"))] == [0, 2, 10]
    data = read_layer_ascent(f.ascent_dir("fc1"))
    assert data.units == [0, 1, 2, 10] and [s["unit"] for s in data.stats] == data.units
    assert data.snapshot_steps == [0, 5] and data.recipe == {"name": "r"}
    images, snaps = data.pixels()
    assert images.shape == (4, 1, 4, 4) and sorted(snaps) == [0, 5]
    assert np.allclose(images[-1], 0.5, atol=1 / 255)  # chunk 10 is last
    assert read_layer_ascent(f.ascent_dir("nothing")) is None


def test_snapshot_steps_are_those_every_chunk_has(tmp_path):
    f = RunFolder(tmp_path)
    _chunk(f, "c", 0, [0], steps=(0, 5))
    _chunk(f, "c", 1, [1], steps=(5,))
    assert read_layer_ascent(f.ascent_dir("c")).snapshot_steps == [5]


def test_a_broken_chunk_is_one_error_naming_it(tmp_path):
    f = RunFolder(tmp_path)
    _chunk(f, "c", 0, [0, 1])
    c = f.ascent_chunk("c", 0)
    write_json(c.record, {"layer": "c", "units": [0, 1], "stats": [{"unit": 0}]})
    with pytest.raises(FeatvizError, match=r"0\.json is not what featviz wrote \(units and stats"):
        read_chunk_record(c)
    c.images.unlink()
    with pytest.raises(FeatvizError, match=r"the images file 0\.npz is missing"):
        read_chunk_images(c)


def test_probe_arrays_contract(tmp_path):
    assert layer_key("topk", 2) == "topk_2" and set(LAYER_ARRAYS) == {"act", "hist", "edges", "topk", "maps",
                                                                                  "maps_range"}
    with pytest.raises(ValueError):
        layer_key("crops", 0)
    f = RunFolder(tmp_path)
    assert read_probe(f) == (None, {})
    predictions = Predictions(np.zeros((2, 1), np.int32), np.ones((2, 1), np.float32), np.zeros(2, np.int64),
                              np.ones(2, bool), {"precision": "fp32"})
    write_probe(f.probe_dir, {"layers": []}, {layer_key("hist", 0): np.ones((3, 4), np.int32)},
                np.zeros((2, 1, 3, 3), np.uint8), predictions)
    summary, arrays = read_probe(f)
    assert summary == {"layers": []} and isinstance(arrays, ProbeArrays)
    assert arrays.bank.shape == (2, 1, 3, 3) and arrays.layer("hist", 0).shape == (3, 4)
    assert arrays.layer("hist", 1) is None and arrays.layer("maps", 0) is None and arrays.layer("hist", None) is None
    assert arrays.sample_images is None
    assert BANK not in np.load(f.probe_npz).files  # the bank is bank.npz, which an archive leaves out
    from featviz.archive import NOT_ARCHIVED

    assert f"probe/{f.probe_bank.name}" in NOT_ARCHIVED
    back = read_predictions(f.predictions)
    assert back.record == {"precision": "fp32"} and back.top_class.shape == (2, 1)
    f.probe_bank.unlink()  # an archived run: the arrays without the bank
    summary, arrays = read_probe(f)
    assert arrays.bank is None and arrays.layer("hist", 0).shape == (3, 4)


def test_transfer_reader(tmp_path):
    f = RunFolder(tmp_path)
    assert read_transfer(f.transfer_json) is None
    write_json(f.transfer_json, {"images": [], "transfer_model": None})
    assert read_transfer(f.transfer_json)["images"] == []
    write_json(f.transfer_json, {"summary": {}})
    with pytest.raises(FeatvizError, match=r"transfer score file .* \(no 'images'\)"):
        read_transfer(f.transfer_json)
