rule report_run:
    input:
        model="results/{run}/model/model.json",
        metrics="results/{run}/eval/metrics.json",
        units="results/{run}/units.json",
        ascent=ascent_results,
        probe="results/{run}/probe/probe.json",
        probe_arrays="results/{run}/probe/probe.npz",
    output:
        page=report(
            "reports/{run}/index.html",
            caption="../report/run_page.rst",
            category="Reports",
        ),
        summary="reports/{run}/summary.json",
    params:
        cfg=lambda wildcards: json.dumps(RUNS[wildcards.run].__dict__, sort_keys=True),
    log:
        "results/{run}/logs/report.log",
    localrule: True
    shell:
        "featviz report --results results/{wildcards.run} --config {params.cfg:q} "
        "--out reports/{wildcards.run} > {log} 2>&1"


rule archive:
    input:
        page="reports/{run}/index.html",
    output:
        "reports/{run}.tar.gz",
    log:
        "results/logs/archive/{run}.log",
    localrule: True
    shell:
        "featviz archive --report reports/{wildcards.run} --results results/{wildcards.run} "
        "--out {output} > {log} 2>&1"


rule index:
    input:
        summaries=expand("reports/{run}/summary.json", run=RUNS),
        archives=expand("reports/{run}.tar.gz", run=RUNS),
    output:
        "reports/index.html",
    params:
        runs=expand("reports/{run}", run=RUNS),
    log:
        "results/logs/index.log",
    localrule: True
    shell:
        "featviz index --out {output} {params.runs} > {log} 2>&1"
