checkpoint units:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
    output:
        units="results/{run}/units.json",
    params:
        trust=TRUST,
        targets=lambda wildcards: json.dumps(RUNS[wildcards.run].ascent.get("targets")),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/units.log",
    benchmark:
        "results/{run}/benchmarks/units.tsv"
    localrule: True
    shell:
        "featviz units --model results/{wildcards.run}/model --targets {params.targets:q} {params.trust} "
        "--out {output.units} > {log} 2>&1"
