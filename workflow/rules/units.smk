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


# The run's ascent section checked against the network (layers, units, recipes): an imported
# network's layers are only known once units.json exists. The input functions check it
# (common.smk: ascent_refused) and, where it fails, ask for this file instead of any ascent job: the
# job stops the run with one `featviz: error:` line, before any ascent job. A passing section needs
# no job (`featviz select` also works alone, writing the units each layer visualizes).
rule select:
    input:
        units="results/{run}/units.json",
    output:
        selection="results/{run}/selection.json",
    params:
        ascent=ascent_params,
        where=lambda wildcards: f"runs[{list(RUNS).index(wildcards.run)}].ascent",
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/select.log",
    priority: 10  # right after the units: before the jobs that could run beside it
    localrule: True
    shell:
        "featviz select --units {input.units} --ascent {params.ascent:q} --where {params.where:q} "
        "--out {output.selection} > {log} 2>&1"
