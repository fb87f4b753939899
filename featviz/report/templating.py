"""The report's Jinja2 environment (autoescape on, strict undefined, its filters), its static files
and the one rule that turns user-given names into file names."""
from __future__ import annotations

import re
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def slug(name: str) -> str:
    """A file-name-safe form of a user-given name (layer, class): it cannot leave its folder."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "unnamed"
    return s[:80]


def inside(site: Path, rel: str) -> Path:
    """site/rel, refusing anything that would land outside the site folder (its folder is made)."""
    p = (site / rel).resolve()
    if not p.is_relative_to(site.resolve()):
        raise ValueError(f"report: refusing to write outside the report folder: {rel!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "–" if x is None else f"{100.0 * float(x):.2f}%"
    env.filters["num"] = lambda x, d=3: "–" if x is None else f"{float(x):.{d}f}"
    env.filters["grouped"] = lambda x: "–" if x is None else f"{int(x):,}"
    return env
