#!/usr/bin/env bash
# `make slurm-down`: stop the cluster of `make slurm-up`, each daemon by the PID it wrote
# (never by name: another SLURM or MariaDB on the machine is left alone), in reverse start
# order. The scratch folder and its logs stay for reading; `make slurm-up` replaces them.
set -uo pipefail
source "$(dirname "$(realpath "$0")")/daemons.sh"

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
