"""`featviz <verb>`: every workflow stage as a command over plain files.

A user error prints one line, `featviz: error: ...`, and exits with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
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

    from .config import check_sections, data_root

    root = a.data_root or data_root({})  # $FEATVIZ_DATA_ROOT, else the schema's default
    if isinstance(a.config.get("dataset"), str):  # prepare() names a missing dataset
        check_sections(dataset=a.config["dataset"], data={k: v for k, v in a.config.items() if k != "dataset"})
    info = prepare(a.config, Path(root), Path(a.out))
    print(f"prepared {info['dataset']}: {info['n_train']} train / {info['n_test']} test images of shape "
          f"{info['input_shape']}, {len(info['classes'])} classes")


def cmd_train(a):
    from .device import claim_device
    from .train import train
    from .verb_args import check_train_args

    check_train_args(a)

    metrics = train(Path(a.data), a.model, a.train, Path(a.out), seed=a.seed, device=claim_device(a.device),
                    run_name=a.run, progress=not a.no_progress, threads=a.threads)
    print(f"trained in {metrics['train_wall_s']} s: test accuracy {metrics['final_test_accuracy']:.4f}")


def cmd_import_model(a):
    from .device import claim_device
    from .import_model import import_model

    metrics = import_model(a.model, Path(a.data), Path(a.out), trust=a.trust_checkpoint, device=claim_device(a.device),
                           run_name=a.run)
    imp, check = metrics["imported"], metrics["check_accuracy"]
    print(f"imported {imp['path']} ({imp['format']}: {imp['how']}; {imp['file_format']}"
          + "".join(f"; {line}" for line in imp["adapted"]) + f"): accuracy {check['accuracy']:.4f} on "
          f"{check['images']} of {check['of']} test images (evaluate measures all of them)")


def _evaluate_alone(a) -> dict:
    """evaluate with a pass of its own over the test set (no --predictions): it claims a device."""
    from .device import claim_device
    from .evaluate import evaluate
    from .model import load_model

    return evaluate(load_model(Path(a.model), a.trust_checkpoint), Path(a.data), Path(a.out), claim_device(a.device))


def cmd_evaluate(a):
    # the workflow's way: from the probe's predictions, no network pass and no device (the rule has no gpu)
    from .evaluate import evaluate
    from .model import load_model

    if not a.predictions:
        m = _evaluate_alone(a)
    else:
        m = evaluate(load_model(Path(a.model), a.trust_checkpoint), Path(a.data), Path(a.out), "cpu",
                     predictions=Path(a.predictions))
    print(f"test accuracy {m['test_accuracy']:.4f} on {m['n_test']} images")


def _config_run_network(path: str, name: str | None, trust: bool):
    """(network, input shape, class names, family, targets) of one run of a config file, built from
    its model section before any run (a checkpoint plus a class, or an architecture by name)."""
    import yaml

    from .checks import expected_input
    from .config import load_schema, resolve_runs
    from .import_model import config_network
    from .model.architecture import zoo_of
    from .schema import fill_defaults, object_schema

    if not Path(path).is_file():
        raise FeatvizError(f"config file {path} does not exist")
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    schema = load_schema()
    if schema is not None:
        fill_defaults(config, schema)
        for run in config.get("runs") or []:
            fill_defaults(run, object_schema(schema["properties"]["runs"]["items"]))
    runs = resolve_runs(config)
    run = next((r for r in runs if r.name == name), None) if name else runs[0]
    if run is None:
        raise FeatvizError(f"--run: no run named '{name}' in {path} (runs: {', '.join(r.name for r in runs)})")
    expected = expected_input({"dataset": run.dataset, "data": run.data})
    if expected is None:
        raise FeatvizError(f"runs of {path}: cannot tell the input shape of run '{run.name}' before its data is "
                           f"prepared (set data.image_size and data.channels)")
    shape, n_classes = expected
    net = config_network(run.model, shape, n_classes, trust)
    family = zoo_of(run.model) or "spec"
    with __import__("torch").no_grad():
        n_out = int(net(__import__("torch").zeros(1, *shape)).shape[1])
    return net, shape, [str(i) for i in range(n_out)], family, run.ascent.get("targets")


def cmd_units(a):
    from .io import write_json
    from .model import load_model
    from .units import default_family, enumerate_units

    if bool(a.model) == bool(a.config):
        raise FeatvizError("units: give --model (a model folder) or --config (a config file, before any run)")
    if a.config:
        net, shape, classes, family, targets = _config_run_network(a.config, a.run, a.trust_checkpoint)
        units = enumerate_units(net, shape, classes, a.targets if a.targets is not None else targets, family=family)
    else:
        model = load_model(Path(a.model), a.trust_checkpoint)
        units = enumerate_units(model.net, model.input_shape, model.classes, a.targets,
                                family=default_family(model.meta.get("format")))
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


def cmd_select(a):
    from .artifacts import read_units
    from .io import write_json
    from .selection import check_ascent

    selection = check_ascent(read_units(Path(a.units)), a.ascent, a.where)
    write_json(a.out, selection)
    n = sum(len(us) for us in selection["layers"].values())
    print(f"{n} units of {len(selection['layers'])} layers to visualize")


def cmd_ascend(a):
    from .ascent_job import run_chunk
    from .device import claim_device

    run_chunk(Path(a.model), Path(a.units), a.layer, a.chunk, a.config, Path(a.out_npz), Path(a.out_json),
              device=claim_device(a.device), trust=a.trust_checkpoint, spectrum=Path(a.spectrum) if a.spectrum else None)


def cmd_spectrum(a):
    from .spectrum import run_spectrum

    info = run_spectrum(Path(a.data), Path(a.out), a.split)
    print(f"magnitude spectrum {info['shape']} from {info['n_images']} {info['split']} images -> {a.out}")


def cmd_compare(a):
    from .compare import run_compare, run_compare_layers
    from .device import claim_device
    from .errors import FeatvizError

    layers, configs = a.layer, a.config
    if len(configs) not in (1, len(layers)):
        raise FeatvizError(f"compare: {len(layers)} --layer but {len(configs)} --config (one for all, or one per layer)")
    if a.out_dir is not None and (a.out_npz or a.out_json):
        raise FeatvizError("compare: --out-dir or --out-npz/--out-json, not both")
    common = dict(trust=a.trust_checkpoint, transfer_model_dir=Path(a.transfer_model) if a.transfer_model else None,
                  spectrum=Path(a.spectrum) if a.spectrum else None)
    if a.out_dir is not None:
        jobs = list(zip(layers, configs * len(layers) if len(configs) == 1 else configs))
        run_compare_layers(Path(a.model), Path(a.units), jobs, Path(a.out_dir), device=claim_device(a.device), **common)
    elif len(layers) == 1 and a.out_npz and a.out_json:
        run_compare(Path(a.model), Path(a.units), layers[0], configs[0], Path(a.out_npz), Path(a.out_json),
                    device=claim_device(a.device), **common)
    else:
        raise FeatvizError("compare: give --out-dir DIR (DIR/<layer>.npz and .json per layer), or for one --layer "
                           "--out-npz and --out-json")


def cmd_circuits(a):
    from .circuits import run_circuits
    from .device import claim_device
    from .schema import with_defaults

    given = {k: getattr(a, k) for k in ("images", "top", "measure", "memory_mb") if getattr(a, k) is not None}
    cfg = with_defaults("circuits", given)  # the keys not given: the schema's, as the workflow passes them
    shown = None
    if a.shown is not None:
        try:
            shown = json.loads(a.shown)
        except ValueError as exc:
            raise FeatvizError(f"circuits --shown: not JSON ({exc})") from None
        if not isinstance(shown, dict) or not all(isinstance(v, list) and v for v in shown.values()):
            raise FeatvizError('circuits --shown: expected {"layer": [unit, ...], ...} (ascent.units), '
                               f"got {a.shown!r}")
    r = run_circuits(Path(a.model), Path(a.units), Path(a.data), Path(a.out), images=cfg["images"], top=cfg["top"],
                     measure=cfg["measure"], layers=a.layers, shown=shown, memory_mb=cfg["memory_mb"],
                     device=claim_device(a.device), trust=a.trust_checkpoint)
    for p in r["pairs"]:
        print(f"{p['from']:>16} -> {p['to']:<16} {p['measure']}")


PROBE_KEYS = ("top_k", "samples", "histogram_images", "prune_images", "prune_passes", "prune_precision",
              "precision")  # runs[i].probe


def cmd_probe(a):
    from .artifacts import check_prepared_file, read_info, read_units
    from .device import claim_device
    from .model import load_model
    from .probe import probe
    from .schema import with_defaults
    from .verb_args import check_probe_args

    check_probe_args(a)
    units = read_units(a.units)
    read_info(a.data)  # a folder that is not a prepared dataset stops here, before the model is loaded
    check_prepared_file(a.data, "test")  # truncated or missing: probe itself reads it later
    given = {k: getattr(a, k) for k in PROBE_KEYS if getattr(a, k) is not None}
    cfg = with_defaults("probe", given)  # the keys not given: the schema's, as the workflow passes them
    s = probe(load_model(Path(a.model), a.trust_checkpoint), units, Path(a.data), Path(a.out),
              device=claim_device(a.device), corr_threshold=a.corr_threshold, prune_tolerance=a.prune_tolerance,
              **{k: cfg.get(k) for k in PROBE_KEYS})
    for layer in s["layers"]:
        p = layer.get("pruning")
        extra = f", {p['removable']} removable within {100 * p['tolerance']:.1f}%" if p else ""
        print(f"{layer['name']:>16}  {layer['dead']} dead, {len(layer['redundant_pairs'])} near-duplicate pairs{extra}")


def cmd_transfer(a):
    from .device import claim_device
    from .transfer import run_transfer
    from .verb_args import check_transfer_args

    check_transfer_args(a)

    run_transfer(Path(a.results), Path(a.out), Path(a.transfer_model) if a.transfer_model else None,
                 device=claim_device(a.device), trust=a.trust_checkpoint)


def cmd_trust(a):
    from .device import claim_device
    from .trust import run_trust, trust_config

    run_trust(Path(a.results), Path(a.data), Path(a.out), trust_config(a.config), seed=a.seed,
              device=claim_device(a.device), trust_checkpoint=a.trust_checkpoint)


def cmd_attribute(a):
    from .class_views import attribution_config, run_attribute
    from .device import claim_device

    run_attribute(Path(a.results), Path(a.data), Path(a.out), attribution_config(a.config), a.select, seed=a.seed,
                  device=claim_device(a.device), trust_checkpoint=a.trust_checkpoint)


def cmd_dream(a):
    from .device import claim_device
    from .layer_views import layer_views_config, run_dream

    run_dream(Path(a.results), Path(a.data), Path(a.out), layer_views_config(a.config), a.select, seed=a.seed,
              device=claim_device(a.device), trust_checkpoint=a.trust_checkpoint)


def cmd_match(a):
    from .device import claim_device
    from .matching import TRANSFER, model_side, run_match, run_side, summary_lines

    if bool(a.other_results) == bool(a.other_model):
        raise FeatvizError("match: give the other network as --other-results (a run) or --other-model (a model folder)")
    side_a = run_side(Path(a.results), a.trust_checkpoint)
    side_b = (run_side(Path(a.other_results), a.trust_checkpoint) if a.other_results
              else model_side(Path(a.other_model), a.trust_checkpoint, a.label or TRANSFER))
    rec = run_match(side_a, side_b, Path(a.data), a.config, Path(a.out), device=claim_device(a.device), seed=a.seed)
    print(f"match: {side_a.label} against {side_b.label} over {rec['images']} test images "
          f"({rec['wall_s']} s, {rec['forward_s']} s of forward passes)")
    for line in summary_lines(rec):
        print(line)


def cmd_search(a):
    from .device import claim_device
    from .search import run_search
    from .verb_args import check_search_args

    check_search_args(a)

    rec = run_search(Path(a.model), a.layer, a.recipe, a.trials, a.units, Path(a.out),
                     transfer_model_dir=Path(a.transfer_model) if a.transfer_model else None,
                     data_dir=Path(a.data) if a.data else None, seed=a.seed, max_steps=a.max_steps,
                     device=claim_device(a.device), trust=a.trust_checkpoint)
    print(f"best of {a.trials} trials: score {rec['best']['score']:.4f} with {json.dumps(rec['best']['overrides'])}"
          f"; wrote {a.out}")


def cmd_report(a):
    from .artifacts import read_model_json, read_units
    from .report import render_run
    from .results import RunFolder, read_eval_metrics
    from .verb_args import check_report_config

    check_report_config(a.config)
    # the run's main artifacts, checked before anything is rendered (the report renders into a
    # temporary folder and swaps it in, so a failure leaves the previous report as it was)
    folder = RunFolder(a.results)
    read_model_json(folder.model_dir)
    read_units(folder.units)
    read_eval_metrics(folder.eval_metrics)
    render_run(folder.root, Path(a.out), a.config,
               matches=None if a.match is None else [Path(p) for p in a.match])
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
        if a.schema_only:
            print(f"{path}: OK (YAML and schema; --schema-only: names, files, layers and units not checked)")
            continue
        # what the workflow checks before it builds the DAG: names, files, classes, layers and units of
        # the networks featviz trains (an imported network's layers once it is imported: `featviz select`)
        from .config import resolve_runs
        from .schema import fill_defaults, object_schema

        if schema is not None:
            fill_defaults(config, schema)
            for run in config.get("runs") or []:
                fill_defaults(run, object_schema(schema["properties"]["runs"]["items"]))
        try:
            runs = resolve_runs(config)
        except FeatvizError as exc:
            raise FeatvizError(f"{path}: {exc}") from None
        print(f"{path}: OK (YAML, schema, names and files; {len(runs)} runs: "
              f"{', '.join(r.id for r in runs)})")


def cmd_recipes(a):
    from .ascent import get_recipe, list_recipes
    from .ascent.recipes import AUTO, AUTO_CASES, AUTO_RECIPES, SOURCES

    for name in list_recipes():
        r = get_recipe(name)
        print(f"{name:<16} {SOURCES.get(name, '')}")
        if a.verbose:
            for k, v in sorted(r.items()):
                print(f"    {k} = {v}")
    print(f"{AUTO:<16} the default of ascent.recipe.<kind>: {' / '.join(AUTO_CASES)}")
    for kind, choices in AUTO_RECIPES.items():
        print(f"    {kind}: " + " / ".join(f"{n} {json.dumps(o)}" if o else n for n, o in choices))


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
    s = _verb(sub, "data", cmd_data, "prepare a dataset (download or import if needed) into tensors")
    s.add_argument("--config", type=_json_object, required=True, help='dataset config, e.g. {"dataset": "mnist"}')
    s.add_argument("--data-root", help="dataset folder (default: $FEATVIZ_DATA_ROOT, else ./data)")
    s.add_argument("--out", required=True)


def _add_train(sub) -> None:
    s = _verb(sub, "train", cmd_train, "train a network on a prepared dataset")
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
    s = _verb(sub, "import-model", cmd_import_model, "import a model trained elsewhere (state_dict with a spec or "
                   "a class, TorchScript, torch.export) and evaluate it on a prepared dataset")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--model", type=_json_object, required=True, help="model config with an `import` section")
    s.add_argument("--run", default="")
    s.add_argument("--out", required=True)
    _device(s)
    _trust(s)


def _add_evaluate(sub) -> None:
    s = _verb(sub, "evaluate", cmd_evaluate, "test accuracy, per-class accuracy, confusion, misclassified")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--predictions", default=None,
                   help="the probe's test predictions (results/<run>/probe/predictions.npz) of this model and "
                        "test set; omit to run a pass of its own")
    _device(s)
    _trust(s)


def _add_units(sub) -> None:
    s = _verb(sub, "units", cmd_units, "list every module a model's units can be read from (with output shapes) and "
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
    s = _verb(sub, "select", cmd_select, "check a run's ascent section (layers, units, recipes) against units.json and "
                   "write the units each layer visualizes (selection.json)")
    s.add_argument("--units", required=True, help="units.json")
    s.add_argument("--ascent", type=_json_object, required=True, help="the run's ascent section (JSON)")
    s.add_argument("--where", default="ascent", help="the config key to name in messages (runs[0].ascent)")
    s.add_argument("--out", required=True, help="selection.json")


def _add_ascend(sub) -> None:
    s = _verb(sub, "ascend", cmd_ascend, "activation maximization for one chunk of units of one layer")
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
    s = _verb(sub, "spectrum", cmd_spectrum, "the average amplitude spectrum of a prepared dataset's images "
              "(colour-decorrelated for RGB): the fixed Fourier magnitude of the maco recipe")
    s.add_argument("--data", required=True, help="prepared dataset folder")
    s.add_argument("--split", default="auto", help="auto (default: train, or test where there are no training images), train or test")
    s.add_argument("--out", required=True, help="results/<run>/spectrum.npz")


def _add_compare(sub) -> None:
    s = _verb(sub, "compare", cmd_compare, "one entry of a method comparison (ascent.compare): a few units of each "
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
    s = _verb(sub, "probe", cmd_probe, "activations over the test set: baselines, top-k images, maps, saliency, pruning")
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
    s = _verb(sub, "circuits", cmd_circuits, "which units of the previous layer drive each unit most, and which of "
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
    s = _verb(sub, "transfer", cmd_transfer,
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
    s = _verb(sub, "trust", cmd_trust, "how far to trust each picture: does it drive its unit through the units below "
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
    s = _verb(sub, "attribute", cmd_attribute, "where the network looks, per class: Grad-CAM, SmoothGrad and the "
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
    s = _verb(sub, "dream", cmd_dream, "each visualized layer on real test images: DeepDream and the caricature "
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
    s = _verb(sub, "match", cmd_match, "cross-network comparison: correlate a run's units with another network's over the "
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
    s = _verb(sub, "search", cmd_search, "random search over a recipe's numeric parameters on a few units")
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
    s = _verb(sub, "report", cmd_report, "render one run's HTML report")
    s.add_argument("--results", required=True, help="results/<run>")
    s.add_argument("--config", type=_json_object, default={}, help="the run's config, shown in the report")
    s.add_argument("--out", required=True, help="reports/<run>")
    s.add_argument("--match", nargs="*", default=None, help="the comparisons to render (results/<run>/match/<other>.json; "
                   "default: every one there)")


def _add_index(sub) -> None:
    s = _verb(sub, "index", cmd_index, "render the index page linking every run")
    s.add_argument("--out", required=True, help="reports/index.html")
    s.add_argument("runs", nargs="*", help="reports/<run> folders, listed first; every other report folder beside "
                   "--out is listed after them")


def _add_archive(sub) -> None:
    s = _verb(sub, "archive", cmd_archive, "pack a run's report and results with a sha256 manifest")
    s.add_argument("--report", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--extra", nargs="*", default=[], help="more files to include (config snapshot)")


def _add_verify_archive(sub) -> None:
    s = _verb(sub, "verify-archive", cmd_verify_archive, "check an archive (.tar.gz or extracted folder) against its manifest")
    s.add_argument("archive", help="<run>.tar.gz, or the folder it was extracted to")


def _add_check_config(sub) -> None:
    s = _verb(sub, "check-config", cmd_check_config, "check config files' YAML syntax (file and line) and the schema, "
                   "as the workflow does before it builds the DAG")
    s.add_argument("files", nargs="+", help="config.yaml files (also those you pass to snakemake --configfile)")
    s.add_argument("--schema-only", action="store_true", help="only the YAML and the schema (no torch import, "
                   "no file, name or layer checks)")


def _add_recipes(sub) -> None:
    s = _verb(sub, "recipes", cmd_recipes, "list the activation-maximization recipes")
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
