#!/usr/bin/env bash
# Install what the given releases need. Idempotent and quick when already done.
#   testbed/install.sh RELEASE...      e.g. testbed/install.sh 22.05 24.11 26.05
# 22.05: Debian 12 packages on this host.
# 24.11, 26.05: a debootstrapped trixie / sid chroot under $CCSA_TESTBED_BASE/<release>/root,
#   built once (marker file <release>/root.done) and reused. Chroots are built in parallel.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

# shellcheck disable=SC2153 # TB_RELEASES comes from common.sh
(($#)) || tb_die "usage: $0 RELEASE... (one or more of: ${TB_RELEASES[*]})"
[[ $(id -u) -eq 0 ]] || tb_die "install.sh must run as root"
for r in "$@"; do (tb_init "$r"); done   # validate the arguments first

HOST_PKGS=(slurmctld slurmd slurm-client slurmdbd slurm-wlm-basic-plugins munge mariadb-server
    procps util-linux python3)
CHROOT_PKGS=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server procps util-linux python3)

# no_policy_rc_d DIR: make sure DIR/usr/sbin/policy-rc.d forbids starting services.
# Prints "added" when it created the file (so the caller can remove it again).
ensure_policy_rc_d() {
    local f=$1/usr/sbin/policy-rc.d
    if [[ ! -e $f ]]; then
        printf '#!/bin/sh\n# installed by cc-slurm-adapter testbed: never start services\nexit 101\n' >"$f"
        chmod 755 "$f"
        echo added
    fi
}

missing_host_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

want_host=0 want_chroot=()
for r in "$@"; do
    if [[ $r == 22.05 ]]; then want_host=1; else want_chroot+=("$r"); fi
done

# ------------------------------------------------------------------ host packages
pkgs=()
((want_host)) && pkgs+=("${HOST_PKGS[@]}")
((${#want_chroot[@]})) && pkgs+=(debootstrap)
mapfile -t missing < <(missing_host_pkgs "${pkgs[@]}")
if ((${#missing[@]})); then
    TB_RELEASE=host
    t0=$SECONDS
    tb_log "apt-get install ${missing[*]}"
    added=$(ensure_policy_rc_d "")
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    mkdir -p "$TB_BASE"
    { apt-get -o Acquire::Retries=3 update -qq &&
        apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$TB_BASE/host-apt.log" 2>&1 || rc=$?
    if [[ $added == added ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if ((rc != 0)); then
        tail -n 30 "$TB_BASE/host-apt.log" >&2
        tb_die "apt-get install failed (rc=$rc), see $TB_BASE/host-apt.log"
    fi
    tb_log "host packages installed in $((SECONDS - t0))s"
fi
if ((want_host)); then
    tb_init 22.05
    tb_log "ready: $(slurmctld -V)"
fi

# ------------------------------------------------------------------ chroots
build_chroot() {
    tb_init "$1"
    if [[ -f $TB_MARKER && -x $TB_CHROOT/usr/sbin/slurmctld ]]; then
        tb_log "chroot ready: $(cat "$TB_MARKER")"
        return 0
    fi
    local mirror t0=$SECONDS t1
    mirror=$(tb_mirror)
    mkdir -p "$TB_DIR"
    # A half-built chroot is rebuilt from scratch (after making sure nothing is mounted in it).
    if [[ -e $TB_CHROOT ]]; then
        tb_log "removing unfinished chroot $TB_CHROOT"
        umount_chroot
        local m
        for m in $(chroot_mounts); do
            mountpoint -q "$TB_CHROOT/$m" 2>/dev/null && tb_die "$TB_CHROOT/$m is still mounted"
        done
        rm -rf --one-file-system "$TB_CHROOT"
    fi
    tb_log "debootstrap --variant=minbase $TB_SUITE $TB_CHROOT $mirror"
    # one retry: a network hiccup should not fail a CI run
    if ! debootstrap --variant=minbase "$TB_SUITE" "$TB_CHROOT" "$mirror" >"$TB_DIR/debootstrap.log" 2>&1; then
        tb_log "debootstrap failed (see $TB_DIR/debootstrap.log), retrying once"
        umount_chroot
        rm -rf --one-file-system "$TB_CHROOT"
        debootstrap --variant=minbase "$TB_SUITE" "$TB_CHROOT" "$mirror" >"$TB_DIR/debootstrap.log" 2>&1 ||
            tb_die "debootstrap failed twice, see $TB_DIR/debootstrap.log"
    fi
    t1=$SECONDS
    tb_log "debootstrap done in $((t1 - t0))s"
    ensure_policy_rc_d "$TB_CHROOT" >/dev/null
    mount_chroot
    trap umount_chroot EXIT
    local update=(apt-get -o Acquire::Retries=3 update -qq)
    # sid's Release file can be past its Valid-Until date on mirrors/snapshots
    [[ $TB_SUITE == sid ]] && update=(apt-get -o Acquire::Retries=3 -o Acquire::Check-Valid-Until=false update -qq)
    if ! in_root DEBIAN_FRONTEND=noninteractive "${update[@]}" >"$TB_DIR/apt.log" 2>&1 ||
        ! in_root DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends \
            "${CHROOT_PKGS[@]}" >>"$TB_DIR/apt.log" 2>&1; then
        tb_die "apt-get in the chroot failed, see $TB_DIR/apt.log"
    fi
    in_root apt-get clean
    umount_chroot
    trap - EXIT
    local version
    version=$(in_root slurmctld -V)
    printf '%s suite=%s built=%s debootstrap=%ss apt=%ss\n' "$version" "$TB_SUITE" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((t1 - t0))" "$((SECONDS - t1))" >"$TB_MARKER"
    tb_log "chroot built in $((SECONDS - t0))s: $(cat "$TB_MARKER")"
}

pids=()
for r in "${want_chroot[@]}"; do
    build_chroot "$r" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
    wait "$p" || rc=1
done
exit "$rc"
