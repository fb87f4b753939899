# Method comparison (ascent.compare): one job per (recipe entry, layer), beside the main ascent.
rule compare:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        # class images are also scored by the run's independent model (docs/ascent.md, "Transfer score")
        transfer_model=lambda wildcards: (transfer_model_input(wildcards) if wildcards.layer == "classes" else []),
    output:
        images="results/{run}/compare/{entry}/{layer}.npz",
        stats="results/{run}/compare/{entry}/{layer}.json",
    wildcard_constraints:
        entry=r"[a-z0-9][a-z0-9._-]*",
    params:
        device=DEVICE,
        trust=TRUST,
        cfg=compare_params,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] and wildcards.layer == "classes" else ""),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/compare/{entry}/{layer}.log",
    benchmark:
        "results/{run}/benchmarks/compare/{entry}/{layer}.tsv"
    resources:
        gpu=GPU,
        mem_mb=2000,
        runtime=60,
    shell:
        "featviz compare --model results/{wildcards.run}/model --units {input.units} "
        "--layer {wildcards.layer:q} --config {params.cfg:q} {params.tmodel} "
        "--device {params.device} {params.trust} --out-npz {output.images} --out-json {output.stats} > {log} 2>&1"
