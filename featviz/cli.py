"""`featviz <verb>`: every workflow stage as a command over plain files.

This module parses each verb's arguments and reports errors; featviz.verbs does each verb's work.

A user error prints one line, `featviz: error: ...`, and exits with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

_STARTED = time.perf_counter()
from pathlib import Path

from . import verbs
from .errors import FeatvizError, plain


def _json_arg(text: str):
    """JSON given inline, or @path to a JSON/YAML file."""
    import yaml

    try:
        if text.startswith("@"):
            path = Path(text[1:])
            if path.suffix in (".yaml", ".yml"):
                obj = yaml.safe_load(path.read_text()) or {}
            else:
                obj = json.loads(path.read_text())
        else:
            obj = json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise argparse.ArgumentTypeError(f"not a JSON object or @file: {' '.join(str(exc).split())}") from None
    return obj


def _json_object(text: str) -> dict:
    """_json_arg that must give an object (a config section)."""
    obj = _json_arg(text)
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object (a config section): {text[:80]}")
    return obj


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one `featviz: error:` line (exit 2) like every other user error."""

    def error(self, message):
        verb = self.prog.removeprefix("featviz").strip()
        self.exit(2, f"featviz: error: {verb + ': ' if verb else ''}{message} (see `{self.prog} --help`)\n")


def _verb(sub, name, fn, help_):
    s = sub.add_parser(name, help=help_, description=help_)
    s.set_defaults(fn=fn)
    return s


def _device(s) -> None:
    s.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N")


def _trust(s) -> None:
    s.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints that need arbitrary unpickling (only for files you trust)")


def _add_data(sub) -> None:
    s = _verb(sub, "data", verbs.cmd_data, "prepare a dataset (download or import if needed) into tensors")
    s.add_argument("--config", type=_json_object, required=True, help='dataset config, e.g. {"dataset": "mnist"}')
    s.add_argument("--data-root", help="dataset folder (default: $FEATVIZ_DATA_ROOT, else ./data)")
    s.add_argument("--out", required=True)


def _add_train(sub) -> None:
    s = _verb(sub, "train", verbs.cmd_train, "train a network on a prepared dataset")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--model", type=_json_object, required=True, help="model config (preset or layers)")
    s.add_argument("--train", type=_json_object, required=True, help="training config")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--run", default="")
    s.add_argument("--out", required=True)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    _device(s)


def _add_import_model(sub) -> None:
    s = _verb(sub, "import-model", verbs.cmd_import_model, "import a model trained elsewhere (state_dict with a spec or "
                   "a class, TorchScript, torch.export) and evaluate it on a prepared dataset")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--model", type=_json_object, required=True, help="model config with an `import` section")
    s.add_argument("--run", default="")
    s.add_argument("--out", required=True)
    _device(s)
    _trust(s)


def _add_evaluate(sub) -> None:
    s = _verb(sub, "evaluate", verbs.cmd_evaluate, "test accuracy, per-class accuracy, confusion, misclassified")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--predictions", default=None,
                   help="the probe's test predictions (results/<run>/probe/predictions.npz) of this model and "
                        "test set; omit to run a pass of its own")
    _device(s)
    _trust(s)


def _add_units(sub) -> None:
    s = _verb(sub, "units", verbs.cmd_units, "list every module a model's units can be read from (with output shapes) and "
                   "write the selected layers and the classes to units.json")
    s.add_argument("--model", default=None, help="a model folder (results/<run>/model)")
    s.add_argument("--config", default=None, help="or a config file: the network its run's model section names "
                   "(before any run; with a checkpoint, its weights are loaded)")
    s.add_argument("--run", default=None, help="with --config: the run's name (default: the first run)")
    s.add_argument("--targets", type=_json_arg, default=None,
                   help='ascent.targets: a JSON list of module names/globs, {"type": ..., "name": ...} objects or '
                        '"default" (default: the default targets)')
    s.add_argument("--out", default=None, help="units.json (omit: only list)")
    _trust(s)


def _add_select(sub) -> None:
    s = _verb(sub, "select", verbs.cmd_select, "check a run's ascent section (layers, units, recipes) against units.json and "
                   "write the units each layer visualizes (selection.json)")
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--ascent", type=_json_object, required=True, help="the run's ascent section (JSON)")
    s.add_argument("--where", default="ascent", help="the config key to name in messages (runs[0].ascent)")
    s.add_argument("--out", required=True, help="selection.json")


def _add_ascend(sub) -> None:
    s = _verb(sub, "ascend", verbs.cmd_ascend, "activation maximization for one chunk of units of one layer")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--layer", required=True)
    s.add_argument("--chunk", type=int, required=True)
    s.add_argument("--config", type=_json_object, required=True, help="ascent config")
    s.add_argument("--out-npz", required=True)
    s.add_argument("--out-json", required=True)
    _spectrum(s)
    _device(s)
    _trust(s)


def _spectrum(s) -> None:
    s.add_argument("--spectrum", default=None, help="the run's magnitude spectrum (results/<run>/spectrum.npz, "
                   "`featviz spectrum`): needed by recipes with param maco")


def _add_spectrum(sub) -> None:
    s = _verb(sub, "spectrum", verbs.cmd_spectrum, "the average amplitude spectrum of a prepared dataset's images "
              "(colour-decorrelated for RGB): the fixed Fourier magnitude of the maco recipe")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--split", default="auto", help="auto (default: train, or test where there are no training images), train or test")
    s.add_argument("--out", required=True, help="results/<run>/spectrum.npz")


def _add_compare(sub) -> None:
    s = _verb(sub, "compare", verbs.cmd_compare, "one entry of a method comparison (ascent.compare): a few units of each "
                   "layer given visualized with one recipe (and overrides), each unit timed, for the methods page")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--layer", required=True, action="append", help="a layer to compare on (repeat for more)")
    s.add_argument("--config", type=_json_object, required=True, action="append",
                   help='{"recipe": NAME, "overrides": {...}, "label": TEXT, "units_per_layer": N, "units": [...] '
                        'or null, "seed": 0, "precision": "auto", "channels_last": true}: one for every --layer, '
                        'or one per --layer, in their order')
    s.add_argument("--transfer-model", default=None,
                   help="the run's independent model folder: class images get its transfer score")
    _spectrum(s)
    s.add_argument("--out-dir", default=None, help="writes DIR/<layer>.npz and DIR/<layer>.json per layer")
    s.add_argument("--out-npz", default=None, help="with one --layer: its images")
    s.add_argument("--out-json", default=None, help="with one --layer: its stats")
    _device(s)
    _trust(s)


def _add_probe(sub) -> None:
    s = _verb(sub, "probe", verbs.cmd_probe, "activations over the test set: baselines, top-k images, maps, saliency, pruning")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--out", required=True, help="results/<run>/probe")
    # the probe section's keys: omitted, they take the schema's defaults (config/README.md, `probe`)
    s.add_argument("--top-k", type=int, default=None, help="strongest test images kept per unit (probe.top_k)")
    s.add_argument("--samples", type=int, default=None, help="sample inputs for activation and saliency maps (probe.samples)")
    s.add_argument("--corr-threshold", type=float, default=0.9, help="near-duplicate units: correlation above this")
    s.add_argument("--prune-images", type=int, default=None, help="test images used for the pruning curves (probe.prune_images)")
    s.add_argument("--prune-tolerance", type=float, default=0.005, help="accuracy drop allowed when pruning")
    s.add_argument("--histogram-images", type=int, default=None,
                   help="activations and histograms over the first this many test images (probe.histogram_images)")
    s.add_argument("--prune-passes", type=int, default=None,
                   help="forward passes over the pruning images for all curves together (probe.prune_passes)")
    s.add_argument("--prune-precision", default=None,
                   help="auto, fp32 or bf16: autocast dtype of the pruning passes (probe.prune_precision)")
    s.add_argument("--precision", default=None,
                   help="auto, fp32 or bf16: autocast dtype of the pass over the test set (probe.precision)")
    _device(s)
    _trust(s)


def _add_circuits(sub) -> None:
    s = _verb(sub, "circuits", verbs.cmd_circuits, "which units of the previous layer drive each unit most, and which of "
              "the next it drives (weights where directly connected, else gradient x activation over test images)")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--data", required=True, help="prepared dataset folder (its test set feeds the data measure)")
    s.add_argument("--images", type=int, help="test images the data measure averages over (default: the schema's "
                   "runs[i].circuits.images)")
    s.add_argument("--top", type=int, help="strongest positive and negative partners kept per unit (schema default)")
    s.add_argument("--measure", help="auto (weights where directly connected, else data) or data (schema default)")
    s.add_argument("--memory-mb", type=int, help="working memory of the data measure in MB: the images per batch "
                   "follow from it (schema default: runs[i].circuits.memory_mb)")
    s.add_argument("--layers", nargs="*", default=None, help="only these layers of units.json (ascent.layers; "
                   "default all)")
    s.add_argument("--shown", default=None, help='the units the report shows, as JSON '
                   '{"layer": [unit, ...]} (ascent.units; a layer left out: all its units)')
    s.add_argument("--out", required=True, help="results/<run>/circuits/circuits.json")
    _device(s)
    _trust(s)

def _add_transfer(sub) -> None:
    s = _verb(sub, "transfer", verbs.cmd_transfer,
                   "score a run's class images on an independently trained model (writes transfer.json)")
    s.add_argument("--results", required=True, help="results/<run> (units.json, model/, ascent/<classes>/)")
    s.add_argument("--transfer-model", default=None, help="the independent model's folder (omit: no transfer score)")
    # robustness is the ascent job's (copied from its chunk records): these two are accepted, not used
    s.add_argument("--seed", type=int, default=None, help="ignored (robustness is the ascent's; kept for old command lines)")
    s.add_argument("--samples", type=int, default=None, help="ignored (the recipe's robustness_samples decide)")
    s.add_argument("--out", required=True, help="results/<run>/transfer.json")
    _device(s)
    _trust(s)


def _add_trust(sub) -> None:
    s = _verb(sub, "trust", verbs.cmd_trust, "how far to trust each picture: does it drive its unit through the units below "
              "the way the unit's top test images do (writes trust.json)")
    s.add_argument("--results", required=True, help="results/<run> (model/, units.json, probe/probe.json, ascent/)")
    s.add_argument("--data", required=True, help="the prepared dataset folder (its test set)")
    s.add_argument("--config", type=_json_object, default={},
                   help='runs[i].trust: {"images": 32, "layers_below": 3, "threshold": 0.5} (missing keys: the schema\'s)')
    s.add_argument("--seed", type=int, default=0, help="seed of the random test images (the baseline)")
    s.add_argument("--out", required=True, help="results/<run>/trust.json")
    _device(s)
    _trust(s)


def _select(s, what: str) -> None:
    s.add_argument("--select", type=_json_object, default={},
                   help=f'runs[i].ascent\'s {{"layers": [...], "units": {{...}}}}: {what} are those the ascent '
                        f'visualizes (missing: all)')


def _add_attribute(sub) -> None:
    s = _verb(sub, "attribute", verbs.cmd_attribute, "where the network looks, per class: Grad-CAM, SmoothGrad and the "
              "gradient of each class's strongest test images and most confident mistakes (writes attribution/)")
    s.add_argument("--results", required=True, help="results/<run> (model/, units.json, probe/probe.json, "
                   "probe/predictions.npz)")
    s.add_argument("--data", required=True, help="the prepared dataset folder (its test set)")
    s.add_argument("--config", type=_json_object, default={},
                   help='runs[i].attribution: {"images": 4, "mistakes": 4, "samples": 16, "noise": 0.15, "size": 112} '
                        '(missing keys: the schema\'s)')
    _select(s, "the classes explained")
    s.add_argument("--seed", type=int, default=0, help="seed of SmoothGrad's noise")
    s.add_argument("--out", required=True, help="results/<run>/attribution")
    _device(s)
    _trust(s)


def _add_dream(sub) -> None:
    s = _verb(sub, "dream", verbs.cmd_dream, "each visualized layer on real test images: DeepDream and the caricature "
              "(writes layer_views/)")
    s.add_argument("--results", required=True, help="results/<run> (model/, units.json)")
    s.add_argument("--data", required=True, help="the prepared dataset folder (its test set)")
    s.add_argument("--config", type=_json_object, default={},
                   help='runs[i].layer_views: {"images": 3, "recipe": "lucid-scaled", "steps": 128, ...} '
                        '(missing keys: the schema\'s)')
    _select(s, "the layers shown")
    s.add_argument("--seed", type=int, default=0, help="seed of the test images' sample and the caricatures' noise")
    s.add_argument("--out", required=True, help="results/<run>/layer_views")
    _device(s)
    _trust(s)


def _add_match(sub) -> None:
    s = _verb(sub, "match", verbs.cmd_match, "cross-network comparison: correlate a run's units with another network's over the "
             "test set, match them one to one, and find each layer's best-matching layer")
    s.add_argument("--results", required=True, help="results/<run> of network A (model/, units.json)")
    s.add_argument("--other-results", default=None, help="results/<run> of network B, another run (its ascent images "
                   "are the pictures of its units)")
    s.add_argument("--other-model", default=None, help="a model folder of network B without units.json (the transfer "
                   "model: its default layers)")
    s.add_argument("--label", default=None, help="network B's name on the page (default: its run id, or transfer)")
    s.add_argument("--data", required=True, help="the prepared dataset folder both were trained on")
    s.add_argument("--config", type=_json_object, default={}, help='runs[i].match: {"images": 2000, "close": 0.8}')
    s.add_argument("--seed", type=int, default=0, help="seed of the test-image sample")
    s.add_argument("--out", required=True, help="results/<run>/match/<other>.json (and .npz beside it)")
    _device(s)
    _trust(s)


def _add_search(sub) -> None:
    s = _verb(sub, "search", verbs.cmd_search, "random search over a recipe's numeric parameters on a few units")
    s.add_argument("--model", required=True)
    s.add_argument("--layer", required=True, help="a layer name from units.json (classes for the classes)")
    s.add_argument("--recipe", default="hvass")
    s.add_argument("--trials", type=int, default=20, help="trial 0 is the recipe unchanged")
    s.add_argument("--units", type=int, nargs="*", default=None, help="unit indices (default the first 4)")
    s.add_argument("--transfer-model", default=None, help="classes: also score on this independent model")
    s.add_argument("--data", default=None, help="prepared dataset folder: normalize objectives by real images")
    s.add_argument("--max-steps", type=int, default=400)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="JSON file with the ranked trials and the best overrides")
    _device(s)
    _trust(s)


def _add_report(sub) -> None:
    s = _verb(sub, "report", verbs.cmd_report, "render one run's HTML report")
    s.add_argument("--results", required=True, help="results/<run>")
    s.add_argument("--config", type=_json_object, default={}, help="the run's config, shown in the report")
    s.add_argument("--out", required=True, help="reports/<run>")
    s.add_argument("--match", nargs="*", default=None, help="the comparisons to render (results/<run>/match/<other>.json; "
                   "default: every one there)")


def _add_index(sub) -> None:
    s = _verb(sub, "index", verbs.cmd_index, "render the index page linking every run")
    s.add_argument("--out", required=True, help="reports/index.html")
    s.add_argument("runs", nargs="*", help="reports/<run> folders, listed first; every other report folder beside "
                   "--out is listed after them")


def _add_archive(sub) -> None:
    s = _verb(sub, "archive", verbs.cmd_archive, "pack a run's report and results with a sha256 manifest")
    s.add_argument("--report", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--extra", nargs="*", default=[], help="more files to include (config snapshot)")


def _add_verify_archive(sub) -> None:
    s = _verb(sub, "verify-archive", verbs.cmd_verify_archive, "check an archive (.tar.gz or extracted folder) against its manifest")
    s.add_argument("archive", help="<run>.tar.gz, or the folder it was extracted to")


def _add_check_config(sub) -> None:
    s = _verb(sub, "check-config", verbs.cmd_check_config, "check config files' YAML syntax (file and line) and the schema, "
                   "as the workflow does before it builds the DAG")
    s.add_argument("files", nargs="+", help="config.yaml files (also those you pass to snakemake --configfile)")
    s.add_argument("--schema-only", action="store_true", help="only the YAML and the schema (no torch import, "
                   "no file, name or layer checks)")


def _add_recipes(sub) -> None:
    s = _verb(sub, "recipes", verbs.cmd_recipes, "list the activation-maximization recipes")
    s.add_argument("-v", "--verbose", action="store_true", help="show every parameter")


# one function per verb's subparser, in the order `featviz --help` lists them
SUBPARSERS = (_add_data, _add_train, _add_import_model, _add_evaluate, _add_units, _add_select, _add_spectrum,
              _add_ascend, _add_compare, _add_probe, _add_circuits, _add_transfer, _add_trust, _add_attribute, _add_dream, _add_match, _add_search,
              _add_report, _add_index, _add_archive,
              _add_verify_archive, _add_check_config, _add_recipes)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="featviz", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    for add in SUBPARSERS:
        add(sub)
    return p


# Verbs that only read and write files: they skip torch's import (about 2 s), which matters at the
# end of a report, where these jobs run one after another.
WITHOUT_TORCH = frozenset({"report", "index", "archive", "verify-archive"})


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.verb not in WITHOUT_TORCH:
            import torch  # noqa: F401  (imported here so that its cost is measured apart from the work)

        imported = time.perf_counter()
        args.fn(args)
        if args.verb not in ("recipes", "verify-archive", "check-config"):
            print(f"featviz {args.verb}: {time.perf_counter() - imported:.2f} s of work after "
                  f"{imported - _STARTED:.2f} s of start-up (imports)", flush=True)
    except FeatvizError as exc:
        print(f"featviz: error: {plain(str(exc), 2000)}", file=sys.stderr)  # one line, no colour codes
        return 2
    except KeyboardInterrupt:
        print("featviz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `featviz units ... | head`: the reader left
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
