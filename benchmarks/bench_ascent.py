"""Benchmark of featviz.ascent on the seed-000 MNIST net (random weights).

    python benchmarks/bench_ascent.py [--layer conv2] [--steps 30] [--threads 1]

Prints, from one run:
 (a) time of one whole-layer batched job vs seed-style execution (one fresh
     python process per filter, same units, same steps), and the ratio;
 (b) image-steps/s and achieved GFLOP/s (conv/linear FLOPs, forward + backward
     w.r.t. the input only) against a peak estimated by a large matmul, and the same for the
     net's kernels alone (the ceiling the engine's per-step work sits under).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from featviz.ascent import visualize  # noqa: E402


def mnist_net(seed=0):
    """Seed 000: conv 16@5x5 same -> relu -> pool2 -> conv 36@5x5 same -> relu ->
    pool2 -> flatten -> fc 128 -> relu -> fc 10."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 36, 5, padding=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(7 * 7 * 36, 128)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(128, 10)),
    ])).eval()


KIND = {"conv1": "conv", "conv2": "conv", "fc1": "dense", "fc2": "dense", "output": "class"}


RECIPE = "hvass"
MODE = {"precision": "fp32", "channels_last": False}
MODES = {"fp32": {"precision": "fp32", "channels_last": False},
         "bf16-cl": {"precision": "bf16", "channels_last": True}}


def run_job(net, layer, units, steps):
    lay = None if layer == "output" else layer
    ov = {"steps": steps, "class_steps": steps, "robustness_samples": 0, "snapshots": 0,
          "dead_retries": 0}
    t = time.perf_counter()
    visualize(net, lay, units, KIND[layer], (1, 28, 28), recipe=RECIPE, overrides=ov, **MODE)
    return time.perf_counter() - t


def forward_flops(net, layer):
    """FLOPs (2*MACs) of conv/linear layers for one image up to ``layer``."""
    total = [0]
    stop = layer

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total[0] += 2 * out.numel() * k
        elif isinstance(m, nn.Linear):
            total[0] += 2 * m.in_features * m.out_features * (out.numel() // m.out_features)

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        x = torch.zeros(1, 1, 28, 28)
        for name, mod in net.named_children():
            x = mod(x)
            if name == stop:
                break
    for h in hs:
        h.remove()
    return total[0]


def matmul_peak(n=2048, reps=3, trials=5):
    """Best of ``trials`` timings of ``reps`` 2048x2048 fp32 matmuls (GFLOP/s);
    the best is the least disturbed by other jobs on a shared machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def kernel_ceiling(net, layer, batch, reps=50):
    """GFLOP/s of the net's own conv/linear kernels up to ``layer`` alone: one forward and the
    gradient w.r.t. the input of a batch, nothing of the engine (no transforms, step rule or
    bookkeeping). What the engine could reach at best with PyTorch's kernels on this CPU, in the
    execution mode the engine is timed in (bf16 autocast and channels_last for ``--mode bf16-cl``)."""
    stop = None if layer == "output" else layer
    names = [n for n, _ in net.named_children()]
    upto = names[: names.index(stop) + 1] if stop else names
    body = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in upto))
    x = torch.rand(batch, 1, 28, 28)
    if MODE["channels_last"]:
        body = body.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    bf16 = MODE["precision"] == "bf16"

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = body(x)
        (g,) = torch.autograd.grad(out.float().sum(), x)
        return g

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    rate = batch * reps / (time.perf_counter() - t)
    if MODE["channels_last"]:
        body.to(memory_format=torch.contiguous_format)
    return rate


def transforms_alone(batch, reps=30):
    """The recipe's per-step transforms alone (forward + backward), fused into one resampling as the
    engine runs them, against the same pipeline step by step."""
    from featviz.ascent import get_recipe
    from featviz.ascent import transforms as T

    tf = T.build(get_recipe(RECIPE), (28, 28))
    if not tf:
        print("(c) the recipe has no transforms")
        return
    x = torch.rand(batch, 1, 28, 28, requires_grad=True)
    best = {}
    for _ in range(3):
        for name, f in (("fused", tf.fused), ("stepwise", tf.stepwise)):
            gens = [torch.Generator().manual_seed(i) for i in range(batch)]
            t = time.perf_counter()
            for _ in range(reps):
                (g,) = torch.autograd.grad(f(x, gens).sum(), x)
            best[name] = min(best.get(name, 1e9), (time.perf_counter() - t) / reps)
    print(f"(c) the recipe's transforms alone, {batch} images, forward + backward per step: fused "
          f"{best['fused'] * 1e3:.2f} ms, step by step {best['stepwise'] * 1e3:.2f} ms "
          f"({best['stepwise'] / best['fused']:.1f}x)")


def seed_style(layer, units, steps):
    """One fresh python process per filter, as the seed's notebook loop would."""
    t = time.perf_counter()
    for u in units:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--one", layer, str(u), "--steps", str(steps),
                        "--threads", str(torch.get_num_threads()), "--recipe", RECIPE,
                        "--mode", next(k for k, v in MODES.items() if v == MODE)],
                       check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="conv2", choices=sorted(KIND))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed-sample", type=int, default=0,
                    help="run only this many seed-style processes and extrapolate (0 = all)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for every timing, peak included (0 = torch default)")
    ap.add_argument("--recipe", default="hvass", help="the recipe timed (lucid: FFT image, Lucid's transforms)")
    ap.add_argument("--mode", default="fp32", choices=sorted(MODES),
                    help="execution mode of the engine and of the kernels-alone ceiling (bf16-cl: bf16 autocast "
                         "and channels_last, the default `auto` mode on a CPU with native bf16)")
    ap.add_argument("--one", nargs=2, metavar=("LAYER", "UNIT"))
    a = ap.parse_args()
    global RECIPE
    RECIPE = a.recipe
    MODE.update(MODES[a.mode])
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.one:
        run_job(mnist_net(), a.one[0], [int(a.one[1])], a.steps)
        return
    net = mnist_net()
    n_units = {"conv1": 16, "conv2": 36, "fc1": 128, "fc2": 10, "output": 10}[a.layer]
    units = list(range(n_units))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, layer {a.layer}, "
          f"{n_units} units, {a.steps} steps, recipe {RECIPE}, mode {a.mode}")
    run_job(net, a.layer, units[:2], 2)  # warm-up
    peak = matmul_peak()
    batched = min(run_job(net, a.layer, units, a.steps) for _ in range(5))
    inproc = sum(run_job(net, a.layer, [u], a.steps) for u in units)
    sample = units if a.seed_sample <= 0 else units[: a.seed_sample]
    seed_t = seed_style(a.layer, sample, a.steps) * len(units) / len(sample)
    note = "" if len(sample) == len(units) else f" (extrapolated from {len(sample)} processes)"
    print(f"(a) whole-layer batched job: {batched:.3f} s")
    print(f"    seed-style, one fresh process per filter: {seed_t:.2f} s{note}  -> ratio {seed_t / batched:.1f}x")
    print(f"    one unit at a time in one process:        {inproc:.3f} s  -> ratio {inproc / batched:.1f}x")
    fwd = forward_flops(net, None if a.layer == "output" else a.layer)
    per_img_step = 2 * fwd  # forward + backward w.r.t. the input (no weight gradients)
    img_steps = n_units * a.steps / batched
    peak = max(peak, matmul_peak())
    achieved = img_steps * per_img_step / 1e9
    print(f"(b) {img_steps:,.0f} image-steps/s; {per_img_step / 1e6:.2f} MFLOP per image-step "
          f"(fwd {fwd / 1e6:.2f} + bwd-input {fwd / 1e6:.2f})")
    print(f"    achieved {achieved:.2f} GFLOP/s vs matmul peak {peak:.1f} GFLOP/s = {100 * achieved / peak:.1f}%"
          " (best-of timings on both sides)")
    ceiling = kernel_ceiling(net, a.layer, n_units) * per_img_step / 1e9
    print(f"    the same batch through the net's conv/linear kernels alone (forward + input gradient, no engine): "
          f"{ceiling:.2f} GFLOP/s = {100 * ceiling / peak:.1f}% of peak")
    transforms_alone(n_units)
    for mult in (4, 16):
        big = units * mult
        tb = min(run_job(net, a.layer, big, a.steps) for _ in range(2))
        ach = len(big) * a.steps / tb * per_img_step / 1e9
        print(f"    batch of {len(big)} images: {len(big) * a.steps / tb:,.0f} image-steps/s, "
              f"{ach:.2f} GFLOP/s = {100 * ach / peak:.1f}% of peak")


if __name__ == "__main__":
    main()
