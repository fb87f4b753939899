"""Run the real Snakemake CLI on this repository's Snakefile, with this Python's scripts
(the `featviz` command) on PATH."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, configfile: Path = ROOT / ".test" / "config.yaml", env: dict | None = None,
              timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
           "--configfile", str(configfile), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
