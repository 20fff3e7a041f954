#!/usr/bin/env bash
# A real SLURM cluster on one machine, for trying the sbatch files in examples/slurm/.
#
#   scripts/slurm_test_cluster.sh install          # Debian's slurm-wlm and munge (root, once)
#   scripts/slurm_test_cluster.sh start DIR        # munged, slurmctld, two slurmd; nodes idle
#   source DIR/env.sh                              # SLURM_CONF for sbatch, squeue, scontrol
#   scripts/slurm_test_cluster.sh stop DIR         # cancel jobs, stop the daemons
#
# Two nodes (n1, n2) on the same host with their own slurmd ports, because a heterogeneous
# job needs a node per component. Everything the cluster writes (config, munge key and
# socket, state, spool, logs, pid files) lives under DIR; ports are picked free at start so
# several clusters can run side by side. tests/slurm/ drives this script.
# As root the daemons run as root (SlurmUser=root). As another user SLURM must already be
# installed; the daemons then run as that user and only that user's jobs work.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # the daemons, for users whose PATH lacks sbin

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATE="${SLURM_TEST_TEMPLATE:-$HERE/../tests/slurm/slurm.conf.in}"
CPUS="${SLURM_TEST_CPUS:-8}"          # CPUs each node declares (whatever the host has)
START_TIMEOUT="${SLURM_TEST_START_TIMEOUT:-30}"
STOP_TIMEOUT="${SLURM_TEST_STOP_TIMEOUT:-60}"
NODES=(n1 n2)

die() { echo "slurm_test_cluster: $*" >&2; exit 1; }

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

cmd_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        echo "slurm_test_cluster: SLURM and munge already installed ($(slurmctld -V))"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "installing SLURM needs root (apt-get); run as root or install slurm-wlm and munge first"
    command -v apt-get >/dev/null || die "apt-get not found: install slurm-wlm and munge with this system's package manager"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
}

# free_ports N: N distinct TCP ports that nothing listens on right now.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# alive PID: the process exists and is not a zombie (exited daemons may stay zombies when
# nothing reaps them, so kill -0 is not enough).
alive() {
    local status="/proc/$1/status"
    [[ -r $status ]] || return 1
    ! grep -q '^State:[[:space:]]*Z' "$status" 2>/dev/null
}

pid_of() { [[ -s $1 ]] && tr -d '[:space:]' <"$1"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
    local timeout=$1 what=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        ((SECONDS < deadline)) || { echo "slurm_test_cluster: timed out after ${timeout}s waiting for $what" >&2; return 1; }
        sleep 0.2
    done
}

nodes_idle() {
    local states
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
    [[ $(grep -c ' idle$' <<<"$states") -eq ${#NODES[@]} ]]
}

cmd_start() {
    local dir=${1:?usage: start DIR}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ ! -e $dir/etc/slurm.conf ]] || die "$dir already holds a cluster; stop it and use an empty folder"
    [[ -r $TEMPLATE ]] || die "config template $TEMPLATE not found"
    for tool in munged slurmctld slurmd sinfo python3; do
        command -v "$tool" >/dev/null || die "$tool not found; run '$0 install' first"
    done

    local user; user=$(id -un)
    mkdir -p "$dir"/{etc,state,run,log,munge}
    for node in "${NODES[@]}"; do mkdir -p "$dir/spool/$node" "$dir/tmp/$node"; done
    # munged refuses a socket folder that is not exactly 755 and a key others can read.
    chmod 755 "$dir" "$dir/munge"
    head -c 1024 /dev/urandom >"$dir/munge/munge.key"
    chmod 600 "$dir/munge/munge.key"

    local ports; read -r -a ports <<<"$(free_ports 3)"
    sed -e "s|@DIR@|$dir|g" -e "s|@CTLD_PORT@|${ports[0]}|g" \
        -e "s|@N1_PORT@|${ports[1]}|g" -e "s|@N2_PORT@|${ports[2]}|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@SLURM_USER@|$user|g" -e "s|@SLURMD_USER@|$user|g" \
        "$TEMPLATE" >"$dir/etc/slurm.conf"
    printf 'export SLURM_CONF=%q\n' "$dir/etc/slurm.conf" >"$dir/env.sh"
    export SLURM_CONF="$dir/etc/slurm.conf"

    # --force: start even where a parent folder looks too open to munged (the key is throwaway).
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    wait_for "$START_TIMEOUT" "munged's socket" test -S "$dir/munge/munge.socket"
    slurmctld
    for node in "${NODES[@]}"; do slurmd -N "$node"; done
    if ! wait_for "$START_TIMEOUT" "both nodes idle" nodes_idle; then
        sinfo -N >&2 || true
        tail -n 20 "$dir"/log/*.log >&2 || true
        cmd_stop "$dir" || true
        return 1
    fi
    echo "slurm_test_cluster: up in $dir (source $dir/env.sh)"
}

# stop_daemon PIDFILE NAME: SIGTERM, wait until gone (or a zombie), then SIGKILL.
stop_daemon() {
    local pid; pid=$(pid_of "$1") || return 0
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "$STOP_TIMEOUT" "$2 (pid $pid) to exit" eval "! alive $pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 "$2 (pid $pid) to die" eval "! alive $pid" || return 1
    fi
}

queue_empty() { [[ -z $(squeue -h -o '%i' 2>/dev/null) ]]; }

cmd_stop() {
    local dir=${1:?usage: stop DIR}
    [[ -d $dir ]] || die "$dir does not exist"
    dir=$(cd "$dir" && pwd)
    export SLURM_CONF="$dir/etc/slurm.conf"
    local failed=0
    # Jobs first: killing slurmd leaves running slurmstepd (and their job steps) behind.
    if [[ -e $SLURM_CONF ]] && scontrol ping >/dev/null 2>&1; then
        scancel --quiet --partition=test 2>/dev/null || true
        if ! wait_for "$STOP_TIMEOUT" "an empty queue" queue_empty; then
            squeue -s >&2 || true
            scontrol show job >&2 || true
            failed=1
        fi
    fi
    for node in "${NODES[@]}"; do
        stop_daemon "$dir/run/slurmd-$node.pid" "slurmd $node" || failed=1
    done
    stop_daemon "$dir/run/slurmctld.pid" slurmctld || failed=1
    stop_daemon "$dir/run/munged.pid" munged || failed=1
    ((failed == 0)) || die "some jobs or daemons did not stop; see $dir/log"
    echo "slurm_test_cluster: stopped $dir"
}

case "${1:-}" in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) usage ;;
esac
