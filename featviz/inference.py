"""Inference at the machine's pace, with fp32's answers.

Every pass over test images (the probe's activation pass, `featviz evaluate` run alone, an
import's sample check) runs in one `Mode`: bf16 autocast where the precision setting resolves to
bf16 (`auto`: where the CPU or GPU computes bf16 natively, featviz.device.resolve_precision),
channels_last where the network runs on NHWC inputs (LoadedModel.use_channels_last), its
activations in place where the graph allows (featviz.inplace) and its batch norms folded into the
convolutions before them where no hook reads those (featviz.ascent.fold).

bf16 moves a few top-1 predictions (MobileNetV2 at 224 px: 2 of 80 images, logits off by up to
0.37, docs/scale-out.md), so `settle` makes the top-1 fp32's: it recomputes in fp32 (same memory
format) the `CALIBRATION` images whose two highest bf16 outputs are closest (those a drift would
flip first: the recheck below would recompute most of them anyway) and measures the drift `d`:
the most any output of one of them moved against that image's bf16 top-1 (the top-1 can only
change where another output moves past it, by more than the bf16 margin). Every image whose bf16
margin between its two highest outputs is at most `d` is recomputed in fp32; where one of those
drifts further, `d` grows and the images the wider margin takes in are recomputed too, until none
does. The other images keep their bf16 outputs: their top-1 is fp32's wherever no image drifts
more than the recomputed ones did (bench_inference checks it against a whole fp32 pass); their
probabilities differ from fp32's in the third digit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .ascent.fold import folded_batchnorms
from .device import resolve_precision
from .inplace import in_place
from .model import LoadedModel

CALIBRATION = 16  # closest-margin images recomputed in fp32 first, to measure how far bf16 moves the outputs
TOP = 5  # predictions kept per image (featviz.results' predictions.npz)
# input pixels per batch of a pass of its own, rounded down to a power of two of images: 32 at 224 px
# (MobileNetV2 there, bf16 + channels_last: batch 32 ran 1.3-1.6x the images per CPU-second of batch
# 64 on one thread, and 1.3x those of batch 41; docs/scale-out.md), at most 1000 images
BATCH_PIXELS = 2 ** 21


def batch_for(model: LoadedModel, given: int | None = None) -> int:
    """Images per batch of a pass of its own: `given`, else BATCH_PIXELS' worth."""
    if given is not None:
        return int(given)
    h, w = model.input_shape[-2:]
    return min(1000, power_of_two_floor(BATCH_PIXELS // max(1, int(h) * int(w))))


def power_of_two_floor(n: int) -> int:
    """The largest power of two <= n (1 for n < 1): batch sizes the CPU kernels run best at."""
    return 1 << (max(1, int(n)).bit_length() - 1)


@dataclass(frozen=True)
class Mode:
    """How a pass computes: autocast dtype (`fp32` or `bf16`) and memory format."""

    precision: str
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, dev: torch.device):
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def record(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last}


def choose_mode(model: LoadedModel, dev: torch.device, precision: str = "auto", key: str = "precision") -> Mode:
    """The mode of `precision` (`auto`, `fp32`, `bf16`; `key` names the setting in errors) on
    `dev`; converts the network to channels_last where it takes NHWC inputs (`release` converts
    it back)."""
    precision = resolve_precision(precision, dev, key)
    return Mode(precision, model.use_channels_last(dev) is None)


def release(model: LoadedModel) -> None:
    """The network back in its contiguous memory format."""
    model.net.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def forward(model: LoadedModel, images: torch.Tensor, dev: torch.device, mode: Mode) -> torch.Tensor:
    """One batch of images (uint8, or float in [0, 1]) through the network in `mode`: its output
    in float32 on the CPU."""
    x = model.to_input(images, dev).contiguous(memory_format=mode.memory_format)
    with mode.autocast(dev):
        out = model.net(x)
    return out.float().cpu()


def logits(model: LoadedModel, images: torch.Tensor, dev: torch.device, mode: Mode, batch_size: int) -> torch.Tensor:
    """The network's outputs (N, K) float32 for `images` in batches of `batch_size`."""
    model.net.eval()
    out = [forward(model, images[s:s + batch_size], dev, mode) for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(model.classes))


def closest(margin: torch.Tensor, count: int) -> torch.Tensor:
    """The indices of the `count` smallest margins (all of them when count >= len), in index order."""
    return margin.argsort(stable=True)[:count].sort().values


def drift(out: torch.Tensor, exact: torch.Tensor) -> float:
    """The most any output of `out` moved, from `exact`, against its row's top-1 in `out`."""
    moved = out - exact
    return float((moved - moved.gather(1, out.argmax(1, keepdim=True))).abs().amax(1).max())


def margins(out: torch.Tensor) -> torch.Tensor:
    """Per row, the highest output minus the second highest (inf with one output)."""
    if out.shape[1] < 2:
        return torch.full((len(out),), float("inf"))
    top2 = out.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


@dataclass
class Settled:
    """Outputs whose top-1 is fp32's: `logits` (N, K) float32, `fp32` (N,) which rows were
    computed in fp32, `record` how (mode, calibration, rows recomputed)."""

    logits: torch.Tensor
    fp32: torch.Tensor
    record: dict


def settle(model: LoadedModel, images: torch.Tensor, out: torch.Tensor, dev: torch.device, mode: Mode,
           batch_size: int) -> Settled:
    """`out`, the outputs of `images` computed in `mode`, with fp32 outputs wherever bf16 could
    have moved the top-1 (module docstring). Unchanged under fp32."""
    n = len(out)
    if mode.precision == "fp32":
        return Settled(out, torch.ones(n, dtype=torch.bool), {**mode.record(), "fp32_rows": n})
    exact = Mode("fp32", mode.channels_last)
    fixed = out.clone()
    is_fp32 = torch.zeros(n, dtype=torch.bool)
    margin = margins(out)
    rows, bound, first = closest(margin, CALIBRATION), 0.0, True
    while len(rows):
        for s in range(0, len(rows), batch_size):
            r = rows[s:s + batch_size]
            fixed[r] = forward(model, images[r], dev, exact)
        is_fp32[rows] = True
        seen = drift(out[rows], fixed[rows])
        if not first and seen <= bound:  # the rows the margin took in drifted no further: done
            break
        first, bound = False, max(bound, seen)
        rows = torch.nonzero((margin <= bound) & ~is_fp32).flatten()
    record = {**mode.record(), "calibration_images": int(min(n, CALIBRATION)), "bf16_drift": round(bound, 5),
              "fp32_rows": int(is_fp32.sum())}
    return Settled(fixed, is_fp32, record)


def predict(model: LoadedModel, images: torch.Tensor, dev: torch.device, precision: str = "auto",
            batch_size: int | None = None, key: str = "precision") -> Settled:
    """Outputs of `images` at the machine's pace with fp32's top-1: one pass in the mode of
    `precision`, then `settle`. The network is left in its contiguous format."""
    mode = choose_mode(model, dev, precision, key)
    bs = batch_for(model, batch_size)
    try:
        with in_place(model.net), folded_batchnorms(model.net):
            return settle(model, images, logits(model, images, dev, mode, bs), dev, mode, bs)
    finally:
        release(model)


def accuracy(model: LoadedModel, images: torch.Tensor, labels: torch.Tensor, dev: torch.device,
             precision: str = "auto") -> float:
    """Top-1 accuracy (fp32's) of `images` against `labels` (network output indices), at the
    machine's pace: for a check on a sample (e.g. an import's)."""
    out = predict(model, images, dev, precision).logits
    return float((out.argmax(1) == labels).float().mean()) if len(labels) else 0.0


def top_predictions(out: torch.Tensor, k: int = TOP) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k most probable outputs (N, k) int32 and their softmax probabilities (N, k)
    float32, most probable first."""
    top = torch.softmax(out.float(), 1).topk(min(k, out.shape[1]), dim=1)
    return top.indices.to(torch.int32), top.values.float()
