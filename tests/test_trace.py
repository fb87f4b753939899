"""The trace (issue 13 item 5): every unit's objective per step and seed 002's convergence ratio are
stored in its ascent chunk and plotted on its unit page."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featviz.ascent import visualize
from featviz.ascent.render import convergence_ratio
from featviz.ascent_job import run_chunk
from featviz.report.trace import trace_svg


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 2))


def test_visualize_returns_each_units_objective_per_step():
    net = _net()
    r = visualize(net, "0", [0, 1, 2], "conv", (1, 8, 8), recipe="hvass", overrides={"steps": 12, "snapshots": 0},
                  seed=0)
    assert r.trace.shape == (3, 12) and r.trace.dtype == np.float32
    assert np.isfinite(r.trace[:, 0]).all()
    # the hvass step rule climbs a linear conv objective: the trace rises, and the reported (clean) final
    # objective is at least the objective before the last step
    assert (r.trace[:, -1] > r.trace[:, 0]).all()
    for i, s in enumerate(r.stats):
        assert s["initial_objective"] == pytest.approx(float(r.trace[i, 0]), rel=1e-5)
        h = r.trace[i][np.isfinite(r.trace[i])].astype(np.float64)
        assert s["convergence_ratio"] == pytest.approx((h[-1] - h[-2]) / (abs(h[-1]) + 1e-7), rel=1e-4)


def test_frozen_units_have_nan_after_they_stopped():
    net = _net()
    # a constant-zero unit: weights zeroed, so the objective never leaves 0 and the unit stops
    with torch.no_grad():
        net[0].weight[1].zero_()
        net[0].bias[1].zero_()
    r = visualize(net, "0", [0, 1], "conv", (1, 8, 8), recipe="hvass",
                  overrides={"steps": 40, "snapshots": 0, "dead_patience": 5, "dead_retries": 0}, seed=0)
    assert np.isfinite(r.trace[0]).all()
    assert np.isnan(r.trace[1, 10:]).all() and np.isfinite(r.trace[1, :5]).all()
    assert r.stats[1]["steps"] == int(np.isfinite(r.trace[1]).sum())


def test_convergence_ratio():
    assert convergence_ratio(np.array([1.0, 2.0, 4.0, np.nan])) == pytest.approx(0.5, rel=1e-6)
    assert convergence_ratio(np.array([3.0, np.nan])) is None


def test_chunk_stores_the_trace_deterministically(tmp_path):
    from tests.synthetic_run import make_run

    run = make_run(tmp_path, steps=6)
    cfg = {"recipe": {"conv": "hvass"}, "overrides": {"conv": {"steps": 7}}, "chunk_size": 4}
    outs = []
    for name in ("a", "b"):
        rec = run_chunk(run / "model", run / "units.json", "conv1", 0, cfg, tmp_path / f"{name}.npz",
                        tmp_path / f"{name}.json", "cpu")
        outs.append((tmp_path / f"{name}.npz").read_bytes())
    assert outs[0] == outs[1]
    with np.load(tmp_path / "a.npz") as z:
        trace = z["trace"]
    assert trace.shape == (len(rec["units"]), 7) and trace.dtype == np.float32
    assert [s["convergence_ratio"] for s in rec["stats"]] == \
        [pytest.approx(convergence_ratio(t), rel=1e-4, abs=1e-9) for t in trace]


def test_trace_svg_scales_into_the_box():
    t = np.array([0.0, 1.0, 3.0, 4.0, np.nan, np.nan], np.float32)
    svg = trace_svg(t, marks=[0, 3, 9], ratio=0.25)
    pts = [tuple(map(float, p.split(","))) for p in svg["points"].split()]
    assert len(pts) == 4 and pts[0] == (0.0, 88.0) and pts[-1] == (180.0, 2.0)
    assert [m["step"] for m in svg["lines"]] == [0, 3]
    assert svg["taken"] == 4 and svg["steps"] == 6 and svg["final"] == 4.0
    assert trace_svg(np.full(3, np.nan)) is None
    long = trace_svg(np.arange(5000, dtype=np.float32))
    assert len(long["points"].split()) <= 300
