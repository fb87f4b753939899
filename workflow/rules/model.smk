rule train:
    input:
        train=lambda wildcards: f"{data_dir(wildcards)}/train.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        weights="results/{run}/model/model.pt",
        meta="results/{run}/model/model.json",
        metrics="results/{run}/model/metrics.json",
    params:
        data=data_dir,
        model=as_json("model"),
        train=as_json("train"),
    log:
        "results/{run}/logs/train.log",
    threads: 4
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=120,
    shell:
        "featviz train --data {params.data} --model {params.model:q} --train {params.train:q} "
        "--seed {SEED} --device {DEVICE} --run {wildcards.run} --no-progress "
        "--out results/{wildcards.run}/model > {log} 2>&1"
