# Method comparison (ascent.compare): one job per recipe entry, over every compared layer (one
# process start-up per entry, not per entry and layer), beside the main ascent. It writes
# results/<run>/compare/<entry>/<layer>.{npz,json}.
rule compare:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        spectrum=spectrum_input,
        # class images are also scored by the run's independent model (docs/ascent.md, "Transfer score")
        transfer_model=lambda wildcards: (transfer_model_input(wildcards)
                                          if "classes" in compare_layer_names(wildcards) else []),
    output:
        folder=directory("results/{run}/compare/{entry}"),
    wildcard_constraints:
        entry=r"[a-z0-9][a-z0-9._-]*",
    params:
        device=DEVICE,
        trust=TRUST,
        layers=compare_layer_args,
        spectrum=spectrum_arg,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] and "classes" in compare_layer_names(wildcards) else ""),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/compare/{entry}.log",
    benchmark:
        "results/{run}/benchmarks/compare/{entry}.tsv"
    resources:
        gpu=GPU,
        mem_mb=2000,
        runtime=60,
    shell:
        "featviz compare --model results/{wildcards.run}/model --units {input.units} "
        "{params.layers} {params.tmodel} {params.spectrum} "
        "--device {params.device} {params.trust} --out-dir {output.folder} > {log} 2>&1"
