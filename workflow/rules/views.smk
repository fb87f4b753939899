# Views on real images (issue 28): where the network looks per class (featviz attribute: Grad-CAM,
# SmoothGrad and the gradient, for the class pages) and each visualized layer's DeepDream and
# caricature of a few test images (featviz dream, for the layer pages). One job each per run; none
# where the run's `attribution` / `layer_views` is null.


def shown_units(wildcards):
    """The ascent's choice of layers and units (`--select`): the classes and layers with a page."""
    ascent = RUNS[wildcards.run].ascent
    return json.dumps({key: ascent.get(key) for key in ("layers", "units")}, sort_keys=True)


def class_views_results(wildcards):
    """results/<run>/attribution/attribution.{json,npz} where the run has class views."""
    if RUNS[wildcards.run].attribution is None:
        return []
    return [f"results/{wildcards.run}/attribution/attribution.{ext}" for ext in ("json", "npz")]


def layer_views_results(wildcards):
    """results/<run>/layer_views/layer_views.{json,npz} where the run has layer views."""
    if RUNS[wildcards.run].layer_views is None:
        return []
    return [f"results/{wildcards.run}/layer_views/layer_views.{ext}" for ext in ("json", "npz")]


rule attribute:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        probe="results/{run}/probe/probe.json",
        predictions="results/{run}/probe/predictions.npz",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
    output:
        record="results/{run}/attribution/attribution.json",
        arrays="results/{run}/attribution/attribution.npz",
    params:
        data=data_dir,
        device=DEVICE,
        trust=TRUST,
        seed=SEED,
        cfg=lambda wildcards: json.dumps(RUNS[wildcards.run].attribution, sort_keys=True),
        select=shown_units,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/attribute.log",
    benchmark:
        "results/{run}/benchmarks/attribute.tsv"
    resources:
        gpu=GPU,
        mem_mb=3000,
    shell:
        "featviz attribute --results results/{wildcards.run} --data {params.data} --config {params.cfg:q} "
        "--select {params.select:q} --seed {params.seed} --device {params.device} {params.trust} "
        "--out results/{wildcards.run}/attribution "
        "> {log} 2>&1"


rule dream:
    input:
        model="results/{run}/model/model.json",
        weights="results/{run}/model/model.pt",
        units="results/{run}/units.json",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
    output:
        record="results/{run}/layer_views/layer_views.json",
        arrays="results/{run}/layer_views/layer_views.npz",
    params:
        data=data_dir,
        device=DEVICE,
        trust=TRUST,
        seed=SEED,
        cfg=lambda wildcards: json.dumps(RUNS[wildcards.run].layer_views, sort_keys=True),
        select=shown_units,
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/dream.log",
    benchmark:
        "results/{run}/benchmarks/dream.tsv"
    resources:
        gpu=GPU,
        mem_mb=3000,
    shell:
        "featviz dream --results results/{wildcards.run} --data {params.data} --config {params.cfg:q} "
        "--select {params.select:q} --seed {params.seed} --device {params.device} {params.trust} "
        "--out results/{wildcards.run}/layer_views > {log} 2>&1"
