"""A user's own TorchScript model and a class-path model through the whole Snakemake DAG (import,
evaluate, units, ascent, report, archive) on a tiny synthetic image folder made here."""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from tests.snakemake_run import snakemake
from tests.test_byo import NET_SOURCE
from tests.test_data_fixtures import image_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.workflow
def test_imported_models_through_the_dag(tmp_path):
    image_folder(tmp_path / "imgs", classes=("a", "b", "c"), size=(8, 8), n_train=4, n_test=4)
    code = tmp_path / "code"
    code.mkdir()
    (code / "wf_tinynet.py").write_text(NET_SOURCE.replace("width * 16", "width * 16"))
    sys.path.insert(0, str(code))
    try:
        from wf_tinynet import TinyNet
    finally:
        sys.path.remove(str(code))
    net = TinyNet(width=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net), str(tmp_path / "net.ts"))
    torch.save(net.state_dict(), tmp_path / "net.pt")
    data = {"path": str(tmp_path / "imgs")}
    ascent = {"chunk_size": 64, "overrides": {"conv": {"steps": 2}, "dense": {"steps": 2}, "class": {"class_steps": 2}}}
    cfg = {
        "data_root": str(tmp_path), "device": "cpu", "seed": 0,
        "runs": [
            {"name": "scripted", "dataset": "imagefolder", "data": data,
             "model": {"import": {"path": str(tmp_path / "net.ts")}}, "ascent": ascent},
            {"name": "byclass", "dataset": "imagefolder", "data": data,
             "model": {"import": {"path": str(tmp_path / "net.pt"), "class": "wf_tinynet:TinyNet",
                                  "kwargs": {"width": 2}, "code_path": str(code)}}, "ascent": ascent},
        ],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = snakemake(work, "--quiet", "rules", configfile=tmp_path / "config.yaml", env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = sorted(p for p in (work / "reports").iterdir() if p.is_dir())
    assert [p.name.rsplit("-", 1)[0] for p in reports] == ["byclass", "scripted"]
    for rep in reports:
        run = rep.name
        assert (rep / "index.html").exists() and (work / "reports" / f"{run}.tar.gz").exists()
        units = json.loads((work / "results" / run / "units.json").read_text())
        assert [layer["name"] for layer in units["layers"]] == ["features.0", "head", "fc1", "classes"]
        assert (work / "results" / run / "ascent" / "features.0" / "0.npz").exists()
        meta = json.loads((work / "results" / run / "model" / "model.json").read_text())
        assert meta["imported"]["sha256"] and meta["format"] in ("torchscript", "class")
        assert (work / "results" / run / "logs" / "import_model.log").exists()
        # circuits: the class traces (a plain chain: weights); TorchScript cannot be traced (data)
        circ = json.loads((work / "results" / run / "circuits" / "circuits.json").read_text())
        expected = "weights" if meta["format"] == "class" else "data"
        assert [p["measure"] for p in circ["pairs"]] == [expected] * 3, circ["pairs"]
        assert 'id="circuits"' in (rep / "units" / "head" / "0.html").read_text()
    assert (work / "reports" / "index.html").exists()


@pytest.mark.workflow
def test_imported_model_selection_naming_a_missing_layer_stops_before_any_ascent(tmp_path):
    """An imported network's layers are known only once units.json exists: a layer selection naming
    one it lacks stops there, with one message naming the key and the layers that exist."""
    image_folder(tmp_path / "imgs", classes=("a", "b", "c"), size=(8, 8), n_train=4, n_test=2)
    from tests.synthetic import MICRO_LAYERS
    from featviz.model import build

    torch.jit.save(torch.jit.script(build(MICRO_LAYERS, (3, 8, 8), 3).eval()), str(tmp_path / "micro.ts"))
    cfg = {"data_root": str(tmp_path), "device": "cpu", "seed": 0,
           "runs": [{"name": "micro", "dataset": "imagefolder", "data": {"path": str(tmp_path / "imgs")},
                     "model": {"import": {"path": str(tmp_path / "micro.ts")}},
                     "ascent": {"layers": ["conv2", "classes"], "transfer": None}}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    proc = snakemake(work, "--quiet", "rules", configfile=tmp_path / "config.yaml", timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # `featviz select`'s one line reaches the terminal (the workflow's onerror handler), no traceback
    assert "featviz: error: runs[0].ascent.layers: unknown layer 'conv2' (known: conv1, classes)" in proc.stderr, out[-3000:]
    assert "Traceback" not in out and "InputFunctionException" not in out
    assert not list((work / "results").glob("*/ascent/*"))


@pytest.mark.workflow
def test_a_test_only_folder_a_stage_alias_and_a_checkpoint_as_published(tmp_path):
    """An imported network needs no train/ folder; its checkpoint nested under 'state_dict' with a
    DataParallel prefix imports as saved; a stage named for its last block (`layer2` for `layer2.1`);
    no transfer model unless asked; the run page says where the network came from."""
    sys.path.insert(0, str(REPO / "tests" / "real_nets"))
    try:
        from cifar_resnet import CifarResNet
    finally:
        sys.path.remove(str(REPO / "tests" / "real_nets"))
    image_folder(tmp_path / "imgs", classes=("cat", "dog", "ship"), size=(16, 16), n_train=3, n_test=3)
    import shutil

    shutil.rmtree(tmp_path / "imgs" / "train")
    net = CifarResNet(1, 10).eval()
    torch.save({"best_prec1": 50.0, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / "ckpt.th")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    cfg = {"data_root": str(tmp_path), "device": "cpu", "seed": 0,
           "runs": [{"name": "wild", "dataset": "imagefolder", "data": {"path": str(tmp_path / "imgs")},
                     "model": {"import": {"path": str(tmp_path / "ckpt.th"), "class": "cifar_resnet:CifarResNet",
                                          "kwargs": {"blocks_per_stage": 1},
                                          "code_path": str(REPO / "tests" / "real_nets")},
                               "class_names": names},
                     "ascent": {"targets": ["default", "layer*"], "layers": ["layer2", "classes"],
                                "units": {"layer2.0": [0, 1], "classes": ["cat", "bird"]}, "chunk_size": 8,
                                "overrides": {"conv": {"steps": 2}, "class": {"class_steps": 2}}}}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    proc = snakemake(work, "--quiet", "rules", configfile=tmp_path / "config.yaml", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = (work / "results").glob("wild-*")
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["label_to_output"] == [3, 5, 8]
    assert not (run / "transfer_model").exists()
    assert [json.loads(p.read_text())["units"] for p in sorted((run / "ascent").glob("*/0.json"))] == [[2, 3], [0, 1]]
    assert not (run / "selection.json").exists()  # a section that passes the checks needs no select job
    page = (work / "reports" / run.name / "index.html").read_text()
    assert "stripped the key prefix" in page and "took the state_dict under" in page
