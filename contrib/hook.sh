#!/bin/sh
# cc-slurm-adapter's Prolog/Epilog hook, for slurm.conf:
#   PrEpPlugins=prep/script
#   PrologSlurmctld=/opt/cc-slurm-adapter/hook.sh
#   EpilogSlurmctld=/opt/cc-slurm-adapter/hook.sh
#
# Install it as /opt/cc-slurm-adapter/hook.sh (mode 0755), next to the venv at
# /opt/cc-slurm-adapter/venv (README, "Installing the Prolog/Epilog hook"). It runs the
# hook file itself (stdlib only) with `python3 -I -S` (no site, no venv, no PYTHON*
# variables): about as fast as Python can start, and independent of the environment
# slurmctld gives it (none: not even PATH). It imports hook.py from its directory rather
# than running it as a script, so Python uses the cached bytecode in __pycache__ (pip
# writes it for the venv) instead of compiling the file at every job start (~4 ms, a
# third of the hook's time). The hook tells the daemon about the job and ends within 2 s.
#
# This script always exits 0: a non-zero exit of PrologSlurmctld makes Slurm fail the job.

# The daemon's config: the hook reads prepSockConnectPath and prepSockToken from it.
# It must be readable by SlurmUser (group slurm, mode 0640). Arguments given to this
# script are passed on and may override it (-config FILE, -debug 3 to report each send).
CONFIG=/etc/cc-slurm-adapter/config.json

case $0 in
    */*) here=${0%/*} ;;
    *) here=. ;;
esac

# hook.py: a copy next to this script, else the venv's, else a checkout's (contrib/..).
hook=
for candidate in "$here/hook.py" \
        "$here"/venv/lib/python3*/site-packages/cc_slurm_adapter/hook.py \
        "$here/../src/cc_slurm_adapter/hook.py"; do
    if [ -f "$candidate" ]; then
        hook=$candidate
        break
    fi
done

# The venv's interpreter (the python3 it was built from), else the system's.
python=
for candidate in "$here/venv/bin/python3" /usr/bin/python3 /usr/local/bin/python3; do
    if [ -x "$candidate" ]; then
        python=$candidate
        break
    fi
done

if [ -z "$hook" ] || [ -z "$python" ]; then
    echo "cc-slurm-adapter hook: hook.py or python3 not found next to $0;" \
        "the next poll will pick job ${SLURM_JOB_ID:-?} up" >&2
    exit 0
fi

# Same as `"$python" -I -S "$hook" -config "$CONFIG" "$@"`, with the bytecode cache.
# append, not insert: the package's own module names must never shadow the stdlib's.
"$python" -I -S -c 'import sys; sys.path.append(sys.argv.pop(1)); import hook
hook.run_as_process(sys.argv[1:])' "${hook%/*}" -config "$CONFIG" "$@"
exit 0
