# Transfer score of the class images (docs/ascent.md, "Transfer score"): an independently
# trained second model per run (another architecture and seed) classifies every class image.
# results/<run>/transfer.json is the input the report takes; with `ascent.transfer: null` it is
# still written, with the transfer fields null.
rule transfer_train:
    input:
        train=lambda wildcards: f"{data_dir(wildcards)}/train.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        weights="results/{run}/transfer_model/model.pt",
        meta="results/{run}/transfer_model/model.json",
        metrics="results/{run}/transfer_model/metrics.json",
    params:
        device=DEVICE,
        trust=TRUST,
        data=data_dir,
        model=lambda wildcards: json.dumps(TRANSFER[wildcards.run]["model"], sort_keys=True),
        train=lambda wildcards: json.dumps(TRANSFER[wildcards.run]["train"], sort_keys=True),
        seed=lambda wildcards: TRANSFER[wildcards.run]["seed"],
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/transfer_train.log",
    benchmark:
        "results/{run}/benchmarks/transfer_train.tsv"
    threads: 4
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=120,
    shell:
        "featviz train --data {params.data} --model {params.model:q} --train {params.train:q} "
        "--seed {params.seed} --device {params.device} --run {wildcards.run}-transfer --no-progress "
        "--out results/{wildcards.run}/transfer_model > {log} 2>&1"


rule transfer:
    input:
        model="results/{run}/model/model.json",
        units="results/{run}/units.json",
        ascent=class_ascent_results,
        transfer_model=transfer_model_input,
    output:
        "results/{run}/transfer.json",
    params:
        device=DEVICE,
        trust=TRUST,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] else ""),
        seed=lambda wildcards: RUNS[wildcards.run].ascent.get("seed", 0),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/transfer.log",
    benchmark:
        "results/{run}/benchmarks/transfer.tsv"
    resources:
        gpu=GPU,
        mem_mb=2000,
    shell:
        "featviz transfer --results results/{wildcards.run} {params.tmodel} --seed {params.seed} "
        "--device {params.device} {params.trust} --out {output} > {log} 2>&1"


# On demand only (not part of `all`): random search over a recipe's numeric parameters on the
# first 4 units of one layer, e.g. `snakemake results/<run>/search/classes/hvass.json`.
rule search:
    input:
        model="results/{run}/model/model.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        transfer_model=lambda wildcards: (transfer_model_input(wildcards) if wildcards.layer == "classes" else []),
    output:
        "results/{run}/search/{layer}/{recipe}.json",
    params:
        device=DEVICE,
        trust=TRUST,
        data=data_dir,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] and wildcards.layer == "classes" else ""),
        seed=lambda wildcards: RUNS[wildcards.run].ascent.get("seed", 0),
    wildcard_constraints:
        recipe=r"[A-Za-z0-9_-]+",
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/search/{layer}/{recipe}.log",
    resources:
        gpu=GPU,
        mem_mb=2000,
    shell:
        "featviz search --model results/{wildcards.run}/model --layer {wildcards.layer:q} "
        "--recipe {wildcards.recipe} --trials 20 --data {params.data} {params.tmodel} --seed {params.seed} "
        "--device {params.device} {params.trust} --out {output} > {log} 2>&1"
