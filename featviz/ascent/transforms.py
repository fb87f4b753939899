"""Differentiable random transforms applied to the image before the forward
pass ("transformation robustness").  Each batch element draws its own random
parameters from its own generator; the output always has the input's size
(padding is cropped back at the centre), so fixed-size nets with dense layers
work.  Specs are dicts: ``{"type": "pad", "pad": 12, "value": 0.5}``,
``{"type": "jitter", "d": 4}`` (integer shift in [-d, d]),
``{"type": "scale", "choices": [...]}`` or ``{"type": "scale", "range": [lo, hi]}``,
``{"type": "rotate", "choices": [...degrees]}`` or ``"range"``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .recipes import RecipeError

PRESETS = {
    "none": [],
    # Lucid standard_transforms: pad(12, constant 0.5), jitter(8), random_scale
    # [1+(i-5)/50 for i in range(11)], random_rotate(range(-10, 11) + 5*[0]),
    # jitter(4).  Lucid's crop-jitter(d) moves by one of d+1 offsets; with a
    # size-preserving shift that is +-d/2.
    "lucid": [
        {"type": "pad", "pad": 12, "value": 0.5},
        {"type": "jitter", "d": 4},
        {"type": "scale", "choices": [1 + (i - 5) / 50.0 for i in range(11)]},
        {"type": "rotate", "choices": list(range(-10, 11)) + 5 * [0]},
        {"type": "jitter", "d": 2},
    ],
    # Seed 001 (Keras project, MNIST): jitter 1, rotate +-0.05, scale +-0.01.
    "keras-project": [
        {"type": "jitter", "d": 1},
        {"type": "rotate", "range": [-0.05, 0.05]},
        {"type": "scale", "range": [0.99, 1.01]},
    ],
    # The Google values seed 001 started from: jitter 1 px, rotate +-5 deg, scale 1.1.
    "google": [
        {"type": "jitter", "d": 1},
        {"type": "rotate", "range": [-5.0, 5.0]},
        {"type": "scale", "range": [1 / 1.1, 1.1]},
    ],
}

# Used by the robustness metric.
ROBUSTNESS = [{"type": "jitter", "d": 2}, {"type": "rotate", "range": [-10.0, 10.0]}]


def _width(spec) -> int:
    """How many uniform numbers a spec draws per element: two for a jitter, one for a scale or rotation."""
    if spec["type"] == "jitter":
        return 2 if int(spec["d"]) > 0 else 0
    return 1 if spec["type"] in ("scale", "rotate") else 0


def draw(specs, gens) -> list:
    """Every spec's random parameters, per element, from ONE call on that element's own generator
    (k uniforms in [0, 1), k the specs' widths summed: one call per element and step instead of one
    per spec). Per spec: an (n, 2) array of integer (row, column) offsets in [0, 2d] for a jitter, an
    (n,) array of scales or angles (degrees), None for a pad."""
    widths = [_width(s) for s in specs]
    k, n = sum(widths), len(gens)
    u = np.array([torch.rand(k, generator=g, dtype=torch.float64).tolist() for g in gens] if k else [])
    u = u.reshape(n, k)
    out, col = [], 0
    for s, w in zip(specs, widths):
        v, col = u[:, col:col + w], col + w
        if s["type"] == "jitter":
            span = 2 * int(s["d"]) + 1
            out.append(np.minimum(v * span, span - 1).astype(np.int64) if w else np.zeros((n, 2), np.int64))
        elif s["type"] in ("scale", "rotate"):
            if "choices" in s:
                ch = np.asarray(s["choices"], dtype=np.float64)
                out.append(ch[np.minimum(v[:, 0] * len(ch), len(ch) - 1).astype(np.int64)])
            else:
                lo, hi = (float(b) for b in s["range"])
                out.append(lo + (hi - lo) * v[:, 0])
        else:
            out.append(None)
    return out


class Compose:
    def __init__(self, specs, out_hw, strength: float = 1.0):
        self.specs = [dict(s) for s in specs]
        self.out_hw = tuple(out_hw)
        self.strength = float(strength)  # every call's strength is multiplied by this
        for s in self.specs:
            if s.get("type") not in ("pad", "jitter", "scale", "rotate"):
                raise RecipeError(f"unknown transform {s!r} (known types: pad, jitter, scale, rotate)")
            if s["type"] in ("scale", "rotate") and not ("choices" in s or "range" in s):
                raise RecipeError(f"transform {s!r} needs 'choices' or 'range'")

    crops = 1  # images out per image in

    def __bool__(self):
        return bool(self.specs)

    def __call__(self, x: torch.Tensor, gens, strength: float = 1.0, t: int = 0, steps: int = 1) -> torch.Tensor:
        """``strength`` < 1 (the recipe's ``transforms_fade``) shrinks every shift, angle and
        log-scale towards the identity; the same random numbers are drawn whatever it is. (``t`` and
        ``steps``, the step and the step count, are for `Crops`' schedule.)"""
        if not self.specs:
            return x
        strength = strength * self.strength
        if self._fusable():
            return self.fused(x, gens, strength)
        if strength != 1.0:
            raise RecipeError("transforms_fade needs transforms that pad with the gray 0.5 (one affine map)")
        return self.stepwise(x, gens)

    def _fusable(self) -> bool:
        """Every step pads with the same 0.5 the final centre fit uses: one resampling does it all."""
        return all(float(s.get("value", 0.5)) == 0.5 for s in self.specs)

    def fused(self, x: torch.Tensor, gens, strength: float = 1.0) -> torch.Tensor:
        """The whole pipeline as one bilinear resampling of the input (one pass forward and one
        backward instead of one per step): pad, integer jitters, scale and rotation and the centre
        fit compose into one affine map per element, drawn from the same random numbers in the same
        order as `stepwise`. The one difference: content an intermediate step would have pushed off
        its canvas and a later step brought back is kept (with Lucid's 12 px pad first, never)."""
        n, _, h0, w0 = x.shape
        draws = draw(self.specs, gens)  # the same random numbers stepwise draws
        if strength <= 0.0:
            return x  # the identity, exactly (the draws above keep the generators in step)
        # canvas size after each step (pad grows it; the rest keep it), then the centre fit's offset
        h, w = h0, w0
        for s in self.specs:
            if s["type"] == "pad":
                h, w = h + 2 * int(s["pad"]), w + 2 * int(s["pad"])
        oh, ow = self.out_hw
        # output pixel (centred coordinates, x then y) -> input pixel: u_in = m @ u_out + t, per
        # element, composed from the last step back to the first
        m = np.broadcast_to(np.eye(2), (n, 2, 2)).copy()
        t = np.tile([_fit_offset(w, ow), _fit_offset(h, oh)], (n, 1)) * strength
        for s, dr in zip(reversed(self.specs), reversed(draws)):
            if s["type"] == "jitter":
                oyx = (dr - int(s["d"])) * strength  # (n, 2): rows, cols
                t = t + oyx[:, ::-1]
            elif s["type"] in ("scale", "rotate"):
                v = dr
                sc, ang = ((v ** strength, np.zeros(n)) if s["type"] == "scale"
                           else (np.ones(n), np.radians(v * strength)))
                c, sn = np.cos(ang) / sc, np.sin(ang) / sc
                r = np.stack([np.stack([c, sn], 1), np.stack([-sn, c], 1)], 1)  # (n, 2, 2)
                m, t = r @ m, (r @ t[:, :, None])[:, :, 0]
        dn_in = np.array([2.0 / w0, 2.0 / h0])
        dn_out = np.array([ow / 2.0, oh / 2.0])
        theta = np.concatenate([dn_in[None, :, None] * m * dn_out[None, None, :], (dn_in * t)[:, :, None]], 2)
        theta = torch.from_numpy(theta).to(dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta, [n, x.shape[1], oh, ow], align_corners=False)
        return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5

    def stepwise(self, x: torch.Tensor, gens) -> torch.Tensor:
        """The pipeline one step at a time (the reference `fused` is tested against)."""
        draws = draw(self.specs, gens)
        i = 0
        while i < len(self.specs):
            s = self.specs[i]
            if s["type"] == "pad":
                p = int(s["pad"])
                x = F.pad(x, (p, p, p, p), mode="constant", value=float(s.get("value", 0.5)))
            elif s["type"] == "jitter":
                x = _jitter(x, int(s["d"]), draws[i], float(s.get("value", 0.5)))
            else:  # consecutive scale/rotate specs fuse into one resampling
                scales = np.ones(len(gens))
                angles = np.zeros(len(gens))
                while i < len(self.specs) and self.specs[i]["type"] in ("scale", "rotate"):
                    s = self.specs[i]
                    if s["type"] == "scale":
                        scales = scales * draws[i]
                    else:
                        angles = angles + draws[i]
                    i += 1
                x = _affine(x, scales.tolist(), angles.tolist(), float(s.get("value", 0.5)))
                continue
            i += 1
        return _center_fit(x, self.out_hw, 0.5)


def _fit_offset(size: int, out: int) -> float:
    """Centred-coordinate shift of `_center_fit` from a canvas of `size` to `out` pixels."""
    if size >= out:
        return (size - out) // 2 - (size - out) / 2
    pad = out - size
    return pad / 2 - pad // 2


def _jitter(x, d, offsets, value):
    """Shift element k by its own (oy, ox) = ``offsets[k]`` in [0, 2d]² of the padded image: one gather
    for the whole batch (per-element slices cost a full-batch gradient each in backward)."""
    if d <= 0:
        return x
    h, w = x.shape[-2:]
    xp = F.pad(x, (d, d, d, d), mode="constant", value=value)
    offsets = torch.as_tensor(np.asarray(offsets), dtype=torch.long, device=x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (N, h)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (N, w)
    batch = torch.arange(len(offsets), device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return xp[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, h, w)


def _affine(x, scales, angles, value):
    n, _, h, w = x.shape
    rows = []
    for s, a in zip(scales, angles):
        c, sn = math.cos(math.radians(a)), math.sin(math.radians(a))
        rows.append([c / s, sn * h / w / s, 0.0, -sn * w / h / s, c / s, 0.0])
    theta = torch.tensor(rows, dtype=x.dtype).view(n, 2, 3)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x - value, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + value


def _center_fit(x, out_hw, value):
    h, w = x.shape[-2:]
    oh, ow = out_hw
    if (h, w) == (oh, ow):
        return x
    if h < oh or w < ow:
        ph, pw = max(0, oh - h), max(0, ow - w)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="constant", value=value)
        h, w = x.shape[-2:]
    y0, x0 = (h - oh) // 2, (w - ow) // 2
    return x[..., y0:y0 + oh, x0:x0 + ow]


class Crops:
    """MACO's transforms (Xplique's `maco_optimisation_step`): `count` random crops of the canvas per
    element and step, each resampled (bilinear) to the network's input, plus noise. At step t of T the
    crops' mean side is `start` + (`end` - `start`) t / (T - 1) of the canvas's (a box falling linearly
    from half the canvas to a twentieth with Xplique's values); each crop's side is that + N(0, size_sd²),
    clipped to [`min_size`, 1]; its centre is 0.5 + N(0, center_sd²) of the canvas on each axis (outside
    the canvas: gray). Noise N(0, noise²) + U(-noise/2, noise/2) is added to every crop. Each element
    draws from its own generator: a batch gives what separate runs give. The output holds the crops of
    element 0 first, then those of element 1, ... (`count` per element).

    Strength s < 1 (`transforms_size`, `transforms_fade`) shrinks all of it towards the identity, the
    picture itself (the central `view` of the canvas, no noise): mean side view + (box - view) s, the
    spreads and the noise times s; the same random numbers are drawn whatever s is."""

    def __init__(self, out_hw, count=32, start=0.5, end=0.05, size_sd=0.05, min_size=0.05, center_sd=0.15,
                 noise=0.04, view=1.0, strength=1.0):
        self.out_hw = tuple(int(v) for v in out_hw)
        self.crops = int(count)
        self.start, self.end, self.size_sd, self.min_size = float(start), float(end), float(size_sd), float(min_size)
        self.center_sd, self.noise, self.view, self.strength = float(center_sd), float(noise), float(view), float(strength)

    def __bool__(self):
        return True

    def box(self, t: int, steps: int) -> float:
        """The crops' mean side at step t of `steps` (np.linspace(start, end, steps)[t])."""
        return self.start if steps <= 1 else self.start + (self.end - self.start) * t / (steps - 1)

    def draw(self, gens, t: int, steps: int, strength: float = 1.0):
        """Per element, from its own generator: centres (n, k, 2) as (x, y), sides (n, k), a noise seed."""
        k, s, view = self.crops, strength, self.view
        box, lo = view + (self.box(t, steps) - view) * s, view + (self.min_size - view) * s
        centres, sides, seeds = [], [], []
        for g in gens:
            z = torch.randn(3 * k, generator=g, dtype=torch.float64)
            centres.append(0.5 + self.center_sd * s * z[:2 * k].view(k, 2))
            sides.append((box + self.size_sd * s * z[2 * k:]).clamp(min(lo, box), 1.0))
            seeds.append(int(torch.randint(0, 2 ** 62, (1,), generator=g)))
        return torch.stack(centres), torch.stack(sides), seeds

    def __call__(self, x: torch.Tensor, gens, strength: float = 1.0, t: int = 0, steps: int = 1) -> torch.Tensor:
        n, c = x.shape[:2]
        k, (oh, ow) = self.crops, self.out_hw
        strength = strength * self.strength
        centres, sides, seeds = self.draw(gens, t, steps, strength)
        dev, dt = x.device, x.dtype
        # grid_sample coordinates (align_corners=False): the canvas spans [-1, 1]; a crop of side s
        # (a fraction of the canvas) centred at c spans 2c - 1 +- s. Every element's k crops are
        # stacked along the grid's rows: one resampling of the canvas itself, no copy per crop
        u = (2 * torch.arange(ow, dtype=torch.float64) + 1) / ow - 1
        v = (2 * torch.arange(oh, dtype=torch.float64) + 1) / oh - 1
        s = sides[:, :, None, None]
        gx = (2 * centres[:, :, 0, None, None] - 1) + s * u[None, None, None, :]
        gy = (2 * centres[:, :, 1, None, None] - 1) + s * v[None, None, :, None]
        grid = torch.stack(torch.broadcast_tensors(gx, gy), -1).reshape(n, k * oh, ow, 2).to(device=dev, dtype=dt)
        out = F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
        out = out.view(n, c, k, oh, ow).transpose(1, 2).reshape(n * k, c, oh, ow)
        if self.noise * strength > 0:
            noise, amount = [], self.noise * strength
            g = torch.Generator(device=dev)
            for seed in seeds:
                g.manual_seed(seed)
                noise.append(torch.randn((k, c, oh, ow), generator=g, device=dev, dtype=dt) * amount
                             + (torch.rand((k, c, oh, ow), generator=g, device=dev, dtype=dt) - 0.5) * amount)
            out = out + torch.cat(noise)
        return out


def build(recipe: dict, out_hw):
    """The transform pipeline of a recipe: ``jitter`` (if > 0) then ``transforms``; or MACO's
    `Crops` (``transforms: maco``)."""
    t = recipe["transforms"]
    if recipe["param"] == "maco" and t != "maco" and recipe["canvas_scale"] != 1:
        raise RecipeError(f"param 'maco' with canvas_scale {recipe['canvas_scale']} needs transforms 'maco' (its "
                          f"crops bring the canvas to the input's size); set canvas_scale: 1 for other transforms")
    if t == "maco":
        for key, off in (("jitter", 0), ("diversity", 0.0)):
            if recipe[key] != off:
                raise RecipeError(f"{key} does not go with transforms 'maco' (random crops; set {key}: {off})")
        return Crops(out_hw, recipe["crops"], recipe["crop_start"], recipe["crop_end"], recipe["crop_size_sd"],
                     recipe["crop_min"], recipe["crop_center_sd"], recipe["noise"], recipe["canvas_view"],
                     size_strength(recipe, out_hw))
    if isinstance(t, str):
        if t not in PRESETS:
            raise RecipeError(f"unknown transforms preset {t!r} (known: {', '.join(sorted([*PRESETS, 'maco']))})")
        specs = list(PRESETS[t])
    else:
        specs = list(t)
    if recipe["jitter"] > 0:
        specs = [{"type": "jitter", "d": int(recipe["jitter"])}] + specs
    compose = Compose(specs, out_hw, strength=size_strength(recipe, out_hw))
    for key in ("transforms_fade", "transforms_size"):
        if recipe[key] and compose and not compose._fusable():
            raise RecipeError(f"{key} needs transforms that pad with the gray 0.5 (one affine map)")
    return compose


def size_strength(recipe: dict, out_hw) -> float:
    """The strength `transforms_size` gives the transforms at this input size: input / size below it."""
    size = int(recipe["transforms_size"])
    return min(1.0, min(out_hw) / size) if size else 1.0


def fade_strength(t: int, steps: int, fade: float) -> float:
    """The transforms' strength at step t (0-based): 1 until the last ``fade`` fraction of the steps,
    then linearly down to 0 at the last step."""
    n = int(round(fade * steps))
    if n <= 0:
        return 1.0
    start = steps - n
    return 1.0 if t < start else (steps - 1 - t) / n
