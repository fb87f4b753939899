rule probe:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        summary="results/{run}/probe/probe.json",
        arrays="results/{run}/probe/probe.npz",
        bank="results/{run}/probe/bank.npz",
        predictions="results/{run}/probe/predictions.npz",
        pruning=report(
            "results/{run}/probe/pruning.png",
            caption="../report/pruning.rst",
            category="Probe",
            subcategory="{run}",
        ),
        saliency=report(
            "results/{run}/probe/saliency.png",
            caption="../report/saliency.rst",
            category="Probe",
            subcategory="{run}",
        ),
    params:
        data=data_dir,
        device=DEVICE,
        trust=TRUST,
        probe=lambda wildcards: RUNS[wildcards.run].probe,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/probe.log",
    benchmark:
        "results/{run}/benchmarks/probe.tsv"
    # the report's own pictures and statistics before the extras (the methods page, the comparison,
    # the views): `trust`, which needs both, then runs beside those instead of at the end
    priority: 1
    resources:
        gpu=GPU,
        mem_mb=3000,
    shell:
        "featviz probe --model results/{wildcards.run}/model --units {input.units} --data {params.data} "
        "--top-k {params.probe[top_k]} --samples {params.probe[samples]} "
        "--histogram-images {params.probe[histogram_images]} --prune-images {params.probe[prune_images]} "
        "--prune-passes {params.probe[prune_passes]} --prune-precision {params.probe[prune_precision]} "
        "--precision {params.probe[precision]} "
        "--device {params.device} {params.trust} --out results/{wildcards.run}/probe > {log} 2>&1"
