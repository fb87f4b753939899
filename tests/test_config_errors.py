"""Every kind of bad config stops when the DAG is built, before any job, with one message naming
the key (issue: reliability). Each case runs the real `snakemake --dry-run`."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())


def _set(cfg, dotted, value):
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    last = int(keys[-1]) if keys[-1].isdigit() else keys[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

CASES = {
    "unknown dataset": ("runs.0.dataset", "imagefoldr", "runs[0].dataset: unknown dataset 'imagefoldr'"),
    "unknown preset": ("runs.0.model", {"preset": "lenet-99"}, "runs[0].model.preset: unknown preset 'lenet-99'"),
    "unknown recipe": ("runs.0.ascent.recipe", {"conv": "deepdraem"}, "runs[0].ascent.recipe.conv: unknown recipe 'deepdraem'"),
    "unknown layer": ("runs.0.ascent.layers", ["conv1", "conv9"], "runs[0].ascent.layers: unknown layer 'conv9'"),
    "unit out of range": ("runs.0.ascent.units", {"conv1": [0, 4]}, "runs[0].ascent.units.conv1: unit 4 is out of range"),
    "unknown layer type": ("runs.0.model.layers.1.type", "relux", "runs[0].model.layers[1].type: 'relux' is not one of ['conv', 'relu'"),
    "unknown transforms preset": ("runs.0.ascent.overrides", {"conv": {"transforms": "bogus"}},
                                  "runs[0].ascent.overrides.conv.transforms: unknown transforms preset 'bogus'"),
    "neuron position outside the layer": ("runs.0.ascent.overrides", {"conv": {"neuron_pos": [99, 99]}},
                                          "runs[0].ascent.overrides.conv.neuron_pos: [99, 99] is outside layer conv1"),
    "conv layer without out": ("runs.0.model.layers.0", {"type": "conv", "kernel": 3},
                               "runs[0].model.layers[0].out: required for type 'conv'"),
    "transfer conv layer without kernel": ("runs.0.ascent.transfer", {"layers": [{"type": "conv", "out": 3}, {"type": "fc"}]},
                                           "runs[0].ascent.transfer.layers[0].kernel: required for type 'conv'"),
    "zero epochs": ("runs.0.train.epochs", 0, "runs[0].train.epochs: 0 is less than the minimum of 1"),
    "negative lr": ("runs.0.train.lr", -0.1, "runs[0].train.lr: -0.1 is less than or equal to the minimum of 0"),
    "zero chunk size": ("runs.0.ascent.chunk_size", 0, "runs[0].ascent.chunk_size: 0 is less than the minimum of 1"),
    "zero batch size": ("runs.0.ascent.batch_size", 0, "runs[0].ascent.batch_size: 0 is less than the minimum of 1"),
    "wrong type": ("runs.0.train.epochs", "three", "runs[0].train.epochs: 'three' is not of type 'integer'"),
    "misspelt key": ("runs.0.train.epoch", 3, "runs[0].train: Additional properties are not allowed ('epoch' was unexpected)"),
    "bad device": ("device", "gpu", "device: 'gpu' is not of the form auto"),
    "data_root missing": ("data_root", "no/such/folder", "data_root: folder 'no/such/folder' does not exist"),
    "imagefolder without path": ("runs.0.data.path", _DELETE, "runs[0].data.path: required for dataset imagefolder"),
    "unknown torchvision architecture": ("runs.0.model", {"torchvision": "resnet51"},
                                         "runs[0].model.torchvision: 'resnet51' is not a classification architecture"),
    "torchvision and a spec at once": ("runs.0.model", {"torchvision": "resnet18", "preset": "hvass-mnist"},
                                       "runs[0].model: give one of preset, layers, torchvision or timm, not preset and torchvision"),
    "target matching nothing": ("runs.0.ascent.targets", ["conv1", "layer9*"],
                                "runs[0].ascent.targets[1]: layer9* matches no module"),
    "resize without image_size": ("runs.0.data.resize", 16, "runs[0].data.resize: needs data.image_size"),
    "recipe lr zero": ("runs.0.ascent.overrides", {"conv": {"lr": 0}},
                       "runs[0].ascent.overrides.conv: recipe parameter 'lr' must be > 0, got 0"),
    "per-layer override out of range": ("runs.0.ascent.overrides", {"layers": {"conv1": {"blur_sigma": -1}}},
                                        "runs[0].ascent.overrides.layers.conv1: recipe parameter 'blur_sigma' must be >= 0"),
    "per-layer override naming no layer": ("runs.0.ascent.overrides", {"layers": {"conv9": {"steps": 3}}},
                                           "runs[0].ascent.overrides.layers: unknown layer 'conv9'"),
    "compare override out of range": ("runs.0.ascent.compare", {"recipes": [{"recipe": "hvass", "overrides": {"decay": 1.5}}]},
                                      "runs[0].ascent.compare.recipes[0].overrides: recipe parameter 'decay' must be >= 0 and < 1"),
    "unknown view of a unit": ("runs.0.ascent.views", {"show": ["neuron", "sideways"]},
                               "runs[0].ascent.views.show[1]: 'sideways' is not one of ['neuron', 'negative', 'diversity']"),
    "views for a unit not visualized": ("runs.0.ascent.views", {"units": {"conv1": [9]}},
                                        "runs[0].ascent.views.units.conv1: unit 9 is not visualized"),
    "trust with one baseline image": ("runs.0.trust", {"images": 1}, "runs[0].trust.images: 1 is less than the minimum of 2"),
    "network does not fit input": ("runs.0.model.layers.0", {"type": "conv", "out": 4, "kernel": 30, "padding": "valid"},
                                   "runs[0].model.layers[0] (conv): does not fit"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from tests.synthetic import make_imagefolder

    d = tmp_path_factory.mktemp("cfgerr")
    make_imagefolder(d / "shapes", per_class=2, test_per_class=1)
    return d


def dry_run(workdir: Path, cfg: dict) -> subprocess.CompletedProcess:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "FEATVIZ_DATA_ROOT"}
    snakemake = [sys.executable, "-m", "snakemake"]
    return subprocess.run(
        snakemake + ["-s", str(ROOT / "Snakefile"), "--dry-run", "--cores", "1", "--configfile", str(path),
                     "--directory", str(workdir)],
        capture_output=True, text=True, env=env, timeout=120)


def test_good_config_dry_runs(workdir):
    r = dry_run(workdir, copy.deepcopy(GOOD))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_fails_before_any_job(workdir, case):
    key, value, message = CASES[case]
    cfg = copy.deepcopy(GOOD)
    _set(cfg, key, value)
    r = dry_run(workdir, cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert message in out, out
    assert out.count("featviz config error") == 1
    assert "Job stats" not in out and not (workdir / "results").exists()


def test_duplicate_run_names(workdir):
    cfg = copy.deepcopy(GOOD)
    cfg["runs"].append(copy.deepcopy(cfg["runs"][0]))
    r = dry_run(workdir, cfg)
    assert r.returncode != 0
    assert "runs[1].name: duplicate run name 'shapes'" in r.stdout + r.stderr


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    """The Snakefile's config file with a YAML error: one message with the file and the line."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("runs:\n  - name: x\n    dataset: mnist\n   train: {epochs: 1\n")
    env = {k: v for k, v in os.environ.items() if k != "FEATVIZ_DATA_ROOT"}
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--dry-run", "--cores", "1",
                        "--directory", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "featviz config error: config/config.yaml: line 4, column 4: " in out, out
    assert out.count("featviz config error") == 1 and "not valid JSON or YAML" not in out
