"""What each `featviz <verb>` does, one `cmd_<verb>(args)` per verb: read the parsed arguments, call
the stage's own module (imported inside the function, so a verb pays only for what it uses), print
what it wrote. featviz.cli parses the arguments and reports errors.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import FeatvizError


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
