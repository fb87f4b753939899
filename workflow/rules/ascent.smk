rule ascend:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        spectrum=spectrum_input,
    output:
        images="results/{run}/ascent/{layer}/{chunk}.npz",
        stats="results/{run}/ascent/{layer}/{chunk}.json",
    params:
        device=DEVICE,
        trust=TRUST,
        cfg=ascent_params,
        spectrum=spectrum_arg,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/ascent/{layer}/{chunk}.log",
    benchmark:
        "results/{run}/benchmarks/ascent/{layer}/{chunk}.tsv"
    # the report's own pictures and statistics before the extras (the methods page, the comparison,
    # the views): `trust`, which needs both, then runs beside those instead of at the end
    priority: 1
    resources:
        gpu=GPU,
        mem_mb=2000,
        runtime=60,
    shell:
        "featviz ascend --model results/{wildcards.run}/model --units {input.units} "
        "--layer {wildcards.layer:q} --chunk {wildcards.chunk} --config {params.cfg:q} "
        "{params.spectrum} --device {params.device} {params.trust} --out-npz {output.images} --out-json {output.stats} > {log} 2>&1"
