# Transfer score of the class images (docs/ascent.md, "Transfer score"): an independently
# trained second model per run (another architecture and seed) classifies every class image.
# results/<run>/transfer.json is the input the report takes; with `ascent.transfer: null` it is
# still written, with the transfer fields null.
from featviz.config import expected_input
from featviz.transfer import (DEFAULT_TRANSFER, check_transfer_config, resolve_transfer, transfer_model_config,
                              transfer_train_config)


def _transfer_setup():
    out = {}
    for i, run in enumerate(RUNS.values()):
        cfg = resolve_transfer(run.ascent.get("transfer", DEFAULT_TRANSFER))
        expected = expected_input({"dataset": run.dataset, "data": run.data})
        shape, n_classes = expected if expected else (None, 2)
        try:
            check_transfer_config(f"runs[{i}].ascent.transfer", cfg, shape, n_classes)
        except FeatvizError as exc:
            raise WorkflowError(f"featviz config error: {exc}") from None
        model = transfer_model_config(cfg, run.model, shape)
        out[run.id] = None if model is None else {
            "model": model,
            "train": transfer_train_config(cfg, run.train),
            "seed": int(cfg.get("seed", 1)),
        }
    return out


TRANSFER = _transfer_setup()


def class_ascent_results(wildcards):
    """The ascent jobs of a run's class layer (known once units.json exists)."""
    with open(checkpoints.units.get(run=wildcards.run).output.units) as f:
        units = json.load(f)
    ascent = RUNS[wildcards.run].ascent
    return [
        f"results/{wildcards.run}/ascent/{layer['name']}/{chunk}.json"
        for layer in units["layers"]
        if layer["kind"] == "class"
        for chunk in range(n_chunks(len(selected_units(layer, ascent)), ascent["chunk_size"]))
    ]


def transfer_model_input(wildcards):
    return [f"results/{wildcards.run}/transfer_model/model.json"] if TRANSFER[wildcards.run] else []


rule transfer_train:
    input:
        train=lambda wildcards: f"{data_dir(wildcards)}/train.pt",
        info=lambda wildcards: f"{data_dir(wildcards)}/info.json",
    output:
        weights="results/{run}/transfer_model/model.pt",
        meta="results/{run}/transfer_model/model.json",
        metrics="results/{run}/transfer_model/metrics.json",
    params:
        data=data_dir,
        model=lambda wildcards: json.dumps(TRANSFER[wildcards.run]["model"], sort_keys=True),
        train=lambda wildcards: json.dumps(TRANSFER[wildcards.run]["train"], sort_keys=True),
        seed=lambda wildcards: TRANSFER[wildcards.run]["seed"],
    log:
        "results/{run}/logs/transfer_train.log",
    threads: workflow.cores
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=120,
    shell:
        "featviz train --data {params.data} --model {params.model:q} --train {params.train:q} "
        "--seed {params.seed} --device {DEVICE} --run {wildcards.run}-transfer --no-progress "
        "--out results/{wildcards.run}/transfer_model > {log} 2>&1"


rule transfer:
    input:
        model="results/{run}/model/model.json",
        units="results/{run}/units.json",
        ascent=class_ascent_results,
        transfer_model=transfer_model_input,
    output:
        "results/{run}/transfer.json",
    params:
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] else ""),
        seed=lambda wildcards: RUNS[wildcards.run].ascent.get("seed", 0),
    log:
        "results/{run}/logs/transfer.log",
    resources:
        mem_mb=2000,
    shell:
        "featviz transfer --results results/{wildcards.run} {params.tmodel} --seed {params.seed} "
        "--device {DEVICE} {TRUST} --out {output} > {log} 2>&1"


# On demand only (not part of `all`): random search over a recipe's numeric parameters on the
# first 4 units of one layer, e.g. `snakemake results/<run>/search/classes/hvass.json`.
rule search:
    input:
        model="results/{run}/model/model.json",
        test=lambda wildcards: f"{data_dir(wildcards)}/test.pt",
        transfer_model=lambda wildcards: (transfer_model_input(wildcards) if wildcards.layer == "classes" else []),
    output:
        "results/{run}/search/{layer}/{recipe}.json",
    params:
        data=data_dir,
        tmodel=lambda wildcards: (f"--transfer-model results/{wildcards.run}/transfer_model"
                                  if TRANSFER[wildcards.run] and wildcards.layer == "classes" else ""),
        seed=lambda wildcards: RUNS[wildcards.run].ascent.get("seed", 0),
    wildcard_constraints:
        recipe=r"[A-Za-z0-9_-]+",
    log:
        "results/{run}/logs/search/{layer}/{recipe}.log",
    resources:
        gpu=GPU,
        mem_mb=2000,
    shell:
        "featviz search --model results/{wildcards.run}/model --layer {wildcards.layer:q} "
        "--recipe {wildcards.recipe} --trials 20 --data {params.data} {params.tmodel} --seed {params.seed} "
        "--device {DEVICE} {TRUST} --out {output} > {log} 2>&1"
