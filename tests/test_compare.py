"""ascent.compare (issue 13, the methods page): the config check, the comparison job on a tiny model,
and the methods page with every recipe."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featviz.ascent import list_recipes
from featviz.compare import compare_units, entry_slug, read_compare, resolve_compare, run_compare
from featviz.errors import FeatvizError

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["hvass", "chollet", "yosinski", "tence-median", "oip-multiscale", "lucid", "lucid-scaled", "maco"]
FAST = {"steps": 4, "class_steps": 4}  # every recipe, cut short: the page and the files, not the pictures


# ------------------------------------------------------------------------------------------ config

def test_entries_labels_and_defaults():
    c = resolve_compare({"recipes": ["hvass", {"recipe": "hvass", "overrides": {"blur_every": 4, "blur_sigma": 1.0}},
                                     {"recipe": "tence-median", "overrides": {"lr": 0.001}, "label": "Tence, lr 1e-3"}]})
    assert c["units_per_layer"] == 4 and c["layers"] is None  # the schema's defaults
    assert [e["label"] for e in c["entries"]] == ["hvass", "hvass+blur_every=4,blur_sigma=1.0", "Tence, lr 1e-3"]
    assert [e["slug"] for e in c["entries"]] == ["hvass", "hvass-blur_every-4-blur_sigma-1.0", "tence-lr-1e-3"]
    assert resolve_compare(None) is None
    assert entry_slug("../../x") == "x"


@pytest.mark.parametrize("compare, message", [
    ({"recipes": ["hvass", "deepdraem"]}, "ascent.compare.recipes[1].recipe: unknown recipe 'deepdraem'"),
    ({"recipes": [{"recipe": "hvass", "overrides": {"stepz": 3}}]},
     "ascent.compare.recipes[0].overrides: unknown recipe parameter 'stepz'"),
    ({"recipes": [{"recipe": "hvass", "overrides": {"blur_every": 0}}]},
     "ascent.compare.recipes[0].overrides: recipe parameter 'blur_every' must be >= 1"),
    ({"recipes": ["lucid", {"recipe": "lucid"}]}, "ascent.compare.recipes[1]: label 'lucid' is also recipes[0]'s"),
    ({"recipes": ["lucid"], "units_per_layer": 0}, "ascent.compare.units_per_layer: 0 is not a positive integer"),
    ({"recipes": ["lucid"], "units": [0, 1]}, "ascent.compare.units: [0, 1] is not a mapping of layer names"),
    ({"recipes": ["lucid"], "units": {"conv1": []}}, "ascent.compare.units.conv1: [] is not a non-empty list"),
    ({"recipes": ["lucid"], "units": {"conv1": [0, -1]}}, "ascent.compare.units.conv1: [0, -1] is not a non-empty"),
    ({"recipes": ["lucid"], "units": {"conv1": [2, 2]}}, "ascent.compare.units.conv1: [2, 2] lists a unit twice"),
])
def test_bad_entries_name_the_key(compare, message):
    with pytest.raises(FeatvizError) as exc:
        resolve_compare(compare)
    assert message in str(exc.value)


def test_units_evenly_spaced():
    layer = {"name": "conv2", "units": 36}
    assert compare_units(layer, 4) == [0, 12, 23, 35]
    assert compare_units({"name": "classes", "units": 3}, 4) == [0, 1, 2]
    assert compare_units(layer, 2, [30, 5, 9]) == [5, 30]
    assert compare_units(layer, 1) == [0]


def test_scores_against_the_probe_baseline():
    from featviz.compare import score, summarize

    # a pre-ReLU conv channel whose strongest test image is negative: reached is still defined
    s = score({"activation": 0.5, "robustness": 0.9, "wall_s": 0.2}, {"max": -0.25, "mean": -1.0})
    assert s["reached"] == pytest.approx(2.0) and s["ratio"] is None and s["robustness"] == 0.9
    assert score({"activation": 3.0}, {"max": 2.0, "mean": 0.0})["reached"] == pytest.approx(1.5)
    assert score({"activation": 3.0}, None)["reached"] is None
    m = summarize([{"reached": 1.0, "wall_s": 1.0}, {"reached": 3.0, "wall_s": None}, {"reached": 10.0, "wall_s": 3.0}])
    assert m["reached"] == pytest.approx(14 / 3) and m["reached_median"] == 3.0 and m["wall_s"] == 2.0


def test_readme_documents_the_defaults():
    text = (ROOT / "config" / "README.md").read_text()
    from featviz.schema import defaults_of

    defaults = defaults_of("ascent", "compare")
    assert defaults == {"units_per_layer": 4, "layers": None, "units": None}
    for key, value in defaults.items():
        row = re.search(rf"^\| `compare\.{key}` \| `([^`]*)` \|", text, re.MULTILINE)
        assert row, f"config/README.md has no row for compare.{key}"
        assert row.group(1) == ("null" if value is None else str(value))


@pytest.fixture(scope="module")
def cfgdir(tmp_path_factory):
    from tests.synthetic import make_imagefolder

    d = tmp_path_factory.mktemp("cmpcfg")
    make_imagefolder(d / "shapes", per_class=2, test_per_class=1)
    return d


@pytest.mark.parametrize("compare, message", [
    ({"recipes": ["hvass", "deepdraem"]}, "runs[0].ascent.compare.recipes[1].recipe: unknown recipe 'deepdraem'"),
    ({"recipes": ["hvass"], "layers": ["conv9"]}, "runs[0].ascent.compare.layers: unknown layer 'conv9'"),
    ({"recipes": [{"recipe": "hvass", "overrides": {"neuron_pos": [99, 99]}}]},
     "runs[0].ascent.compare.recipes[0].overrides.neuron_pos: [99, 99] is outside layer conv1"),
    ({"recipes": ["hvass"], "units": {"conv9": [0]}}, "runs[0].ascent.compare.units: unknown layer 'conv9'"),
    ({"recipes": ["hvass"], "units": {"conv1": [0, 500]}}, "runs[0].ascent.compare.units.conv1: unit 500 is out of range"),
    ({"recipes": ["hvass"], "layers": ["conv1"], "units": {"classes": [0]}},
     "runs[0].ascent.compare.units.classes: layer 'classes' is not compared"),
])
def test_dag_stops_with_one_message(cfgdir, compare, message):
    from tests.test_config_errors import GOOD, dry_run

    cfg = copy.deepcopy(GOOD)
    cfg["runs"][0]["ascent"]["compare"] = compare
    r = dry_run(cfgdir, cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert message in out, out
    assert out.count("featviz config error") == 1
    assert "Job stats" not in out and not (cfgdir / "results").exists()


# ------------------------------------------------------------------------------------------ jobs

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.synthetic_run import make_run

    return make_run(tmp_path_factory.mktemp("cmp"))


def _job(run: Path, recipe: str, layer: str, overrides=None, label=None, n=2, explicit=None):
    label = label or recipe
    out = run / "compare" / entry_slug(label) / layer
    cfg = {"recipe": recipe, "overrides": dict(FAST, **(overrides or {})), "label": label, "units_per_layer": n,
           "units": None, "seed": 0, "explicit": explicit}
    spectrum = run / "spectrum.npz"  # maco's magnitude, from the run's own training images
    if not spectrum.exists():
        from featviz.spectrum import run_spectrum

        run_spectrum(run.parent / "data" / run.name, spectrum)
    return run_compare(run / "model", run / "units.json", layer, cfg, out.with_suffix(".npz"),
                       out.with_suffix(".json"), device="cpu", spectrum=spectrum)


def test_job_writes_images_and_scores(tiny):
    rec = _job(tiny, "hvass", "classes", n=3)
    assert rec["units"] == [0, 1, 2] and rec["label"] == "hvass" and rec["recipe"]["class_steps"] == 4
    for st in rec["stats"]:
        assert st["wall_s"] > 0 and st["cpu_s"] >= 0 and 0 <= st["target_softmax"] <= 1
        assert isinstance(st["activation"], float) and "robustness" in st
    with np.load(tiny / "compare" / "hvass" / "classes.npz") as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (3, 1, 12, 12)
        assert list(z["units"]) == [0, 1, 2]
        assert z["trace"].shape == (3, 4) and z["trace"].dtype == np.float32   # the 4 class steps per unit
        assert np.allclose(z["trace"][:, 0], [s["initial_objective"] for s in rec["stats"]], rtol=1e-5)
    # for a class the probe's measure is the logit: what hvass maximizes
    assert np.allclose([s["activation"] for s in rec["stats"]], [s["objective"] for s in rec["stats"]], rtol=1e-4)
    saved = json.loads((tiny / "compare" / "hvass" / "classes.json").read_text())
    assert saved["entry"] == {"recipe": "hvass", "overrides": FAST, "label": "hvass"}


def test_explicit_units_are_taken_as_given(tiny):
    from featviz.compare import job_config

    cfg = {"compare": {"recipes": ["hvass"], "units_per_layer": 2, "units": {"conv2": [5, 1]}}}
    assert job_config(cfg, {"recipe": "hvass", "overrides": {}, "label": "hvass"}, "conv2")["explicit"] == [5, 1]
    assert job_config(cfg, {"recipe": "hvass", "overrides": {}, "label": "hvass"}, "conv1")["explicit"] is None
    rec = _job(tiny, "hvass", "conv2", label="hvass-explicit", n=2, explicit=[5, 1, 3])
    assert rec["units"] == [5, 1, 3] and [s["unit"] for s in rec["stats"]] == [5, 1, 3]
    with pytest.raises(FeatvizError, match="unit 99 is out of range"):
        _job(tiny, "hvass", "conv2", label="hvass-bad", explicit=[99])


def test_class_images_get_the_transfer_score(tiny, tmp_path):
    """With the run's own model as its 'independent' one, the transfer softmax is the target softmax;
    a transfer model at chance is not used (its info says why)."""
    import shutil

    for acc, name in ((0.95, "good"), (0.2, "chance")):
        d = tmp_path / name
        shutil.copytree(tiny / "model", d)
        (d / "metrics.json").write_text(json.dumps({"final_test_accuracy": acc}))
    cfg = {"recipe": "hvass", "overrides": FAST, "label": "hvass-t", "units_per_layer": 3, "units": None, "seed": 0}
    out = tmp_path / "c"
    rec = run_compare(tiny / "model", tiny / "units.json", "classes", cfg, out.with_suffix(".npz"),
                      out.with_suffix(".json"), device="cpu", transfer_model_dir=tmp_path / "good")
    assert rec["transfer_model"]["valid"] and rec["transfer_model"]["test_accuracy"] == 0.95
    for st in rec["stats"]:
        assert st["transfer_softmax"] == pytest.approx(st["target_softmax"], rel=1e-4)
        assert st["transfer_recognized"] == (st["predicted"] == st["unit"])
    from featviz.compare import score, summarize
    means = summarize([score(st, None) for st in rec["stats"]])
    assert means["transfer_softmax"] == pytest.approx(np.mean([st["target_softmax"] for st in rec["stats"]]), rel=1e-4)
    rec = run_compare(tiny / "model", tiny / "units.json", "classes", cfg, out.with_suffix(".npz"),
                      out.with_suffix(".json"), device="cpu", transfer_model_dir=tmp_path / "chance")
    assert rec["transfer_model"]["valid"] is False and "not well above chance" in rec["transfer_model"]["invalid_reason"]
    assert all("transfer_softmax" not in st for st in rec["stats"])


def test_job_image_is_the_batch_image(tiny):
    """The comparison job's image is the one the report's own ascent gives, in the same mode (the
    schema's precision, as the job resolved it, and channels_last)."""
    from featviz.ascent import visualize
    from featviz.model import load_model

    rec = _job(tiny, "hvass", "conv2", label="hvass-batch", n=3)
    model = load_model(tiny / "model")
    batch = visualize(model.net, "conv2", rec["units"], "conv", model.input_shape, normalize=model.normalize,
                      recipe="hvass", overrides=FAST, seed=0, precision=rec["precision"], channels_last=True)
    with np.load(tiny / "compare" / "hvass-batch" / "conv2.npz") as z:
        from featviz.io import pack_images

        assert np.array_equal(z["images"], pack_images(batch.images))


def test_job_refuses_a_bad_entry(tiny, tmp_path):
    r = subprocess.run([sys.executable, "-m", "featviz", "compare", "--model", str(tiny / "model"),
                        "--units", str(tiny / "units.json"), "--layer", "conv2", "--config",
                        json.dumps({"recipe": "deepdraem", "label": "x", "units_per_layer": 2}),
                        "--out-npz", str(tmp_path / "a.npz"), "--out-json", str(tmp_path / "a.json")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "unknown recipe 'deepdraem'" in r.stderr and not (tmp_path / "a.npz").exists()


def _compare_cli(tiny, *args):
    return subprocess.run([sys.executable, "-m", "featviz", "compare", "--model", str(tiny / "model"),
                           "--units", str(tiny / "units.json"), "--device", "cpu", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_one_job_per_entry_writes_every_layer(tiny, tmp_path):
    """The workflow's form: one process per entry, `--layer L --config JSON` per layer, one folder
    that holds <layer>.npz/.json for each, identical to the one-layer jobs' files."""
    cfg = {"recipe": "hvass", "overrides": FAST, "label": "hvass", "units_per_layer": 2, "units": None, "seed": 0}
    out = tmp_path / "compare" / "hvass"
    r = _compare_cli(tiny, "--layer", "conv2", "--config", json.dumps(cfg), "--layer", "classes",
                     "--config", json.dumps({**cfg, "units_per_layer": 3}), "--out-dir", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "classes.npz", "conv2.json", "conv2.npz"]
    assert json.loads((out / "classes.json").read_text())["units"] == [0, 1, 2]
    single = _job(tiny, "hvass", "conv2")
    assert json.loads((out / "conv2.json").read_text())["units"] == single["units"]
    with np.load(out / "conv2.npz") as a, np.load(tiny / "compare" / "hvass" / "conv2.npz") as b:
        assert np.array_equal(a["images"], b["images"])
    assert [p.name for p in out.parent.iterdir()] == ["hvass"]  # no partial folder left


def test_one_job_per_entry_checks_every_layer_first(tiny, tmp_path):
    """A bad second layer stops the job before the first is computed, and the folder from an earlier
    run is left as it was."""
    out = tmp_path / "hvass"
    out.mkdir()
    (out / "conv2.json").write_text("earlier")
    cfg = {"recipe": "hvass", "overrides": FAST, "label": "hvass", "units_per_layer": 2}
    for args, message in (
        (["--layer", "conv2", "--config", json.dumps(cfg), "--layer", "nosuch"], "nosuch"),
        (["--layer", "conv2", "--config", json.dumps(cfg), "--config", json.dumps(cfg), "--config", json.dumps(cfg)],
         "1 --layer but 3 --config"),
        (["--layer", "conv2", "--layer", "conv2", "--config", json.dumps(cfg)], "each layer once"),
        (["--layer", "conv2", "--layer", "classes", "--config", json.dumps(cfg), "--out-npz", tmp_path / "a.npz",
          "--out-json", tmp_path / "a.json"], "give --out-dir"),
    ):
        r = _compare_cli(tiny, *args, *(["--out-dir", out] if "--out-npz" not in args else []))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)
        assert [p.name for p in tmp_path.iterdir()] == ["hvass"] and (out / "conv2.json").read_text() == "earlier"


# ------------------------------------------------------------------------------------------ methods page

def test_methods_page_shows_every_recipe(tiny, tmp_path):
    from featviz.report import render_index, render_run

    entries = RECIPES + [{"recipe": "hvass", "overrides": {"blur_sigma": 1.0, "blur_every": 2}, "label": "hvass+blur"}]
    assert set(RECIPES) == set(list_recipes())
    for e in entries:
        name, over, label = (e, {}, e) if isinstance(e, str) else (e["recipe"], e["overrides"], e["label"])
        for layer in ("conv2", "classes"):
            _job(tiny, name, layer, over, label, n=1)
    config = {"ascent": {"compare": {"recipes": entries, "layers": ["conv2", "classes"]},
                         "recipe": {"conv": "lucid", "dense": "lucid", "class": "lucid"},
                         "overrides": {"conv": FAST, "dense": FAST, "class": FAST}}}
    reports = tmp_path / "reports"
    render_run(tiny, reports / tiny.name, config)
    site = reports / tiny.name
    html = (site / "methods.html").read_text()
    labels = RECIPES + ["hvass+blur"]
    for layer in ("conv2", "classes"):
        table = html.split(f'id="summary-{layer}"')[1].split("</table>")[0]
        assert [re.sub(r"<.*", "", row).strip() for row in table.split('<tr><td class="l">')[1:]] == labels
        units = html.split(f'id="units-{layer}"')[1].split("</table>")[0]
        assert units.count("<img ") == len(labels)
        assert units.count('<svg class="hist trace spark"') == len(labels)   # each image's trace
    assert "(this report&#39;s)" in html or "(this report's)" in html
    assert "softmax" in html.split('id="units-classes"')[1]
    imgs = re.findall(r'src="([^"]+)"', html)
    assert imgs and all((site / src).is_file() and not src.startswith(("/", "http")) for src in imgs)
    assert 'href="methods.html"' in (site / "index.html").read_text()
    # the order of the page is the config's; without a config, the folders'
    assert [e["slug"] for e in read_compare(tiny)] == sorted(p.name for p in (tiny / "compare").iterdir())

    from tests.browser import browser_unavailable_reason, crawl

    render_index([site], reports / "index.html")
    if browser_unavailable_reason() is None:
        report = crawl(reports / "index.html", screenshot_dir=tmp_path / "shots",
                       screenshot_names={f"{tiny.name}/methods.html": "methods.png"})
        report.assert_clean()
        assert (tmp_path / "shots" / "methods.png").is_file()


def test_no_comparison_no_page(tmp_path):
    from featviz.report import render_run
    from tests.synthetic_run import make_run

    run = make_run(tmp_path, steps=6)
    render_run(run, tmp_path / "site", {})
    assert not (tmp_path / "site" / "methods.html").exists()
    assert "methods.html" not in (tmp_path / "site" / "index.html").read_text()


# ------------------------------------------------------------------------------------------ workflow

@pytest.mark.workflow
def test_workflow_runs_one_job_per_entry(tmp_path, monkeypatch):
    """The rule on the tiny .test config: targets are the comparison's folders (one job per entry,
    over its layers), so only data, train, units and the comparison jobs run; a changed main ascent
    setting reruns none of them."""
    import yaml

    from featviz.config import resolve_runs
    from tests.snakemake_run import snakemake
    from tests.synthetic import make_imagefolder

    make_imagefolder(tmp_path / "shapes", per_class=8, test_per_class=2)
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    cfg["runs"][0]["train"]["epochs"] = 1
    cfg["runs"][0]["ascent"]["compare"] = {
        "recipes": [{"recipe": "hvass", "overrides": {"steps": 3}},
                    {"recipe": "hvass", "overrides": {"steps": 3, "blur_sigma": 1.0, "blur_every": 2}, "label": "hvass+blur"}],
        "units_per_layer": 2, "layers": ["conv2", "classes"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    from snakemake.utils import validate

    filled = copy.deepcopy(cfg)
    validate(filled, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))  # the defaults, as the DAG has them
    run = resolve_runs(filled)[0].id
    targets = [f"results/{run}/compare/{s}" for s in ("hvass-steps-3", "hvass-blur")]
    r = snakemake(tmp_path, *targets, configfile=path, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert re.search(r"compare\s+2\b", out), out[-3000:]  # two jobs, not four
    for t in targets:
        assert sorted(p.name for p in (tmp_path / t).iterdir() if p.name != ".snakemake_timestamp") == [
            "classes.json", "classes.npz", "conv2.json", "conv2.npz"]
        rec = json.loads((tmp_path / t / "conv2.json").read_text())
        assert rec["units"] == [0, 5] and rec["recipe"]["steps"] == 3
    assert json.loads((tmp_path / targets[1] / "conv2.json").read_text())["recipe"]["blur_sigma"] == 1.0
    cfg["runs"][0]["ascent"]["recipe"] = {"conv": "hvass"}  # the main ascent's setting, not the comparison's
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path, *targets, "--dry-run", configfile=path, timeout=120)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
