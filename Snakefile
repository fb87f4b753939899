# featviz: trained CNNs -> a browsable, archived report of what they learned.
# Stages live in workflow/rules/*.smk; every rule calls one `featviz` verb.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from featviz.config import yaml_syntax_error

min_version("8.20")

# A YAML error in the config file: its file and line, not Snakemake's "not valid JSON or YAML" (a
# file given with --configfile is read by Snakemake before this file runs: `featviz check-config FILE` tells)
_yaml_problem = yaml_syntax_error("config/config.yaml")
if _yaml_problem:
    raise WorkflowError(f"featviz config error: {_yaml_problem}")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/units.smk"
include: "workflow/rules/spectrum.smk"
include: "workflow/rules/ascent.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/circuits.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/trust.smk"
include: "workflow/rules/views.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/matching.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "reports/index.html",
        expand("reports/{run}.tar.gz", run=RUNS),
    default_target: True
