"""Inference at the machine's pace: plain PyTorch's best forward of a network against featviz's
own passes over the same images, in one run (issue 27, item 2).

    python benchmarks/bench_inference.py                                 # MobileNetV2 at 224 px
    python benchmarks/bench_inference.py --arch resnet50 --images 128    # any torchvision name, random weights

Plain PyTorch: the network as torchvision builds it, torch.no_grad, the images already in memory
as one uint8 tensor, normalized per batch as featviz does; fp32, fp32 + channels_last and bf16
autocast + channels_last, at batch 32 and 64 (images/s; the best of them is the reference).
featviz, on the same network (its ReLUs made out-of-place, as an import leaves them; during the
passes in place again where the graph allows and its batch norms folded into the convolutions
before them, featviz.inplace and featviz.ascent.fold, as featviz runs them) and images:

* evaluate's pass when it runs alone (featviz.inference.predict: the mode `auto` picks, then the
  fp32 recheck of the images whose top-1 bf16 could have moved);
* the probe's pass (featviz.probe_pass.activation_pass over featviz's default targets for the
  architecture, the statistics of every layer, then featviz.inference.settle): the one pass the
  workflow's probe and evaluation share;
* and how far bf16 moves the top-1: agreement of each image's argmax with the fp32 forward's, as
  the bf16 pass computed it and after settling; with --compare-statistics, how far it moves the
  probe's statistics (the pass again in fp32: each unit's dataset max and mean, its top-k images,
  the units' correlations).

The default network is the real ImageNet MobileNetV2 of ../shared/models (beside the checkout;
skipped with a message where it is absent) on the 20 ImageNet JPEGs of
../shared/data/foolbox-samples, each also flipped and shifted, repeated to --images; --arch names
any torchvision architecture with random weights on synthetic images (throughput does not depend
on the content). Keep --images to a few hundred on a shared machine; figures are ratios within one
run; the load (`uptime`) and the CPU's bf16 flags are printed with them.
"""
from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featviz import inference  # noqa: E402
from featviz.ascent.fold import folded_batchnorms  # noqa: E402
from featviz.inplace import in_place  # noqa: E402
from featviz.model.hookable import no_inplace  # noqa: E402
from featviz.model.loaded import LoadedModel  # noqa: E402
from featviz.model.torchvision_archs import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from featviz.probe import module_of  # noqa: E402
from featviz.probe_pass import activation_pass, batch_size  # noqa: E402
from featviz.units import enumerate_units  # noqa: E402

SHARED = ROOT.parent / "shared"  # beside the checkout (--shared elsewhere)
MOBILENET = "models/mobilenet_v2-coral-qat.pth"
SAMPLES = "data/foolbox-samples"


def load_network(arch: str | None, shared: Path) -> tuple[torch.nn.Module, str] | None:
    if arch is None:
        path = shared / MOBILENET
        if not path.is_file():
            return None
        net = torchvision.models.mobilenet_v2()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval(), f"mobilenet_v2 ({path.name})"
    torch.manual_seed(0)
    try:
        net = torchvision.models.get_model(arch, weights=None)
    except ValueError as exc:
        sys.exit(f"bench_inference: {exc}")
    return net.eval(), f"{arch} (random weights)"


def real_images(size: int, shared: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ImageNet sample JPEGs (Resize + CenterCrop as torchvision's weights expect), each also
    flipped and shifted by 16 px: 80 distinct images, with their labels."""
    from PIL import Image

    folder = shared / SAMPLES
    files = sorted(folder.glob("*imagenet*")) if folder.is_dir() else []
    if not files:
        return None
    crop = torchvision.transforms.Compose([torchvision.transforms.Resize(size * 8 // 7),
                                           torchvision.transforms.CenterCrop(size),
                                           torchvision.transforms.PILToTensor()])
    x = torch.stack([crop(Image.open(f).convert("RGB")) for f in files])
    labels = torch.tensor([int(re.search(r"_(\d+)\.\w+$", f.name).group(1)) for f in files])
    x = torch.cat([x, x.flip(-1), x.roll(16, -1), x.roll(-16, -2)])
    return x, labels.repeat(4)


def repeat_to(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.repeat((n + len(x) - 1) // len(x), *([1] * (x.dim() - 1)))[:n].contiguous()


class Clock:
    """Wall and CPU seconds (all threads of this process) of a block: the CPU seconds are the work,
    which other processes sharing the machine change less than the wall time."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


@torch.no_grad()
def plain(net, images: torch.Tensor, bs: int, bf16: bool, nhwc: bool) -> tuple[Clock, torch.Tensor]:
    """The clock of a plain forward over `images`, and its outputs (after one warm-up batch)."""
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    net.to(memory_format=fmt)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def run(x8):
        x = ((x8.float() / 255 - mean) / std).contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x).float()

    run(images[:bs])
    with Clock() as clock:
        out = torch.cat([run(images[s:s + bs]) for s in range(0, len(images), bs)])
    net.to(memory_format=torch.contiguous_format)
    return clock, out


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "(uptime unavailable)"


def bf16_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "(unknown)"
    return " ".join(sorted(set(re.findall(r"\b(amx_bf16|avx512_bf16)\b", text)))) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=None, help="a torchvision architecture with random weights "
                                                 "(default: the real MobileNetV2 of ../shared/models)")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--shared", default=str(SHARED), help="the folder of real models and data (default: "
                                                          "../shared beside the checkout)")
    ap.add_argument("--compare-statistics", action="store_true",
                    help="also run the probe's pass in fp32 and print how far bf16 moves its statistics")
    a = ap.parse_args()
    n = a.images
    if n < 1 or a.size < 32 or any(b < 1 for b in a.batches):
        sys.exit("bench_inference: --images and --batches must be at least 1, --size at least 32")
    if a.threads:
        torch.set_num_threads(a.threads)
    shared = Path(a.shared)
    found = load_network(a.arch, shared)
    if found is None:
        print(f"bench_inference: skipped: {shared / MOBILENET} is absent (the real MobileNetV2 lives in ../shared "
              f"beside the checkout, or --shared DIR); pass --arch NAME for a torchvision architecture with "
              f"random weights")
        return
    net, what = found
    real = real_images(a.size, shared) if a.arch is None else None
    if real is not None:
        images, labels = repeat_to(real[0], n), repeat_to(real[1], n)
        source = f"{len(real[0])} ImageNet JPEGs (20 x flip/shift) repeated"
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, a.size, a.size), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 1000, (n,), generator=g)
        source = "synthetic uint8"
    print(f"network: {what}, {a.size} px; {n} images ({source}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; CPU bf16 flags: {bf16_flags()}")
    print(f"load before: {load()}")

    rows, best, ref = [], None, None
    for name, bf16, nhwc in (("fp32", False, False), ("fp32 + channels_last", False, True),
                             ("bf16 + channels_last", True, True)):
        for bs in a.batches:
            clock, out = plain(net, images, bs, bf16, nhwc)
            rows.append((name, bs, clock))
            if name == "fp32 + channels_last" and ref is None:
                ref = out  # the fp32 outputs the agreement is measured against
            if best is None or clock.wall < best[2].wall:
                best = (name, bs, clock)
    print("\nplain PyTorch forward (torch.no_grad, no hooks, images in memory)")
    print(f"  {'mode':<22} {'batch':>5} {'images/s':>9} {'images/CPU-s':>13}")
    for name, bs, clock in rows:
        print(f"  {name:<22} {bs:>5} {n / clock.wall:>9.1f} {n / clock.cpu:>13.1f}")
    print(f"  best (wall): {n / best[2].wall:.1f} images/s ({best[0]}, batch {best[1]})")

    fnet = no_inplace(copy.deepcopy(net)).eval()
    shape = (3, a.size, a.size)
    classes = [str(i) for i in range(ref.shape[1])]
    model = LoadedModel(fnet, classes, shape, IMAGENET_MEAN, IMAGENET_STD, {"format": "torchvision"})
    dev = torch.device("cpu")
    units = enumerate_units(fnet, shape, classes, None, family="torchvision")
    layers = units["layers"]
    mods = [module_of(fnet, layer) for layer in layers]
    bs = batch_size(layers, shape, 500)
    mode = inference.choose_mode(model, dev, "auto")
    for b in (inference.batch_for(model), bs):  # one warm-up batch per batch size and mode, as the plain runs had
        for m in (mode, inference.Mode("fp32", mode.channels_last)):
            inference.forward(model, images[:b], dev, m)
    inference.release(model)
    with Clock() as t_eval:
        ev = inference.predict(model, images, dev, "auto")
    mode = inference.choose_mode(model, dev, "auto")
    with in_place(fnet), folded_batchnorms(fnet, read=mods):  # as featviz.probe runs them
        with Clock() as t_pass:
            seen = activation_pass(model, mods, layers, images, labels, dev, bs, 9, min(2000, n), 4, mode)
        with Clock() as t_settle:
            settled = inference.settle(model, images, seen.logits, dev, mode, bs)
    inference.release(model)

    def line(label, wall, cpu, extra=""):
        print(f"  {label:<46} {n / wall:>9.1f} {wall / best[2].wall:>6.2f}x {n / cpu:>13.1f} "
              f"{cpu / best[2].cpu:>6.2f}x  {extra}")

    print(f"\nfeatviz (mode {mode.precision}{' + channels_last' if mode.channels_last else ''}; time against the best "
          f"plain forward's, wall and CPU)")
    print(f"  {'pass':<46} {'images/s':>9} {'time':>7} {'images/CPU-s':>13} {'CPU':>7}")
    line(f"evaluate alone (inference.predict, batch {inference.batch_for(model)})", t_eval.wall, t_eval.cpu,
         f"fp32 rows {ev.record['fp32_rows']} of {n}")
    line(f"probe: activation pass ({len(layers)} layers, batch {bs})", t_pass.wall, t_pass.cpu)
    line("probe: + settle (the pass probe and evaluate share)", t_pass.wall + t_settle.wall,
         t_pass.cpu + t_settle.cpu, f"fp32 rows {settled.record['fp32_rows']} of {n}")
    truth = ref.argmax(1)
    raw = int((seen.logits.argmax(1) == truth).sum())
    print(f"\ntop-1 agreement with the fp32 forward: the {mode.precision} pass {raw}/{n}, settled "
          f"{int((settled.logits.argmax(1) == truth).sum())}/{n} (evaluate alone "
          f"{int((ev.logits.argmax(1) == truth).sum())}/{n}); drift (the most an output moved against the "
          f"top-1 on the recomputed images) {settled.record.get('bf16_drift', 0.0)}")
    if real is not None:
        print(f"top-1 accuracy on these images: fp32 {float((truth == labels).float().mean()):.4f}, "
              f"settled {float((settled.logits.argmax(1) == labels).float().mean()):.4f}, the {mode.precision} "
              f"pass {float((seen.logits.argmax(1) == labels).float().mean()):.4f}")
    if a.compare_statistics and mode.precision == "bf16":
        distinct = len(real[0]) if real is not None else n  # the images repeat with this period
        compare_statistics(model, mods, layers, images, labels, dev, bs, seen, distinct)
    print(f"load after: {load()}")


def compare_statistics(model, mods, layers, images, labels, dev, bs, seen, distinct: int) -> None:
    """The probe's statistics of the bf16 pass against those of the same pass in fp32 (top-k
    images compared as distinct images: image i is image i % distinct)."""
    import numpy as np

    from featviz.probe import _correlation_from_moments

    fp32 = inference.Mode("fp32", seen.mode.channels_last)
    if fp32.channels_last:
        model.use_channels_last(dev)
    ref = activation_pass(model, mods, layers, images, labels, dev, bs, 9, min(2000, len(images)), 4, fp32)
    inference.release(model)
    n = len(images)
    d_max, d_mean, overlap, d_corr = [], [], [], []
    for a, b in zip(ref.stats, seen.stats):
        span = (a.max - (a.sum / n)).abs()  # a unit's scale: its max above its mean (a tenth of the
        span = span.clamp(min=max(1e-6, 0.1 * float(span.median())))  # layer's median for a near-constant unit)
        d_max.append(((b.max - a.max).abs() / span).numpy())
        d_mean.append((((b.sum - a.sum) / n).abs() / span).numpy())
        ta, tb = a.top[1].numpy() % distinct, b.top[1].numpy() % distinct
        overlap += [len(set(x) & set(y)) / max(len(set(x)), 1) for x, y in zip(ta, tb)]
        if len(a.max) > 1:
            d_corr.append(float(np.abs(_correlation_from_moments(b.m1, b.m2, b.cnt)
                                       - _correlation_from_moments(a.m1, a.m2, a.cnt)).max()))
    d_max, d_mean = np.concatenate(d_max), np.concatenate(d_mean)
    print(f"\nbf16 against fp32 statistics ({len(d_max)} units; differences in units of each unit's max - mean, "
          f"at least a tenth of its layer's median):")
    print(f"  dataset max: median {np.median(d_max):.4f}, 99th percentile {np.percentile(d_max, 99):.4f}, "
          f"largest {d_max.max():.4f}")
    print(f"  dataset mean: median {np.median(d_mean):.4f}, 99th percentile {np.percentile(d_mean, 99):.4f}, "
          f"largest {d_mean.max():.4f}")
    print(f"  top-9 images shared (distinct images): mean {np.mean(overlap):.3f}, all nine for "
          f"{np.mean(np.asarray(overlap) == 1):.3f} of the units, least {min(overlap):.3f}")
    print(f"  correlations: largest difference {max(d_corr):.4f} (over {len(d_corr)} layers)")


if __name__ == "__main__":
    main()
