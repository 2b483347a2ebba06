#!/usr/bin/env bash
# `make slurm-down`: stop the cluster of `make slurm-up`: its jobs cancelled, then each daemon
# by the PID it wrote (never by name: another SLURM or MariaDB on the machine is left alone),
# in reverse start order. The scratch folder and its logs stay for reading; `make slurm-up`
# replaces them.
set -uo pipefail
source "$(dirname "$(realpath "$0")")/daemons.sh"

# The jobs first: slurmd leaves its jobs' steps running when it stops, so a job that a failed
# test left queued or running would go on computing after the cluster is gone.
queued_jobs() { timeout 30 squeue --noheader --format %A 2>/dev/null | xargs; }
if live_pid "$SLURM_DIR/run/slurmctld.pid" >/dev/null; then
    ids=$(queued_jobs)
    if [[ -n $ids ]]; then
        echo "slurm-down: cancelling the cluster's jobs $ids"
        timeout 30 scancel $ids
        for _ in $(seq 60); do  # up to 30 s for them to end (KillWait is 5 s)
            [[ -z $(queued_jobs) ]] && break
            sleep 0.5
        done
    fi
fi

stopped=0
for ((i = ${#PID_FILES[@]} - 1; i >= 0; i--)); do
    file=${PID_FILES[i]}
    pid=$(live_pid "$file") || continue
    kill -TERM "$pid"
    for _ in $(seq 60); do  # up to 30 s, then SIGKILL
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm-down: $(basename "$file" .pid) (PID $pid) ignored SIGTERM; killing it" >&2
        kill -KILL "$pid"
    fi
    stopped=$((stopped + 1))
done
echo "slurm-down: $stopped daemon(s) stopped; logs stay in $SLURM_DIR"
