"""What the jobs of one workflow invocation said to the user: each job writes its output to its log
file, where nobody looks; its one-line `featviz: error:` (and its warnings) belong on the terminal
that ran the workflow. The workflow's onerror/onsuccess handlers print them (the jobs' logs written
since the workflow started)."""
from __future__ import annotations

from pathlib import Path

ERROR = "featviz: error:"
WARNING = "warning:"


def job_messages(results: str | Path, since: float, prefix: str) -> list[tuple[Path, str]]:
    """(log file, line) for every line starting with `prefix` in the .log files under `results`
    modified at or after `since` (a time.time()), oldest file first."""
    results = Path(results)
    if not results.is_dir():
        return []
    logs = []
    for path in results.rglob("*.log"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime >= since - 1:
            logs.append((mtime, path))
    found = []
    for _, path in sorted(logs):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        found += [(path, line.strip()) for line in lines if line.strip().startswith(prefix)]
    return found


def summary(results: str | Path, since: float, prefix: str) -> str:
    """The messages as the terminal shows them: each once, with the log it came from."""
    seen, out = set(), []
    for path, line in job_messages(results, since, prefix):
        if line not in seen:
            seen.add(line)
            out.append(f"{line}\n    (log: {path})")
    return "\n".join(out)
