rule report_run:
    input:
        model="results/{run}/model/model.json",
        train_metrics="results/{run}/model/metrics.json",
        metrics="results/{run}/eval/metrics.json",
        confusion="results/{run}/eval/confusion.png",
        misclassified="results/{run}/eval/misclassified.npz",
        units="results/{run}/units.json",
        ascent=ascent_results,
        compare=compare_results,
        probe="results/{run}/probe/probe.json",
        probe_arrays="results/{run}/probe/probe.npz",
        probe_bank="results/{run}/probe/bank.npz",
        pruning="results/{run}/probe/pruning.png",
        transfer="results/{run}/transfer.json",
        circuits=circuits_result,
        trust=trust_results,
        class_views=class_views_results,
        layer_views=layer_views_results,
        match=match_results,
    output:
        # the whole static site, so that Snakemake's --report embeds every page and picture
        site=report(
            directory("reports/{run}"),
            htmlindex="index.html",
            caption="../report/run_page.rst",
            category="Reports",
        ),
    params:
        cfg=lambda wildcards: json.dumps(RUNS[wildcards.run].__dict__, sort_keys=True),
    conda:
        "../envs/featviz.yaml"
    log:
        "results/{run}/logs/report.log",
    benchmark:
        "results/{run}/benchmarks/report.tsv"
    localrule: True
    shell:
        "featviz report --results results/{wildcards.run} --config {params.cfg:q} "
        "--match {input.match} --out {output.site} > {log} 2>&1"


rule archive:
    input:
        site="reports/{run}",
        # the whole of results/<run>, which the archive packs: every job's outputs, logs and benchmarks
        results=run_files,
    output:
        "reports/{run}.tar.gz",
    conda:
        "../envs/featviz.yaml"
    log:
        "results/logs/archive/{run}.log",
    benchmark:
        # beside its log, outside results/<run>: the archive does not pack its own timing
        "results/benchmarks/archive/{run}.tsv"
    localrule: True
    shell:
        "featviz archive --report {input.site} --results results/{wildcards.run} "
        "--out {output} > {log} 2>&1"


# The index links each run's archive where it exists when the index is written, so it waits for
# the archives (a few seconds each: it is the last page written). Besides the config's runs it lists
# every other report under reports/ (runs of earlier configs), with their archives where present.
rule index:
    input:
        sites=expand("reports/{run}", run=RUNS),
        archives=expand("reports/{run}.tar.gz", run=RUNS),
    output:
        "reports/index.html",
    conda:
        "../envs/featviz.yaml"
    log:
        "results/logs/index.log",
    localrule: True
    shell:
        "featviz index --out {output} {input.sites} > {log} 2>&1"
