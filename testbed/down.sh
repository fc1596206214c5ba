#!/usr/bin/env bash
# Take the testbed cluster of one release down. Idempotent.
#   testbed/down.sh RELEASE [--purge] [--remove-root]
#     --purge         also delete the state (accounting DB, job state, logs, wrappers)
#     --remove-root   also delete the release's chroot (24.11/26.05; rebuilt by install.sh)
# Running jobs are cancelled first. Daemons are stopped only through the pids in their own
# pid files, after checking /proc/PID/comm. Leftover job processes (when slurmctld was
# already gone) are found by their root directory (chroot releases) or by our SLURM_CONF
# in the environment of their slurmstepd (22.05). Chroot mounts are removed in reverse order.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

tb_init "${1:-}"
shift
PURGE=0 REMOVE_ROOT=0
for a in "$@"; do
    case $a in
        --purge) PURGE=1 ;;
        --remove-root) PURGE=1 REMOVE_ROOT=1 ;;
        *) tb_die "unknown option $a (usage: down.sh RELEASE [--purge] [--remove-root])" ;;
    esac
done
[[ $(id -u) -eq 0 ]] || tb_die "down.sh must run as root"
tb_op_lock

RUN=$TB_STATE/run
T0=$SECONDS

# stop_pidfile PIDFILE COMM: TERM, wait up to 20 s, then KILL
stop_pidfile() {
    local f=$1 comm=$2 pid deadline
    pid=$(pid_alive "$f" "$comm") || return 0
    tb_log "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while proc_running "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if proc_running "$pid"; then
        tb_log "$comm (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
}

# descendants PID...: every process below the given ones (children, grandchildren, ...)
descendants() {
    ps -e -o pid= -o ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) seen[r[i]] = 1 }
        { parent[$1] = $2 }
        END {
            do {
                added = 0
                for (p in parent) if (!(p in seen) && (parent[p] in seen)) { seen[p] = 1; added = 1; print p }
            } while (added)
        }'
}

# leftover_pids: processes that belong to this testbed but have no pid file of ours:
# chroot releases: every process whose root directory is the chroot;
# host: slurmstepds with this testbed's SLURM_CONF in their environment, and everything below them
leftover_pids() {
    local p root stepds=()
    for p in /proc/[0-9]*; do
        if [[ -n $TB_CHROOT ]]; then
            root=$(readlink "$p/root" 2>/dev/null) || continue
            [[ $root == "$TB_CHROOT" ]] && echo "${p#/proc/}"
        elif [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] &&
            tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$TB_STATE_IN/etc/slurm.conf"; then
            stepds+=("${p#/proc/}")
        fi
    done
    if ((${#stepds[@]})); then
        printf '%s\n' "${stepds[@]}"
        descendants "${stepds[@]}"
    fi
}

if pid_alive "$RUN/slurmctld.pid" slurmctld >/dev/null && [[ -x $TB_BIN/squeue ]]; then
    mapfile -t jobs < <("$TB_BIN/squeue" -h -o %A 2>/dev/null || true)
    if ((${#jobs[@]})); then
        tb_log "cancelling ${#jobs[@]} job(s)"
        "$TB_BIN/scancel" "${jobs[@]}" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $("$TB_BIN/squeue" -h -t R,CG -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

for f in "$RUN"/slurmd.*.pid; do
    [[ -e $f ]] && stop_pidfile "$f" slurmd
done
stop_pidfile "$RUN/slurmctld.pid" slurmctld
stop_pidfile "$RUN/slurmdbd.pid" slurmdbd
stop_pidfile "$TB_STATE/mysql/mariadbd.pid" mariadbd
stop_pidfile "$TB_STATE/munge/munged.pid" munged

mapfile -t left < <(leftover_pids)
if ((${#left[@]})); then
    # one list, taken while the slurmstepds still exist (their children get reparented
    # once they die); srun ignores the first SIGTERM, hence the KILL round
    tb_log "terminating leftover job processes: ${left[*]}"
    kill -TERM "${left[@]}" 2>/dev/null || true
    sleep 1
    for p in "${left[@]}"; do
        if proc_running "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    if [[ -n $TB_CHROOT ]]; then
        mapfile -t left < <(leftover_pids)
        if ((${#left[@]})); then kill -KILL "${left[@]}" 2>/dev/null || true; fi
    fi
fi

umount_chroot

if ((PURGE)); then
    tb_log "removing state $TB_STATE, $TB_BIN, $TB_ENV_FILE"
    rm -rf --one-file-system "$TB_STATE" "$TB_BIN" "$TB_ENV_FILE"
fi
if ((REMOVE_ROOT)) && [[ -n $TB_CHROOT ]]; then
    for m in $(chroot_mounts); do
        mountpoint -q "$TB_CHROOT/$m" 2>/dev/null && tb_die "$TB_CHROOT/$m is still mounted, not removing the chroot"
    done
    tb_log "removing chroot $TB_CHROOT"
    rm -rf --one-file-system "$TB_CHROOT" "$TB_MARKER"
fi
tb_log "down in $((SECONDS - T0))s"
