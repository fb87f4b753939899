# featviz: trained CNNs -> a browsable, archived report of what they learned.
# Stages live in workflow/rules/*.smk; every rule calls one `featviz` verb.
from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/units.smk"
include: "workflow/rules/ascent.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "reports/index.html",
        expand("reports/{run}.tar.gz", run=RUNS),
    default_target: True
