"""Where the network looks, per class (`featviz attribute`; the class pages): for each class, its
strongest test images (by its logit: the probe's top-k of the class layer, probe.json) and its most
confident mistakes (test images of other classes that the network calls this class, by the
probability it gives them: probe/predictions.npz), each explained for this class three ways
(featviz.attribution):

* **Grad-CAM** at the last conv stage of units.json (the last layer of kind conv): where, at that
  stage's resolution, the evidence for the class lies;
* **SmoothGrad**: the input gradient averaged over `samples` noisy copies (noise `noise`);
* the **vanilla gradient** (the seeds' saliency, as the probe's figure computes it).

Cost: per explained image one forward-backward pass for Grad-CAM and the gradient, `samples` for
SmoothGrad; (images + mistakes) x classes images at most.

Output (featviz.results.write_class_views): `attribution.npz` with the pictures and maps at most
`size` px a side (uint8; the maps scaled to [0, 255]), `attribution.json` with each class's rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FeatvizError

MAPS = ("gradcam", "smoothgrad", "gradient")


def attribution_config(cfg: dict | None) -> dict | None:
    """runs[i].attribution with the schema's defaults filled; None where it is off (`attribution: null`)."""
    from .checks import check_sections
    from .schema import with_defaults

    if cfg is None:
        return None
    check_sections(attribution=dict(cfg))
    return with_defaults("attribution", dict(cfg))


def last_conv(units: dict) -> dict | None:
    """The last conv stage of units.json (computation order), or None where the network has none."""
    convs = [layer for layer in units["layers"] if layer["kind"] == "conv"]
    return convs[-1] if convs else None


def choose(top_index: list[list[int]], predicted: np.ndarray, confidence: np.ndarray, labels: np.ndarray,
           images: int, mistakes: int) -> list[dict]:
    """Per class c: `top`, its first `images` strongest test images (top_index[c]), and `mistakes`,
    the `mistakes` test images not labelled c that are predicted c with the highest probability
    (ties: the lower index first)."""
    out = []
    for c, top in enumerate(top_index):
        wrong = np.flatnonzero((predicted == c) & (labels != c))
        wrong = wrong[np.lexsort((wrong, -confidence[wrong]))][:mistakes]
        out.append({"top": [int(i) for i in top[:images]], "mistakes": [int(i) for i in wrong]})
    return out


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float, its larger side brought down to `size` (area-averaged); smaller ones kept."""
    h, w = x.shape[-2:]
    if max(h, w) <= size:
        return x
    scale = size / max(h, w)
    return F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")


def to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def explain(model, images_u8: torch.Tensor, targets: torch.Tensor, layer: dict | None, cfg: dict, seed: int,
            device) -> dict[str, np.ndarray]:
    """The three maps (MAPS) of `images_u8` for class targets[i], each (N, H, W) float32 in [0, 1]
    (gradcam: None without a conv stage)."""
    from .attribution import gradcam, saliency, smoothgrad
    from .probe import module_of

    bs = min(64, model.batch_for(None))
    cam = None
    if layer is not None:
        try:
            cam = gradcam(model, images_u8, module_of(model.net, layer), targets, device, bs)
        except ValueError as exc:  # the network does not show the stage's output with its gradient
            print(f"featviz: warning: {exc} (layer {layer['name']}): the class pages show no Grad-CAM", flush=True)
    sg = smoothgrad(model, images_u8, targets, device, cfg["samples"], cfg["noise"], seed, bs)
    grad, _ = saliency(model, images_u8, device, targets, bs)
    return {"gradcam": cam, "smoothgrad": sg, "gradient": grad}


def run_attribute(results: Path, data_dir: Path, out_dir: Path, cfg: dict, select: dict | None = None, *,
                  seed: int = 0, device: str = "cpu", trust_checkpoint: bool = False) -> dict:
    """`featviz attribute`: every input checked before any compute, then attribution.{npz,json}.
    `select`: the ascent's `layers` and `units`; only the classes it visualizes (those with a class
    page) are explained (missing: all)."""
    from .artifacts import check_prepared_file, read_prepared, read_probe_summary, read_units
    from .device import resolve_device
    from .model import load_model
    from .results import RunFolder, read_predictions, write_class_views

    for key in ("images", "mistakes", "samples", "size"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key in ("samples", "size") else 0):
            raise FeatvizError(f"attribution.{key}: must be a whole number >= {1 if key in ('samples', 'size') else 0}, got {v!r}")
    folder = RunFolder(results)
    units = read_units(folder.units)
    cls = next((layer for layer in units["layers"] if layer["kind"] == "class"), None)
    if cls is None:  # no class pages: an empty record (the report shows nothing)
        print(f"attribute: units file {folder.units} has no class layer: nothing to explain", flush=True)
        write_class_views(out_dir, {"layer": None, "settings": cfg, "seed": seed, "rows": [], "classes": [],
                                    "maps": []}, {})
        return {}
    if not folder.probe_json.is_file():
        raise FeatvizError(f"attribute: {folder.probe_json} is missing (run `featviz probe` first: the classes' "
                           f"strongest test images and the predictions)")
    from .units import check_selection, selected_units

    check_selection(units, select or {}, "ascent")
    shown = set(selected_units(cls, select or {}))
    summary = read_probe_summary(folder.probe_json)
    entry = next((e for e in summary["layers"] if e["name"] == cls["name"]), None)
    if entry is None or len(entry["per_unit"]) != cls["units"]:
        raise FeatvizError(f"attribute: {folder.probe_json} has no summary of the class layer '{cls['name']}': "
                           f"re-run `featviz probe`")
    pred = read_predictions(folder.predictions)
    check_prepared_file(data_dir, "test")
    model = load_model(folder.model_dir, trust_checkpoint)
    test = read_prepared(data_dir, "test", mmap=True)
    if list(test.images.shape[1:]) != list(model.input_shape) or len(test.images) != len(pred.labels):
        raise FeatvizError(f"attribute: prepared dataset {data_dir} ({len(test.images)} images of "
                           f"{list(test.images.shape[1:])}) does not match the model's input {list(model.input_shape)} "
                           f"and the {len(pred.labels)} predictions in {folder.predictions}: re-run `featviz probe`")
    # the test labels as the network's output indices (an imported network's outputs need not be the
    # dataset's classes: a folder of 19 ImageNet classes labels them 0..18)
    labels = model.output_labels(torch.as_tensor(np.asarray(test.labels))).numpy()
    picks = choose([row.get("top_index", []) for row in entry["per_unit"]], pred.top_class[:, 0],
                   pred.top_prob[:, 0], labels, cfg["images"], cfg["mistakes"])
    rows, index, target = [], [], []
    classes = []
    for c, p in enumerate(picks):
        if c not in shown:
            continue
        rec = {"class": c, "name": units["classes"][c] if c < len(units["classes"]) else str(c)}
        for kind in ("top", "mistakes"):
            rec[kind] = []
            for i in p[kind]:
                rec[kind].append(len(rows))
                rows.append({"index": i, "label": int(labels[i]), "predicted": int(pred.top_class[i, 0]),
                             "confidence": round(float(pred.top_prob[i, 0]), 4), "target": c})
                index.append(i)
                target.append(c)
        classes.append(rec)
    dev = resolve_device(device)
    model.to(dev)
    layer = last_conv(units)
    idx = torch.as_tensor(np.asarray(index, np.int64))
    images = torch.as_tensor(np.asarray(test.images[idx.numpy()])) if len(index) else \
        torch.zeros((0, *model.input_shape), dtype=torch.uint8)
    try:
        maps = explain(model, images, torch.as_tensor(np.asarray(target, np.int64)), layer, cfg, seed, dev)
    except torch.OutOfMemoryError as exc:
        from .errors import why
        raise FeatvizError(f"attribute: out of memory on {dev} ({why(exc)})") from None
    size = cfg["size"]
    arrays = {"images": to_u8(shrink(images.float() / 255.0, size))}
    for name, m in maps.items():
        if m is not None:
            arrays[name] = to_u8(shrink(torch.as_tensor(m)[:, None], size))[:, 0]
    record = {"layer": None if layer is None else layer["name"], "settings": cfg, "seed": seed, "rows": rows,
              "classes": classes, "maps": [k for k in MAPS if k in arrays]}
    write_class_views(out_dir, record, arrays)
    print(f"attribute: {len(rows)} images explained for {len(classes)} classes "
          f"(Grad-CAM at {record['layer'] or 'no conv stage'}, SmoothGrad x{cfg['samples']}, gradient)", flush=True)
    return record
