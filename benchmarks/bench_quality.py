"""Quality of pictures on real ImageNet networks (issue 26 item 2), printed as markdown tables
(docs/ascent.md, "Quality on real ImageNet networks"):

- classes: for each recipe, class images made by one of the two ImageNet networks of ../shared/models
  and scored by the other (top-1, top-5, the class's softmax), with the maker's own softmax, its
  robustness and the wall time per unit;
- features (`--features N`): N units at each of three depths of each network, each recipe's picture
  scored by "reached": (its activation - the mean over real images) / (the strongest real image's -
  that mean), the channel's spatial mean at the layer's output; 1 = the strongest real image. The
  real images are the ImageNet JPEGs of `--spectrum-images` and any given with `--feature-images`.

    python benchmarks/bench_quality.py [--classes 4] [--steps 64] [--recipes lucid lucid-scaled maco]
        [--crops 8] [--threads 2] [--seed 0] [--models DIR] [--spectrum-images DIR] [--json FILE]
    python benchmarks/bench_quality.py --classes 0 --features 4 [--feature-recipes ...]
        [--feature-images DIR ...]

The networks are loaded directly: torchvision's `squeezenet1_0()` and `mobilenet_v2()` with
`load_state_dict(torch.load(FILE, weights_only=True))`, ImageNet mean/std, 224 px. A network whose file
is absent is skipped (its images are not made, the other's are not scored); with neither, nothing
runs. maco's magnitude is the average amplitude spectrum of the ImageNet images in
`--spectrum-images` (default ../shared/data/foolbox-samples: its `*imagenet*` JPEGs, resized to 256
and centre-cropped to 224 as torchvision evaluates), or the 1/f power law where there are none.
`--steps` and `--crops` cut the recipes short for a quick run on a CPU (default: each recipe's own).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featviz.ascent import get_recipe, visualize  # noqa: E402
from featviz.ascent.spectrum import mean_amplitude, power_law  # noqa: E402

SHARED = ROOT.parent / "shared"
MODELS = {"squeezenet1_0": "squeezenet1_0-deepcompression.pth", "mobilenet_v2": "mobilenet_v2-coral-qat.pth"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 224
# a fixed list of ImageNet classes: the eight first, then 42 more across animals, objects,
# vehicles, food and scenes (class indices of ILSVRC-2012 / torchvision)
CLASSES = [1, 94, 130, 207, 291, 417, 949, 963, 9, 22, 33, 71, 76, 99, 105, 145, 151, 250, 281, 288, 292, 309,
           323, 340, 346, 355, 386, 388, 407, 409, 430, 437, 466, 483, 497, 511, 546, 555, 574, 604, 624, 717,
           779, 817, 850, 920, 947, 950, 954, 980]
RECIPES = ["lucid", "lucid-scaled", "maco"]
# feature units: three depths of each network (early, middle, late block outputs)
FEATURE_LAYERS = {"squeezenet1_0": ["features.4", "features.8", "features.12"],
                  "mobilenet_v2": ["features.4", "features.10", "features.14"]}
# the recipes at the settings a 224 px run uses for conv units (auto: lucid-scaled, 256 steps), Lucid's
# own at the same steps, and maco at the class images' settings
FEATURE_RECIPES = ['lucid:{"steps": 256}', 'lucid-scaled:{"steps": 256}',
                   'maco:{"canvas_view": 0.5, "steps": 64, "crops": 8}']


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.as_tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def load_networks(folder: Path) -> dict[str, torch.nn.Module]:
    """The ImageNet networks whose files are in `folder`, by architecture name."""
    import torchvision

    nets = {}
    for arch, name in MODELS.items():
        path = folder / name
        if not path.is_file():
            print(f"skipped {arch}: {path} is absent")
            continue
        net = getattr(torchvision.models, arch)()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        nets[arch] = net.eval()
    return nets


def imagenet_files(folder: Path) -> list[Path]:
    """The ImageNet JPEGs of the foolbox samples (`*imagenet*` in the name)."""
    return sorted(p for p in folder.glob("*") if "imagenet" in p.name.lower()) if folder.is_dir() else []


def image_files(folder: Path) -> list[Path]:
    """Every JPEG/PNG under `folder` (a user's ImageNet images, any layout)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def load_images(files) -> np.ndarray:
    """uint8 (N, 3, 224, 224): each file resized to 256 on its short side and centre-cropped, as
    torchvision evaluates ImageNet."""
    from PIL import Image

    images = []
    for f in files:
        im = Image.open(f).convert("RGB")
        scale = 256 / min(im.size)
        im = im.resize((max(256, round(im.width * scale)), max(256, round(im.height * scale))), Image.BILINEAR)
        left, top = (im.width - SIZE) // 2, (im.height - SIZE) // 2
        images.append(np.asarray(im.crop((left, top, left + SIZE, top + SIZE)), np.uint8).transpose(2, 0, 1))
    return np.stack(images)


def imagenet_spectrum(folder: Path) -> tuple[np.ndarray, str]:
    """maco's magnitude from the ImageNet JPEGs of `folder` (resize 256, centre crop 224), else 1/f."""
    files = imagenet_files(folder)
    if not files:
        return power_law(3, SIZE, SIZE), "1/f power law (no ImageNet images found)"
    mag, n = mean_amplitude([torch.from_numpy(load_images(files))])
    return mag, f"{n} ImageNet images of {folder}"


@torch.no_grad()
def scores(net, images: np.ndarray, targets: list[int], device) -> list[dict]:
    """Per image: the target class's softmax, its rank, top-1 / top-5 hits and the predicted class."""
    x = torch.from_numpy(images).to(device)
    prob = torch.softmax(net(normalize(x)).float(), 1).cpu()
    out = []
    for p, t in zip(prob, targets):
        order = torch.argsort(p, descending=True)
        rank = int((order == t).nonzero()[0, 0])
        out.append({"softmax": float(p[t]), "rank": rank, "top1": rank == 0, "top5": rank < 5,
                    "predicted": int(order[0])})
    return out


def run(nets, recipes, classes, steps, crops, seed, spectrum, device="cpu", precision="fp32",
        extra: dict | None = None, channels_last: bool = False, makers=None, save: Path | None = None,
        json_path: Path | None = None) -> list[dict]:
    """One row per (maker, recipe): the maker's own and the other network's scores of its class images.
    `extra`: more overrides for every recipe (e.g. a test's `dead_retries: 0`); `json_path`: the rows so
    far are written there after each (maker, recipe), so that a long run stopped early keeps them."""
    rows = []
    for maker, net in nets.items():
        if makers and maker not in makers:
            continue
        others = {k: v for k, v in nets.items() if k != maker}
        for entry in recipes:
            name, _, given = entry.partition(":")  # "maco" or 'maco:{"transforms_fade": 0.5}'
            over = {"robustness_samples": 4, "snapshots": 0}
            if steps:
                over.update(steps=steps, class_steps=steps)
            over.update(json.loads(given) if given else {})  # the entry's own overrides win over --steps
            if crops and get_recipe(name, over)["transforms"] == "maco" and "crops" not in over:
                over["crops"] = crops
            over.update(extra or {})
            rec = get_recipe(name, over)
            t0 = time.perf_counter()
            res = visualize(net, None, classes, "class", (3, SIZE, SIZE), normalize=normalize, recipe=name,
                            overrides=over, seed=seed, device=device, precision=precision,
                            channels_last=channels_last,
                            spectrum=spectrum if rec["param"] == "maco" else None)
            wall = time.perf_counter() - t0
            own = [s["target_softmax"] for s in res.stats]
            rob = [s["robustness"] for s in res.stats if s["robustness"] is not None]
            row = {"maker": maker, "recipe": entry, "steps": rec["class_steps"] or rec["steps"],
                   "crops": rec["crops"] if rec["transforms"] == "maco" else None, "classes": classes,
                   "own_softmax": own, "robustness": rob, "s_per_unit": wall / len(classes), "judges": {}}
            for judge, jnet in others.items():
                row["judges"][judge] = scores(jnet, res.images, classes, device)
            rows.append(row)
            if save is not None:  # one strip per maker and recipe, the classes in order (maco's with its alpha below)
                from featviz.figures import montage, save_png

                strip = res.images if res.transparency is None else np.concatenate(
                    [res.images, res.images * _alpha(res.transparency)[:, None] + (1 - _alpha(res.transparency)[:, None])])
                save.mkdir(parents=True, exist_ok=True)
                save_png(save / f"{maker}-{len(rows):02d}.png", montage(strip, cols=len(classes), gap=4))
                row["picture"] = str(save / f"{maker}-{len(rows):02d}.png")
            judged = "; ".join(f"{j}: top-1 {sum(x['top1'] for x in sc)}, top-5 {sum(x['top5'] for x in sc)}, "
                               f"softmax {np.mean([x['softmax'] for x in sc]):.3f}" for j, sc in row["judges"].items())
            print(f"  {maker} / {entry}: {len(classes)} images in {wall:.1f} s, own softmax {np.mean(own):.3f}"
                  f"{'; ' + judged if judged else ''}", flush=True)
            if json_path:
                json_path.write_text(json.dumps(rows, indent=1))
    return rows


@torch.no_grad()
def channel_means(net, layer: str, images: np.ndarray, device="cpu", batch: int = 16) -> np.ndarray:
    """(N, C) fp32: each image's channel means (over positions) at `layer`'s output; images in [0, 1]
    (float) or uint8."""
    module = dict(net.named_modules())[layer]
    out = []
    hook = module.register_forward_hook(lambda m, i, o: out.append(o.float().mean((2, 3)).cpu()))
    try:
        for s in range(0, len(images), batch):
            x = torch.from_numpy(images[s:s + batch]).to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            net(normalize(x).contiguous(memory_format=torch.channels_last))
    finally:
        hook.remove()
    return torch.cat(out).numpy()


def spread_units(channels: int, n: int) -> list[int]:
    """n channels spread evenly over the layer (0, C/n, 2C/n, ...): no choice by how they look."""
    return sorted({int(i * channels / n) for i in range(n)})


def run_features(nets, recipes, per_layer, real: np.ndarray, seed, spectrum, device="cpu", precision="fp32",
                 channels_last=False, layers=None, json_path: Path | None = None) -> list[dict]:
    """One row per (network, layer, recipe): `reached` of each unit's picture against the real images."""
    rows = []
    layers = layers or FEATURE_LAYERS
    for arch, net in nets.items():
        for layer in layers.get(arch, []):
            acts = channel_means(net, layer, real, device)
            units = spread_units(acts.shape[1], per_layer)
            top, mean = acts.max(0), acts.mean(0)
            for entry in recipes:
                name, _, given = entry.partition(":")
                over = {"robustness_samples": 0, "snapshots": 0, **(json.loads(given) if given else {})}
                rec = get_recipe(name, over)
                t0 = time.perf_counter()
                res = visualize(net, layer, units, "conv", (3, SIZE, SIZE), normalize=normalize, recipe=name,
                                overrides=over, seed=seed, device=device, precision=precision,
                                channels_last=channels_last, spectrum=spectrum if rec["param"] == "maco" else None)
                wall = time.perf_counter() - t0
                pic = channel_means(net, layer, res.images, device)
                reached = [float((pic[i, u] - mean[u]) / (top[u] - mean[u])) if top[u] > mean[u] else None
                           for i, u in enumerate(units)]
                row = {"network": arch, "layer": layer, "recipe": entry, "units": units, "reached": reached,
                       "activation": [float(pic[i, u]) for i, u in enumerate(units)],
                       "real_max": [float(top[u]) for u in units], "real_mean": [float(mean[u]) for u in units],
                       "steps": rec["steps"], "crops": rec["crops"] if rec["transforms"] == "maco" else None,
                       "real_images": len(real), "s_per_unit": wall / len(units)}
                rows.append(row)
                ok = [r for r in reached if r is not None]
                print(f"  {arch} {layer} / {entry}: units {units}, reached "
                      f"{', '.join('–' if r is None else f'{r:.2f}' for r in reached)} (median "
                      f"{np.median(ok) if ok else float('nan'):.2f}) in {wall:.1f} s", flush=True)
                if json_path:
                    json_path.write_text(json.dumps(rows, indent=1))
    return rows


def feature_table(rows: list[dict]) -> str:
    lines = ["| network | layer | recipe | steps | units | reached (each) | reached median | ≥ 1 | s / unit |",
             "|---" * 9 + "|"]
    for r in rows:
        ok = [x for x in r["reached"] if x is not None]
        steps = f"{r['steps']}" + (f" × {r['crops']} crops" if r["crops"] else "")
        each = ", ".join("–" if x is None else f"{x:.2f}" for x in r["reached"])
        med = f"{np.median(ok):.2f}" if ok else "–"
        lines.append(f"| {r['network']} | {r['layer']} | `{r['recipe']}` | {steps} | {len(r['units'])} | {each} | "
                     f"{med} | {sum(x >= 1 for x in ok)}/{len(ok)} | {r['s_per_unit']:.1f} |")
    return "\n".join(lines)


def _alpha(maps: np.ndarray) -> np.ndarray:
    """Each transparency map as an alpha (clipped at its 80th percentile, / its max: Xplique's plot_maco)."""
    from featviz.report.transparency import display_alpha

    return np.stack([display_alpha(m) for m in maps])


def table(rows: list[dict]) -> str:
    lines = ["| maker | recipe | steps | own softmax mean | robustness mean | judge | top-1 | top-5 | "
             "class softmax mean | s / unit |", "|---" * 10 + "|"]
    for r in rows:
        rob = f"{np.mean(r['robustness']):.3f}" if r["robustness"] else "–"
        steps = f"{r['steps']}" + (f" × {r['crops']} crops" if r["crops"] else "")
        judged = r["judges"] or {"–": None}
        for judge, sc in judged.items():
            if sc is None:
                t1 = t5 = sm = "–"
            else:
                n = len(sc)
                t1 = f"{sum(s['top1'] for s in sc)}/{n}"
                t5 = f"{sum(s['top5'] for s in sc)}/{n}"
                sm = f"{np.mean([s['softmax'] for s in sc]):.3f}"
            lines.append(f"| {r['maker']} | `{r['recipe']}` | {steps} | {np.mean(r['own_softmax']):.3f} | {rob} | "
                         f"{judge} | {t1} | {t5} | {sm} | {r['s_per_unit']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=len(CLASSES),
                   help=f"the first N of the {len(CLASSES)} fixed classes (0: no class images)")
    p.add_argument("--features", type=int, default=0, metavar="N",
                   help="also N feature units at each of three depths of each network (default 0: none)")
    p.add_argument("--feature-recipes", nargs="*", default=FEATURE_RECIPES, help="recipes for the feature units")
    p.add_argument("--feature-images", nargs="*", default=[],
                   help="folders of more ImageNet images (any layout) for the features' real activations")
    p.add_argument("--steps", type=int, default=None, help="steps for every recipe (default: each recipe's own; steps in an entry's JSON win)")
    p.add_argument("--crops", type=int, default=None, help="maco's crops per step (default: the recipe's 32)")
    p.add_argument("--recipes", nargs="*", default=RECIPES,
                   help='recipe names, or NAME:JSON for a recipe with overrides, e.g. \'maco:{"canvas_view": 0.5}\'')
    p.add_argument("--makers", nargs="*", default=None, help=f"only these networks make images ({', '.join(MODELS)}); "
                   "every network present judges")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", help="auto (bf16 where the device does it natively, as "
                   "ascent.precision), fp32 or bf16: autocast of the optimization's forward passes")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="run the networks on NCHW tensors (default NHWC, as ascent.channels_last)")
    p.add_argument("--models", default=str(SHARED / "models"), help="folder of the two ImageNet state_dicts")
    p.add_argument("--spectrum-images", default=str(SHARED / "data" / "foolbox-samples"))
    p.add_argument("--json", default=None, help="also write the rows (per class) to this file")
    p.add_argument("--save-images", default=None, help="write each maker and recipe's images as one PNG strip here")
    a = p.parse_args(argv)
    if not 0 <= a.classes <= len(CLASSES):
        p.error(f"--classes must be 0..{len(CLASSES)}")
    if a.features < 0:
        p.error("--features must be >= 0")
    extra_files = []
    for folder in a.feature_images:
        if not Path(folder).is_dir():
            p.error(f"--feature-images: {folder} is not a folder")
        extra_files += image_files(Path(folder))
    torch.set_num_threads(a.threads)
    from featviz.device import resolve_precision

    a.precision = resolve_precision(a.precision, torch.device(a.device), "--precision")
    nets = {k: v.to(a.device) for k, v in load_networks(Path(a.models)).items()}
    if a.channels_last:
        nets = {k: v.to(memory_format=torch.channels_last) for k, v in nets.items()}
    if not nets:
        print("no ImageNet network found: nothing to measure")
        return 0
    classes = CLASSES[:a.classes]
    spectrum, source = imagenet_spectrum(Path(a.spectrum_images))
    print(f"bench_quality: {len(classes)} classes, recipes {', '.join(a.recipes)}, steps {a.steps or 'own'}, "
          f"maco crops {a.crops or 'own'}, seed {a.seed}, {a.threads} threads, {a.device} {a.precision}"
          f"{' channels_last' if a.channels_last else ''}; "
          f"maco's magnitude: {source}; load average {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    json_path = Path(a.json) if a.json else None
    rows = run(nets, a.recipes, classes, a.steps, a.crops, a.seed, spectrum, a.device, a.precision,
               channels_last=a.channels_last, makers=a.makers, save=Path(a.save_images) if a.save_images else None,
               json_path=json_path) if classes else []
    if rows:
        print()
        print(table(rows))
    features = []
    if a.features:
        files = imagenet_files(Path(a.spectrum_images)) + extra_files
        if not files:
            print("no real ImageNet images: the feature units are not scored")
        else:
            print(f"feature units: {a.features} per layer, reached over {len(files)} real images", flush=True)
            fjson = json_path.with_name(json_path.stem + "-features.json") if json_path else None
            features = run_features(nets, a.feature_recipes, a.features, load_images(files), a.seed, spectrum,
                                    a.device, a.precision, a.channels_last, json_path=fjson)
            print()
            print(feature_table(features))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; load average {os.getloadavg()[0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
