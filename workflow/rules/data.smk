rule data:
    output:
        train="results/data/{dkey}/train.pt",
        test="results/data/{dkey}/test.pt",
        info="results/data/{dkey}/info.json",
    params:
        cfg=lambda wildcards: json.dumps(DATASETS[wildcards.dkey], sort_keys=True),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/logs/data/{dkey}.log",
    localrule: True
    shell:
        "featviz data --config {params.cfg:q} "
        "--out results/data/{wildcards.dkey} > {log} 2>&1"
