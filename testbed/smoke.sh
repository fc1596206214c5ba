#!/usr/bin/env bash
# Health check of one release: up.sh, one job as the test user to COMPLETED, its sacct record.
#   testbed/smoke.sh RELEASE [--fresh]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

tb_init "${1:-}"
T0=$SECONDS
"$HERE/up.sh" "$@"
T_UP=$((SECONDS - T0))

as_user() { SLURM_TESTBED_AS_USER=$TB_USER "$@"; }
# shellcheck disable=SC2016 # expanded by the job
job=$(as_user "$TB_BIN/sbatch" --parsable -J smoke -D "$TB_STATE_IN/jobs" \
    -o "$TB_STATE_IN/jobs/smoke-%j.out" --wrap 'echo "smoke on ${SLURMD_NODENAME}"')
job=${job%%;*}
tb_log "submitted job $job as $TB_USER"

sacct_state() { "$TB_BIN/sacct" -n -X -P -j "$job" -o State 2>/dev/null | head -n1; }
deadline=$((SECONDS + 60))
state=""
while ((SECONDS < deadline)); do
    state=$(sacct_state)
    [[ $state == COMPLETED ]] && break
    [[ $state =~ ^(FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) ]] && break
    sleep 0.3
done
[[ $state == COMPLETED ]] || {
    tail -n 20 "$TB_STATE/log/slurmctld.log" >&2 || true
    tb_die "job $job ended as '${state:-<no sacct record>}'"
}
"$TB_BIN/sacct" --json -j "$job" | python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][0]
state = job["state"]["current"]
print("sacct --json:", job["job_id"], job["user"], job["nodes"], state if isinstance(state, str) else ",".join(state))
'
tb_log "OK: $(in_root slurmctld -V); up ${T_UP}s, first job in sacct after $((SECONDS - T0))s"
