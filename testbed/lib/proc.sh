# Helpers shared by the host scripts (common.sh) and cluster-up.sh, which runs inside
# the release's root (the chroots see this checkout read-only): logging and pid files.
# shellcheck shell=bash

tb_log() { printf '[testbed %s %s] %s\n' "${TB_RELEASE:-?}" "$(date +%H:%M:%S)" "$*" >&2; }
tb_die() {
    tb_log "ERROR: $*"
    exit 1
}

# proc_running PID: the process exists and is not a zombie
proc_running() {
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# pid_alive PIDFILE COMM: print the pid and succeed when the pid file names a live
# process whose /proc/PID/comm starts with COMM (guards against pid reuse).
pid_alive() {
    local f=$1 comm=$2 pid
    [[ -s $f ]] || return 1
    # first line only: 24.11's slurmctld rewrites its pid file on `scontrol reconfigure`
    # without truncating it ("695\n6\n" after "32206\n")
    pid=$(head -n 1 "$f" | tr -dc '0-9')
    [[ -n $pid ]] || return 1
    proc_running "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm"* ]] || return 1
    echo "$pid"
}

# wait_for SECS WHAT CMD...: poll CMD every 0.2 s until it succeeds
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            tb_log "timed out after ${secs}s waiting for: $what"
            return 1
        fi
        sleep 0.2
    done
}
