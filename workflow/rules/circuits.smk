# Circuits (featviz circuits): for the units the report shows, which units of the previous visualized
# layer drive them, from the weights where directly connected, else from gradient x activation on
# test images. Off with `circuits: null` (CIRCUITS[run] is None: no job, no circuits block).


rule circuits:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
    output:
        circuits="results/{run}/circuits/circuits.json",
    params:
        # exactly what the job reads: its own section, and of the ascent settings only the units the
        # report shows (ascent.layers, ascent.units), so that changing steps or recipes reruns no circuits
        data=data_dir,
        device=DEVICE,
        trust=TRUST,
        cfg=lambda wildcards: CIRCUITS[wildcards.run],
        shown=lambda wildcards: circuits_selection_args(RUNS[wildcards.run].ascent),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/circuits.log",
    benchmark:
        "results/{run}/benchmarks/circuits.tsv"
    resources:
        gpu=GPU,
        mem_mb=lambda wildcards: CIRCUITS[wildcards.run]["memory_mb"] + 1000,
    shell:
        "featviz circuits --model results/{wildcards.run}/model --units {input.units} --data {params.data} "
        "--images {params.cfg[images]} --top {params.cfg[top]} --measure {params.cfg[measure]} "
        "--memory-mb {params.cfg[memory_mb]} {params.shown} --device {params.device} {params.trust} "
        "--out {output.circuits} > {log} 2>&1"
