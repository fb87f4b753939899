#!/usr/bin/env bash
# Run a workflow on the throw-away single-node Slurm cluster and check that its GPU rules
# really ran as Slurm jobs with a GPU allocated.
#
#   .ci/slurm-test.sh WORKFLOW_DIR CONFIGFILE
#
# (a) starts the cluster (.ci/slurm-cluster.sh start),
# (b) runs, inside WORKFLOW_DIR,
#       snakemake --profile profiles/slurm-ci --executor slurm --configfile CONFIGFILE \
#                 --directory RESULTS_DIR
#     under `timeout`, RESULTS_DIR being a fresh temporary directory (kept for inspection),
# (c) checks
#     1. snakemake exited 0 and a dry run afterwards has nothing left to do;
#     2. every job of the GPU rules (default: ascend) that Snakemake submitted
#        (per its logs in RESULTS_DIR/.snakemake/slurm_logs/rule_<rule>/) is known to Slurm,
#        COMPLETED, and was submitted with a GPU request (squeue tres-per-job/-node has "gpu");
#        at least one such job exists;
#     3. the rule's own log file(s) of each such job (the `log:` paths Snakemake printed in
#        the Slurm log) contain `SLURM_JOB_ID=<that job's id>` and
#        `CUDA_VISIBLE_DEVICES=<GPU index list>`, i.e. the command itself ran inside that
#        Slurm job and saw the GPU Slurm allocated to it,
# (d) always stops the cluster again (trap), unless FEATVIZ_SLURM_KEEP=1.
#
# Environment:
#   SNAKEMAKE                 snakemake executable (default: the one on PATH). Its directory is
#                             put first on PATH: jobs inherit the submitting shell's PATH
#                             (sbatch --export=ALL), so the `featviz` console script of the
#                             same venv is found inside the jobs.
#   FEATVIZ_SLURM_TIMEOUT     seconds before snakemake is killed (default 1800)
#   FEATVIZ_SLURM_GPU_RULES   space-separated rule names to check (default "ascend")
#   FEATVIZ_SLURM_RESULTS     results dir to use instead of a fresh temporary one
#   FEATVIZ_SLURM_KEEP=1      leave the cluster running afterwards
# Extra arguments after CONFIGFILE are passed to snakemake.
set -euo pipefail

usage() { echo "usage: $0 WORKFLOW_DIR CONFIGFILE [snakemake args...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORKFLOW_DIR=$(cd "$1" && pwd)
CONFIGFILE=$(realpath "$2")
shift 2
[[ -f $CONFIGFILE ]] || { echo "no such config file: $CONFIGFILE" >&2; exit 2; }

PROFILE=$REPO/profiles/slurm-ci
TIMEOUT=${FEATVIZ_SLURM_TIMEOUT:-1800}
GPU_RULES=${FEATVIZ_SLURM_GPU_RULES:-ascend}
SNAKEMAKE=${SNAKEMAKE:-$(command -v snakemake || true)}
[[ -n $SNAKEMAKE && -x $SNAKEMAKE ]] || { echo "snakemake not found (set SNAKEMAKE=...)" >&2; exit 2; }
SNAKEMAKE=$(realpath -s "$SNAKEMAKE")
export PATH="$(dirname "$SNAKEMAKE"):$PATH"

SNAKEFILE=
for f in "$WORKFLOW_DIR/Snakefile" "$WORKFLOW_DIR/workflow/Snakefile"; do
    [[ -f $f ]] && { SNAKEFILE=$f; break; }
done
[[ -n $SNAKEFILE ]] || { echo "no Snakefile in $WORKFLOW_DIR" >&2; exit 2; }

RESULTS=${FEATVIZ_SLURM_RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/featviz-slurm-run.XXXXXX")}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)

log() { echo "[slurm-test] $*" >&2; }

cleanup() {
    local rc=$?
    if [[ ${FEATVIZ_SLURM_KEEP:-0} == 1 ]]; then
        log "leaving the cluster running (FEATVIZ_SLURM_KEEP=1)"
    else
        bash "$HERE/slurm-cluster.sh" stop || true
    fi
    log "results and logs kept in $RESULTS"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
bash "$HERE/slurm-cluster.sh" start
log "cluster started in $((SECONDS - t0)) s"
command -v featviz >/dev/null || log "note: no 'featviz' on PATH ($PATH)"

cd "$WORKFLOW_DIR"
cmd=("$SNAKEMAKE" --snakefile "$SNAKEFILE" --profile "$PROFILE" --executor slurm
     --configfile "$CONFIGFILE" --directory "$RESULTS" "$@")
log "running (timeout ${TIMEOUT}s): ${cmd[*]}"
t1=$SECONDS
rc=0
timeout --kill-after=30 "$TIMEOUT" "${cmd[@]}" 2>&1 | tee "$RESULTS/snakemake-slurm.log" || rc=${PIPESTATUS[0]}
log "snakemake finished with exit code $rc in $((SECONDS - t1)) s"
if [[ $rc -ne 0 ]]; then
    [[ $rc -eq 124 || $rc -eq 137 ]] && log "ERROR: snakemake timed out after ${TIMEOUT}s"
    log "Slurm queue/history:"
    squeue --states=all -o '%i %k %T %M %b %R' >&2 || true
    for f in $(find "$RESULTS/.snakemake/slurm_logs" -name '*.log' 2>/dev/null | head -n 20); do
        echo "----- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2
    done
    exit 1
fi

log "checking that nothing is left to do"
"$SNAKEMAKE" --snakefile "$SNAKEFILE" --configfile "$CONFIGFILE" --directory "$RESULTS" \
    "$@" --dry-run >"$RESULTS/snakemake-dryrun.log" 2>&1 || true
if ! grep -q "Nothing to be done" "$RESULTS/snakemake-dryrun.log"; then
    cat "$RESULTS/snakemake-dryrun.log" >&2
    log "ERROR: after the Slurm run the workflow still has jobs to run"
    exit 1
fi

log "checking the GPU rules' jobs (${GPU_RULES})"
squeue --states=all -h -O 'JobID:30,ArrayJobID:20,ArrayTaskID:20,JobArrayID:30,State:20,tres-per-job:60,tres-per-node:60' \
    >"$RESULTS/squeue-history.txt"
python3 - "$RESULTS" "$GPU_RULES" <<'EOF'
import re, sys
from pathlib import Path

results, rules = Path(sys.argv[1]), sys.argv[2].split()
logdir = results / ".snakemake" / "slurm_logs"

# squeue --states=all: finished jobs stay listed for MinJobAge (set long in slurm.conf).
# Columns: unique job id, array job id, array task id, "<array>_<task>" or id, state, tres.
jobs = {}
for line in (results / "squeue-history.txt").read_text().splitlines():
    f = line.split()
    if len(f) < 7:
        continue
    unique_id, _, _, display_id, state, per_job, per_node = f[:7]
    jobs[display_id] = jobs[unique_id] = dict(
        id=unique_id, state=state, gpu="gpu" in per_job + per_node, tres=per_job + " " + per_node)

errors, checked = [], 0
for rule in rules:
    for slog in sorted((logdir / f"rule_{rule}").rglob("*.log")):
        checked += 1
        key = slog.stem  # "<jobid>" or, for array tasks, "<arrayjobid>_<taskid>"
        job = jobs.get(key)
        where = f"{rule}: Slurm job {key} ({slog.relative_to(results)})"
        if job is None:
            errors.append(f"{where}: unknown to squeue (MinJobAge too short?)")
            continue
        if job["state"] != "COMPLETED":
            errors.append(f"{where}: state {job['state']}")
        if not job["gpu"]:
            errors.append(f"{where}: no GPU requested (tres: {job['tres']})")
        # the rule's own log: paths printed by Snakemake's jobstep as "    log: a, b"
        text = slog.read_text(errors="replace")
        rule_logs = sorted({p.strip() for m in re.finditer(r"^\s+log: (.+)$", text, re.M)
                            for p in m.group(1).split(",") if p.strip()})
        if not rule_logs:
            errors.append(f"{where}: the rule has no log: file to check")
        for rl in rule_logs:
            path = results / rl
            if not path.is_file():
                errors.append(f"{where}: rule log {rl} missing")
                continue
            t = path.read_text(errors="replace")
            ids = re.findall(r"SLURM_JOB_ID=(\d+)", t)
            cvd = re.findall(r"CUDA_VISIBLE_DEVICES=(\d+(?:,\d+)*)\b", t)
            if job["id"] not in ids:
                errors.append(f"{where}: {rl} lacks SLURM_JOB_ID={job['id']} (found {ids or 'none'})")
            if not cvd:
                errors.append(f"{where}: {rl} lacks CUDA_VISIBLE_DEVICES=<gpu index>")
            else:
                print(f"ok  {rule:15s} job {key:>8s} -> SLURM_JOB_ID={job['id']} "
                      f"CUDA_VISIBLE_DEVICES={cvd[0]}  {rl}")

if checked == 0:
    errors.append(f"no Slurm job logs for rules {rules} under {logdir} "
                  "(did the workflow run them through Slurm? is slurm-keep-successful-logs set?)")
for e in errors:
    print("FAIL", e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"[slurm-test] OK: {checked} GPU-rule job(s) ran as Slurm jobs with a GPU allocated")
EOF
log "total $((SECONDS - t0)) s"
