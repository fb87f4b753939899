"""Random search over a recipe's numeric parameters (seed 003's "find good parameters by
trying them"): `featviz search` runs N trials of one recipe, each with overrides drawn at
random within sane ranges, on a few units of one layer, scores every trial and writes the
ranked trials and the best overrides as JSON.

Score of a trial (higher is better):

* conv / dense units: the mean over units of objective / baseline, where a unit's baseline
  is its largest objective over up to `baseline_images` real test images (`--data`); without
  data the raw mean objective. Dead or non-finite units count as 0.
* classes: mean target softmax on the visualized model, plus the mean target softmax on the
  independent model when one is given (`--transfer-model`), so 2 is the maximum.

Trial 0 is always the recipe as it is (no overrides), so the best trial is never worse
than the default on the units searched.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .errors import FeatvizError

# Parameters sampled and their ranges. lr is sampled as a log-uniform multiplier of the
# recipe's own value (the step rules' scales differ by orders of magnitude).
LR_FACTOR = (0.1, 10.0)
DECAY = (0.0, 0.1)
BLUR_SIGMA = (0.0, 1.0)
MEDIAN_SIZES = (0, 3, 5)
JITTERS = (0, 1, 2)
STEPS_FACTOR = (0.25, 2.0)
P_OFF = 0.3  # chance that decay / blur is switched off in a trial


def sample_overrides(recipe: dict, kind: str, rng: np.random.Generator, max_steps: int = 400) -> dict:
    """One random set of overrides for `recipe` (a resolved recipe dict)."""
    is_class = kind == "class"
    lr_key = "class_lr" if is_class else "lr"
    steps_key = "class_steps" if is_class else "steps"
    lr0 = recipe[lr_key] if recipe.get(lr_key) is not None else recipe["lr"]
    steps0 = recipe[steps_key] if recipe.get(steps_key) is not None else recipe["steps"]
    lo, hi = math.log(LR_FACTOR[0]), math.log(LR_FACTOR[1])
    ov = {lr_key: float(lr0 * math.exp(rng.uniform(lo, hi)))}
    s_lo = max(5, int(round(steps0 * STEPS_FACTOR[0])))
    s_hi = max(s_lo, min(int(max_steps), int(round(steps0 * STEPS_FACTOR[1]))))
    ov[steps_key] = int(round(math.exp(rng.uniform(math.log(s_lo), math.log(s_hi)))))
    ov["decay"] = 0.0 if rng.random() < P_OFF else float(rng.uniform(*DECAY))
    ov["blur_sigma"] = 0.0 if rng.random() < P_OFF else float(rng.uniform(*BLUR_SIGMA))
    ov["median_size"] = int(rng.choice(MEDIAN_SIZES))
    ov["jitter"] = int(rng.choice(JITTERS))
    if recipe["param"] != "pixel":  # projections act on pixels only
        for k in ("decay", "blur_sigma", "median_size"):
            ov.pop(k)
    return ov


@torch.no_grad()
def unit_baselines(model, layer: str | None, kind: str, units: list[int], images_uint8, recipe: dict,
                   limit: int = 256, device="cpu") -> np.ndarray:
    """Per unit, the largest objective (the recipe's channel mean / dense value) over up to
    `limit` real images (uint8 (N, C, H, W)), with `recipe`'s objective (mean or sum)."""
    from .ascent import objectives
    from .ascent.hooks import ActivationReader

    x = torch.as_tensor(np.asarray(images_uint8[:limit]), dtype=torch.float32, device=device) / 255.0
    obj = objectives.for_kind(kind, layer, units, recipe)
    n = len(units)
    best = np.full(n, -np.inf)
    with ActivationReader(model.net, set(obj.layers)) as reader:
        for i in range(len(x)):
            acts = reader(model.normalize(x[i:i + 1].expand(n, *x.shape[1:])))
            best = np.maximum(best, obj(acts, torch.arange(n)).double().cpu().numpy())
    return best


def score_trial(kind: str, stats: list[dict], objective: np.ndarray, baseline: np.ndarray | None,
                transfer_softmax: np.ndarray | None) -> tuple[float, dict]:
    """(score, metrics) of one trial's result."""
    dead = np.array([bool(s["dead"] or s["nonfinite"]) for s in stats])
    rob = [s["robustness"] for s in stats if s["robustness"] is not None]
    m = {
        "objective_mean": float(np.nanmean(objective)) if len(objective) else None,
        "dead": int(dead.sum()),
        "robustness_mean": float(np.mean(rob)) if rob else None,
    }
    if kind == "class":
        ts = np.array([s["target_softmax"] or 0.0 for s in stats])
        m["target_softmax_mean"] = float(ts.mean())
        m["target_softmax_min"] = float(ts.min())
        score = float(ts.mean())
        if transfer_softmax is not None:
            m["transfer_softmax_mean"] = float(transfer_softmax.mean())
            score += float(transfer_softmax.mean())
        return score, m
    vals = np.where(dead | ~np.isfinite(objective), 0.0, objective)
    if baseline is not None:
        safe = np.where(np.abs(baseline) > 1e-8, np.abs(baseline), np.nan)
        norm = vals / safe
        m["normalized_objective_mean"] = float(np.nanmean(norm)) if np.isfinite(norm).any() else 0.0
        return m["normalized_objective_mean"], m
    return float(vals.mean()), m


def run_search(model_dir: Path, layer: str, recipe: str, trials: int, units: list[int] | None, out: Path,
               transfer_model_dir: Path | None = None, data_dir: Path | None = None, seed: int = 0,
               max_steps: int = 400, device: str = "auto", trust: bool = False,
               baseline_images: int = 256) -> dict:
    from .ascent import RecipeError, get_recipe, visualize
    from .io import write_json
    from .device import resolve_device
    from .model import load_model
    from .units import enumerate_units, find_layer

    if trials < 1:
        raise FeatvizError("--trials must be >= 1")
    if max_steps < 1:
        raise FeatvizError(f"--max-steps must be >= 1, not {max_steps}")
    dev = resolve_device(device)
    model = load_model(Path(model_dir), trust).to(dev)
    model.net.eval()
    info = find_layer(enumerate_units(model.net, tuple(model.input_shape), model.classes), layer)
    kind = info["kind"]
    units = list(units) if units else list(range(min(4, info["units"])))
    bad = [u for u in units if not 0 <= u < info["units"]]
    if bad:
        raise FeatvizError(f"--units: unit {bad[0]} is out of range ({layer} has {info['units']} units)")
    try:
        base = get_recipe(recipe)
    except RecipeError as exc:
        raise FeatvizError(f"--recipe: {exc}") from None
    target_layer = None if kind == "class" else layer
    tmodel = None
    if transfer_model_dir is not None:
        if kind != "class":
            raise FeatvizError("--transfer-model applies to the class layer only")
        tmodel = load_model(Path(transfer_model_dir), trust).to(dev)
        tmodel.net.eval()
    baseline = None
    if data_dir is not None and kind != "class":
        from .artifacts import read_prepared

        split = read_prepared(Path(data_dir), "test")
        baseline = unit_baselines(model, target_layer, kind, units, split.images, base, baseline_images, dev)
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(trials):
        ov = {} if t == 0 else sample_overrides(base, kind, rng, max_steps)
        ov_run = dict(ov, snapshots=0)
        started = time.perf_counter()
        r = visualize(model.net, target_layer, units, kind, tuple(model.input_shape), normalize=model.normalize,
                      recipe=recipe, overrides=ov_run, seed=seed, device=str(dev))
        wall = time.perf_counter() - started
        tsoft = None
        recognized = None
        if tmodel is not None:
            q = tmodel.predict(torch.as_tensor(r.images), dev, batch_size=max(1, len(r.images))).numpy()
            tsoft = q[np.arange(len(units)), units]
            recognized = int((q.argmax(1) == np.asarray(units)).sum())
        score, metrics = score_trial(kind, r.stats, r.objective.astype(np.float64), baseline, tsoft)
        if recognized is not None:
            metrics["transfer_recognized"] = recognized
        rows.append({"trial": t, "overrides": ov, "score": score, "metrics": metrics, "wall_s": round(wall, 3)})
        print(f"trial {t}: score {score:.4f} {ov}", flush=True)
    ranked = sorted(rows, key=lambda r: (-r["score"], r["trial"]))
    for i, r in enumerate(ranked):
        r["rank"] = i + 1
    record = {
        "model": str(model_dir),
        "layer": layer,
        "kind": kind,
        "recipe": recipe,
        "units": units,
        "seed": seed,
        "transfer_model": str(transfer_model_dir) if transfer_model_dir else None,
        "baseline": None if baseline is None else [float(b) for b in baseline],
        "score": ("mean target softmax + mean transfer softmax" if kind == "class" and tmodel is not None
                  else "mean target softmax" if kind == "class"
                  else "mean objective / baseline (max over real test images)" if baseline is not None
                  else "mean objective"),
        "trials": ranked,
        "best": {"recipe": recipe, "overrides": ranked[0]["overrides"], "score": ranked[0]["score"],
                 "trial": ranked[0]["trial"]},
    }
    write_json(out, record)
    return record
