"""The flags of probe, search, transfer, compare and train are checked before any work, against
the workflow's schema where a flag stands for a config key (featviz/verb_args.py, issue 14): named
cases, then property-based draws around each flag's boundaries, each either accepted and run on a
micro net or refused with one `featviz: error:` line."""
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

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def run(argv) -> tuple[int, str, str]:
    from featviz.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def micro(prepared_shapes, tmp_path_factory, one_torch_thread):
    """A micro net trained for one epoch on the shapes, and its units.json."""
    from tests.synthetic import MICRO_LAYERS

    root = tmp_path_factory.mktemp("verb_args")
    rc, _, err = run(["train", "--data", prepared_shapes, "--model", json.dumps({"layers": MICRO_LAYERS}), "--train",
                      '{"epochs": 1, "batch_size": 16}', "--out", root / "model", "--device", "cpu", "--no-progress"])
    assert rc == 0, err
    rc, _, err = run(["units", "--model", root / "model", "--out", root / "units.json"])
    assert rc == 0, err
    return root


def refused(argv, *names) -> None:
    rc, _, err = run(argv)
    assert rc == 2, err
    assert err.startswith("featviz: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err, err


def _probe(m, d, *flags):
    return ["probe", "--model", m / "model", "--units", m / "units.json", "--data", d, "--out", m / "p", "--device",
            "cpu", *flags]


def _search(m, *flags):
    return ["search", "--model", m / "model", "--layer", "conv1", "--trials", "1", "--max-steps", "2", "--out",
            m / "s.json", "--device", "cpu", *flags]


def _compare(m, cfg):
    base = {"recipe": "hvass", "label": "x", "units_per_layer": 1, "overrides": {"steps": 2, "snapshots": 0}}
    return ["compare", "--model", m / "model", "--units", m / "units.json", "--layer", "conv1", "--config",
            json.dumps({**base, **cfg}), "--out-npz", m / "c.npz", "--out-json", m / "c.json", "--device", "cpu"]


CASES = [
    (lambda m, d: _probe(m, d, "--top-k", "0"), "--top-k: 0 is less than the minimum of 1"),
    (lambda m, d: _probe(m, d, "--prune-passes", "-1"), "--prune-passes: -1 is less than the minimum of 0"),
    (lambda m, d: _probe(m, d, "--corr-threshold", "nan"), "--corr-threshold: nan is not a number"),
    (lambda m, d: _probe(m, d, "--prune-tolerance", "-0.1"), "--prune-tolerance: -0.1 is not a number >= 0"),
    (lambda m, d: _probe(m, d, "--prune-precision", "fp16"), "--prune-precision: 'fp16' is not one of"),
    (lambda m, d: _search(m, "--seed", "-1"), "--seed: -1 is less than the minimum of 0"),
    (lambda m, d: _search(m, "--units", "-1"), "--units: -1 is not an integer >= 0"),
    (lambda m, d: ["transfer", "--results", m, "--out", m / "t.json", "--samples", "0"], "--samples: 0 is not an integer >= 1"),
    (lambda m, d: ["transfer", "--results", m, "--out", m / "t.json", "--seed", "-3"], "--seed: -3 is less than"),
    (lambda m, d: _compare(m, {"seed": "a"}), "compare --config seed: 'a' is not of type 'integer'"),
    (lambda m, d: _compare(m, {"precision": "fp16"}), "compare --config precision: 'fp16' is not one of"),
    (lambda m, d: _compare(m, {"units": [-1]}), "compare --config units[0]: -1 is less than the minimum of 0"),
    (lambda m, d: _compare(m, {"bogus": 1}), "compare --config: unknown key 'bogus'"),
    (lambda m, d: _compare(m, {"overrides": {"lr": 0}}), "recipe parameter 'lr' must be > 0"),
    (lambda m, d: ["train", "--data", d, "--model", '{"preset": "hvass-mnist"}', "--train", "{}", "--seed", "-1",
                   "--out", m / "m2"], "--seed: -1 is less than the minimum of 0"),
    (lambda m, d: ["train", "--data", d, "--model", '{"preset": "hvass-mnist"}', "--train", "{}", "--threads", "0",
                   "--out", m / "m2"], "--threads: 0 is not an integer >= 1"),
    (lambda m, d: ["report", "--results", m, "--config", '{"ascent": {"chunk_size": 0}}', "--out", m / "r"],
     "report --config ascent.chunk_size: 0 is less than the minimum of 1"),
    (lambda m, d: ["report", "--results", m, "--config", '{"probe": {"top_k": "9"}}', "--out", m / "r"],
     "report --config probe.top_k: '9' is not of type 'integer'"),
]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_a_bad_flag_is_one_line_naming_it(micro, prepared_shapes, i):
    argv, message = CASES[i]
    refused(argv(micro, prepared_shapes), message)
    for out in ("p", "s.json", "t.json", "c.json", "m2", "r"):
        assert not (micro / out).exists()


def accepted_or_refused(argv, outputs) -> int:
    rc, _out, err = run(argv)  # any exception but FeatvizError fails here with its traceback
    assert rc in (0, 2), (rc, err)
    event("accepted" if rc == 0 else "refused")
    if rc == 2:
        lines = [line for line in err.splitlines() if line.startswith("featviz: error: ")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert not any(p.exists() for p in outputs), f"refused after writing: {err}"
    return rc


def around(valid: dict, invalid: list) -> st.SearchStrategy:
    """Flags from valid values at and near each boundary, then in half the draws one flag set to
    a value just past a boundary; gives (flags, the invalid (flag, value) or None)."""
    good = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in valid.items()})
    bad = st.one_of(st.none(), st.sampled_from(invalid))
    return st.tuples(good, bad).map(lambda gb: ({**gb[0], **({gb[1][0]: gb[1][1]} if gb[1] else {})}, gb[1]))


def flags(values: dict) -> list:
    return [x for k, v in values.items() if v is not None for x in (k, *(v if isinstance(v, list) else [v]))]


probe_flags = around(
    {"--top-k": [1, 3], "--samples": [1, 2], "--histogram-images": [None, 1, 7], "--prune-images": [1, 5],
     "--prune-passes": [None, 0, 4], "--corr-threshold": [-1.0, 0.0, 0.9, 1.0], "--prune-tolerance": [0.0, 0.005, 1.0]},
    [("--top-k", 0), ("--top-k", -1), ("--samples", 0), ("--histogram-images", 0), ("--prune-images", 0),
     ("--prune-passes", -1), ("--corr-threshold", -1.01), ("--corr-threshold", 1.01), ("--corr-threshold", "nan"),
     ("--prune-tolerance", -0.01), ("--prune-tolerance", 1.5), ("--prune-tolerance", "inf")])


@SETTINGS
@given(drawn=probe_flags)
def test_probe_flags(micro, prepared_shapes, drawn):
    values, bad = drawn
    with tempfile.TemporaryDirectory(dir=micro) as d:
        argv = ["probe", "--model", micro / "model", "--units", micro / "units.json", "--data", prepared_shapes,
                "--out", Path(d) / "p", "--device", "cpu", *flags(values)]
        rc = accepted_or_refused(argv, [Path(d) / "p"])
        assert (rc == 0) == (bad is None), (values, bad)


search_flags = around(
    {"--trials": [1, 2], "--max-steps": [1, 3], "--seed": [0, 3], "--units": [None, [0], [2], [0, 1]],
     "--layer": ["conv1", "classes"], "--recipe": ["hvass", "chollet"]},
    [("--trials", 0), ("--trials", -1), ("--max-steps", 0), ("--seed", -1), ("--units", [-1]), ("--units", [3]),
     ("--layer", "fc9"), ("--recipe", "nope")])


@SETTINGS
@given(drawn=search_flags)
def test_search_flags(micro, drawn):
    values, bad = drawn
    with tempfile.TemporaryDirectory(dir=micro) as d:
        out = Path(d) / "s.json"
        argv = ["search", "--model", micro / "model", "--out", out, "--device", "cpu", *flags(values)]
        rc = accepted_or_refused(argv, [out])
        assert (rc == 0) == (bad is None), (values, bad)
        assert out.exists() == (rc == 0)


compare_configs = around(
    {"seed": [0, 2], "precision": ["fp32", "bf16"], "channels_last": [True, False], "units": [None, [0], [2]],
     "units_per_layer": [1, 2], "label": ["a", "x" * 61],
     "overrides": [{"steps": 1}, {"median_size": 3, "steps": 2}, {"neuron_pos": [5, 5], "steps": 1}]},
    [("seed", -1), ("seed", "1"), ("precision", "fp16"), ("channels_last", "no"), ("units", []), ("units", [-1]),
     ("units", [3]), ("units_per_layer", 0), ("label", ""), ("label", 3), ("overrides", {"steps": 0}),
     ("overrides", {"lr": 0}), ("overrides", {"transforms": "bogus"}), ("overrides", {"neuron_pos": [12, 0]}),
     ("recipe", "nope"), ("bogus", 1)])


@SETTINGS
@given(drawn=compare_configs)
def test_compare_config(micro, drawn):
    cfg, bad = drawn
    with tempfile.TemporaryDirectory(dir=micro) as d:
        argv = ["compare", "--model", micro / "model", "--units", micro / "units.json", "--layer", "conv1",
                "--config", json.dumps({"recipe": "hvass", **cfg}), "--out-npz", Path(d) / "c.npz", "--out-json",
                Path(d) / "c.json", "--device", "cpu"]
        rc = accepted_or_refused(argv, [Path(d) / "c.json", Path(d) / "c.npz"])
        assert (rc == 0) == (bad is None), (cfg, bad)
        assert (Path(d) / "c.json").exists() == (rc == 0)
