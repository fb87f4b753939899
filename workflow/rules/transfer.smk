# Transfer score of the class images (docs/ascent.md, "Transfer score"): an independently
# trained second model per run (another architecture and seed) classifies every class image.
# results/<run>/transfer.json is the input the report takes; with `ascent.transfer: null` it is
# still written, with the transfer fields null.
rule transfer_train:
    input:
        train=lambda wildcards: f"{data_dir(wildcards)}/train.pt",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
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
    # one core, beside the ascent jobs (one core each): the second model only scores the class
    # images, and small-batch CPU training scales below 2x on 2 threads (docs/scale-out.md)
    threads: 1
    # right after the run's own model (priority 2): the jobs that wait for it (transfer, match, the
    # class comparisons) are then ready early, instead of forming a serial tail at the end
    priority: 1
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
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        ascent=lambda wildcards: ascent_results(wildcards, kind="class"),
        transfer_model=transfer_model_input,
    output:
        "results/{run}/transfer.json",
    params:
        device=DEVICE,
        trust=TRUST,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] else ""),
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
        "featviz transfer --results results/{wildcards.run} {params.tmodel} "
        "--device {params.device} {params.trust} --out {output} > {log} 2>&1"
