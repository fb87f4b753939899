checkpoint units:
    input:
        model="results/{run}/model/model.json",
    output:
        units="results/{run}/units.json",
    params:
        trust=TRUST,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/units.log",
    localrule: True
    shell:
        "featviz units --model results/{wildcards.run}/model {params.trust} --out {output.units} > {log} 2>&1"
