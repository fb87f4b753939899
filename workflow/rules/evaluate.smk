# from the test predictions of the probe's one pass over the test set (no pass of its own)
rule evaluate:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        predictions="results/{run}/probe/predictions.npz",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        metrics="results/{run}/eval/metrics.json",
        confusion=report(
            "results/{run}/eval/confusion.png",
            caption="../report/confusion.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
        misclassified=report(
            "results/{run}/eval/misclassified.png",
            caption="../report/misclassified.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
        images="results/{run}/eval/misclassified.npz",
    params:
        device=DEVICE,
        trust=TRUST,
        data=data_dir,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/evaluate.log",
    benchmark:
        "results/{run}/benchmarks/evaluate.tsv"
    resources:
        mem_mb=2000,
    shell:
        "featviz evaluate --model results/{wildcards.run}/model --data {params.data} "
        "--predictions {input.predictions} --device {params.device} {params.trust} "
        "--out results/{wildcards.run}/eval > {log} 2>&1"
