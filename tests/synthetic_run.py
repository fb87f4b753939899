"""A tiny synthetic run (dataset, trained model, every stage's results) for tests and demos.

Runs the real `evaluate`, `units` and `probe` code on a few hundred generated 12×12 images; the
ascent results are written directly (smooth random images with snapshots and extra numeric stats)
so that the report can be exercised without the activation-maximization engine.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from featviz.evaluate import evaluate
from featviz.io import write_json, write_npz
from featviz.model import build, load_model, save_model
from featviz.probe import probe
from featviz.units import chunks, enumerate_units

LAYERS = [
    {"type": "conv", "out": 4, "kernel": 3, "padding": "same"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
    {"type": "conv", "out": 6, "kernel": 3, "padding": "same"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
    {"type": "flatten"}, {"type": "fc", "out": 8}, {"type": "relu"}, {"type": "fc"},
]


def _images(n: int, k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c: a bright bar at a class-specific row/column, plus noise."""
    labels = torch.arange(n) % k
    x = torch.rand(n, 1, 12, 12, generator=g) * 60
    for c in range(k):
        sel = labels == c
        if c % 2 == 0:
            x[sel, :, 2 + 3 * (c // 2) % 9, :] += 190
        else:
            x[sel, :, :, 2 + 3 * (c // 2) % 9] += 190
    return x.clamp(0, 255).to(torch.uint8), labels


def make_run(root: Path, name: str = "tiny-0123abcd", classes: list[str] | None = None, n_train: int = 300,
             n_test: int = 200, steps: int = 60, chunk_size: int = 5, snapshots: bool = True,
             layer_rename: dict[str, str] | None = None, conv_channels: tuple[int, int] = (4, 6),
             shown: dict[str, list[int]] | None = None) -> Path:
    """Write `root/results/<name>/...` and `root/results/data/<name>/` and return the run folder.

    layer_rename: rename layers in units.json, ascent/ and probe.json after the fact (to test
    hostile layer names a real module tree may carry). conv_channels: the widths of the two conv
    layers (a wide second layer rehearses the layer page of a 2048-channel network). shown: per
    layer, the units visualized (as ascent.units: the others get no ascent result, so no page)."""
    root = Path(root)
    classes = list(classes or ["bar0", "bar1", "bar2"])
    k = len(classes)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = root / "results" / "data" / name
    data.mkdir(parents=True, exist_ok=True)
    xtr, ytr = _images(n_train, k, g)
    xte, yte = _images(n_test, k, g)
    torch.save({"images": xtr, "labels": ytr, "classes": classes}, data / "train.pt")
    torch.save({"images": xte, "labels": yte, "classes": classes}, data / "test.pt")
    run = root / "results" / name
    shape = (1, 12, 12)
    mean, std = [float(xtr.float().mean() / 255)], [float(xtr.float().std() / 255)]
    layers = [dict(spec) for spec in LAYERS]
    layers[0]["out"], layers[3]["out"] = conv_channels
    net = build(layers, shape, k)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    norm = lambda x: (x.float() / 255 - mean[0]) / std[0]
    curves = []
    for step in range(steps):
        idx = torch.randint(0, n_train, (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(norm(xtr[idx])), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % (steps // 3 or 1) == 0:
            with torch.no_grad():
                net.eval()
                tr = float((net(norm(xtr)).argmax(1) == ytr).float().mean())
                te = float((net(norm(xte)).argmax(1) == yte).float().mean())
                net.train()
            curves.append({"epoch": len(curves) + 1, "train_loss": loss.item(), "train_accuracy": tr,
                           "test_accuracy": te})
    net.eval()
    meta = {"format": "featviz-spec", "run": name, "dataset": "synthetic", "classes": classes,
            "input_shape": list(shape), "mean": mean, "std": std, "layers": layers, "model": {"layers": layers},
            "train": {"steps": steps}, "seed": 0}
    save_model(run / "model", net, meta)
    write_json(run / "model" / "metrics.json", {"epochs": curves, "final_test_accuracy": curves[-1]["test_accuracy"],
                                                "train_wall_s": 0.1, "device": "cpu", "parameters": sum(p.numel() for p in net.parameters())})
    model = load_model(run / "model")
    evaluate(model, data, run / "eval", "cpu")
    units = enumerate_units(model.net, model.input_shape, model.classes)
    write_json(run / "units.json", units)
    rng = np.random.default_rng(0)
    for layer in units["layers"]:
        write_ascent(run, layer, (shown or {}).get(layer["name"]) or list(range(layer["units"])), chunk_size, rng,
                     snapshots)
    probe(model, units, data, run / "probe", "cpu", top_k=4, samples=3, prune_images=n_test)
    for old, new in (layer_rename or {}).items():
        _rename_layer(run, old, new)
    return run


def _rename_layer(run: Path, old: str, new: str) -> None:
    from featviz.io import read_json

    for rel in ("units.json", "probe/probe.json"):
        d = read_json(run / rel)
        for layer in d["layers"]:
            if layer["name"] == old:
                layer["name"] = new
        write_json(run / rel, d)
    src = run / "ascent" / old
    dst = run / "ascent" / new
    shutil.move(str(src), str(dst))
    for js in dst.glob("*.json"):
        d = read_json(js)
        d["layer"] = new
        write_json(js, d)


def write_ascent(run: Path, layer: dict, units: list[int], chunk_size: int, rng: np.random.Generator,
                 snapshots: bool = True, channels: int = 1) -> None:
    """Synthetic ascent results of some units of a layer: smooth random 12×12 images, snapshots,
    traces and stats, written as the ascent jobs write them."""
    for c, unit_ids in enumerate(chunks(units, chunk_size)):
        n = len(unit_ids)
        base = rng.random((n, channels, 3, 3)).astype(np.float32)
        img = np.kron(base, np.ones((1, 1, 4, 4), np.float32))
        arrays = {"images": img, "objective": rng.random(n).astype(np.float32) * 3,
                  "units": np.asarray(unit_ids, np.int64)}
        if snapshots:
            for s in (1, 10, 100):
                arrays[f"snapshot_{s:05d}"] = (img * s / 100).astype(np.float32)
            # the objective before each of 100 steps, rising towards the unit's final objective
            arrays["trace"] = (arrays["objective"][:, None] * (1 - np.exp(-np.arange(100) / 20))[None]).astype(np.float32)
        stats = []
        for i, u in enumerate(unit_ids):
            st = {"unit": u, "objective": float(arrays["objective"][i]), "steps": 100, "converged": bool(u % 2),
                  "nonfinite": False, "dead": u == 0, "robustness": round(float(rng.random()), 3)}
            if layer["kind"] == "class":
                st.update(target_softmax=round(float(rng.random()), 4), predicted=int(u),
                          transfer_softmax=round(float(rng.random()), 4))
            stats.append(st)
        write_npz(run / "ascent" / layer["name"] / f"{c}.npz", **arrays)
        write_json(run / "ascent" / layer["name"] / f"{c}.json", {
            "layer": layer["name"], "kind": layer["kind"], "chunk": c, "units": unit_ids,
            "recipe": {"name": "synthetic", "steps": 100, "lr": 0.05}, "seed": 0, "device": "cpu", "stats": stats})
