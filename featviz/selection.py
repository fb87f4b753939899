"""Which units a run visualizes, checked against the network before any ascent job.

An imported network's layers are only known once it is imported and enumerated (units.json), so the
run's ascent section is checked there: `ascent.layers` and `ascent.units` name layers it has (or
their aliases: a ResNet stage for its last block) and units of them (classes also by name), and the
recipes' network-dependent values hold (transforms, neuron positions, the method comparison).
`featviz select` does it as a job of its own, so that a bad name stops the workflow with one
`featviz: error:` line like any other job, and writes selection.json: per visualized layer, its units.
"""
from __future__ import annotations

from .errors import FeatvizError


def check_ascent(units: dict, ascent: dict, where: str = "ascent") -> dict:
    """selection.json of a run: {"layers": {layer name: [units...]}}, after every check passed."""
    from .ascent_job import check_recipe_values
    from .compare import check_compare
    from .units import check_selection, selected_units

    check_selection(units, ascent, where)
    check_recipe_values(units, ascent, where)
    check_compare(units, ascent, where)
    picked = {layer["name"]: selected_units(layer, ascent) for layer in units["layers"]}
    if not any(picked.values()):
        raise FeatvizError(f"{where}.layers: selects no unit to visualize")
    return {"layers": {name: us for name, us in picked.items() if us}}
