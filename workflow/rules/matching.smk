# Cross-network comparison (runs[i].match; docs/matching.md): one job per pair, the run against its
# own transfer model (`transfer`) and against each run its `match.with` names (by run id). The
# report of the run takes results/<run>/match/<other>.json (and the .npz beside it) as input.
from types import SimpleNamespace

from featviz.matching import TRANSFER as MATCH_TRANSFER, match_config, partners as match_partners

try:
    MATCHES = match_partners(RUNS.values(), {run_id: bool(t) for run_id, t in TRANSFER.items()})
except FeatvizError as exc:
    raise WorkflowError(f"featviz config error: {exc}") from None


def match_results(wildcards):
    """Every comparison of a run (none without any)."""
    return [f"results/{wildcards.run}/match/{other}.json" for other in MATCHES[wildcards.run]]


def match_other_inputs(wildcards):
    """The other network's files: the transfer model's, or the other run's model, units.json and
    ascent results (its units' pictures)."""
    if wildcards.other == MATCH_TRANSFER:
        return [f"results/{wildcards.run}/transfer_model/model.json", f"results/{wildcards.run}/transfer_model/model.pt"]
    other = wildcards.other
    return [f"results/{other}/model/model.json", f"results/{other}/model/model.pt", f"results/{other}/units.json",
            *ascent_results(SimpleNamespace(run=other))]


def match_other_arg(wildcards):
    if wildcards.other == MATCH_TRANSFER:
        return f"--other-model results/{wildcards.run}/transfer_model"
    return f"--other-results results/{wildcards.other}"


def match_params(wildcards):
    """The settings the job reads (not `with` or `transfer`, which only decide which jobs exist)."""
    cfg = match_config(RUNS[wildcards.run].match)
    return json.dumps({k: cfg[k] for k in ("images", "close")}, sort_keys=True)


rule match:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        other=match_other_inputs,
    output:
        scores="results/{run}/match/{other}.json",
        pictures="results/{run}/match/{other}.npz",
    wildcard_constraints:
        other=f"{MATCH_TRANSFER}|{_only(RUNS)}",
    params:
        device=DEVICE,
        trust=TRUST,
        data=data_dir,
        other=match_other_arg,
        cfg=match_params,
        seed=SEED,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/match/{other}.log",
    benchmark:
        "results/{run}/benchmarks/match/{other}.tsv"
    resources:
        gpu=GPU,
        mem_mb=4000,
    shell:
        "featviz match --results results/{wildcards.run} {params.other} --data {params.data} "
        "--config {params.cfg:q} --seed {params.seed} --device {params.device} {params.trust} "
        "--out {output.scores} > {log} 2>&1"
