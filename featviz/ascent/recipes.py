"""Named hyper-parameter presets ("recipes") for activation maximization.

Every recipe is a complete, flat dict over :data:`PARAMS`; ``get_recipe`` returns
a resolved copy with overrides applied and validated.  All values are expressed
in the engine's [0, 1] *pixel* space (the seeds worked in [0, 255] or in
mean-subtracted space; the conversions are written next to each value).
"""
from __future__ import annotations

import copy
import math

__all__ = ["PARAMS", "RECIPES", "Range", "RecipeError", "check_overrides", "get_recipe", "list_recipes"]


class RecipeError(ValueError):
    """Unknown recipe, unknown override key, or a value of the wrong type/range."""


class Range:
    """The numbers a recipe parameter accepts: `lo`..`hi` (None = unbounded), each end open or
    closed; `odd`: only odd integers (and 0 where `zero` is allowed: "off"). `in` tests a value."""

    def __init__(self, lo=None, hi=None, lo_open=False, hi_open=False, zero=False, odd=False):
        self.lo, self.hi, self.lo_open, self.hi_open, self.zero, self.odd = lo, hi, lo_open, hi_open, zero, odd

    def __contains__(self, v) -> bool:
        if self.zero and v == 0:
            return True
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return not (self.odd and v % 2 == 0)

    def __str__(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi}")
        text = " and ".join(parts) or "finite"
        if self.odd:
            text = f"odd and {text}"
        return f"0 (off) or {text}" if self.zero else text


ANY = Range()
NONNEG = Range(0)
POS = Range(0, lo_open=True)
AT_LEAST_1 = Range(1)
UNIT = Range(0, 1)
PCT = Range(0, 100)

_NUM = (int, float)
_LIST = (list, tuple)
_OPT_NUM = (int, float, type(None))
_OPT_LIST = (list, tuple, type(None))

# name -> (accepted types, allowed values: a tuple of choices or a Range (for a list: of its items),
#          default, one-line doc)
PARAMS: dict[str, tuple] = {
    # parameterization / initialisation
    "param": (str, ("pixel", "fourier", "maco"), "pixel",
              "image parameterization (maco: fixed Fourier magnitude, optimized phase; Fel et al. 2023)"),
    "init": (str, ("uniform", "normal", "multiscale"), "uniform", "pixel init family"),
    "init_offset": (_NUM, ANY, 0.45, "uniform: offset+scale*U[0,1); normal: offset+scale*N(0,1)"),
    "init_scale": (_NUM, NONNEG, 0.1, "amplitude of the init noise"),
    "init_scales": (_LIST, AT_LEAST_1, [3, 7, 14, 28], "multiscale: grid sizes upsampled bicubically"),
    "init_weights": (_LIST, ANY, [0.5, 0.5, 0.5, 0.5], "multiscale: weight per grid size"),
    "fourier_sd": (_NUM, NONNEG, 0.01, "fourier: std of the initial spectrum"),
    "fourier_decay": (_NUM, NONNEG, 1.0, "fourier: spectral decay power (1/f**decay)"),
    "decorrelate": (bool, None, True, "fourier: decorrelated colour space for RGB"),
    "sigmoid": (bool, None, True, "fourier: sigmoid to [0,1] (else clamp-like mapping)"),
    "canvas_scale": (_NUM, Range(1, 16), 1.0,
                     "maco: the optimized canvas is this many times the input's size (Xplique maco(): "
                     "custom_shape 512 for a 224 px input)"),
    "canvas_view": (_NUM, Range(0, 1, lo_open=True), 1.0,
                    "maco: the picture is this central fraction of the canvas, resampled to the input "
                    "(1 = the whole canvas, as Xplique's maco() returns it)"),
    # optimisation
    "step": (str, ("std", "rms", "grad", "adam", "nadam"), "std", "step rule"),
    "lr": (_NUM, POS, 1.0, "step size for conv/dense units"),
    "class_lr": (_OPT_NUM, POS, None, "step size for class units (None = lr)"),
    "step_eps": (_NUM, POS, 1e-8, "epsilon of the std/rms normalisation"),
    "adam_betas": (_LIST, Range(0, 1, hi_open=True), [0.9, 0.999], "adam betas"),
    "adam_eps": (_NUM, POS, 1e-8, "adam / nadam epsilon"),
    "nadam_momentum_decay": (_NUM, NONNEG, 0.004,
                             "nadam: momentum schedule mu_t = b1 (1 - 0.5 * 0.96**(t * this)) (Keras and "
                             "torch NAdam's 0.004)"),
    "lr_schedule": (str, ("constant", "linear", "cosine", "exp"), "constant", "lr schedule"),
    "lr_final": (_NUM, NONNEG, 0.1, "lr multiplier reached at the last step (non-constant)"),
    "steps": (int, AT_LEAST_1, 30, "iterations for conv/dense units"),
    "class_steps": ((int, type(None)), AT_LEAST_1, None, "iterations for class units (None = steps)"),
    # objective
    "conv_objective": (str, ("channel", "neuron"), "channel", "conv units: channel or one neuron"),
    "conv_reduce": (str, ("mean", "sum"), "mean", "channel objective reduction"),
    "rectify": (bool, None, False, "conv/dense objective on max(0, unit): the unit after a ReLU (Keras layers)"),
    "neuron_pos": (_OPT_LIST, NONNEG, None, "neuron (y, x); None = centre"),
    "diversity": (_NUM, NONNEG, 0.0, "weight of Lucid's diversity term (couples the batch)"),
    # transforms (differentiable, per batch element)
    "transforms": ((str, list, tuple), None, "none", "preset name or list of transform dicts"),
    "jitter": (int, NONNEG, 0, "extra random translation of +-jitter px each step"),
    "transforms_size": (int, NONNEG, 0,
                        "input size the transforms' pixel values are meant for: a smaller input shrinks them in "
                        "proportion (0 = never)"),
    "transforms_fade": (_NUM, UNIT, 0.0,
                        "last fraction of the steps over which the transforms shrink linearly to none"),
    # transforms preset "maco" (Xplique maco_optimisation_step): random crops and noise
    "crops": (int, AT_LEAST_1, 32, "maco: random crops per unit and step, their objectives averaged "
                                   "(Xplique maco(): nb_crops 32)"),
    "crop_start": (_NUM, Range(0, 1, lo_open=True), 0.5,
                   "maco: mean crop side at the first step, as a fraction of the canvas's (Xplique: 0.5)"),
    "crop_end": (_NUM, Range(0, 1, lo_open=True), 0.05,
                 "maco: mean crop side at the last step; linear in between (Xplique: 0.05)"),
    "crop_size_sd": (_NUM, NONNEG, 0.05, "maco: std of each crop's side around the mean (Xplique: 0.05)"),
    "crop_min": (_NUM, Range(0, 1, lo_open=True), 0.05,
                 "maco: crop sides are clipped to [crop_min, 1] (Xplique: 0.05)"),
    "crop_center_sd": (_NUM, NONNEG, 0.15,
                       "maco: crop centres are 0.5 + N(0, sd**2) of the canvas (Xplique and Horama: 0.15)"),
    "noise": (_NUM, NONNEG, 0.04,
              "maco: noise N(0, noise**2) + U(-noise/2, noise/2) added to each crop, in [0,1] pixels "
              "(Xplique: noise_intensity 0.08 on its (-1, 1) values_range = 0.04)"),
    "transparency": (bool, None, False,
                     "keep each unit's accumulated |gradient| of the image, its transparency map (MACO)"),
    # regularizers
    "clamp": (bool, None, True, "clamp pixels to [0,1] after each step"),
    "center": (_NUM, UNIT, 0.5, "gray level that decay / clipping pull towards"),
    "decay": (_NUM, Range(0, 1, hi_open=True), 0.0, "L2 decay: x <- center + (1-decay)(x-center) each step"),
    "blur_sigma": (_NUM, NONNEG, 0.0, "Gaussian blur sigma (0 = off)"),
    "blur_every": (int, AT_LEAST_1, 1, "blur every N steps"),
    "blur_ksize": (int, Range(1, zero=True, odd=True), 0, "blur kernel size (0 = 2*int(4*sigma+0.5)+1)"),
    "median_size": (int, Range(1, zero=True, odd=True), 0, "median filter size (0 = off)"),
    "median_every": (int, AT_LEAST_1, 1, "median filter every N steps"),
    "clip_norm_pct": (_NUM, PCT, 0.0, "clip pixels whose norm is below this percentile"),
    "clip_contrib_pct": (_NUM, PCT, 0.0, "clip pixels whose contribution is below this pct"),
    "standardize": (bool, None, False, "per-step per-image standardization"),
    "standardize_mean": (_NUM, UNIT, 0.5, "pixel mean after standardization"),
    "standardize_std": (_NUM, POS, 0.2, "pixel std after standardization"),
    "standardize_space": (str, ("pixel", "input"), "pixel",
                          "pixel: to standardize_mean/std in [0,1] pixels; input: mean 0, std 1 in the network's input"),
    "tv_weight": (_NUM, NONNEG, 0.0, "total-variation penalty weight"),
    "lp_weight": (_NUM, NONNEG, 0.0, "Lp-norm penalty weight (on x-center)"),
    "lp_p": (_NUM, AT_LEAST_1, 6.0, "p of the Lp penalty"),
    "l2_weight": (_NUM, NONNEG, 0.0, "L2 penalty weight (on x-center)"),
    "final_unregularized": (bool, None, False, "last step: only clamp, no other regularizer"),
    "deprocess": (str, ("none", "chollet"), "none", "post-processing of the final image"),
    # convergence / robustness of the procedure
    "conv_tol": (_NUM, NONNEG, 5e-4, "converged when (obj_t-obj_t-1)/|obj_t| < tol"),
    "conv_min_steps": (int, NONNEG, 10, "no convergence test before this step"),
    "conv_patience": (int, AT_LEAST_1, 4, "successive steps meeting conv_tol"),
    "early_stop": (bool, None, False, "freeze a unit once converged"),
    "dead_tol": (_NUM, NONNEG, 1e-8, "|objective| at or below this counts as zero"),
    "dead_patience": (int, AT_LEAST_1, 10, "stop a unit after this many zero-objective/zero-grad steps"),
    "dead_retries": (int, NONNEG, 2, "re-inits tried for a dead unit"),
    "retry_noise_mult": (_NUM, POS, 2.0, "init amplitude multiplier per dead retry"),
    "restarts": (int, NONNEG, 0, "extra runs from other seeds; best objective kept"),
    "snapshots": (int, NONNEG, 7, "log2-spaced snapshot levels (0 = none)"),
    "robustness_samples": (int, NONNEG, 4, "random jitter/rotations for the robustness metric"),
}

_BASE = {k: v[2] for k, v in PARAMS.items()}


def _recipe(**kw):
    unknown = set(kw) - set(PARAMS)
    assert not unknown, unknown
    r = copy.deepcopy(_BASE)
    r.update(kw)
    return r


RECIPES: dict[str, dict] = {
    # Seed 000, Hvass-Labs TF tutorial #13-B (MNIST): image 0.1*uniform+0.45,
    # step = 1/(grad.std()+1e-8), clip to [0,1], optimize_image's default
    # num_iterations=30 for conv features and for the 10-class figure
    # (optimize_images(conv_id=None)); the seed's single-class demo passes 10.
    # Objective = mean of the conv output channel (pre-ReLU) or the logit.
    # Optional jitter via the "jitter" override (default 0 = seed).
    "hvass": _recipe(
        init="uniform", init_offset=0.45, init_scale=0.1,
        step="std", lr=1.0, step_eps=1e-8, steps=30, class_steps=30,
        clamp=True, transforms="none", jitter=0,
    ),
    # Seed 001, Keras part (Chollet, "How CNNs see the world"): gray image with
    # noise random()*20+128 in [0,255] -> 128/255 + 20/255*U; gradient divided by
    # its RMS (+1e-5); step 1 in [0,255] units -> 1/255; 40 steps; the result is
    # deprocessed (centre, std 0.1, +0.5, clip).  Objective: channel mean
    # (K.mean(layer_output[..., filter])); override conv_objective="neuron" for
    # the seed's single-neuron variant.
    "chollet": _recipe(
        init="uniform", init_offset=128 / 255, init_scale=20 / 255,
        step="rms", lr=1 / 255, step_eps=1e-5, steps=40, class_steps=40,
        deprocess="chollet",
    ),
    # Seed 001, regularized part (Yosinski et al. 2015 as used by the project):
    # start image np.zeros (the notebook's random*20+128 line is commented
    # out), each step blur 3x3 (cv2 default sigma 0.8), decay img*0.9 (towards
    # 0, so center=0 -> decay=0.1), clip pixels whose |value| is below a
    # percentile (to 0), 300 iterations, step 1 ([0,255]) on the RMS-normalised
    # gradient (gradient_ascent_iter's body is not in the seed: the notebook's
    # Keras part normalizes by RMS), plus the transformation robustness the
    # project settled on (jitter 1 px, rotate +-0.05 deg, scale +-0.01 = preset
    # "keras-project").  The seed's clip percentile is unusable (it passed the
    # gradient as the percentile); 50 is row 1 of Yosinski et al.'s Table 1.
    "yosinski": _recipe(
        init="uniform", init_offset=0.0, init_scale=0.0, center=0.0,
        step="rms", lr=1 / 255, step_eps=1e-5, steps=300, class_steps=300,
        decay=0.1, blur_sigma=0.8, blur_ksize=3, blur_every=1,
        clip_norm_pct=50.0, transforms="keras-project", deprocess="chollet",
    ),
    # Seed 003, F. Tence's Keras article (Google/Simonyan/Yosinski/Chollet): init
    # normal(0,10) in mean-subtracted [0,255] -> 0.5 + 10/255*N; classic gradient
    # ascent x += lr*grad; clipping every step; median filter 5x5 every 4 steps;
    # no regularization on the last iteration; 1000 iterations / lr 8000 for
    # classes, 200 iterations for filters (lr 10 = CaffeNet relu1, VGG relu3);
    # filter loss = K.sum(layer_output[:, k]) of a Keras Conv2D(activation='relu')
    # layer, i.e. after the ReLU -> rectify=True (the logit for classes).  lr in
    # [0,255] units converts to [0,1] pixel space as lr/255**2.
    "tence-median": _recipe(
        init="normal", init_offset=0.5, init_scale=10 / 255,
        step="grad", lr=10 / 255 ** 2, class_lr=8000 / 255 ** 2,
        steps=200, class_steps=1000, conv_reduce="sum", rectify=True,
        median_size=5, median_every=4, final_unregularized=True,
    ),
    # Seed 002, "A simple CNN for MNIST" VIII: superposition of U[-1,1]
    # fluctuations on 3x3, 7x7, 14x14, 28x28 grids (weights 0.5 each) upsampled
    # bicubically, standardized; gradient / RMS (+1e-7), epsilon 0.01 (in units of
    # the image std -> 0.01*0.2 in pixel space), per-step standardization,
    # 400 epochs, stop when (loss_t-loss_t-1)/loss_t < 5e-4 on successive steps
    # after step 10; snapshots at log2-spaced steps (n_steps=7).
    "oip-multiscale": _recipe(
        init="multiscale", init_scales=[3, 7, 14, 28], init_weights=[0.5, 0.5, 0.5, 0.5],
        init_offset=0.5, init_scale=0.2,
        step="rms", lr=0.01 * 0.2, step_eps=1e-7, steps=400, class_steps=400,
        standardize=True, standardize_mean=0.5, standardize_std=0.2,
        conv_tol=5e-4, conv_min_steps=10, conv_patience=4, early_stop=True,
        dead_patience=10, snapshots=7,
    ),
    # Lucid optvis defaults (render_vis): Fourier parameterization, sd 0.01,
    # 1/f spectral decay, decorrelated colour, sigmoid; standard_transforms
    # (pad 12, jitter 8, scale 0.9..1.1, rotate -10..10 deg, jitter 4);
    # Adam lr 0.05; 512 steps (thresholds=(512,)).
    "lucid": _recipe(
        param="fourier", fourier_sd=0.01, fourier_decay=1.0, decorrelate=True, sigmoid=True,
        step="adam", lr=0.05, steps=512, class_steps=512, clamp=False,
        transforms="lucid",
    ),
    # `lucid` with its transforms sized to the input: Lucid's pixel values (pad 12, jitters 4 and
    # 2, and with them the angles and log-scales) are for 224 px renders; on a smaller input every
    # shift, angle and log-scale shrinks by input/224 (28 px MNIST: 1/8), and over the last half of
    # the steps they fade linearly to none, so the image ends at the unit's own optimum nearby
    # (planted templates: docs/ascent.md, "Planted features"). At 224 px and above: Lucid's sizes.
    "lucid-scaled": _recipe(
        param="fourier", fourier_sd=0.01, fourier_decay=1.0, decorrelate=True, sigmoid=True,
        step="adam", lr=0.05, steps=512, class_steps=512, clamp=False,
        transforms="lucid", transforms_size=224, transforms_fade=0.5,
    ),
    # MACO, Fel et al. 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude
    # Constrained Optimization", as implemented by its authors in Xplique (maco.py,
    # preconditioning.py) and Horama (maco_fv.py): the Fourier magnitude fixed to the average
    # amplitude spectrum of natural images (here the run's own training images: results/<run>/
    # spectrum.npz), the phase optimized with NAdam lr 1.0 (Keras defaults: betas 0.9/0.999, eps
    # 1e-7) for 256 steps; a 512 px canvas for 224 px inputs (x 512/224 at any size); 32 random
    # crops per step, centres 0.5 + N(0, 0.15), sides N(box, 0.05) clipped to [0.05, 1] with box
    # falling linearly 0.5 -> 0.05; noise N(0, 0.08) + U(+-0.04) on (-1, 1) values = half that in
    # [0, 1] pixels; the accumulated |image gradient| kept as the transparency map. These are the
    # values at 224 px and above; below, `transforms_size: 224` shrinks the canvas and the crops'
    # geometry towards the input (x input/224, as lucid-scaled does Lucid's): the published crops of
    # a twentieth of a 64 px canvas cannot show a 28 px MNIST unit its input (docs/ascent.md,
    # "Planted features").
    "maco": _recipe(
        param="maco", canvas_scale=512 / 224, canvas_view=1.0,
        step="nadam", lr=1.0, adam_betas=[0.9, 0.999], adam_eps=1e-7, nadam_momentum_decay=0.004,
        steps=256, class_steps=256, clamp=False,
        transforms="maco", crops=32, crop_start=0.5, crop_end=0.05, crop_size_sd=0.05, crop_min=0.05,
        crop_center_sd=0.15, noise=0.04, transforms_size=224, transparency=True,
    ),
}


SOURCES: dict[str, str] = {
    "hvass": "seed 000 (Hvass-Labs TF #13-B): uniform 0.45-0.55, step 1/std, clip, 30 steps",
    "chollet": "seed 001, Keras part (Chollet): gray+noise, gradient/RMS, 40 steps, deprocessed",
    "yosinski": "seed 001 regularized (Yosinski 2015): black start, decay, 3x3 blur, small-norm clip, jitter/rotate/scale, 300 steps",
    "tence-median": "seed 003 (Tence): normal init, plain ascent after the ReLU, median 5x5 every 4 steps, last step unregularized",
    "oip-multiscale": "seed 002 (MNIST blog VIII): multi-scale init, per-step standardization, convergence stop",
    "lucid": "Lucid optvis: Fourier + decorrelated colour + sigmoid, standard transforms, Adam 0.05, 512 steps",
    "lucid-scaled": "lucid with its transforms sized to the input (x input/224) and fading to none over the last half",
    "maco": "MACO (Fel et al. 2023; Xplique, Horama): fixed natural-image Fourier magnitude, phase by NAdam 1.0, "
            "32 shrinking crops + noise on a 512/224 canvas, 256 steps, transparency map",
}


# `auto`, ascent.recipe.<kind>'s default: per kind, the recipe and settings the benchmarks rank first
# for gray and for colour inputs below AUTO_LARGE px on their shorter side (MNIST; CIFAR: the
# planted-feature and transfer tables) and for larger ones (ImageNet-sized: benchmarks/bench_quality.py
# and bench_peer.py); the config's overrides apply over these settings (docs/ascent.md, "Default recipes")
AUTO = "auto"
AUTO_LARGE = 128
AUTO_CASES = ("gray, below 128 px", "colour, below 128 px", "from 128 px on")
_MACO_CLASSES = ("maco", {"canvas_view": 0.5, "class_steps": 64, "crops": 8})
AUTO_RECIPES: dict[str, tuple[tuple[str, dict], tuple[str, dict], tuple[str, dict]]] = {
    # conv and dense units: lucid-scaled; 256 steps on gray inputs below 128 px (MNIST: the same
    # planted-feature recovery as 512, 92-97% of its objective, pictures alike) and from 128 px on
    # (bench_peer: above Lucent's 512-step objective), the recipe's 512 on small colour ones (CIFAR-10:
    # 256 steps reach only 85-90% of 512's objective)
    "conv": (("lucid-scaled", {"steps": 256}), ("lucid-scaled", {}), ("lucid-scaled", {"steps": 256})),
    "dense": (("lucid-scaled", {"steps": 256}), ("lucid-scaled", {}), ("lucid-scaled", {"steps": 256})),
    # the classes: maco on colour images at every size (CIFAR-10 at 32 px: an independent model
    # recognises 10 of 10 class images against lucid-scaled's 4); on small gray ones lucid-scaled
    # (MNIST: 50/50 against maco's 49/50, and logits above the strongest test image's where maco's
    # stay below them)
    "class": (("lucid-scaled", {"class_steps": 256}), _MACO_CLASSES, _MACO_CLASSES),
}


def auto_recipe(kind: str, input_size) -> tuple[str, dict]:
    """The recipe and settings `auto` stands for: a unit kind's, for an input of `input_size`: its
    shape (C, H, W), or (H, W) where the channels are not known (taken as colour)."""
    size = [int(v) for v in input_size]
    gray, colour, large = AUTO_RECIPES[kind]
    if min(size[-2:]) >= AUTO_LARGE:
        name, settings = large
    else:
        name, settings = gray if len(size) == 3 and size[0] == 1 else colour
    return name, dict(settings)


def list_recipes() -> list[str]:
    """Names of the available recipes."""
    return sorted(RECIPES)


# list parameters: (item types, required length or None); the Range in PARAMS applies to each item
_ITEMS = {"init_scales": (int, None), "init_weights": (_NUM, None), "adam_betas": (_NUM, 2), "neuron_pos": (int, 2)}


def _is(value, types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False  # bool is an int subclass; never accept it for numbers
    return isinstance(value, types)


def _check(key, value):
    types, allowed, _default, _doc = PARAMS[key]
    types = types if isinstance(types, tuple) else (types,)
    if not _is(value, types):
        names = "/".join(t.__name__ for t in types)
        raise RecipeError(f"recipe parameter {key!r} must be {names}, got {type(value).__name__} {value!r}")
    if value is None or allowed is None:
        return
    if isinstance(allowed, tuple):
        if value not in allowed:
            raise RecipeError(f"recipe parameter {key!r} must be one of {list(allowed)}, got {value!r}")
        return
    if isinstance(value, _LIST):
        item_types, length = _ITEMS[key]
        if length is not None and len(value) != length:
            raise RecipeError(f"recipe parameter {key!r} must be a list of {length}, got {list(value)!r}")
        if not value:
            raise RecipeError(f"recipe parameter {key!r} must not be empty")
        for i, item in enumerate(value):
            if not _is(item, item_types):
                names = "/".join(t.__name__ for t in (item_types if isinstance(item_types, tuple) else (item_types,)))
                raise RecipeError(f"recipe parameter {key!r}[{i}] must be {names}, got {item!r}")
            if item not in allowed:
                raise RecipeError(f"recipe parameter {key!r}[{i}] must be {allowed}, got {item!r}")
        return
    if value not in allowed:
        raise RecipeError(f"recipe parameter {key!r} must be {allowed}, got {value!r}")


def check_overrides(overrides, where: str = "overrides") -> None:
    """Override keys and values on their own (names, types, ranges), without a recipe: for
    per-layer overrides, whose recipe depends on the layer's kind (known from the network)."""
    if not isinstance(overrides, dict):
        raise RecipeError(f"{where} must be a mapping of recipe parameters, got {overrides!r}")
    for key, value in overrides.items():
        if key not in PARAMS:
            raise RecipeError(f"unknown recipe parameter {key!r}")
        _check(key, value)


def get_recipe(name: str, overrides: dict | None = None) -> dict:
    """Resolved parameters of recipe ``name`` with ``overrides`` applied.

    Raises :class:`RecipeError` for an unknown recipe, an unknown override key
    or a value of the wrong type.
    """
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r} (known: {', '.join(list_recipes())})")
    r = copy.deepcopy(RECIPES[name])
    for key, value in (overrides or {}).items():
        if key not in PARAMS:
            raise RecipeError(f"unknown recipe parameter {key!r} for recipe {name!r}")
        _check(key, value)
        r[key] = copy.deepcopy(value)
    if len(r["init_scales"]) != len(r["init_weights"]):
        raise RecipeError("recipe parameters 'init_scales' and 'init_weights' must have the same length")
    r["name"] = name
    if isinstance(r["transforms"], tuple):
        r["transforms"] = list(r["transforms"])
    return r
