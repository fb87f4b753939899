"""config/README.md documents every key of the schema, with the schema's default (one source of
config truth: the schema; this test keeps the key reference from drifting)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from featviz.schema import object_schema

ROOT = Path(__file__).resolve().parents[1]
MISSING = object()


CONTAINER = object()


def schema_keys(node: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> default (MISSING where the schema has none; CONTAINER for an object whose keys
    are documented one by one) of every key: objects are walked, the runs as runs[i], other arrays
    (layer specs, targets) are leaves."""
    out = {}
    for key, sub in (node.get("properties") or {}).items():
        dotted = f"{prefix}.{key}" if prefix else key
        obj = object_schema(sub)  # a section that may be null keeps its keys in an anyOf branch
        nullable = obj is not sub
        out[dotted] = CONTAINER if obj.get("properties") and not nullable else sub.get("default", MISSING)
        if key == "runs":
            out.update(schema_keys(sub["items"], "runs[i]"))
        elif obj.get("properties"):
            out.update(schema_keys(obj, dotted))
    return out


def readme_keys(text: str) -> dict[str, str]:
    """Dotted key -> the README's default cell, from its `| key | default | meaning |` tables under
    headings naming the section (`## Top level`, `### \\`runs[i].data\\``)."""
    out, section = {}, None
    for line in text.splitlines():
        h = re.match(r"^#{2,3} (.*)", line)
        if h:
            m = re.search(r"`([^`]+)`", h.group(1))
            section = "" if "Top level" in h.group(1) else (m.group(1) if m else None)
            continue
        if section is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        keys = re.findall(r"`([^`]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1]) or [cells[1]]
        if len(defaults) == 1:
            defaults = defaults * len(keys)
        for key, default in zip(keys, defaults):
            out[f"{section}.{key}" if section else key] = default
    return out


def test_readme_lists_every_schema_key_with_its_default():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    keys = schema_keys(schema)
    want = {k: v for k, v in keys.items() if v is not CONTAINER}
    have = readme_keys((ROOT / "config" / "README.md").read_text())
    assert not sorted(set(want) - set(have)), f"keys in the schema, not in config/README.md: {sorted(set(want) - set(have))}"
    assert not sorted(set(have) - set(keys)), f"keys in config/README.md, not in the schema: {sorted(set(have) - set(keys))}"
    wrong = []
    for key, default in want.items():
        if default is MISSING:
            continue
        try:
            documented = yaml.safe_load(have[key])
        except yaml.YAMLError:
            documented = have[key]
        if documented != default:
            wrong.append(f"{key}: schema {default!r}, README {have[key]!r}")
    assert not wrong, "defaults differ:\n" + "\n".join(wrong)


def test_training_doc_states_the_schemas_train_defaults():
    """docs/training.md's `train:` table gives each key's default as the schema has it."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    train = schema["properties"]["runs"]["items"]["properties"]["train"]["properties"]
    text = (ROOT / "docs" / "training.md").read_text()
    table = text.split("## Training (`train:` keys)", 1)[1].split("\n\n", 2)[1]
    documented = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        keys = re.findall(r"`([^`]+)`", cells[0])
        values = [v.strip().strip("`") for v in cells[1].split(",")] if len(keys) > 1 else [cells[1].strip("`")]
        assert len(values) == len(keys), line
        documented.update(zip(keys, values))
    assert set(documented) == set(train) - {"momentum"}, sorted(set(train) ^ set(documented))
    wrong = {k: (v, train[k]["default"]) for k, v in documented.items() if yaml.safe_load(v) != train[k]["default"]}
    assert not wrong, f"docs/training.md vs schema defaults: {wrong}"
