"""The static HTML report: Jinja2 templates (autoescape on) over a run's results folder."""
from .render import render_index, render_run

__all__ = ["render_index", "render_run"]
