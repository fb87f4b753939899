# Circuits (featviz circuits): for each pair of consecutive visualized layers, which units drive
# which, from the weights where directly connected, else from gradient x activation on test images.
import shlex


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
        data=data_dir,
        device=DEVICE,
        trust=TRUST,
        cfg=lambda wildcards: RUNS[wildcards.run].circuits,
        # ascent.layers: the pairs are consecutive among the visualized layers only
        layers=lambda wildcards: (
            "--layers " + shlex.join(RUNS[wildcards.run].ascent["layers"])
            if RUNS[wildcards.run].ascent.get("layers")
            else ""
        ),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/circuits.log",
    benchmark:
        "results/{run}/benchmarks/circuits.tsv"
    resources:
        gpu=GPU,
        mem_mb=3000,
    shell:
        "featviz circuits --model results/{wildcards.run}/model --units {input.units} --data {params.data} "
        "--images {params.cfg[images]} --top {params.cfg[top]} --measure {params.cfg[measure]} "
        "{params.layers} --device {params.device} {params.trust} --out {output.circuits} > {log} 2>&1"
