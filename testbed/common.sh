# shellcheck shell=bash disable=SC2034
# Settings and helpers shared by the testbed scripts. Sourced, never executed.
#
# Every script takes the Slurm release as its first argument:
#   22.05  Debian 12 packages on this host
#   24.11  Debian trixie chroot
#   26.05  Debian sid chroot (sid moves: the exact version is detected, never pinned)
#
# Call tb_init RELEASE after sourcing; it sets the TB_* variables below.
# Everything can be overridden through the environment (see README.md).

TB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB_REPO=$(cd "$TB_HERE/.." && pwd)
TB_RELEASES=(22.05 24.11 26.05)

# Base directory for everything the testbed keeps on this machine.
TB_BASE=${CCSA_TESTBED_BASE:-/var/lib/cc-slurm-adapter-testbed}

# Where the repository is bind-mounted (read-only) inside the chroots, so that hook
# scripts from the checkout can run in the chroot's slurmctld.
TB_REPO_IN_CHROOT=/opt/cc-slurm-adapter

# shellcheck source=lib/proc.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/proc.sh"

# tb_init RELEASE: per-release layout and ports.
tb_init() {
    TB_RELEASE=${1:-}
    local offset
    case $TB_RELEASE in
        22.05) TB_SUITE=bookworm offset=0 ;;
        24.11) TB_SUITE=trixie offset=100 ;;
        26.05) TB_SUITE=sid offset=200 ;;
        *) tb_die "unknown release '${TB_RELEASE}' (expected one of: ${TB_RELEASES[*]})" ;;
    esac
    TB_DIR=$TB_BASE/$TB_RELEASE
    TB_BIN=$TB_DIR/bin
    TB_ENV_FILE=$TB_DIR/env.sh
    if [[ $TB_RELEASE == 22.05 ]]; then
        TB_CHROOT=""                       # daemons run on the host
        TB_STATE_IN=$TB_DIR/state          # state dir as the daemons see it
    else
        TB_CHROOT=$TB_DIR/root
        TB_STATE_IN=/srv/ccsa-testbed
    fi
    TB_STATE=$TB_CHROOT$TB_STATE_IN      # the same dir as seen from the host
    TB_MARKER=$TB_DIR/root.done          # written when a chroot build has finished

    # Ports: release 22.05 uses the Slurm defaults, 24.11 adds 100, 26.05 adds 200.
    TB_CTLD_PORT=$((6817 + offset))
    TB_DBD_PORT=$((6819 + offset))
    TB_SLURMD_PORT=$((6820 + offset))     # node i listens on this + i
    TB_MYSQL_PORT=$((13306 + offset))

    TB_CLUSTER=${SLURM_TESTBED_CLUSTER:-testcluster}
    TB_ACCOUNT=${SLURM_TESTBED_ACCOUNT:-testacct}
    TB_USER=${SLURM_TESTBED_USER:-testuser}
    TB_PARTITION=${SLURM_TESTBED_PARTITION:-debug}
    TB_MIN_JOB_AGE=${SLURM_TESTBED_MIN_JOB_AGE:-300}
    TB_GPU_TYPE=${SLURM_TESTBED_GPU_TYPE-tesla}   # set to "" for untyped gpu:2
    TB_PREP_SCRIPT=${SLURM_TESTBED_PREP_SCRIPT:-}  # PrologSlurmctld/EpilogSlurmctld
    TB_WAIT=${SLURM_TESTBED_WAIT:-60}
    TB_DB_PASS=${SLURM_TESTBED_DB_PASS:-ccsa-testbed}   # throw-away, local only
    TB_MYSQL_POOL=${SLURM_TESTBED_MYSQL_BUFFER_POOL:-64M}
}

# tb_mirror: the Debian mirror this host's apt uses (for debootstrap).
tb_mirror() {
    if [[ -n ${SLURM_TESTBED_MIRROR:-} ]]; then
        echo "$SLURM_TESTBED_MIRROR"
        return
    fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
        if [[ -n $uri ]]; then
            echo "$uri"
            return
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' "$f")
        if [[ -n $uri ]]; then
            echo "$uri"
            return
        fi
    done
    echo "http://deb.debian.org/debian"
}

# in_root CMD...: run CMD in the release's root (the host for 22.05, else the chroot)
# with a clean environment.
in_root() {
    local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    if [[ -n $TB_CHROOT ]]; then
        chroot "$TB_CHROOT" /usr/bin/env -i PATH="$path" HOME=/root LANG=C.UTF-8 "$@"
    else
        /usr/bin/env -i PATH="$path" HOME=/root LANG=C.UTF-8 "$@"
    fi
}

# chroot_mounts: the mount points inside the chroot, in mount order
chroot_mounts() {
    printf '%s\n' proc sys dev dev/pts "${TB_REPO_IN_CHROOT#/}"
}

# mount_chroot: mount /proc, /sys, /dev, /dev/pts and the repo (read-only). Idempotent.
mount_chroot() {
    [[ -n $TB_CHROOT ]] || return 0
    local r=$TB_CHROOT
    mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
    mountpoint -q "$r/sys" || mount -t sysfs sysfs "$r/sys"
    mountpoint -q "$r/dev" || mount --bind /dev "$r/dev"
    mountpoint -q "$r/dev/pts" || mount --bind /dev/pts "$r/dev/pts"
    mkdir -p "$r$TB_REPO_IN_CHROOT"
    # Another checkout's mount (the same chroot used from a second clone) is replaced,
    # but only while that cluster is down: a running one may be using its hook scripts.
    if mountpoint -q "$r$TB_REPO_IN_CHROOT" &&
        [[ $(stat -c %d:%i "$r$TB_REPO_IN_CHROOT") != $(stat -c %d:%i "$TB_REPO") ]]; then
        if pid_alive "$TB_STATE/run/slurmctld.pid" slurmctld >/dev/null; then
            tb_log "WARNING: $TB_REPO_IN_CHROOT shows another checkout (cluster running); keeping it"
        else
            tb_log "replacing the bind mount of another checkout at $TB_REPO_IN_CHROOT"
            umount "$r$TB_REPO_IN_CHROOT" 2>/dev/null || umount -l "$r$TB_REPO_IN_CHROOT"
        fi
    fi
    if ! mountpoint -q "$r$TB_REPO_IN_CHROOT"; then
        mount --bind "$TB_REPO" "$r$TB_REPO_IN_CHROOT"
        mount -o remount,bind,ro "$r$TB_REPO_IN_CHROOT"
    fi
}

# umount_chroot: unmount in reverse order; lazily when busy. Idempotent.
umount_chroot() {
    [[ -n $TB_CHROOT ]] || return 0
    local m mounts
    mapfile -t mounts < <(chroot_mounts)
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        m=$TB_CHROOT/${mounts[i]}
        mountpoint -q "$m" 2>/dev/null || continue
        if ! umount "$m" 2>/dev/null; then
            tb_log "$m busy, unmounting lazily"
            umount -l "$m" || tb_log "WARNING: could not unmount $m"
        fi
    done
}

# tb_op_lock: serialise up.sh/down.sh of one release (fd 8; never inherited by daemons:
# up.sh closes it for the inner script). A nested call (up.sh --fresh -> down.sh) passes.
tb_op_lock() {
    [[ ${TB_OP_LOCK_HELD:-} == "$TB_RELEASE" ]] && return 0
    mkdir -p "$TB_BASE"
    exec 8>"$TB_BASE/$TB_RELEASE.op.lock"
    flock -w 600 8 || tb_die "another up.sh/down.sh of $TB_RELEASE has been running for 10 minutes"
    export TB_OP_LOCK_HELD=$TB_RELEASE
}
