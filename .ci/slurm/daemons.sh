# Sourced by up.sh and down.sh: where the cluster lives and the PID files of its daemons.
# SLURM_DIR: the scratch folder (default build/slurm in the checkout); everything the daemons
# write goes there, except the sockets that munge and MariaDB clients look for by default.
SLURM_DIR=$(realpath -m "${SLURM_DIR:-$(dirname "${BASH_SOURCE[0]}")/../../build/slurm}")
export SLURM_CONF="$SLURM_DIR/etc/slurm.conf"

# In start order; down.sh stops them in reverse.
PID_FILES=(
    "$SLURM_DIR/munge/munged.pid"
    "$SLURM_DIR/mariadb/mariadbd.pid"
    "$SLURM_DIR/run/slurmdbd.pid"
    "$SLURM_DIR/run/slurmctld.pid"
    "$SLURM_DIR/run/slurmd.pid"
)

# The PID a file names, if that process is alive and is the daemon the file is named after
# (munged.pid: munged; a PID left by a cluster that died may have been reused), printed; else
# nothing (status 1).
live_pid() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$(basename "$1" .pid)" ]] &&
        echo "$pid"
}
