# MACO's fixed Fourier magnitude (recipe `maco`, docs/ascent.md): the average amplitude spectrum of
# the run's own training images (test images where a folder has none), colour-decorrelated for RGB. Made only for a run whose ascent or
# comparison uses a maco recipe (common.smk: spectrum_input); its ascent and compare jobs read it.
rule spectrum:
    input:
        train=lambda wildcards: f"{data_dir(wildcards)}/train.pt",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        "results/{run}/spectrum.npz",
    params:
        data=data_dir,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/spectrum.log",
    benchmark:
        "results/{run}/benchmarks/spectrum.tsv"
    resources:
        mem_mb=2000,
    shell:
        "featviz spectrum --data {params.data} --split auto --out {output} > {log} 2>&1"
