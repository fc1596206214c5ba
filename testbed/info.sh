#!/usr/bin/env bash
# Print the layout of one release's testbed as KEY=VALUE lines (read by the Python driver
# src/cc_slurm_adapter/testing/slurm_testbed.py). Needs no root and changes nothing.
#   testbed/info.sh RELEASE
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

tb_init "${1:-}"
installed=0
if [[ -n $TB_CHROOT ]]; then
    [[ -f $TB_MARKER ]] && installed=1
else
    command -v slurmctld >/dev/null && command -v mariadbd >/dev/null && command -v munged >/dev/null && installed=1
fi
cat <<EOF
release=$TB_RELEASE
suite=$TB_SUITE
dir=$TB_DIR
bin=$TB_BIN
env_file=$TB_ENV_FILE
chroot=$TB_CHROOT
state=$TB_STATE
state_in_root=$TB_STATE_IN
slurm_conf=$TB_STATE/etc/slurm.conf
slurm_conf_in_root=$TB_STATE_IN/etc/slurm.conf
job_dir=$TB_STATE/jobs
job_dir_in_root=$TB_STATE_IN/jobs
log_dir=$TB_STATE/log
repo_in_root=$([[ -n $TB_CHROOT ]] && echo "$TB_REPO_IN_CHROOT" || echo "$TB_REPO")
ctld_port=$TB_CTLD_PORT
dbd_port=$TB_DBD_PORT
slurmd_ports=$((TB_SLURMD_PORT + 1)),$((TB_SLURMD_PORT + 2))
mysql_port=$TB_MYSQL_PORT
cluster=$TB_CLUSTER
account=$TB_ACCOUNT
user=$TB_USER
partition=$TB_PARTITION
installed=$installed
EOF
