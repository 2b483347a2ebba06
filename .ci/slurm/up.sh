#!/usr/bin/env bash
# `make slurm-up`: a one-node SLURM cluster with accounting (slurmctld, slurmd, slurmdbd on
# MariaDB, munge), started from scratch in $SLURM_DIR (see daemons.sh), for `make test-slurm`.
# Needs root (Debian's packages are installed on first use; the daemons run as root, munge
# and mysql) and no systemd. Refuses to start over a cluster that is still running.
set -euo pipefail
here=$(dirname "$(realpath "$0")")
source "$here/daemons.sh"
PARTITION=${SLURM_PARTITION:-debug}
PACKAGES=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge slurmdbd
          slurm-wlm-mysql-plugin mariadb-server)

fail() { echo "slurm-up: $*" >&2; exit 1; }

# Wait up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1
    shift
    for _ in $(seq $((seconds * 2))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

[[ $(id -u) == 0 ]] || fail "needs root (it installs packages and starts daemons)"
for file in "${PID_FILES[@]}"; do
    if pid=$(live_pid "$file"); then
        fail "a cluster is running from $SLURM_DIR ($file: PID $pid); run make slurm-down first"
    fi
done

# The folder is emptied below: only one that a former slurm-up made, or an empty one.
if [[ -d $SLURM_DIR && ! -e $SLURM_DIR/etc/slurm.conf && -n $(ls -A "$SLURM_DIR") ]]; then
    fail "$SLURM_DIR holds files of something else; pass SLURM_DIR=<a new or empty folder>"
fi

# Installed once; dpkg-query says which packages are missing.
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    echo "slurm-up: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# From here on, a failed start stops what it started.
trap 'status=$?; if ((status)); then "$here/down.sh" >&2; fi; exit $status' EXIT
rm -rf "$SLURM_DIR"
mkdir -p "$SLURM_DIR"/{etc,state,spool,log,run} "$SLURM_DIR"/{munge,mariadb}
chown munge:munge "$SLURM_DIR/munge"
chmod 700 "$SLURM_DIR/munge"
chown mysql:mysql "$SLURM_DIR/mariadb"
# The sockets' folders, where the clients look for them (created by systemd elsewhere).
install -d -o munge -g munge -m 755 /run/munge
install -d -o mysql -g mysql -m 755 /run/mysqld

host=$(hostname -s)
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
for name in slurm slurmdbd gres; do
    sed -e "s|@DIR@|$SLURM_DIR|g" -e "s|@HOST@|$host|g" -e "s|@MEMORY_MB@|$memory_mb|g" \
        -e "s|@PARTITION@|$PARTITION|g" "$here/$name.conf.in" >"$SLURM_DIR/etc/$name.conf"
done
chmod 600 "$SLURM_DIR/etc/slurmdbd.conf"  # slurmdbd refuses it otherwise

# Each daemon detaches and writes its PID file (down.sh stops them by it).
[[ -f /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
runuser -u munge -- /usr/sbin/munged --pid-file="$SLURM_DIR/munge/munged.pid" \
    --log-file="$SLURM_DIR/munge/munged.log" --seed-file="$SLURM_DIR/munge/munged.seed" ||
    fail "munged did not start; see $SLURM_DIR/munge/munged.log"
wait_for 10 bash -c "munge -n | unmunge" || fail "munged did not start; see $SLURM_DIR/munge/"

mariadb-install-db --no-defaults --user=mysql --datadir="$SLURM_DIR/mariadb/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$SLURM_DIR/log/mariadb-install.log" 2>&1 ||
    fail "mariadb-install-db failed; see $SLURM_DIR/log/mariadb-install.log"
# mariadbd logs into a folder of its user's (it exits silently if it cannot write its log).
setsid mariadbd --no-defaults --user=mysql --datadir="$SLURM_DIR/mariadb/data" \
    --socket=/run/mysqld/mysqld.sock --pid-file="$SLURM_DIR/mariadb/mariadbd.pid" \
    --log-error="$SLURM_DIR/mariadb/mariadb.log" --skip-networking </dev/null >/dev/null 2>&1 &
wait_for 30 mariadb-admin --no-defaults --socket=/run/mysqld/mysqld.sock ping ||
    fail "mariadbd did not start; see $SLURM_DIR/mariadb/mariadb.log"

slurmdbd || fail "slurmdbd did not start; see $SLURM_DIR/log/slurmdbd.log"
wait_for 30 sacctmgr -n show cluster || fail "slurmdbd did not start; see $SLURM_DIR/log/slurmdbd.log"
slurmctld || fail "slurmctld did not start; see $SLURM_DIR/log/slurmctld.log"
wait_for 30 scontrol ping || fail "slurmctld did not start; see $SLURM_DIR/log/slurmctld.log"
slurmd || fail "slurmd did not start; see $SLURM_DIR/log/slurmd.log"
wait_for 60 bash -c "sinfo -h -N -o %T | grep -qx idle" ||
    fail "the node did not come up idle; see $SLURM_DIR/log/slurmd.log and slurmctld.log"

cat <<EOF
slurm-up: a one-node cluster (partition $PARTITION, 2 CPUs, accounting) is up.
  export SLURM_CONF=$SLURM_CONF   # for sbatch, squeue, sacct, scancel
  logs: $SLURM_DIR/log/ (slurmctld, slurmd, slurmdbd), $SLURM_DIR/mariadb/mariadb.log, $SLURM_DIR/munge/munged.log
  stop it with: make slurm-down
EOF
