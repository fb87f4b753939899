# How far to trust a picture (featviz trust; docs/ascent.md, "How far to trust a picture"): for
# every visualized unit, does its ascent picture drive it through the units of the layers below the
# way its top test images do? One job per run, after its ascent jobs and its probe (the top images);
# none where the run's `trust` is null.


def trust_results(wildcards):
    """results/<run>/trust.json where the run measures it (none with `trust: null`)."""
    return [f"results/{wildcards.run}/trust.json"] if RUNS[wildcards.run].trust is not None else []


rule trust:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        probe="results/{run}/probe/probe.json",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        ascent=ascent_results,
    output:
        "results/{run}/trust.json",
    params:
        data=data_dir,
        device=DEVICE,
        trust=TRUST,
        seed=SEED,
        cfg=lambda wildcards: json.dumps(RUNS[wildcards.run].trust, sort_keys=True),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/trust.log",
    benchmark:
        "results/{run}/benchmarks/trust.tsv"
    priority: 1  # as soon as the ascent and the probe are done: the report waits for it
    resources:
        gpu=GPU,
        mem_mb=3000,
    shell:
        "featviz trust --results results/{wildcards.run} --data {params.data} --config {params.cfg:q} "
        "--seed {params.seed} --device {params.device} {params.trust} --out {output} > {log} 2>&1"
