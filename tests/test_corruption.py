"""Property-based (hypothesis): random corruptions of each artifact file (truncate, flip bytes,
delete) are either harmless (the verb runs) or refused with one `featviz: error:` line and exit
status 2: never a traceback, never another exit status (issue 14)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

corruptions = st.one_of(
    st.tuples(st.just("delete")),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                        min_size=1, max_size=8)),
)


def corrupt(path: Path, how) -> None:
    if how[0] == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if how[0] == "truncate":
        path.write_bytes(bytes(data[: int(how[1] * len(data))]))
        return
    for where, mask in how[1]:
        data[int(where * len(data))] ^= mask
    path.write_bytes(bytes(data))


def run(argv) -> tuple[int, str]:
    from featviz.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def check(argv) -> None:
    rc, err = run(argv)  # an exception other than FeatvizError fails the test here, with its traceback
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = [line for line in err.splitlines() if line.startswith("featviz: error: ")]
        assert len(lines) == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def artifacts(trained_shapes, prepared_shapes, tmp_path_factory):
    """A model folder, its units.json and the prepared data, to copy and corrupt."""
    root = tmp_path_factory.mktemp("corrupt")
    shutil.copytree(trained_shapes, root / "model")
    shutil.copytree(prepared_shapes, root / "data")
    rc, err = run(["units", "--model", root / "model", "--out", root / "units.json"])
    assert rc == 0, err
    return root


@contextlib.contextmanager
def fresh(artifacts: Path):
    with tempfile.TemporaryDirectory(dir=artifacts.parent) as d:
        d = Path(d)
        for name in ("model", "data"):
            shutil.copytree(artifacts / name, d / name)
        shutil.copy(artifacts / "units.json", d / "units.json")
        yield d


@pytest.mark.parametrize("name", ["model.json", "model.pt"])
def test_corrupt_model_folder(artifacts, name):
    @SETTINGS
    @given(how=corruptions)
    def prop(how):
        with fresh(artifacts) as d:
            corrupt(d / "model" / name, how)
            check(["units", "--model", d / "model"])
            check(["evaluate", "--model", d / "model", "--data", d / "data", "--out", d / "eval", "--device", "cpu"])

    prop()


@pytest.mark.parametrize("name", ["test.pt", "info.json"])
def test_corrupt_prepared_data(artifacts, name):
    @SETTINGS
    @given(how=corruptions)
    def prop(how):
        with fresh(artifacts) as d:
            corrupt(d / "data" / name, how)
            check(["evaluate", "--model", d / "model", "--data", d / "data", "--out", d / "eval", "--device", "cpu"])
            check(["import-model", "--data", d / "data", "--model",
                   json.dumps({"layers": json.loads((d / "model" / "model.json").read_text())["layers"],
                               "import": {"path": str(d / "model" / "model.pt")}}),
                   "--out", d / "imported", "--device", "cpu"])

    prop()


def test_corrupt_units_file(artifacts):
    cfg = json.dumps({"chunk_size": 4, "recipe": {"class": "hvass"},
                      "overrides": {"class": {"class_steps": 2, "snapshots": 0}}})

    @SETTINGS
    @given(how=corruptions)
    def prop(how):
        with fresh(artifacts) as d:
            corrupt(d / "units.json", how)
            check(["ascend", "--model", d / "model", "--units", d / "units.json", "--layer", "classes", "--chunk", "0",
                   "--config", cfg, "--out-npz", d / "c.npz", "--out-json", d / "c.json", "--device", "cpu"])

    prop()


# --------------------------------------------------------------------------- the report's inputs

REPORT_INPUTS = ["ascent/conv1/0.json", "ascent/conv1/0.npz", "ascent/classes/0.json", "ascent/classes/0.npz",
                 "transfer.json", "probe/probe.json", "probe/probe.npz", "eval/metrics.json", "eval/misclassified.npz",
                 "model/metrics.json", "compare/hvass/conv1.json", "compare/hvass/conv1.npz"]
REPORT_SETTINGS = settings(SETTINGS, max_examples=16)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """A small synthetic run with every file the report reads: ascent chunks (with snapshots),
    probe, evaluation, transfer score and one comparison entry."""
    from tests.synthetic_run import make_run

    run_dir = make_run(tmp_path_factory.mktemp("report_inputs"), n_train=150, n_test=60, steps=4,
                       conv_channels=(2, 3))
    rc, err = run(["transfer", "--results", run_dir, "--out", run_dir / "transfer.json", "--device", "cpu"])
    assert rc == 0, err
    cfg = {"recipe": "hvass", "label": "hvass", "units_per_layer": 1, "overrides": {"steps": 2}}
    rc, err = run(["compare", "--model", run_dir / "model", "--units", run_dir / "units.json", "--layer", "conv1",
                   "--config", json.dumps(cfg), "--out-npz", run_dir / "compare/hvass/conv1.npz", "--out-json",
                   run_dir / "compare/hvass/conv1.json", "--device", "cpu"])
    assert rc == 0, err
    for name in REPORT_INPUTS:
        assert (run_dir / name).is_file(), name
    return run_dir


@contextlib.contextmanager
def fresh_run(run_dir: Path):
    with tempfile.TemporaryDirectory(dir=run_dir.parent) as d:
        copy = Path(d) / run_dir.name
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("train.pt", "test.pt"))
        yield copy


@pytest.mark.parametrize("name", REPORT_INPUTS)
def test_a_truncated_report_input_is_named(report_run, name):
    with fresh_run(report_run) as d:
        corrupt(d / name, ("truncate", 0.5))
        rc, err = run(["report", "--results", d, "--out", d.parent / "out"])
        assert rc == 2 and err.startswith("featviz: error: ") and err.count("\n") == 1, err
        assert str(d / name) in err and "truncated or corrupt" in err, err
        assert not (d.parent / "out").exists()


def test_corrupt_report_inputs(report_run):
    """Any input truncated, flipped or deleted: the report renders, or one clean error; a previous
    report is left as it was when the new one fails."""
    @REPORT_SETTINGS
    @given(name=st.sampled_from(REPORT_INPUTS), how=corruptions)
    def prop(name, how):
        with fresh_run(report_run) as d:
            out = d.parent / "out"
            out.mkdir()
            (out / "index.html").write_text("previous")
            corrupt(d / name, how)
            rc, err = run(["report", "--results", d, "--out", out])
            assert rc in (0, 2), (rc, err)
            if rc == 2:
                lines = [line for line in err.splitlines() if line.startswith("featviz: error: ")]
                assert len(lines) == 1 and "Traceback" not in err, err
                assert (out / "index.html").read_text() == "previous"

    prop()


def test_chunk_images_that_disagree_with_their_record_are_named(report_run):
    import numpy as np

    from featviz.io import write_npz

    with fresh_run(report_run) as d:
        npz = d / "ascent" / "conv1" / "0.npz"
        with np.load(npz) as z:
            arrays = {k: z[k][:1] for k in z.files}
        write_npz(npz, **arrays)
        rc, err = run(["report", "--results", d, "--out", d.parent / "out"])
        assert rc == 2 and str(npz) in err and "do not match their record" in err, err
