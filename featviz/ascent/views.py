"""Four sides of a conv unit, as Lucid and OpenAI Microscope show a channel: besides the positive
picture (the recipe's own objective), the **neuron** at the centre position, the **negative**
channel (what turns it off) and a **diversity** set of images that all drive the channel, kept
apart by Lucid's diversity term.

The extra images ride in the same batch as the positive pictures: a batch holds the positive
element of every unit first (in unit order, so the positive results are what they are without
views), then, unit by unit, its neuron, negative and diversity elements. Each element has its own
generator (its seed depends on the unit, the view and its place in the diversity set); only the
diversity term couples elements, and only those of one unit's set.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import objectives as O

VIEWS = ("neuron", "negative", "diversity")
POSITIVE = "positive"
_SALT = {"neuron": 1, "negative": 2, "diversity": 3}

# Lucid's weight of the diversity term: `objectives.channel(layer, n) - 1e2 * objectives.diversity(layer)`,
# as in Lucent's notebooks/diversity.ipynb (greentfrapp/lucent: `obj = objectives.channel("mixed5a", 9)
# - 1e2 * objectives.diversity("mixed5a")` over `param.image(128, batch=4)`) and Lucid's own diversity
# notebook; both average the channel over the batch and divide the summed similarities by the batch
# size, which `objectives.group_diversity` reproduces per element with the same weight.
LUCID_DIVERSITY_WEIGHT = 1e2


@dataclass(frozen=True)
class Views:
    """Which extra views which units get: ``units[view]`` = the units (of the ones visualized) that
    get it; ``diversity_images`` per unit's diversity set, ``diversity_weight`` its term's weight."""

    units: dict = field(default_factory=dict)
    diversity_images: int = 4
    diversity_weight: float = LUCID_DIVERSITY_WEIGHT

    def __post_init__(self):
        unknown = set(self.units) - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown view(s) {sorted(unknown)} (known: {', '.join(VIEWS)})")
        if self.diversity_images < 2:
            raise ValueError("a diversity set needs at least 2 images")
        object.__setattr__(self, "units", {v: tuple(int(u) for u in us) for v, us in self.units.items() if us})

    def of(self, unit: int) -> list[tuple[str, int]]:
        """The extra elements of one unit: (view, member) in batch order."""
        out = []
        for view in VIEWS:
            if unit in self.units.get(view, ()):
                out += [(view, m) for m in range(self.diversity_images if view == "diversity" else 1)]
        return out

    def restrict(self, units) -> Views:
        keep = set(int(u) for u in units)
        return Views({v: [u for u in us if u in keep] for v, us in self.units.items()},
                     self.diversity_images, self.diversity_weight)

    def __bool__(self) -> bool:
        return any(self.units.values())


@dataclass(frozen=True)
class Plan:
    """The elements of one batch: ``units[i]``, ``view[i]``, ``member[i]``; the first
    ``n_positive`` are the units' positive pictures, in unit order."""

    units: list
    view: list
    member: list
    n_positive: int

    @property
    def keys(self) -> list[tuple]:
        """Each element's seed key: (unit,) for a positive picture (the seed it has without views),
        (unit, view, member) for the others."""
        return [(u,) if v == POSITIVE else (u, _SALT[v], m) for u, v, m in zip(self.units, self.view, self.member)]


def plan(units, views: Views | None) -> Plan:
    units = [int(u) for u in units]
    us, vs, ms = list(units), [POSITIVE] * len(units), [0] * len(units)
    for u in units:
        for view, member in (views.of(u) if views else []):
            us.append(u)
            vs.append(view)
            ms.append(member)
    return Plan(us, vs, ms, len(units))


def batches(units, views: Views | None, capacity: int | None) -> list[list[int]]:
    """Consecutive units packed so that a batch has at most ``capacity`` elements (a unit and its
    views are never split; a unit with more elements than that is a batch of its own); None = one
    batch. Without views this is the engine's plain split into batches of ``capacity`` units."""
    units = [int(u) for u in units]
    if capacity is None:
        return [units]
    out, cur, size = [], [], 0
    for u in units:
        n = 1 + (len(views.of(u)) if views else 0)
        if cur and size + n > capacity:
            out.append(cur)
            cur, size = [], 0
        cur.append(u)
        size += n
    if cur:
        out.append(cur)
    return out


def objectives(layer, p: Plan, rec: dict, positive, positive_clean, views: Views):
    """(objective, clean objective, channel objective) of every element of plan ``p``: the positive
    elements keep the recipe's (``positive``, ``positive_clean``); the neuron at ``rec['neuron_pos']``
    (the centre when None); minus the channel; the channel minus the weighted diversity of the
    unit's set. The clean objective of a diversity image is its channel, and ``channel`` (each
    element's channel mean, read after a ReLU with the recipe's ``rectify``) is what the page puts
    beside every view."""
    def rect(o):
        return O.rectified(o) if rec.get("rectify") else o

    channel = rect(O.channel(layer, p.units, rec["conv_reduce"]))
    neuron = rect(O.neuron(layer, p.units, rec["neuron_pos"]))
    groups = [i if v == "diversity" else -1 for i, v in zip(_unit_order(p.units), p.view)]
    diverse = channel - views.diversity_weight * O.group_diversity(layer, groups)
    names = [POSITIVE, *VIEWS]
    which = [names.index(v) for v in p.view]
    obj = O.by_element([positive, neuron, -channel, diverse], which)
    clean = O.by_element([positive_clean, neuron, -channel, channel], which)
    return obj, clean, channel


def _unit_order(units) -> list[int]:
    """Each element's group number: one per distinct unit."""
    seen: dict = {}
    return [seen.setdefault(u, len(seen)) for u in units]
