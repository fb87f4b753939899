"""`featviz <verb>`: every workflow stage as a command over plain files.

A user error prints one line, `featviz: error: ...`, and exits with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

_STARTED = time.perf_counter()
from pathlib import Path

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


def cmd_data(a):
    from .data import prepare

    from .config import ENV_DATA_ROOT

    root = a.data_root or os.environ.get(ENV_DATA_ROOT) or "data"
    info = prepare(a.config, Path(root), Path(a.out))
    print(f"prepared {info['dataset']}: {info['n_train']} train / {info['n_test']} test images of shape "
          f"{info['input_shape']}, {len(info['classes'])} classes")


def cmd_train(a):
    from .device import claim_device
    from .train import train

    metrics = train(Path(a.data), a.model, a.train, Path(a.out), seed=a.seed, device=claim_device(a.device),
                    run_name=a.run, progress=not a.no_progress, threads=a.threads)
    print(f"trained in {metrics['train_wall_s']} s: test accuracy {metrics['final_test_accuracy']:.4f}")


def cmd_import_model(a):
    from .device import claim_device
    from .import_model import import_model

    metrics = import_model(a.model, Path(a.data), Path(a.out), trust=a.trust_checkpoint, device=claim_device(a.device),
                           run_name=a.run)
    imp = metrics["imported"]
    print(f"imported {imp['path']} ({imp['format']}: {imp['how']}): test accuracy "
          f"{metrics['final_test_accuracy']:.4f}")


def cmd_evaluate(a):
    from .device import claim_device
    from .evaluate import evaluate
    from .model import load_model

    m = evaluate(load_model(Path(a.model), a.trust_checkpoint), Path(a.data), Path(a.out), claim_device(a.device))
    print(f"test accuracy {m['test_accuracy']:.4f} on {m['n_test']} images")


def cmd_units(a):
    from .io import write_json
    from .model import load_model
    from .units import enumerate_units

    model = load_model(Path(a.model), a.trust_checkpoint)
    family = "torchvision" if model.meta.get("format") == "torchvision" else "spec"
    units = enumerate_units(model.net, model.input_shape, model.classes, a.targets, family=family)
    if a.out:
        write_json(a.out, units)
    chosen = {layer["name"] for layer in units["layers"]} | {n for layer in units["layers"] for n in layer.get("aliases", [])}
    print(f"{'module':<40} {'type':<22} {'role':<10} {'output':<18} selected")
    for e in units["available"]:
        shape = "x".join(str(d) for d in e["output_shape"])
        calls = f" (called {e['calls']}x: first call)" if e.get("calls", 1) > 1 else ""
        print(f"{e['name']:<40} {e['module_type']:<22} {e['role']:<10} {shape:<18} {'yes' if e['name'] in chosen else ''}{calls}")
    n = sum(layer["units"] for layer in units["layers"])
    print(f"{len(units['layers'])} layers selected (with the classes), {n} units")


def cmd_ascend(a):
    from .ascent_job import run_chunk
    from .device import claim_device

    run_chunk(Path(a.model), Path(a.units), a.layer, a.chunk, a.config, Path(a.out_npz), Path(a.out_json),
              device=claim_device(a.device), trust=a.trust_checkpoint)


def cmd_compare(a):
    from .compare import run_compare
    from .device import claim_device

    run_compare(Path(a.model), Path(a.units), a.layer, a.config, Path(a.out_npz), Path(a.out_json),
                device=claim_device(a.device), trust=a.trust_checkpoint,
                transfer_model_dir=Path(a.transfer_model) if a.transfer_model else None)


def cmd_probe(a):
    from .artifacts import check_prepared_file, read_info, read_units
    from .device import claim_device
    from .model import load_model
    from .probe import probe

    units = read_units(a.units)
    read_info(a.data)  # a folder that is not a prepared dataset stops here, before the model is loaded
    check_prepared_file(a.data, "test")  # truncated or missing: probe itself reads it later
    s = probe(load_model(Path(a.model), a.trust_checkpoint), units, Path(a.data), Path(a.out),
              device=claim_device(a.device), top_k=a.top_k, samples=a.samples, corr_threshold=a.corr_threshold,
              prune_images=a.prune_images, prune_tolerance=a.prune_tolerance,
              histogram_images=a.histogram_images, prune_passes=a.prune_passes)
    for layer in s["layers"]:
        p = layer.get("pruning")
        extra = f", {p['removable']} removable within {100 * p['tolerance']:.1f}%" if p else ""
        print(f"{layer['name']:>16}  {layer['dead']} dead, {len(layer['redundant_pairs'])} near-duplicate pairs{extra}")


def cmd_transfer(a):
    from .device import claim_device
    from .transfer import run_transfer

    run_transfer(Path(a.results), Path(a.out), Path(a.transfer_model) if a.transfer_model else None,
                 device=claim_device(a.device), trust=a.trust_checkpoint, seed=a.seed, samples=a.samples)


def cmd_search(a):
    from .device import claim_device
    from .search import run_search

    rec = run_search(Path(a.model), a.layer, a.recipe, a.trials, a.units, Path(a.out),
                     transfer_model_dir=Path(a.transfer_model) if a.transfer_model else None,
                     data_dir=Path(a.data) if a.data else None, seed=a.seed, max_steps=a.max_steps,
                     device=claim_device(a.device), trust=a.trust_checkpoint)
    print(f"best of {a.trials} trials: score {rec['best']['score']:.4f} with {json.dumps(rec['best']['overrides'])}"
          f"; wrote {a.out}")


def cmd_report(a):
    from .artifacts import read_json_object, read_model_json, read_units
    from .report import render_run

    # the run's main artifacts, checked before anything is rendered (the report renders into a
    # temporary folder and swaps it in, so a failure leaves the previous report as it was)
    results = Path(a.results)
    read_model_json(results / "model")
    read_units(results / "units.json")
    read_json_object(results / "eval" / "metrics.json", "evaluation file", "re-run `featviz evaluate` (or the workflow)")
    render_run(Path(a.results), Path(a.out), a.config)
    print(f"wrote {Path(a.out) / 'index.html'}")


def cmd_index(a):
    from .report import render_index

    render_index([Path(p) for p in a.runs], Path(a.out))
    print(f"wrote {a.out}")


def cmd_archive(a):
    from .archive import make_archive

    make_archive(Path(a.report), Path(a.results), Path(a.out), extra=[Path(p) for p in a.extra])
    print(f"wrote {a.out}")


def cmd_verify_archive(a):
    from .archive import verify_archive

    n = verify_archive(Path(a.archive))
    print(f"{a.archive}: OK, {n} files match the manifest")


def cmd_check_config(a):
    import yaml

    from .config import load_schema, schema_error, yaml_syntax_error

    for path in a.files:
        if not Path(path).is_file():
            raise FeatvizError(f"config file {path} does not exist")
        problem = yaml_syntax_error(path)
        if problem:
            raise FeatvizError(problem)
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        schema = load_schema()
        problem = schema_error(config, schema) if schema is not None else None
        if problem:
            raise FeatvizError(f"{path}: {problem}")
        print(f"{path}: OK ({'YAML and schema' if schema is not None else 'YAML; schema not found'}; the "
              f"workflow checks names, layers and units when it builds the DAG)")


def cmd_recipes(a):
    from .ascent import get_recipe, list_recipes
    from .ascent.recipes import SOURCES

    for name in list_recipes():
        r = get_recipe(name)
        print(f"{name:<16} {SOURCES.get(name, '')}")
        if a.verbose:
            for k, v in sorted(r.items()):
                print(f"    {k} = {v}")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one `featviz: error:` line (exit 2) like every other user error."""

    def error(self, message):
        verb = self.prog.removeprefix("featviz").strip()
        self.exit(2, f"featviz: error: {verb + ': ' if verb else ''}{message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="featviz", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)

    def verb(name, fn, help_):
        s = sub.add_parser(name, help=help_, description=help_)
        s.set_defaults(fn=fn)
        return s

    def device(s):
        s.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N")

    def trust(s):
        s.add_argument("--trust-checkpoint", action="store_true",
                       help="allow checkpoints that need arbitrary unpickling (only for files you trust)")

    s = verb("data", cmd_data, "prepare a dataset (download or import if needed) into tensors")
    s.add_argument("--config", type=_json_object, required=True, help='dataset config, e.g. {"dataset": "mnist"}')
    s.add_argument("--data-root", help="dataset folder (default: $FEATVIZ_DATA_ROOT, else ./data)")
    s.add_argument("--out", required=True)

    s = verb("train", cmd_train, "train a network on a prepared dataset")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--model", type=_json_object, required=True, help="model config (preset or layers)")
    s.add_argument("--train", type=_json_object, required=True, help="training config")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--run", default="")
    s.add_argument("--out", required=True)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    device(s)

    s = verb("import-model", cmd_import_model, "import a model trained elsewhere (state_dict with a spec or "
             "a class, TorchScript, torch.export) and evaluate it on a prepared dataset")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--model", type=_json_object, required=True, help="model config with an `import` section")
    s.add_argument("--run", default="")
    s.add_argument("--out", required=True)
    device(s)
    trust(s)

    s = verb("evaluate", cmd_evaluate, "test accuracy, per-class accuracy, confusion, misclassified")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    device(s)
    trust(s)

    s = verb("units", cmd_units, "list every module a model's units can be read from (with output shapes) and "
             "write the selected layers and the classes to units.json")
    s.add_argument("--model", required=True)
    s.add_argument("--targets", type=_json_arg, default=None,
                   help='ascent.targets: a JSON list of module names/globs, {"type": ..., "name": ...} objects or '
                        '"default" (default: the default targets)')
    s.add_argument("--out", default=None, help="units.json (omit: only list)")
    trust(s)

    s = verb("ascend", cmd_ascend, "activation maximization for one chunk of units of one layer")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--layer", required=True)
    s.add_argument("--chunk", type=int, required=True)
    s.add_argument("--config", type=_json_object, required=True, help="ascent config")
    s.add_argument("--out-npz", required=True)
    s.add_argument("--out-json", required=True)
    device(s)
    trust(s)

    s = verb("compare", cmd_compare, "one entry of a method comparison (ascent.compare): a few units of one layer "
             "visualized with one recipe (and overrides), each unit timed, for the methods page")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--layer", required=True)
    s.add_argument("--config", type=_json_object, required=True,
                   help='{"recipe": NAME, "overrides": {...}, "label": TEXT, "units_per_layer": N, "units": [...] '
                        'or null, "seed": 0, "precision": "fp32", "channels_last": false}')
    s.add_argument("--transfer-model", default=None,
                   help="the run's independent model folder: class images get its transfer score")
    s.add_argument("--out-npz", required=True)
    s.add_argument("--out-json", required=True)
    device(s)
    trust(s)

    s = verb("probe", cmd_probe, "activations over the test set: baselines, top-k images, maps, saliency, pruning")
    s.add_argument("--model", required=True)
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--out", required=True, help="results/<run>/probe")
    s.add_argument("--top-k", type=int, default=9, help="strongest test images kept per unit")
    s.add_argument("--samples", type=int, default=4, help="sample inputs for activation and saliency maps")
    s.add_argument("--corr-threshold", type=float, default=0.9, help="near-duplicate units: correlation above this")
    s.add_argument("--prune-images", type=int, default=2000, help="test images used for the pruning curves")
    s.add_argument("--prune-tolerance", type=float, default=0.005, help="accuracy drop allowed when pruning")
    s.add_argument("--histogram-images", type=int, default=None,
                   help="activations and histograms over the first this many test images (default all)")
    s.add_argument("--prune-passes", type=int, default=None,
                   help="forward passes over the pruning images for all curves together (default no limit)")
    device(s)
    trust(s)

    s = verb("transfer", cmd_transfer,
             "score a run's class images on an independently trained model (writes transfer.json)")
    s.add_argument("--results", required=True, help="results/<run> (units.json, model/, ascent/<classes>/)")
    s.add_argument("--transfer-model", default=None, help="the independent model's folder (omit: no transfer score)")
    s.add_argument("--seed", type=int, default=0, help="seed of the robustness transforms")
    s.add_argument("--samples", type=int, default=8, help="random jitter/rotations for robustness")
    s.add_argument("--out", required=True, help="results/<run>/transfer.json")
    device(s)
    trust(s)

    s = verb("search", cmd_search, "random search over a recipe's numeric parameters on a few units")
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
    device(s)
    trust(s)

    s = verb("report", cmd_report, "render one run's HTML report")
    s.add_argument("--results", required=True, help="results/<run>")
    s.add_argument("--config", type=_json_object, default={}, help="the run's config, shown in the report")
    s.add_argument("--out", required=True, help="reports/<run>")

    s = verb("index", cmd_index, "render the index page linking every run")
    s.add_argument("--out", required=True, help="reports/index.html")
    s.add_argument("runs", nargs="*", help="reports/<run> folders")

    s = verb("archive", cmd_archive, "pack a run's report and results with a sha256 manifest")
    s.add_argument("--report", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--extra", nargs="*", default=[], help="more files to include (config snapshot)")

    s = verb("verify-archive", cmd_verify_archive, "check an archive (.tar.gz or extracted folder) against its manifest")
    s.add_argument("archive", help="<run>.tar.gz, or the folder it was extracted to")

    s = verb("check-config", cmd_check_config, "check config files' YAML syntax (file and line) and the schema, "
             "as the workflow does before it builds the DAG")
    s.add_argument("files", nargs="+", help="config.yaml files (also those you pass to snakemake --configfile)")

    s = verb("recipes", cmd_recipes, "list the activation-maximization recipes")
    s.add_argument("-v", "--verbose", action="store_true", help="show every parameter")

    return p


# Verbs that only read and write files: they skip torch's import (about 2 s), which matters at the
# end of a report, where these jobs run one after another.
WITHOUT_TORCH = frozenset({"report", "index", "archive", "verify-archive", "check-config"})


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
