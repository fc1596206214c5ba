#!/usr/bin/env bash
# Inner half of up.sh: runs INSIDE the release's root (on the host for 22.05, via chroot
# for 24.11/26.05) with a clean environment; all settings come in as TB_* variables.
# Writes the configs, starts munged, mariadbd, slurmdbd, slurmctld and one slurmd per
# fake node, and creates the accounting objects. Idempotent: a daemon whose pid file
# names a live process of the right name is left alone.
set -euo pipefail

: "${TB_RELEASE:?}" "${TB_STATE_IN:?}" "${TB_HOST:?}" "${TB_CTLD_PORT:?}" "${TB_DBD_PORT:?}"
: "${TB_SLURMD_PORT:?}" "${TB_MYSQL_PORT:?}" "${TB_CLUSTER:?}" "${TB_ACCOUNT:?}" "${TB_USER:?}"
: "${TB_PARTITION:?}" "${TB_MIN_JOB_AGE:?}" "${TB_WAIT:?}" "${TB_DB_PASS:?}" "${TB_MYSQL_POOL:?}"
TB_GPU_TYPE=${TB_GPU_TYPE-}
TB_PREP_IN=${TB_PREP_IN:-}
TB_USER_UID=${TB_USER_UID:-}
TB_USER_GID=${TB_USER_GID:-}

ST=$TB_STATE_IN
ETC=$ST/etc
LOG=$ST/log
RUN=$ST/run
MUNGE_DIR=$ST/munge
MUNGE_SOCK=$MUNGE_DIR/munge.socket.2
MYSQL_DIR=$ST/mysql
MYSQL_SOCK=$MYSQL_DIR/mysqld.sock
export SLURM_CONF=$ETC/slurm.conf
NODES=(node1 node2)
GPUS_PER_NODE=2

# shellcheck source=proc.sh
source "$(dirname "${BASH_SOURCE[0]}")/proc.sh"
log() { tb_log "$@"; }
die() { tb_die "$@"; }
tail_log() { if [[ -f $1 ]]; then tail -n 30 "$1" >&2; fi; }

for b in munged munge unmunge mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd \
    sacctmgr scontrol sinfo setpriv flock; do
    command -v "$b" >/dev/null || die "$b not found: run testbed/install.sh $TB_RELEASE"
done
[[ -d /proc/self ]] || die "/proc is not mounted"

mkdir -p "$ETC" "$LOG" "$RUN" "$MUNGE_DIR" "$MYSQL_DIR" "$ST/spool/ctld" "$ST/dev" "$ST/jobs"
for n in "${NODES[@]}"; do mkdir -p "$ST/spool/d/$n" "$ST/dev/$n"; done
chmod 755 "$ST" "$ETC" "$LOG" "$RUN" "$ST/spool" "$ST/dev"
chmod 1777 "$ST/jobs"       # job working/output dir for every user

# ------------------------------------------------------------------ users
if ! getent passwd "$TB_USER" >/dev/null; then
    # keep the host's uid/gid so that job owners look the same from both sides
    if [[ -n $TB_USER_GID ]] && ! getent group "$TB_USER_GID" >/dev/null; then
        groupadd -g "$TB_USER_GID" "$TB_USER"
    fi
    args=(--no-create-home --home-dir /tmp --shell /bin/sh)
    if [[ -n $TB_USER_UID ]] && ! getent passwd "$TB_USER_UID" >/dev/null; then
        args+=(-u "$TB_USER_UID")
        getent group "$TB_USER_GID" >/dev/null && args+=(-g "$TB_USER_GID")
    else
        args+=(--system --user-group)
    fi
    useradd "${args[@]}" "$TB_USER"
fi
MUNGE_USER=munge MYSQL_USER=mysql
getent passwd munge >/dev/null || MUNGE_USER=root
getent passwd mysql >/dev/null || MYSQL_USER=root

# ------------------------------------------------------------------ munge
[[ -s $MUNGE_DIR/munge.key ]] || dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
chown -R "$MUNGE_USER:" "$MUNGE_DIR"
chmod 755 "$MUNGE_DIR"          # clients of every uid connect to the socket
chmod 400 "$MUNGE_DIR/munge.key"
if pid_alive "$MUNGE_DIR/munged.pid" munged >/dev/null; then
    log "munged already running"
else
    log "starting munged"
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    touch "$LOG/munged.log"
    chown "$MUNGE_USER:" "$LOG/munged.log"
    setpriv --reuid="$MUNGE_USER" --regid="$(id -g "$MUNGE_USER")" --init-groups \
        munged --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCK" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$LOG/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" </dev/null >>"$LOG/munged.log" 2>&1 ||
        { tail_log "$LOG/munged.log"; die "munged failed to start"; }
fi
wait_for "$TB_WAIT" munged bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'" ||
    { tail_log "$LOG/munged.log"; die "munged is not answering"; }

# ------------------------------------------------------------------ MariaDB
chown "$MYSQL_USER:" "$MYSQL_DIR"
if [[ ! -d $MYSQL_DIR/data/mysql ]]; then
    log "initialising the MariaDB datadir"
    mariadb-install-db --no-defaults --datadir="$MYSQL_DIR/data" --user="$MYSQL_USER" \
        --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 ||
        { tail_log "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
fi
# shellcheck disable=SC2120 # called with -e and with a here-document
sql() { mariadb --no-defaults -S "$MYSQL_SOCK" -uroot "$@"; }
if pid_alive "$MYSQL_DIR/mariadbd.pid" mariadbd >/dev/null; then
    log "mariadbd already running"
else
    log "starting mariadbd on 127.0.0.1:$TB_MYSQL_PORT"
    rm -f "$MYSQL_SOCK"
    touch "$LOG/mariadbd.log"
    chown "$MYSQL_USER:" "$LOG/mariadbd.log"
    # mariadbd stays in the foreground: detach it; it writes its own pid file
    setsid mariadbd --no-defaults --user="$MYSQL_USER" --datadir="$MYSQL_DIR/data" \
        --socket="$MYSQL_SOCK" --port="$TB_MYSQL_PORT" --bind-address=127.0.0.1 \
        --pid-file="$MYSQL_DIR/mariadbd.pid" --log-error="$LOG/mariadbd.log" \
        --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size="$TB_MYSQL_POOL" \
        --innodb-log-file-size=48M --innodb-lock-wait-timeout=900 \
        --innodb-flush-log-at-trx-commit=2 </dev/null >>"$LOG/mariadbd.log" 2>&1 &
    disown || true
fi
wait_for "$TB_WAIT" mariadbd sql -e 'select 1' || { tail_log "$LOG/mariadbd.log"; die "mariadbd is not answering"; }
# shellcheck disable=SC2119
sql <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$TB_DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$TB_DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ------------------------------------------------------------------ fake GPUs
# Character devices with the numbers of /dev/null: slurmd only stat()s them.
for n in "${NODES[@]}"; do
    for ((g = 0; g < GPUS_PER_NODE; g++)); do
        [[ -e $ST/dev/$n/nvidia$g ]] || mknod -m 666 "$ST/dev/$n/nvidia$g" c 1 3
    done
done

# ------------------------------------------------------------------ PrologSlurmctld hook
PREP=$TB_PREP_IN
if [[ -z $PREP ]]; then
    PREP=$ETC/prep-hook.sh
    cat >"$PREP.new" <<EOF
#!/bin/sh
# Default PrologSlurmctld/EpilogSlurmctld hook of the cc-slurm-adapter testbed: logs the
# context and the environment of every call (serialised with flock).
exec 9>>"$LOG/prep-hook.log"
flock 9 2>/dev/null || true
{
    echo "=== \$(date '+%Y-%m-%dT%H:%M:%S') context=\${SLURM_SCRIPT_CONTEXT:-?} job=\${SLURM_JOB_ID:-?}"
    env | sort
    echo "=== end job=\${SLURM_JOB_ID:-?}"
} >&9 2>&1
exit 0
EOF
    chmod 755 "$PREP.new"
    mv "$PREP.new" "$PREP"
fi
[[ -x $PREP ]] || die "the PrologSlurmctld/EpilogSlurmctld script $PREP is not executable (inside the release root)"

# ------------------------------------------------------------------ configs
GRES_NAME=gpu${TB_GPU_TYPE:+:$TB_GPU_TYPE}
TRES=gres/gpu${TB_GPU_TYPE:+,gres/gpu:$TB_GPU_TYPE}
CGROUP_PLUGIN=autodetect
[[ $TB_RELEASE == 22.05 ]] || CGROUP_PLUGIN=disabled   # 24.11+: slurmd needs a cgroup fs otherwise
{
    cat <<EOF
# Generated by cc-slurm-adapter testbed/up.sh ($TB_RELEASE). Do not edit: re-run up.sh.
ClusterName=$TB_CLUSTER
SlurmctldHost=$TB_HOST(127.0.0.1)
SlurmctldPort=$TB_CTLD_PORT
SlurmdPort=$TB_SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
StateSaveLocation=$ST/spool/ctld
SlurmdSpoolDir=$ST/spool/d/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=5
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
OverTimeLimit=0
MinJobAge=$TB_MIN_JOB_AGE
MaxArraySize=1001
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$TB_DBD_PORT
# clients and slurmctld take the munge socket for slurmdbd from here, not from AuthInfo
AccountingStoragePass=socket=$MUNGE_SOCK
AccountingStorageTRES=$TRES
# the job script goes to slurmdbd too (sacct -B), so the adapter can send it as metaData.jobScript
AccountingStoreFlags=job_script
PrologSlurmctld=$PREP
EpilogSlurmctld=$PREP
GresTypes=gpu
# node1: 1 socket x 2 cores x 1 thread; node2: 2 sockets x 2 cores x 2 threads (SMT)
NodeName=node1 NodeHostname=$TB_HOST NodeAddr=127.0.0.1 Port=$((TB_SLURMD_PORT + 1)) CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=2000 Gres=$GRES_NAME:$GPUS_PER_NODE State=UNKNOWN
NodeName=node2 NodeHostname=$TB_HOST NodeAddr=127.0.0.1 Port=$((TB_SLURMD_PORT + 2)) CPUs=8 Sockets=2 CoresPerSocket=2 ThreadsPerCore=2 RealMemory=4000 Gres=$GRES_NAME:$GPUS_PER_NODE State=UNKNOWN
PartitionName=$TB_PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
} >"$ETC/slurm.conf.new"
CONF_CHANGED=0 RECONFIGURED=0
[[ -f $ETC/slurm.conf ]] && ! cmp -s "$ETC/slurm.conf.new" "$ETC/slurm.conf" && CONF_CHANGED=1
mv "$ETC/slurm.conf.new" "$ETC/slurm.conf"

{
    echo "AutoDetect=off"
    for n in "${NODES[@]}"; do
        echo "NodeName=$n Name=gpu${TB_GPU_TYPE:+ Type=$TB_GPU_TYPE} File=$ST/dev/$n/nvidia[0-$((GPUS_PER_NODE - 1))]"
    done
} >"$ETC/gres.conf"

cat >"$ETC/cgroup.conf" <<EOF
CgroupPlugin=$CGROUP_PLUGIN
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

(
    umask 077
    cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$TB_DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$TB_MYSQL_PORT
StorageUser=slurm
StoragePass=$TB_DB_PASS
StorageLoc=slurm_acct_db
EOF
)
chmod 600 "$ETC/slurmdbd.conf"

# ------------------------------------------------------------------ slurmdbd
if pid_alive "$RUN/slurmdbd.pid" slurmdbd >/dev/null; then
    log "slurmdbd already running"
else
    log "starting slurmdbd on 127.0.0.1:$TB_DBD_PORT"
    slurmdbd </dev/null >>"$LOG/slurmdbd.stdout" 2>&1 || { tail_log "$LOG/slurmdbd.log"; die "slurmdbd failed to start"; }
fi
wait_for "$TB_WAIT" slurmdbd sacctmgr -n -P show cluster ||
    { tail_log "$LOG/slurmdbd.log"; die "slurmdbd is not answering"; }

# ------------------------------------------------------------------ accounting objects
if [[ -z $(sacctmgr -n -P show cluster "$TB_CLUSTER" format=cluster) ]]; then
    sacctmgr -i add cluster "$TB_CLUSTER" >/dev/null
fi
if [[ -z $(sacctmgr -n -P show account "$TB_ACCOUNT" format=account) ]]; then
    sacctmgr -i add account "$TB_ACCOUNT" cluster="$TB_CLUSTER" \
        description="cc-slurm-adapter testbed" organization=ccsa >/dev/null
fi
for u in root "$TB_USER"; do
    if [[ -z $(sacctmgr -n -P show assoc where user="$u" account="$TB_ACCOUNT" cluster="$TB_CLUSTER" format=user) ]]; then
        sacctmgr -i add user "$u" account="$TB_ACCOUNT" cluster="$TB_CLUSTER" >/dev/null
    fi
done

# ------------------------------------------------------------------ slurmctld
if pid_alive "$RUN/slurmctld.pid" slurmctld >/dev/null; then
    log "slurmctld already running"
    if ((CONF_CHANGED)); then
        log "slurm.conf changed: scontrol reconfigure"
        scontrol reconfigure || log "WARNING: scontrol reconfigure failed"
        RECONFIGURED=1
    fi
elif scontrol ping 2>/dev/null | grep -q UP; then
    # never start a second controller on our port (it would overwrite the pid file, fail to
    # bind and die); down.sh still finds this one (chroot: by its root directory)
    log "WARNING: a slurmctld answers on port $TB_CTLD_PORT but $RUN/slurmctld.pid does not name it"
else
    log "starting slurmctld on 127.0.0.1:$TB_CTLD_PORT"
    slurmctld </dev/null >>"$LOG/slurmctld.stdout" 2>&1 || { tail_log "$LOG/slurmctld.log"; die "slurmctld failed to start"; }
fi
wait_for "$TB_WAIT" slurmctld bash -c 'scontrol ping | grep -q UP' ||
    { tail_log "$LOG/slurmctld.log"; die "slurmctld is not answering"; }

# ------------------------------------------------------------------ slurmd per fake node
all_slurmds_alive() {
    local n
    for n in "${NODES[@]}"; do pid_alive "$RUN/slurmd.$n.pid" slurmd >/dev/null || return 1; done
}
if ((RECONFIGURED)); then
    # from 24.11 a reconfigure re-executes slurmctld and every slurmd (new pids): let them
    # settle instead of starting a second slurmd for a node that is just restarting
    sleep 1
    wait_for 15 "slurmds after reconfigure" all_slurmds_alive || true
fi
for n in "${NODES[@]}"; do
    if pid_alive "$RUN/slurmd.$n.pid" slurmd >/dev/null; then
        log "slurmd $n already running"
    else
        log "starting slurmd $n"
        slurmd -N "$n" </dev/null >>"$LOG/slurmd.$n.stdout" 2>&1 || { tail_log "$LOG/slurmd.$n.log"; die "slurmd $n failed to start"; }
    fi
done
nodes_ready() {
    local states
    states=$(sinfo -h -N -o '%N %t') || return 1
    [[ -n $states ]] && ! awk '$2 !~ /^(idle|alloc|mix|comp)$/ { bad = 1 } END { exit !bad }' <<<"$states"
}
wait_for "$TB_WAIT" "nodes idle" nodes_ready || {
    sinfo -N -l >&2 || true
    tail_log "$LOG/slurmd.node1.log"
    die "the nodes did not become ready"
}
log "up: $(slurmctld -V), $(sinfo -h -o '%D nodes %t' | tr '\n' ' ')"
