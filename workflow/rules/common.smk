# Validation and input functions. Everything featviz-specific is delegated to featviz.config.
import json
import re
import shlex
import sys
import time

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import yaml

from featviz.config import export_data_root, resolve_runs, schema_error
from featviz.device import wants_gpu
from featviz.errors import FeatvizError
from featviz.circuits import resolve_circuits, selection_args as circuits_selection_args
from featviz.compare import compare_layers, job_config, resolve_compare
from featviz.selection import check_ascent
from featviz.spectrum import needs_spectrum
from featviz.units import n_chunks, selected_units


with open(workflow.source_path("../schemas/config.schema.yaml")) as f:
    _problem = schema_error(config, yaml.safe_load(f))
if _problem:
    raise WorkflowError(f"featviz config error: {_problem}")
validate(config, schema="../schemas/config.schema.yaml")
try:
    RUNS = {run.id: run for run in resolve_runs(config)}
except FeatvizError as exc:
    raise WorkflowError(f"featviz config error: {exc}") from None

# runs[i].circuits with its defaults filled; None where the stage is off (`circuits: null`)
CIRCUITS = {run.id: resolve_circuits(run.circuits) for run in RUNS.values()}
DATASETS = {run.data_key: run.data_config() for run in RUNS.values()}
# Jobs (local or Slurm, which exports the environment) read the data root from the environment,
# so that moving the data does not change any rule's params and trigger recomputation.
export_data_root(config)
DEVICE = config["device"]
SEED = config["seed"]
TRUST = "--trust-checkpoint" if config["trust_checkpoint"] else ""


GPU = int(wants_gpu(DEVICE))


# A job's one-line `featviz: error:` (and its warnings) on the terminal that ran the workflow, not
# only in the job's log file: Snakemake itself says only "CalledProcessError ... check log file(s)".
from featviz.joblogs import ERROR, WARNING, summary as job_summary

WORKFLOW_STARTED = time.time()


onerror:
    _said = job_summary("results", WORKFLOW_STARTED, ERROR)
    if _said:
        print(f"\nfeatviz: what the failed jobs said:\n{_said}", file=sys.stderr)


onsuccess:
    _said = job_summary("results", WORKFLOW_STARTED, WARNING)
    if _said:
        print(f"\nfeatviz: warnings from the jobs:\n{_said}", file=sys.stderr)


wildcard_constraints:
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}",
    dkey=r"[a-z0-9-]+-[0-9a-f]{8}",
    layer=r"[^/]+",
    chunk=r"\d+",


def data_dir(wildcards):
    return f"results/data/{RUNS[wildcards.run].data_key}"


def as_json(section):
    """A params function: one section of a run's config as JSON, so that changing it reruns
    exactly the jobs that read it."""
    return lambda wildcards: json.dumps(getattr(RUNS[wildcards.run], section), sort_keys=True)


def ascent_params(wildcards):
    """The ascent settings one ascent job reads (not the transfer model's, which its own rules read)."""
    ascent = {k: v for k, v in RUNS[wildcards.run].ascent.items() if k not in ("transfer", "compare")}
    return json.dumps(ascent, sort_keys=True)


def spectrum_input(wildcards):
    """results/<run>/spectrum.npz where a recipe of the run's ascent or comparison is MACO's
    (featviz.spectrum.needs_spectrum; rule spectrum), else nothing."""
    return [f"results/{wildcards.run}/spectrum.npz"] if needs_spectrum(RUNS[wildcards.run].ascent, RUNS[wildcards.run].input_shape) else []


def spectrum_arg(wildcards):
    """`--spectrum results/<run>/spectrum.npz` for the jobs of a run that needs it, else nothing."""
    return " ".join(f"--spectrum {path}" for path in spectrum_input(wildcards))


def checked_units(run_id):
    """units.json of a run (a checkpoint)."""
    with open(checkpoints.units.get(run=run_id).output.units) as f:
        return json.load(f)


def ascent_refused(run_id):
    """Whether the run's ascent section fails the checks against its units.json (layers, units,
    recipes: an imported network's names are only known here). Then the input functions ask for
    results/<run>/selection.json instead of any ascent or comparison job: its job, `featviz select`,
    stops the run with the one-line message on the terminal (onerror), not a traceback."""
    try:
        check_ascent(checked_units(run_id), RUNS[run_id].ascent, f"runs[{list(RUNS).index(run_id)}].ascent")
    except FeatvizError:
        return True
    return False


def ascent_results(wildcards, kind=None):
    """Both files of every ascent job of a run (or of its layers of one kind), known once its units
    are enumerated (a checkpoint)."""
    if ascent_refused(wildcards.run):
        return [f"results/{wildcards.run}/selection.json"]
    units = checked_units(wildcards.run)
    ascent = RUNS[wildcards.run].ascent
    return [
        f"results/{wildcards.run}/ascent/{layer['name']}/{chunk}.{ext}"
        for layer in units["layers"]
        if kind is None or layer["kind"] == kind
        for chunk in range(n_chunks(len(selected_units(layer, ascent)), ascent["chunk_size"]))
        for ext in ("json", "npz")
    ]


def compare_results(wildcards):
    """The folder of every comparison job of a run (ascent.compare; none without it): one job per
    entry, writing <entry>/<layer>.{npz,json} for every compared layer."""
    compare = resolve_compare(RUNS[wildcards.run].ascent["compare"])
    if compare is None:
        return []
    if ascent_refused(wildcards.run):  # the network-dependent checks, before any job
        return [f"results/{wildcards.run}/selection.json"]
    return [f"results/{wildcards.run}/compare/{entry['slug']}" for entry in compare["entries"]]


def compare_layer_names(wildcards):
    """The layers a run's comparison covers (units.json, a checkpoint)."""
    compare = resolve_compare(RUNS[wildcards.run].ascent["compare"])
    return [layer["name"] for layer in compare_layers(checked_units(wildcards.run), compare)]


def compare_layer_args(wildcards):
    """`--layer L --config JSON` per compared layer: the settings one entry's job reads for each."""
    ascent = RUNS[wildcards.run].ascent
    entry = next(e for e in resolve_compare(ascent["compare"])["entries"] if e["slug"] == wildcards.entry)
    return " ".join(f"--layer {shlex.quote(name)} --config {shlex.quote(json.dumps(job_config(ascent, entry, name), sort_keys=True))}"
                    for name in compare_layer_names(wildcards))


def _only(ids):
    """A wildcard constraint matching exactly these run ids (nothing when there are none)."""
    return "|".join(re.escape(i) for i in sorted(ids)) or "(?!)"


TRAINED_RUNS = _only(r.id for r in RUNS.values() if not r.imported)
IMPORTED_RUNS = _only(r.id for r in RUNS.values() if r.imported)


# ---- transfer score (workflow/rules/transfer.smk): resolved and checked by featviz ----
from featviz.transfer import transfer_plans

try:
    TRANSFER = transfer_plans(RUNS.values())
except FeatvizError as exc:
    raise WorkflowError(f"featviz config error: {exc}") from None


def transfer_model_input(wildcards):
    """The files of a run's transfer model (`featviz transfer` and `featviz search` read its
    weights, spec and metrics); none where the transfer score is off."""
    if not TRANSFER[wildcards.run]:
        return []
    return [f"results/{wildcards.run}/transfer_model/{name}" for name in ("model.pt", "model.json", "metrics.json")]


def _job_records(run_id, step, outputs):
    """The log and benchmark of each job of one step whose outputs (paths under results/<run>/<step>/,
    one or more per job) are given: results/<run>/logs/<step>/<job>.log and benchmarks/<step>/<job>.tsv."""
    prefix = f"results/{run_id}/{step}/"
    jobs = sorted({p[len(prefix):].rsplit(".", 1)[0] for p in outputs})
    return ([f"results/{run_id}/logs/{step}/{job}.log" for job in jobs]
            + [f"results/{run_id}/benchmarks/{step}/{job}.tsv" for job in jobs])


def circuits_result(wildcards):
    """circuits.json of a run, the report's input; none where the stage is off."""
    return [] if CIRCUITS[wildcards.run] is None else [f"results/{wildcards.run}/circuits/circuits.json"]


def run_files(wildcards):
    """Every file the workflow writes into results/<run> before its archive: each job's outputs,
    logs and benchmarks (what `featviz archive` packs)."""
    run = wildcards.run
    r = f"results/{run}"
    model_rule = "import_model" if RUNS[run].imported else "train"
    files = [f"{r}/model/{n}" for n in ("model.pt", "model.json", "metrics.json")]
    files += [f"{r}/units.json", f"{r}/transfer.json"]
    files += [f"{r}/eval/{n}" for n in ("metrics.json", "confusion.png", "misclassified.png", "misclassified.npz")]
    files += [f"{r}/probe/{n}" for n in ("probe.json", "probe.npz", "bank.npz", "predictions.npz",
                                          "pruning.png", "saliency.png")]
    steps = [model_rule, "units", "evaluate", "probe", "transfer", "report"]
    if needs_spectrum(RUNS[run].ascent, RUNS[run].input_shape):
        files.append(f"{r}/spectrum.npz")
        steps.append("spectrum")
    if CIRCUITS[run] is not None:
        files.append(f"{r}/circuits/circuits.json")
        steps.append("circuits")
    if TRANSFER[run]:
        files += [f"{r}/transfer_model/{n}" for n in ("model.pt", "model.json", "metrics.json")]
        steps.append("transfer_train")
    if RUNS[run].trust is not None:
        files.append(f"{r}/trust.json")
        steps.append("trust")
    if RUNS[run].attribution is not None:
        files += [f"{r}/attribution/attribution.{ext}" for ext in ("json", "npz")]
        steps.append("attribute")
    if RUNS[run].layer_views is not None:
        files += [f"{r}/layer_views/layer_views.{ext}" for ext in ("json", "npz")]
        steps.append("dream")
    files += [f"{r}/logs/{step}.log" for step in steps] + [f"{r}/benchmarks/{step}.tsv" for step in steps]
    if ascent_refused(run):  # the select job, which stops the run
        return files + [f"{r}/selection.json"]
    ascent = ascent_results(wildcards)
    files += ascent + _job_records(run, "ascent", ascent)
    compare = compare_results(wildcards)  # one folder per job
    files += compare + _job_records(run, "compare", [f"{folder}.dir" for folder in compare])
    return files
