"""The gradient-ascent loop: step rules, lr schedules, convergence, early stop,
NaN/Inf guard, dead-unit detection and log-spaced snapshots.

Everything that depends on a batch element is computed from that element's
own gradient / objective, so a batch of N units behaves like N separate runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from . import regularizers
from .transforms import fade_strength


def snapshot_steps(steps: int, levels: int) -> list[int]:
    """Seed 002: step 0, n_el * 2**j for j < levels with n_el = steps // 2**levels
    (at least 1), and the last step."""
    if levels <= 0:
        return []
    n_el = max(1, steps // 2 ** levels)
    s = {0, steps - 1} | {n_el * 2 ** j for j in range(levels)}
    return sorted(v for v in s if v < steps)


def lr_factor(schedule: str, t: int, steps: int, final: float) -> float:
    if schedule == "constant" or steps <= 1:
        return 1.0
    f = t / (steps - 1)
    if schedule == "linear":
        return 1.0 + (final - 1.0) * f
    if schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * f))
    if schedule == "exp":
        return max(final, 1e-12) ** f
    raise ValueError(schedule)


def _bcast(v, like):
    return v.view((-1,) + (1,) * (like.dim() - 1))


class StepRule:
    """grad/std (seed 000), grad/RMS (seeds 001, 002), plain grad (003), Adam (Lucid), NAdam (MACO)."""

    def __init__(self, recipe, shape, device):
        self.rule = recipe["step"]
        self.eps = float(recipe["step_eps"])
        if self.rule in ("adam", "nadam"):
            self.b1, self.b2 = (float(b) for b in recipe["adam_betas"])
            self.aeps = float(recipe["adam_eps"])
            self.m = torch.zeros(shape, device=device)
            self.v = torch.zeros(shape, device=device)
            self.t = torch.zeros(shape[0], device=device)
        if self.rule == "nadam":
            self.psi = float(recipe["nadam_momentum_decay"])
            self.mu_prod = torch.ones(shape[0], device=device)

    def __call__(self, g, idx, lr):
        if self.rule == "std":  # population std like numpy's grad.std()
            f = g.flatten(1)
            std = (f - f.mean(1, keepdim=True)).pow(2).mean(1).sqrt()
            return lr * g / _bcast(std + self.eps, g)
        if self.rule == "rms":
            return lr * g / _bcast(g.flatten(1).pow(2).mean(1).sqrt() + self.eps, g)
        if self.rule == "grad":
            return lr * g
        if self.rule == "nadam":
            return self._nadam(g, idx, lr)
        m = self.b1 * self.m[idx] + (1 - self.b1) * g
        v = self.b2 * self.v[idx] + (1 - self.b2) * g * g
        t = self.t[idx] + 1
        self.m[idx], self.v[idx], self.t[idx] = m, v, t
        mhat = m / _bcast(1 - self.b1 ** t, g)
        vhat = v / _bcast(1 - self.b2 ** t, g)
        return lr * mhat / (vhat.sqrt() + self.aeps)

    def _nadam(self, g, idx, lr):
        """NAdam (Dozat 2016) as torch.optim.NAdam and Keras' Nadam compute it, per batch element:
        mu_t = b1 (1 - 0.5 * 0.96**(t psi)); m-hat = mu_{t+1} m_t / (1 - prod mu_1..t+1)
        + (1 - mu_t) g / (1 - prod mu_1..t); v-hat = v_t / (1 - b2**t); step lr * m-hat / (sqrt(v-hat) + eps)."""
        m = self.b1 * self.m[idx] + (1 - self.b1) * g
        v = self.b2 * self.v[idx] + (1 - self.b2) * g * g
        t = self.t[idx] + 1
        self.m[idx], self.v[idx], self.t[idx] = m, v, t
        mu = self.b1 * (1 - 0.5 * 0.96 ** (t * self.psi))
        mu_next = self.b1 * (1 - 0.5 * 0.96 ** ((t + 1) * self.psi))
        prod = self.mu_prod[idx] * mu
        self.mu_prod[idx] = prod
        c1 = mu_next / (1 - prod * mu_next)
        c2 = (1 - mu) / (1 - prod)
        vhat = v / _bcast(1 - self.b2 ** t, g)
        mhat = _bcast(c1, g) * m + _bcast(c2, g) * g
        return lr * mhat / (vhat.sqrt() + self.aeps)


@dataclass
class AscentRun:
    history: np.ndarray            # (steps, N) objective before each step, nan when frozen
    steps_done: np.ndarray         # (N,) int
    converged: np.ndarray          # (N,) bool
    nonfinite: np.ndarray          # (N,) bool
    zero_stopped: np.ndarray       # (N,) bool: stopped after dead_patience zero steps
    snapshots: dict = field(default_factory=dict)  # step -> tensor (N, C, H, W)
    transparency: torch.Tensor | None = None  # (N, h, w) accumulated |d objective / d image|, channel mean

    def dead(self, tol: float) -> np.ndarray:
        """Objective never left ~0, or never rose above its initial value."""
        h = self.history
        out = np.zeros(h.shape[1], dtype=bool)
        for i in range(h.shape[1]):
            col = h[:, i][np.isfinite(h[:, i])]
            if col.size == 0:
                out[i] = True
                continue
            never_moved = np.max(np.abs(col)) <= tol
            never_rose = col.size > 1 and np.max(col[1:]) <= col[0]
            out[i] = bool(never_moved or never_rose or self.zero_stopped[i])
        return out


def ascend(param, evaluate, transform, gens, recipe, steps, lr, progress=False, input_affine=None) -> AscentRun:
    """Run the ascent loop on ``param`` (a PixelParam/FourierParam).

    ``evaluate(x, idx)`` maps transformed images of the batch elements ``idx``
    to their objective values (shape ``(len(idx),)``). ``input_affine``: the network's input
    normalization as per-channel (a, b), for ``standardize_space: input``.
    """
    p = param.tensor
    n = p.shape[0]
    dev = p.device
    rule = StepRule(recipe, tuple(p.shape), dev)
    active = torch.ones(n, dtype=torch.bool)
    history = np.full((steps, n), np.nan, dtype=np.float64)
    steps_done = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    nonfinite = np.zeros(n, dtype=bool)
    zero_stopped = np.zeros(n, dtype=bool)
    conv_count = np.zeros(n, dtype=np.int64)
    zero_count = np.zeros(n, dtype=np.int64)
    prev = np.full(n, np.nan)
    last_good = p.detach().clone()
    snap_at = set(snapshot_steps(steps, recipe["snapshots"]))
    snaps = {}
    crops = int(getattr(transform, "crops", 1))
    keep_alpha = bool(recipe["transparency"])
    alpha = None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc="ascent", leave=False)
    tol, dead_tol = float(recipe["conv_tol"]), float(recipe["dead_tol"])
    t = -1
    for t in range(steps):
        idx_cpu = active.nonzero().squeeze(1)
        if idx_cpu.numel() == 0:
            break
        full = bool(active.all())
        idx = idx_cpu.to(dev)
        x = param.image(None if full else idx)
        strength = fade_strength(t, steps, recipe["transforms_fade"])
        seen = transform(x, [gens[i] for i in idx_cpu.tolist()], strength, t, steps)
        if crops > 1:  # each element's crops are consecutive: their mean objective is the element's
            obj = evaluate(seen, idx_cpu.repeat_interleave(crops)).view(-1, crops).mean(1)
        else:
            obj = evaluate(seen, idx_cpu)
        loss = obj
        pen = regularizers.penalty(x, recipe)
        if pen is not None:
            loss = loss - pen
        if keep_alpha:  # MACO's transparency: the accumulated |gradient| of the image itself
            grad, gx = torch.autograd.grad(loss.sum(), [p, x])
            with torch.no_grad():
                if alpha is None:
                    alpha = torch.zeros((n,) + tuple(gx.shape[2:]), device=dev)
                alpha[idx] += gx.abs().mean(1)
        else:
            (grad,) = torch.autograd.grad(loss.sum(), p)
        last = t == steps - 1
        with torch.no_grad():
            g = grad if full else grad[idx]
            o = obj.detach().double().cpu().numpy()
            ids = idx_cpu.numpy()
            history[t, ids] = o
            gflat = g.flatten(1)
            bad = ~(torch.isfinite(obj.detach()) & torch.isfinite(gflat).all(1))
            zero = (obj.detach().abs() <= dead_tol) & (gflat.abs().amax(1) == 0)
            if bool(bad.any()):
                g = torch.where(_bcast(bad, g), torch.zeros_like(g), g)
            cur = p if full else p[idx]
            # last_good: the latest parameters whose objective was finite
            last_good[idx] = torch.where(_bcast(bad, cur), last_good[idx], cur)
            lr_t = lr * lr_factor(recipe["lr_schedule"], t, steps, float(recipe["lr_final"]))
            new = cur + rule(g, idx, lr_t)
            if param.is_pixel:
                new = regularizers.project(new, g, t, recipe, last=last, input_affine=input_affine)
            bad |= ~torch.isfinite(new.flatten(1)).all(1)
            p[idx] = torch.where(_bcast(bad, new), last_good[idx], new)
            bad_np, zero_np = bad.cpu().numpy(), zero.cpu().numpy()
            steps_done[ids[~bad_np]] += 1
            nonfinite[ids[bad_np]] = True
            # convergence (seed 002): relative improvement below tol on
            # conv_patience successive steps after conv_min_steps
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                rel = (o - prev[ids]) / (np.abs(o) + 1e-7)
            meets = (t > recipe["conv_min_steps"]) & np.isfinite(rel) & (rel < tol)
            conv_count[ids] = np.where(meets, conv_count[ids] + 1, 0)
            converged[ids] |= conv_count[ids] >= recipe["conv_patience"]
            prev[ids] = o
            zero_count[ids] = np.where(zero_np, zero_count[ids] + 1, 0)
            zero_stopped[ids] |= zero_count[ids] >= recipe["dead_patience"]
            stop = bad_np | zero_stopped[ids]
            if recipe["early_stop"]:
                stop |= converged[ids]
            active[torch.as_tensor(ids[stop], dtype=torch.long)] = False
            if t in snap_at:
                snaps[t] = param.picture().detach().clone()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if snap_at:
        with torch.no_grad():
            final = param.picture().detach().clone()
        for s in snap_at:
            snaps.setdefault(s, final)
    return AscentRun(history, steps_done, converged, nonfinite, zero_stopped, snaps, alpha)
