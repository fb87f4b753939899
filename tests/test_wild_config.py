"""A user's config for a network trained elsewhere, checked before any run: normalization on the
wrong scale, a class path in the wrong form, the modules of a network listed from the config alone."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from featviz.cli import main
from tests.test_data_fixtures import image_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def wild_config(tmp_path):
    """A config importing a CIFAR ResNet (the user's class) saved from nn.DataParallel, on a
    test-only folder of 3 of its 10 classes."""
    sys.path.insert(0, str(REPO / "tests" / "real_nets"))
    try:
        from cifar_resnet import CifarResNet
    finally:
        sys.path.remove(str(REPO / "tests" / "real_nets"))
    image_folder(tmp_path / "imgs", classes=("cat", "dog", "ship"), size=(32, 32), n_train=1, n_test=1)
    shutil.rmtree(tmp_path / "imgs" / "train")
    torch.save({f"module.{k}": v for k, v in CifarResNet(1).state_dict().items()}, tmp_path / "w.pt")
    cfg = {"data_root": str(tmp_path), "runs": [{
        "name": "wild", "dataset": "imagefolder", "data": {"path": str(tmp_path / "imgs")},
        "model": {"import": {"path": str(tmp_path / "w.pt"), "class": "cifar_resnet:CifarResNet",
                             "kwargs": {"blocks_per_stage": 1}, "code_path": str(REPO / "tests" / "real_nets")},
                  "class_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                  "truck"]}}]}

    def write(**model_import):
        cfg["runs"][0]["model"]["import"].update(model_import)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)
    return write


def test_units_lists_the_modules_from_the_config_before_any_run(wild_config, capsys):
    assert main(["units", "--config", wild_config()]) == 0
    out = capsys.readouterr().out
    assert "layer3.0.conv2" in out and "BasicBlock" in out and "layers selected" in out


def test_check_config_runs_the_workflows_checks(wild_config, capsys):
    assert main(["check-config", wild_config()]) == 0
    assert "OK (YAML, schema, names and files; 1 runs: wild-" in capsys.readouterr().out


def test_normalization_on_the_0_255_scale_is_an_error_naming_the_key(wild_config, capsys):
    path = wild_config(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    assert main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert "runs[0].model.import.mean: [123.675, 116.28, 103.53] is not in [0, 1] units" in err
    assert "divided by 255: [0.485, 0.456, 0.406]" in err


def test_a_class_path_in_the_wrong_form_is_caught_by_check_config(wild_config, capsys):
    path = wild_config(**{"class": "cifar_resnet.CifarResNet"})
    assert main(["check-config", path]) == 2
    assert "runs[0].model.import.class: 'cifar_resnet.CifarResNet' is not of the form package.module:Class" in \
        capsys.readouterr().err


def test_a_network_featviz_trains_needs_a_train_folder(wild_config, tmp_path, capsys):
    cfg = yaml.safe_load(Path(wild_config()).read_text())
    cfg["runs"][0]["model"] = {"preset": "keras-cifar10"}
    (tmp_path / "trained.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["check-config", str(tmp_path / "trained.yaml")]) == 2
    assert "has no train/ folder: featviz trains this run's network" in capsys.readouterr().err
