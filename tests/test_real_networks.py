"""Real networks that other people trained, through the whole DAG from the documented configs
(config/wild-*.yaml, their placeholders filled): the published CIFAR-10 ResNet-20 as published, on
a folder of 8 of its 10 classes, and torchvision's SqueezeNet 1.0 and MobileNetV2 at 224 px on 20
real ImageNet images of 19 classes against their 1000 outputs. Uses ../shared/models and
../shared/data/foolbox-samples beside the checkout; skipped where they are absent."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.snakemake_run import snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
SAMPLES = SHARED / "data" / "foolbox-samples"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"{p} not present")


def _sample_folder(dest: Path, kind: str) -> Path:
    """test/<class>/<image> of the foolbox samples: CIFAR-10 test images by class name, ImageNet
    images by WordNet ID (labels in the file names)."""
    from featviz.model.class_match import imagenet_wnids

    wnids = imagenet_wnids()
    for f in sorted(SAMPLES.glob(f"*{kind}*")):
        label = int(f.stem.rsplit("_", 1)[1])
        folder = dest / "test" / (CIFAR10[label] if kind == "cifar10" else wnids[label])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, folder / f.name)
    return dest


def _config(name: str, replace: dict[str, str], tmp: Path, ascent: dict | None = None, probe: dict | None = None) -> Path:
    """A documented config with its placeholders filled, optionally with a lighter ascent for CI."""
    text = (ROOT / "config" / name).read_text()
    for old, new in replace.items():
        assert old in text, f"{name} has no placeholder {old}"
        text = text.replace(old, new)
    cfg = yaml.safe_load(text)
    cfg.update(data_root=str(tmp), device="cpu")
    for run in cfg["runs"]:
        if ascent:
            run["ascent"] = {**run.get("ascent", {}), **ascent}
        if probe:
            run["probe"] = probe
        run.update(LIGHT_VIEWS)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _run(config: Path, work: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = snakemake(work, "--quiet", "rules", configfile=config, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _results(work: Path, name: str) -> Path:
    (run,) = [p for p in (work / "results").iterdir() if p.name.startswith(name + "-")]
    return run


def _crawl(reports: Path) -> None:
    """Every page of the reports (the all-runs page and each run's), opened in headless Chromium."""
    from tests.browser import browser_unavailable_reason, crawl

    if browser_unavailable_reason() is None:
        crawl(reports / "index.html", max_pages=600).assert_clean()


LIGHT = {"overrides": {"conv": {"steps": 8}, "class": {"class_steps": 8}}}
# the views on real images at CI's pace: 2 images, 4 steps; SmoothGrad of 4 samples
LIGHT_VIEWS = {"layer_views": {"images": 2, "steps": 4}, "attribution": {"images": 2, "mistakes": 2, "samples": 4}}


def test_published_cifar_resnet20_through_the_dag(tmp_path):
    ckpt = MODELS / "resnet20-12fca82f.th"
    _need(ckpt, SAMPLES)
    folder = _sample_folder(tmp_path / "cifar8", "cifar10")
    config = _config("wild-cifar-resnet.yaml", {
        "/path/to/resnet20-12fca82f.th": str(ckpt), "/path/to/code": str(ROOT / "tests" / "real_nets"),
        "/path/to/cifar10-folder": str(folder)}, tmp_path,
        ascent={**LIGHT, "layers": ["layer3", "classes"], "units": {"layer3": [0, 1, 2, 3]}})
    _run(config, tmp_path / "work")
    run = _results(tmp_path / "work", "resnet20")
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["imported"]["adapted"][:2] == ["took the state_dict under 'state_dict'",
                                               "stripped the key prefix 'module.' (nn.DataParallel / DistributedDataParallel)"]
    assert meta["dataset_classes"] == ["airplane", "automobile", "cat", "dog", "frog", "horse", "ship", "truck"]
    assert meta["label_to_output"] == [0, 1, 3, 5, 6, 7, 8, 9]
    ev = json.loads((run / "eval" / "metrics.json").read_text())
    assert ev["test_accuracy"] == 1.0 and ev["n_test"] == 20 and not ev["warnings"]
    units = json.loads((run / "units.json").read_text())
    stage = next(layer for layer in units["layers"] if layer["name"] == "layer3")
    assert stage["aliases"] == ["layer3.2"]  # the stage's output is its last block's: either name works
    stats = json.loads(next((run / "ascent" / "classes").glob("*.json")).read_text())
    assert len(stats["units"]) == 10  # every class, bird and deer too, which the folder lacks
    site = tmp_path / "work" / "reports" / run.name
    page = (site / "index.html").read_text()
    assert "stripped the key prefix" in page and "None s" not in page
    _crawl(tmp_path / "work" / "reports")


def test_imagenet_networks_on_a_folder_of_19_classes(tmp_path):
    mobilenet, squeezenet = MODELS / "mobilenet_v2-coral-qat.pth", MODELS / "squeezenet1_0-deepcompression.pth"
    _need(mobilenet, squeezenet, SAMPLES)
    folder = _sample_folder(tmp_path / "imagenet19", "imagenet")
    config = _config("wild-imagenet.yaml", {
        "/path/to/imagenet-subset": str(folder), "/path/to/mobilenet_v2.pth": str(mobilenet),
        "/path/to/squeezenet.pth": str(squeezenet)}, tmp_path,
        ascent={**LIGHT, "units": None}, probe={"prune_passes": 2, "prune_images": 20})
    cfg = yaml.safe_load(config.read_text())
    for run, layers in zip(cfg["runs"], (["features.14", "classes"], ["features.12", "classes"])):
        run["ascent"].update(layers=layers, units={layers[0]: [0, 1], "classes": ["goldfish", "pizza", 130]})
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    _run(config, tmp_path / "work")
    for name in ("mobilenet_v2", "squeezenet1_0"):
        run = _results(tmp_path / "work", name)
        meta = json.loads((run / "model" / "model.json").read_text())
        assert meta["class_names"] == "imagenet" and len(meta["classes"]) == 1000
        assert len(meta["dataset_classes"]) == 19
        from featviz.model.class_match import imagenet_wnids

        assert meta["label_to_output"] == [imagenet_wnids().index(w) for w in meta["dataset_classes"]]
        assert meta["classes"][meta["label_to_output"][meta["dataset_classes"].index("n01614925")]] == "bald eagle"
        ev = json.loads((run / "eval" / "metrics.json").read_text())
        # 15 of 20 top-1 for both (../shared/models/README.md); the confusion is a list, not 1000x1000
        assert ev["test_accuracy"] == 0.75, (name, ev["test_accuracy"])
        assert "confusion" not in ev and ev["confusions"]
        record = json.loads(next((run / "ascent" / "classes").glob("*.json")).read_text())
        assert record["units"] == [1, 130, 963]  # goldfish, flamingo, pizza: the folder has none of them
        assert record["recipe"]["name"] == "maco"  # `auto` at 224 px: the class images of docs/ascent.md's benchmark
    _crawl(tmp_path / "work" / "reports")
