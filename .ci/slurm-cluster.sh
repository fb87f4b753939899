#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on this machine, for CI and local testing.
#
#   .ci/slurm-cluster.sh start    install (if needed) and start munged, slurmctld, slurmd;
#                                 wait until the node is idle
#   .ci/slurm-cluster.sh stop     cancel jobs, stop the daemons, remove the state dir
#   .ci/slurm-cluster.sh status   show daemons, sinfo and squeue
#
# Must run as root (Debian/Ubuntu, no systemd needed). Both start and stop are idempotent.
#
# The node is "localhost" in partition "debug" with CPUs = nproc, RealMemory = MemTotal minus
# a margin, and Gres=gpu:2 backed by two fake character devices, so `--gpus=1` jobs are
# scheduled like on a GPU node and get CUDA_VISIBLE_DEVICES=0 or 1 from Slurm.
#
# Environment:
#   FEATVIZ_SLURM_STATE   state dir (default /tmp/featviz-slurm): config, spool, logs, pids
#   FEATVIZ_SLURM_GPUS    number of fake GPUs (default 2)
#   FEATVIZ_SLURM_WAIT    seconds to wait for the node to become idle (default 60)
#
# /etc/slurm/slurm.conf (and gres.conf) are symlinks into the state dir: the Slurm client
# commands inside a job run without SLURM_CONF (the executor strips SLURM_* variables), so the
# config has to be found at the default path. An existing regular file there is moved aside to
# *.featviz-bak and restored by `stop`.
set -euo pipefail

STATE=${FEATVIZ_SLURM_STATE:-/tmp/featviz-slurm}
NGPUS=${FEATVIZ_SLURM_GPUS:-2}
WAIT=${FEATVIZ_SLURM_WAIT:-60}
ETC=/etc/slurm
PKGS=(slurm-wlm munge)

log() { echo "[slurm-cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"

alive() { # alive PIDFILE -> true when the pid in it is a running process
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sinfo >/dev/null && command -v munged >/dev/null; then
        return
    fi
    log "installing ${PKGS[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when there are none (fresh container).
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
    fi
    # Keep the packages' init scripts from starting daemons with the default config.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    local rc=0
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${PKGS[@]}" \
        >"${TMPDIR:-/tmp}/featviz-slurm-apt.log" 2>&1 || rc=$?
    [[ $own_policy -eq 1 ]] && rm -f "$policy"
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "${TMPDIR:-/tmp}/featviz-slurm-apt.log" >&2
        die "apt-get install ${PKGS[*]} failed"
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating munge key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    log "starting munged (as user munge)"
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/munged.ours"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged does not answer (see /var/log/munge/munged.log)"
}

write_config() {
    local cpus mem_mb margin
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    margin=$(( mem_mb / 10 < 512 ? 512 : mem_mb / 10 ))
    mem_mb=$(( mem_mb - margin < 256 ? 256 : mem_mb - margin ))
    mkdir -p "$STATE"/{etc,state,spool,log,run,dev}

    local i
    for ((i = 0; i < NGPUS; i++)); do
        # Slurm only accepts character devices as GRES files; c 1 3 is /dev/null's.
        [[ -c $STATE/dev/fakegpu$i ]] || { rm -f "$STATE/dev/fakegpu$i"; mknod "$STATE/dev/fakegpu$i" c 1 3; }
    done

    cat >"$STATE/etc/slurm.conf" <<EOF
# Written by .ci/slurm-cluster.sh -- a single-node CI cluster; do not edit.
ClusterName=featviz-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=500
ReturnToService=2
# Finished jobs stay visible to squeue for 2 h: Snakemake's squeue-based status check needs
# MinJobAge >= 3 x slurm-init-seconds-before-status-checks, and .ci/slurm-test.sh checks
# every job of the run with `squeue --states=all` afterwards.
MinJobAge=7200
InactiveLimit=0
KillWait=5
Waittime=0
MailProg=/bin/true
GresTypes=gpu
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=localhost Name=gpu File=$STATE/dev/fakegpu[0-$((NGPUS - 1))]
EOF
    mkdir -p "$ETC"
    local f
    for f in slurm.conf gres.conf; do
        if [[ -e $ETC/$f && ! -L $ETC/$f ]]; then
            log "moving existing $ETC/$f to $ETC/$f.featviz-bak"
            mv "$ETC/$f" "$ETC/$f.featviz-bak"
        fi
        ln -sfn "$STATE/etc/$f" "$ETC/$f"
    done
}

print_logs() {
    local f
    for f in "$STATE"/log/slurmctld.log "$STATE"/log/slurmd.log; do
        [[ -f $f ]] && { echo "----- $f (last 40 lines)"; tail -n 40 "$f"; }
    done >&2
    scontrol show node localhost >&2 2>&1 || true
}

wait_idle() {
    local t0=$SECONDS st=""
    while (( SECONDS - t0 < WAIT )); do
        st=$(sinfo -h -o %t 2>/dev/null | head -n1 || true)
        case $st in
            idle|mix|alloc) log "node is $st ($((SECONDS - t0)) s)"; return 0 ;;
            down*|drain*|drng*|fail*|inval*)
                # e.g. left down by an earlier run: bring it back
                scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    log "node did not become idle within ${WAIT}s (sinfo state: '${st:-none}')"
    print_logs
    exit 1
}

start() {
    install_packages
    mkdir -p "$STATE"
    if alive "$STATE/run/slurmctld.pid" && alive "$STATE/run/slurmd.pid"; then
        log "already running (state dir $STATE)"
        start_munge
        wait_idle
        return
    fi
    start_munge
    write_config
    if ! alive "$STATE/run/slurmctld.pid"; then
        log "starting slurmctld"
        /usr/sbin/slurmctld -i || { print_logs; die "slurmctld failed to start"; }
    fi
    if ! alive "$STATE/run/slurmd.pid"; then
        log "starting slurmd"
        /usr/sbin/slurmd -N localhost || { print_logs; die "slurmd failed to start"; }
    fi
    wait_idle
    log "cluster up: partition debug, $(nproc) CPUs, gpu:$NGPUS (fake), state dir $STATE"
}

stop_daemon() { # stop_daemon NAME PIDFILE
    local pidfile=$2 pid
    alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    if alive "$STATE/run/slurmctld.pid"; then
        # Cancel whatever is still queued or running (this cluster is ours alone).
        local ids
        ids=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $ids ]]; then
            log "cancelling jobs: $(echo $ids)"
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null || true
            for _ in $(seq 30); do
                [[ -z $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    stop_daemon slurmd "$STATE/run/slurmd.pid"
    stop_daemon slurmctld "$STATE/run/slurmctld.pid"
    if [[ -e $STATE/munged.ours && -s /run/munge/munged.pid ]]; then
        stop_daemon munged /run/munge/munged.pid
    fi
    local f
    for f in slurm.conf gres.conf; do
        if [[ -L $ETC/$f && $(readlink "$ETC/$f") == "$STATE/etc/$f" ]]; then
            rm -f "$ETC/$f"
        fi
        [[ -e $ETC/$f.featviz-bak && ! -e $ETC/$f ]] && mv "$ETC/$f.featviz-bak" "$ETC/$f"
    done
    rm -rf "$STATE"
    log "stopped"
}

status() {
    local ok=0
    for d in slurmctld slurmd; do
        if alive "$STATE/run/$d.pid"; then
            echo "$d: running (pid $(cat "$STATE/run/$d.pid"))"
        else
            echo "$d: not running"; ok=1
        fi
    done
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then echo "munged: ok"; else echo "munged: not answering"; ok=1; fi
    if [[ $ok -eq 0 ]]; then
        sinfo -N -o '%N %P %t %c %m %G' || ok=1
        squeue -o '%i %j %T %M %b %R' || true
    fi
    return $ok
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
