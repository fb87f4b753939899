"""``visualize``: resolve a recipe, build objective / parameterization /
transforms, run the ascent (with restarts and dead-unit retries) and collect
images, objectives, stats and snapshots."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics, objectives, optimize
from . import transforms as T
from . import views as V
from .hooks import OUTPUT, ActivationReader
from .param import make_param
from .recipes import get_recipe

log = logging.getLogger(__name__)

KINDS = ("conv", "dense", "class")
_ROBUST_ATTEMPT = 2 ** 31 - 1


@dataclass
class AscentResult:
    images: np.ndarray                 # float32 (N, C, H, W) in [0, 1]
    objective: np.ndarray              # float32 (N,)
    stats: list                        # one JSON-serializable dict per unit
    snapshots: dict = field(default_factory=dict)  # step -> float32 (N, C, H, W)
    recipe: dict = field(default_factory=dict)
    trace: np.ndarray | None = None    # float32 (N, steps): objective before each step, nan once stopped
    transparency: np.ndarray | None = None  # float32 (N, H, W): accumulated |image gradient| (recipe's
    #                                         `transparency`, MACO), channel mean, at the images' size
    view_images: np.ndarray | None = None  # float32 (M, C, H, W): the extra views (featviz.ascent.views)
    views: list | None = None              # one record per extra view image: unit, view, member, objective...


def unit_seed(seed: int, unit: int, attempt: int = 0, *salt: int) -> int:
    """Seed of one unit's generator: depends only on (seed, unit, attempt) and, for a unit's extra
    views (featviz.ascent.views), the view and its place in a diversity set (`salt`)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(unit) & 0xFFFFFFFF, int(attempt), *map(int, salt)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & 0x7FFFFFFFFFFFFFFF)


def _gens(seed, keys, attempt):
    """One generator per batch element; `keys`: units, or (unit, *salt) tuples (Plan.keys)."""
    keys = [k if isinstance(k, tuple) else (k,) for k in keys]
    return [torch.Generator().manual_seed(unit_seed(seed, k[0], attempt, *k[1:])) for k in keys]


def deprocess(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Seed 001 ``deprocess_image``: centre, std 0.1, +0.5, clip (per element)."""
    if mode == "none":
        return x
    flat = x.flatten(1)
    m = flat.mean(1).view(-1, 1, 1, 1)
    s = flat.std(1, unbiased=False).view(-1, 1, 1, 1)
    return ((x - m) / (s + 1e-5) * 0.1 + 0.5).clamp(0.0, 1.0)


def _finite_or_none(v):
    v = float(v)
    return v if np.isfinite(v) else None


def visualize(net, layer, units, kind, input_shape, normalize=None, recipe="hvass",
              overrides=None, seed=0, device="cpu", progress=False, max_batch=None, precision="fp32",
              channels_last=False, spectrum=None, views: V.Views | None = None) -> AscentResult:
    """Activation maximization of ``units`` of ``layer`` (see docs/ascent.md).

    Batch element ``i`` maximizes unit ``units[i]``; images are optimized in
    [0, 1] pixel space and ``normalize(x)`` is fed to ``net``. With ``max_batch``, the units
    are optimized in batches of at most that many (e.g. ``auto_chunk_size``, to fit memory),
    except with a diversity term, which needs the whole batch at once. ``precision="bf16"`` runs the
    forward passes of the optimization under bf16 autocast (the reported objective is re-measured in
    fp32); ``channels_last`` converts the network and its inputs to NHWC (both: docs/ascent.md, "Speed").
    ``spectrum``: the Fourier magnitude of ``param: maco`` (C, H, W // 2 + 1) at any size, e.g. the
    run's images' average (featviz.ascent.spectrum.mean_amplitude); None: the 1/f power law.
    ``views`` (conv units only): the extra views of some units (featviz.ascent.views), optimized in
    the same batches as the positive pictures (a unit and its views are never split) and returned in
    ``view_images`` and ``views``.
    """
    rec = get_recipe(recipe, overrides)
    views = views if kind == "conv" and views else None
    if views is not None:
        parts = V.batches(units, views, _capacity(rec, max_batch))
        if len(parts) > 1:
            return _concat([visualize(net, layer, part, kind, input_shape, normalize, recipe, overrides, seed,
                                      device, progress, None, precision, channels_last, spectrum,
                                      views.restrict(part)) for part in parts])
    step = batch_size(rec, len(units), max_batch)
    if views is None and step < len(units):
        return _concat([visualize(net, layer, units[s:s + step], kind, input_shape, normalize, recipe, overrides,
                                  seed, device, progress, None, precision, channels_last, spectrum)
                        for s in range(0, len(units), step)])
    if kind not in KINDS:
        raise ValueError(f"unknown unit kind {kind!r} (known: {', '.join(KINDS)})")
    units = [int(u) for u in units]
    if any(u < 0 for u in units):
        raise ValueError("units must be non-negative integers")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    device = torch.device(device)
    normalize = normalize or (lambda v: v)
    is_class = kind == "class"
    steps = rec["class_steps"] if is_class and rec["class_steps"] is not None else rec["steps"]
    lr = rec["class_lr"] if is_class and rec["class_lr"] is not None else rec["lr"]
    p = V.plan(units, views)
    obj = objectives.for_kind(kind, layer, p.units, rec)
    if rec["diversity"] > 0:
        obj = obj - rec["diversity"] * objectives.diversity(OUTPUT if is_class else layer)
    clean_obj = objectives.for_kind(kind, layer, p.units, rec)
    channel_obj = None
    if views is not None:
        obj, clean_obj, channel_obj = V.objectives(layer, p, rec, obj, clean_obj, views)
    transform = T.build(rec, shape[1:])
    n = len(p.units)
    if n == 0:
        c, h, w = shape
        return AscentResult(np.zeros((0, c, h, w), np.float32), np.zeros(0, np.float32), [], {}, rec,
                            np.zeros((0, steps), np.float32),
                            np.zeros((0, h, w), np.float32) if rec["transparency"] else None)

    layers = set(obj.layers) | (set([OUTPUT]) if is_class else set())
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    with ActivationReader(net, layers, precision, channels_last) as reader:

        def evaluate(x, idx, o=obj):
            return o(reader(normalize(x)), idx)

        def evaluate_clean(x, idx):
            return clean_obj(reader(normalize(x)), idx)

        affine = input_affine(normalize, shape[0], device) if rec["standardize_space"] == "input" else None
        best = _attempts(rec, shape, p.keys, seed, device, evaluate, evaluate_clean, transform,
                         steps, lr, progress, affine, spectrum)
        images = best["images"]
        reader.bf16 = False  # the objective that is reported: fp32
        with torch.no_grad():
            x = images.to(device)
            acts = reader(normalize(x))
            final = clean_obj(acts, torch.arange(n)).double().cpu().numpy()
            chan = None if channel_obj is None else channel_obj(acts, torch.arange(n)).double().cpu().numpy()
            if is_class:
                prob = torch.softmax(acts[OUTPUT].float(), dim=1)
                target = prob[torch.arange(n, device=prob.device), torch.as_tensor(units, device=prob.device)]
                target, pred = target.cpu().numpy(), prob.argmax(1).cpu().numpy()
            rob = metrics.robustness(evaluate_clean, x, _gens(seed, p.keys, _ROBUST_ATTEMPT),
                                     rec["robustness_samples"])

    stats = []
    for i, u in enumerate(units):  # the positive pictures (the first len(units) elements)
        s = {
            "unit": u,
            "objective": _finite_or_none(final[i]),
            "initial_objective": _finite_or_none(best["initial"][i]),
            "steps": int(best["steps"][i]),
            "converged": bool(best["converged"][i]),
            "nonfinite": bool(best["nonfinite"][i]),
            "dead": bool(best["dead"][i]),
            "attempts": int(best["attempts"][i]),
            "best_attempt": int(best["attempt"][i]),
            "robustness": rob[i],
            "convergence_ratio": convergence_ratio(best["history"][:, i]),
        }
        if is_class:
            s["target_softmax"] = _finite_or_none(target[i])
            s["predicted"] = int(pred[i])
        stats.append(s)
    m = p.n_positive  # the positive pictures first; the extra views after them
    snaps = {int(k): v[:m].cpu().numpy().astype(np.float32) for k, v in sorted(best["snapshots"].items())}
    alpha = best["transparency"]
    pixels = images.cpu().numpy().astype(np.float32)
    view_stats = None if views is None else [
        {"unit": p.units[i], "view": p.view[i], "member": p.member[i], "objective": _finite_or_none(final[i]),
         "channel": _finite_or_none(chan[i]), "steps": int(best["steps"][i]), "dead": bool(best["dead"][i])}
        for i in range(m, n)]
    return AscentResult(pixels[:m], final[:m].astype(np.float32),
                        stats, snaps, rec, best["history"].T[:m].astype(np.float32),
                        None if alpha is None else alpha[:m].cpu().numpy().astype(np.float32),
                        None if views is None else pixels[m:], view_stats)


def convergence_ratio(history: np.ndarray) -> float | None:
    """Seed 002's convergence ratio at the last step a unit took: (obj_t - obj_t-1) / |obj_t| (the
    ascent's convergence test compares it with conv_tol); None with fewer than two finite steps."""
    h = np.asarray(history, np.float64)
    h = h[np.isfinite(h)]
    if h.size < 2:
        return None
    return _finite_or_none((h[-1] - h[-2]) / (abs(h[-1]) + 1e-7))


def batch_size(rec: dict, n_units: int, max_batch=None) -> int:
    """Units optimized at once: at most ``max_batch`` images through the network (a unit of MACO's
    transforms sends ``crops`` of them), except that a diversity term couples the batch and keeps all
    ``n_units`` together."""
    cap = _capacity(rec, max_batch)
    return n_units if cap is None else min(cap, n_units)


def _capacity(rec: dict, max_batch=None) -> int | None:
    """Batch elements at once for at most ``max_batch`` images through the network (None: no cap)."""
    if max_batch is None or rec["diversity"] > 0:
        return None
    per_unit = int(rec["crops"]) if rec["transforms"] == "maco" else 1
    return max(1, int(max_batch) // per_unit)


def _concat(parts: list[AscentResult]) -> AscentResult:
    """One result from the results of consecutive batches of units."""
    snapshots = {k: np.concatenate([p.snapshots[k] for p in parts]) for k in parts[0].snapshots}
    alpha = None if parts[0].transparency is None else np.concatenate([p.transparency for p in parts])
    with_views = [p for p in parts if p.views is not None]
    view_images = np.concatenate([p.view_images for p in with_views]) if with_views else None
    return AscentResult(np.concatenate([p.images for p in parts]), np.concatenate([p.objective for p in parts]),
                        [s for p in parts for s in p.stats], snapshots, parts[0].recipe,
                        np.concatenate([p.trace for p in parts]), alpha,
                        view_images, [s for p in with_views for s in p.views] if with_views else None)


def input_affine(normalize, channels: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input normalization ``normalize(x) = a * x + b`` per channel, as (a, b), each
    (1, C, 1, 1): read off ``normalize`` at black and white."""
    with torch.no_grad():
        b = normalize(torch.zeros(1, channels, 1, 1, device=device))
        a = normalize(torch.ones(1, channels, 1, 1, device=device)) - b
    return a, b


def _attempts(rec, shape, keys, seed, device, evaluate, evaluate_clean, transform, steps, lr, progress,
              affine=None, spectrum=None):
    """Attempt 0 for all units, ``restarts`` more for all units, then up to
    ``dead_retries`` re-inits (larger init noise) for units still dead; per unit
    the best attempt (not dead first, then highest clean objective) is kept."""
    n = len(keys)  # one seed key per batch element (a unit, or a unit's view: featviz.ascent.views)
    best = None
    restarts, retries = rec["restarts"], rec["dead_retries"]
    for attempt in range(1 + restarts + retries):
        if best is None or attempt <= restarts:
            sub = list(range(n))
            amp = 1.0
        else:
            sub = [i for i in range(n) if best["dead"][i]]
            if not sub:
                break
            amp = float(rec["retry_noise_mult"]) ** (attempt - restarts)
            log.info("retrying %d dead unit(s), attempt %d", len(sub), attempt)
        gens = _gens(seed, [keys[i] for i in sub], attempt)
        param = make_param(rec, shape, gens, device, amp, spectrum)
        sub_t = torch.as_tensor(sub, dtype=torch.long)

        def ev(x, idx, _sub=sub_t):
            return evaluate(x, _sub[idx.cpu()])

        def ev_clean(x, idx, _sub=sub_t):
            return evaluate_clean(x, _sub[idx.cpu()])

        run = optimize.ascend(param, ev, transform, gens, rec, steps, lr, progress, affine)
        with torch.no_grad():
            imgs = deprocess(param.picture().detach(), rec["deprocess"])
            clean = ev_clean(imgs, torch.arange(len(sub))).double().cpu().numpy()
            snaps = {k: deprocess(v, rec["deprocess"]) for k, v in run.snapshots.items()}
        dead = run.dead(float(rec["dead_tol"]))
        alpha = None if run.transparency is None else param.to_picture(run.transparency[:, None])[:, 0]
        if best is None:
            best = {
                "images": imgs.clone(), "clean": clean.copy(), "initial": run.history[0].copy(),
                "steps": run.steps_done.copy(), "converged": run.converged.copy(),
                "nonfinite": run.nonfinite.copy(), "dead": dead.copy(),
                "attempts": np.ones(n, dtype=np.int64), "attempt": np.zeros(n, dtype=np.int64),
                "snapshots": {k: v.clone() for k, v in snaps.items()},
                "history": run.history.copy(),
                "transparency": alpha,
            }
            continue
        for j, i in enumerate(sub):
            best["attempts"][i] += 1
            c_new = clean[j] if np.isfinite(clean[j]) else -np.inf
            c_old = best["clean"][i] if np.isfinite(best["clean"][i]) else -np.inf
            better = (best["dead"][i] and not dead[j]) or (best["dead"][i] == dead[j] and c_new > c_old)
            if not better:
                continue
            best["images"][i] = imgs[j]
            best["clean"][i] = clean[j]
            best["initial"][i] = run.history[0, j]
            best["steps"][i] = run.steps_done[j]
            best["converged"][i] = run.converged[j]
            best["nonfinite"][i] = run.nonfinite[j]
            best["dead"][i] = dead[j]
            best["attempt"][i] = attempt
            best["history"][:, i] = run.history[:, j]
            if alpha is not None:
                best["transparency"][i] = alpha[j]
            for k in best["snapshots"]:
                if k in snaps:
                    best["snapshots"][k][i] = snaps[k][j]
    return best
