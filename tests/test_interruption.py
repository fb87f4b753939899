"""kill -9 a training job and an ascent job mid-run: rerunning the same command completes, and the
results are byte-identical to an uninterrupted run (atomic writes + Snakemake's bookkeeping)."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.snakemake_run import ROOT, snakemake

pytestmark = pytest.mark.workflow

CONFIG = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
CONFIG["runs"][0]["train"]["epochs"] = 30
CONFIG["runs"][0]["ascent"].update({"layers": ["conv2", "classes"], "overrides": {"conv": {"steps": 600}}})


def _setup(workdir: Path) -> Path:
    from tests.synthetic import make_imagefolder

    make_imagefolder(workdir / "shapes")
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(copy.deepcopy(CONFIG)))
    return cfg


def _start(workdir: Path, cfg: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
           "--configfile", str(cfg), "--directory", str(workdir)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _kill_job(snake: subprocess.Popen, verb: str, ready, timeout: float = 300) -> None:
    """Wait until a `featviz <verb>` job under this Snakemake is running and `ready()`, then kill -9 it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert snake.poll() is None, f"snakemake ended before a `featviz {verb}` job could be killed"
        for p in psutil.Process(snake.pid).children(recursive=True):
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if any(c.endswith("featviz") for c in cmd) and verb in cmd and ready():
                p.kill()
                snake.wait(timeout=120)
                return
        time.sleep(0.1)
    raise AssertionError(f"no `featviz {verb}` job seen")


def _outputs(workdir: Path) -> dict[str, bytes]:
    run = next((workdir / "results").glob("shapes-*"))
    files = [run / "model" / "model.pt", run / "model" / "model.json", run / "eval" / "metrics.json",
             run / "units.json", *sorted((run / "ascent").rglob("*.npz")), *sorted((run / "ascent").rglob("*.json"))]
    return {str(f.relative_to(workdir)): f.read_bytes() for f in files}


def test_kill_9_then_rerun_gives_identical_results(tmp_path):
    ref = tmp_path / "reference"
    cfg = _setup(ref)
    r = snakemake(ref, configfile=cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    expected = _outputs(ref)

    work = tmp_path / "interrupted"
    cfg = _setup(work)
    # 1. kill training after its first epoch
    snake = _start(work, cfg)
    log = lambda: next(iter((work / "results").glob("shapes-*/logs/train.log")), None)  # noqa: E731
    _kill_job(snake, "train", lambda: log() is not None and "epoch 1:" in log().read_text())
    assert snake.returncode != 0
    assert not list((work / "results").glob("shapes-*/model/model.json"))
    # 2. rerun the same command; kill an ascent job this time
    snake = _start(work, cfg)
    _kill_job(snake, "ascend", lambda: True)
    assert snake.returncode != 0
    # 3. rerun the same command: it completes
    r = snakemake(work, configfile=cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    got = _outputs(work)
    assert sorted(got) == sorted(expected)
    assert [k for k in expected if got[k] != expected[k]] == []
