"""Property-based (hypothesis): verb configs drawn around the schema's boundaries are either
accepted and run on a micro net (exit 0), or refused with one `featviz: error:` line (exit 2):
never a traceback, never a refusal after the work started (issue 14)."""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


OUTCOMES: list = []


def run(argv) -> tuple[int, str, str]:
    from featviz.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def accepted_or_refused(argv) -> int:
    rc, out, err = run(argv)  # any exception but FeatvizError fails the test with its traceback
    assert rc in (0, 2), (rc, err)
    event("accepted" if rc == 0 else "refused")
    OUTCOMES.append((argv[0], rc))
    if rc == 2:
        lines = [line for line in err.splitlines() if line.startswith("featviz: error: ")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "epoch 1:" not in out and "ascent " not in out, f"refused after the work started: {out}"
    return rc


def maybe(key: str, values) -> st.SearchStrategy:
    """{key: value} or {} (the key left out: its default)."""
    return st.one_of(st.just({}), st.sampled_from(values).map(lambda v: {key: v}))


def merged(*parts) -> st.SearchStrategy:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


def around(valid: dict, invalid: list) -> st.SearchStrategy:
    """A config from valid values at and near each boundary (each key set or left out), then in
    half the draws one key set to a value just past a boundary (or an unknown key)."""
    good = merged(*(maybe(k, vs) for k, vs in valid.items()))
    bad = st.one_of(st.none(), st.sampled_from(invalid))
    return st.tuples(good, bad).map(lambda gb: {**gb[0], **({gb[1][0]: gb[1][1]} if gb[1] else {})})


# the schema's train section (compile is left out: minutes per draw)
train_sections = around(
    {"epochs": [1, 2], "batch_size": [1, 7, 10_000], "lr": [1e-6, 1e-3, 0.05], "optimizer": ["adam", "sgd"],
     "momentum": [0, 0.9], "weight_decay": [0, 1e-4], "schedule": ["onecycle", "constant"],
     "warmup_fraction": [1e-6, 0.5, 0.999], "label_smoothing": [0, 0.5, 1], "precision": ["auto", "fp32", "bf16"],
     "channels_last": [True, False], "augment": [{}, {"crop_padding": 0, "flip": True}, {"crop_padding": 30}]},
    [("epochs", 0), ("epochs", -1), ("epochs", 1.5), ("epochs", "2"), ("epochs", None), ("batch_size", 0),
     ("batch_size", True), ("lr", 0), ("lr", -0.1), ("lr", "fast"), ("optimizer", "rmsprop"), ("momentum", -1),
     ("weight_decay", -0.01), ("schedule", "cosine"), ("warmup_fraction", 0), ("warmup_fraction", 1),
     ("label_smoothing", -0.1), ("label_smoothing", 1.5), ("precision", "fp16"), ("channels_last", "yes"),
     ("augment", {"crop_padding": -1}), ("augment", {"flip": "no"}), ("augment", {"rotate": 5}), ("epoch", 3)])


def test_train_configs(prepared_shapes, tmp_path_factory):
    from tests.synthetic import MICRO_LAYERS

    root = tmp_path_factory.mktemp("train_props")
    model = json.dumps({"layers": MICRO_LAYERS})

    @SETTINGS
    @given(train=train_sections)
    def prop(train):
        with tempfile.TemporaryDirectory(dir=root) as d:
            rc = accepted_or_refused(["train", "--data", prepared_shapes, "--model", model, "--train",
                                      json.dumps(train), "--out", Path(d) / "m", "--device", "cpu", "--no-progress",
                                      "--threads", "1"])
            assert (Path(d) / "m" / "model.json").exists() == (rc == 0)

    prop()


@pytest.fixture(scope="module")
def micro(prepared_shapes, tmp_path_factory):
    """A micro net trained for one epoch, and its units.json."""
    from tests.synthetic import MICRO_LAYERS

    root = tmp_path_factory.mktemp("micro")
    rc, _, err = run(["train", "--data", prepared_shapes, "--model", json.dumps({"layers": MICRO_LAYERS}), "--train",
                      '{"epochs": 1, "batch_size": 16}', "--out", root / "model", "--device", "cpu", "--no-progress"])
    assert rc == 0, err
    rc, _, err = run(["units", "--model", root / "model", "--out", root / "units.json"])
    assert rc == 0, err
    return root


overrides = around(
    {"steps": [1, 2], "lr": [1e-6, 0.05], "decay": [0.0, 0.999], "center": [0, 1], "transforms": ["none", "lucid", [], [{"type": "jitter", "d": 1}],
                                                      [{"type": "scale", "range": [0.9, 1.1]}]],
     "jitter": [0, 2], "conv_objective": ["channel", "neuron"], "neuron_pos": [None, [0, 0], [5, 5]],
     "blur_sigma": [0.0, 0.5], "median_size": [0, 3], "restarts": [0, 1]},
    [("steps", 0), ("steps", -1), ("transforms", "bogus"), ("transforms", [{"type": "jitter"}]),
     ("transforms", [{"type": "rotate"}]), ("transforms", ["pad"]), ("jitter", -1), ("conv_objective", "pixel"),
     ("neuron_pos", [6, 6]), ("neuron_pos", [99, 99]), ("neuron_pos", [-1, 0]), ("neuron_pos", [1]),
     ("neuron_pos", "centre"), ("blur_sigma", -1.0), ("median_size", 2), ("restarts", -1), ("bogus_param", 1),
     ("lr", 0), ("lr", -1e-3), ("decay", 1.0), ("center", 1.5), ("adam_betas", [0.9, 1.0]), ("blur_ksize", 4),
     ("clip_norm_pct", 100.5), ("lp_p", 0.5), ("step_eps", 0)],
).map(lambda o: {**o, "class_steps": o.get("steps", 2), "steps": o.get("steps", 2), "snapshots": 0,
                 "robustness_samples": 0})

ascent_configs = around(
    {"chunk_size": [1, 2, 64], "batch_size": [1, 3], "seed": [0, 7], "layers": [None, ["conv1", "classes"]],
     "units": [{}, {"conv1": [0, 2]}, {"classes": [1]}]},
    [("chunk_size", 0), ("chunk_size", -1), ("batch_size", 0), ("batch_size", "2"), ("seed", -1),
     ("layers", ["conv9"]), ("layers", []), ("units", {"conv1": [3]}), ("units", {"conv1": []}),
     ("units", {"conv1": [-1]}), ("units", {"fc9": [0]}), ("recipe", {"conv": "nope", "class": "nope"})],
).flatmap(lambda a: st.tuples(st.just(a), st.sampled_from(["hvass", "lucid"]), overrides)).map(
    lambda aro: {"recipe": {"conv": aro[1], "class": aro[1]}, **aro[0], "overrides": {"conv": aro[2], "class": aro[2]}})


def test_ascend_configs(micro, tmp_path_factory):
    root = tmp_path_factory.mktemp("ascend_props")

    @SETTINGS
    @given(cfg=ascent_configs, layer=st.sampled_from(["conv1", "classes", "fc1"]), chunk=st.sampled_from([0, 1]))
    def prop(cfg, layer, chunk):
        with tempfile.TemporaryDirectory(dir=root) as d:
            rc = accepted_or_refused(["ascend", "--model", micro / "model", "--units", micro / "units.json", "--layer",
                                      layer, "--chunk", chunk, "--config", json.dumps(cfg), "--out-npz",
                                      Path(d) / "c.npz", "--out-json", Path(d) / "c.json", "--device", "cpu"])
            assert (Path(d) / "c.json").exists() == (rc == 0)

    prop()


per_layer = st.dictionaries(
    st.sampled_from(["conv1", "classes", "conv9"]),
    around({"steps": [1, 2], "lr": [1e-3, 0.5], "median_size": [0, 3], "neuron_pos": [None, [11, 11]]},
           [("steps", 0), ("lr", 0), ("median_size", 4), ("neuron_pos", [12, 0]), ("decay", 1), ("nope", 1)]),
    max_size=2)


def test_ascend_per_layer_overrides(micro, tmp_path_factory):
    """ascent.overrides.layers: names checked against units.json, values against their ranges and
    the layer (neuron_pos), before any work."""
    root = tmp_path_factory.mktemp("per_layer_props")

    @settings(SETTINGS, max_examples=20)
    @given(layers=per_layer, layer=st.sampled_from(["conv1", "classes"]))
    def prop(layers, layer):
        cfg = {"recipe": {"conv": "hvass", "class": "hvass"},
               "overrides": {k: {"steps": 1, "class_steps": 1, "snapshots": 0, "robustness_samples": 0}
                             for k in ("conv", "class")} | {"layers": layers}}
        with tempfile.TemporaryDirectory(dir=root) as d:
            rc = accepted_or_refused(["ascend", "--model", micro / "model", "--units", micro / "units.json", "--layer",
                                      layer, "--chunk", 0, "--config", json.dumps(cfg), "--out-npz",
                                      Path(d) / "c.npz", "--out-json", Path(d) / "c.json", "--device", "cpu"])
            bad = "conv9" in layers or any(
                v.get("steps") == 0 or v.get("lr") == 0 or v.get("median_size") == 4 or "decay" in v or "nope" in v
                or (name == "conv1" and v.get("neuron_pos") == [12, 0]) for name, v in layers.items())
            assert (rc == 0) == (not bad), (layers, layer)

    prop()
