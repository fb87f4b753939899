# On demand only (not part of `all`): random search over a recipe's numeric parameters on the
# first 4 units of one layer, e.g. `snakemake results/<run>/search/classes/hvass.json`.
rule search:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
        transfer_model=lambda wildcards: (transfer_model_input(wildcards) if wildcards.layer == "classes" else []),
    output:
        "results/{run}/search/{layer}/{recipe}.json",
    params:
        device=DEVICE,
        trust=TRUST,
        data=data_dir,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] and wildcards.layer == "classes" else ""),
        seed=lambda wildcards: RUNS[wildcards.run].ascent["seed"],
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
