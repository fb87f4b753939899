# One model per run: trained by featviz (rule train), or the user's own (rule import_model, when
# the run's config has model.import). Both write the same three files.
rule train:
    input:
        train=lambda wildcards: f"{data_dir(wildcards)}/train.pt",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        weights="results/{run}/model/model.pt",
        meta="results/{run}/model/model.json",
        metrics="results/{run}/model/metrics.json",
    wildcard_constraints:
        run=TRAINED_RUNS,
    params:
        data=data_dir,
        model=as_json("model"),
        train=as_json("train"),
        seed=SEED,
        device=DEVICE,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/train.log",
    benchmark:
        "results/{run}/benchmarks/train.tsv"
    threads: 4
    priority: 2  # everything of the run waits for it; its transfer model (priority 1) comes next
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=120,
    shell:
        "featviz train --data {params.data} --model {params.model:q} --train {params.train:q} "
        "--seed {params.seed} --device {params.device} --run {wildcards.run} --threads {threads} --no-progress "
        "--out results/{wildcards.run}/model > {log} 2>&1"


rule import_model:
    input:
        weights=lambda wildcards: [RUNS[wildcards.run].model["import"]["path"]] if RUNS[wildcards.run].model.get("import") else [],
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        weights="results/{run}/model/model.pt",
        meta="results/{run}/model/model.json",
        metrics="results/{run}/model/metrics.json",
    wildcard_constraints:
        run=IMPORTED_RUNS,
    params:
        data=data_dir,
        model=as_json("model"),
        device=DEVICE,
        trust=TRUST,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/import_model.log",
    benchmark:
        "results/{run}/benchmarks/import_model.tsv"
    resources:
        gpu=GPU,
        mem_mb=4000,
    shell:
        "featviz import-model --data {params.data} --model {params.model:q} --device {params.device} {params.trust} "
        "--run {wildcards.run} --out results/{wildcards.run}/model > {log} 2>&1"
