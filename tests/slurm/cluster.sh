#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, from nothing, for the tests.
#
#   tests/slurm/cluster.sh start    install Debian's packages if missing, wipe old state,
#                                   start munged, MariaDB, slurmdbd, slurmctld, slurmd
#   tests/slurm/cluster.sh stop     stop every daemon this script started (by pid file)
#   tests/slurm/cluster.sh status   show daemons, node and partition
#   tests/slurm/cluster.sh env      print `export SLURM_CONF=...` for clients (sbatch, sacct)
#
# Everything lives in one state directory ($OVERLEARNING_SLURM_DIR, default
# /tmp/overlearning-slurm): configuration, spool, state, database, logs, pid files. The
# system's /etc/slurm and /etc/munge are not touched; clients find the cluster through
# SLURM_CONF, which `start` prints. Accounting (slurmdbd + MariaDB) is on because the
# Snakemake SLURM plugin checks job status with sacct whenever sacct exists, and the tests
# use sacct to prove that jobs went through sbatch. Partitions `debug` (default), `gpu` and
# `short` (5 minutes), one node. Four fake GPUs (character devices with
# /dev/null's numbers) make GPU requests (--gpus, --gres=gpu:N) schedulable.
#
# Needs root (daemons run as root; no cgroups needed) and, on the first run, apt access to
# Debian's mirror. Daemons write to log files, never to this script's stdout: a caller that
# captures output (CI, pytest) would otherwise wait forever for the pipe to close.
set -euo pipefail

STATE=${OVERLEARNING_SLURM_DIR:-/tmp/overlearning-slurm}
CLUSTER=overlearning
CTLD_PORT=${OVERLEARNING_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${OVERLEARNING_SLURMD_PORT:-6818}
DBD_PORT=${OVERLEARNING_SLURMDBD_PORT:-6819}
DB_PORT=${OVERLEARNING_SLURM_DB_PORT:-33061}
N_GPUS=${OVERLEARNING_SLURM_GPUS:-4}
# CPUs the node declares. More than the machine has (slurmd's config_overrides), so that the
# real profile's GPU requests (--cpus-per-gpu=8) are schedulable on a 2-core test machine;
# a job still runs only as many threads as its rule asks for.
N_CPUS=${OVERLEARNING_SLURM_CPUS:-16}
# The NVIDIA driver as a node feature, the way some sites publish it (the pre-flight check
# reads it); `short` is a partition with a 5-minute limit, for the pre-flight test.
DRIVER_FEATURE=nvidia-driver-580
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server slurm-wlm-mysql-plugin)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # stop order; start is the reverse

CONF_DIR=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
# SLURM 22.05 ignores AuthInfo=socket= for accounting connections: munge must be at its
# default socket. An munged already answering there is used as it is.
MUNGE_SOCKET=/run/munge/munge.socket.2
DB_SOCKET=$RUN/mysql.sock
NODE=$(hostname -s)
# Inside a job, the Snakemake jobstep runs `srun` with every SLURM_* variable but the job's
# identity removed, SLURM_CONF included: srun then reads the default path. We link it to our
# configuration while the cluster runs, and only where no slurm.conf of the system exists.
SYSTEM_CONF=/etc/slurm/slurm.conf

say() { echo "[slurm-cluster] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

need_root() {
    [[ $(id -u) == 0 ]] || die "must run as root (the daemons and apt-get need it)"
}

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
        say "installing ${missing[*]}"
        apt-get update -qq >"$LOG/apt.log" 2>&1 || { cat "$LOG/apt.log" >&2; die "apt-get update failed"; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >>"$LOG/apt.log" 2>&1 || { tail -30 "$LOG/apt.log" >&2; die "apt-get install failed"; }
    fi
}

pid_of() {  # pid from our pid file, if that process is alive
    local file=$RUN/$1.pid
    [[ -s $file ]] || return 1
    local pid
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_daemon() {
    local name=$1 pid
    pid=$(pid_of "$name") || { rm -f "$RUN/$name.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name ($pid) ignored SIGTERM for 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
}

stop_all() {
    [[ -d $RUN ]] || return 0
    # Running jobs first, so that slurmstepd processes do not outlive the cluster.
    if pid_of slurmctld >/dev/null && [[ -f $CONF_DIR/slurm.conf ]]; then
        SLURM_CONF=$CONF_DIR/slurm.conf timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
    fi
    for d in "${DAEMONS[@]}"; do stop_daemon "$d"; done
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF_DIR/slurm.conf" ]]; then
        rm -f "$SYSTEM_CONF"
    fi
}

link_system_conf() {
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF_DIR/slurm.conf" ]] && return 0
        die "$SYSTEM_CONF exists and is not ours: this machine has a SLURM of its own; run the tests elsewhere"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF_DIR/slurm.conf" "$SYSTEM_CONF"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    say "$what: ready after $((SECONDS - start_time)) s"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_configs() {
    local cpus mem_mb real_mb
    cpus=$(( $(nproc) > N_CPUS ? $(nproc) : N_CPUS ))
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    real_mb=$((mem_mb * 9 / 10))   # below the machine's, or slurmd reports the node invalid

    mkdir -p "$STATE/dev"
    local gres_files=""
    for i in $(seq 0 $((N_GPUS - 1))); do
        # Character devices with /dev/null's numbers: SLURM only needs a file per GPU.
        mknod "$STATE/dev/nvidia$i" c 1 3
        gres_files+="Name=gpu File=$STATE/dev/nvidia$i"$'\n'
    done
    printf '%s' "$gres_files" >"$CONF_DIR/gres.conf"

    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a single-node test cluster without cgroups.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
SlurmdParameters=config_overrides
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb Gres=gpu:$N_GPUS Feature=$DRIVER_FEATURE State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
PartitionName=short Nodes=$NODE Default=NO MaxTime=5 State=UP
EOF

    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_all() {
    need_root
    start_time=$SECONDS
    mkdir -p "$STATE"
    # Stale state bites (a drained node, an old database password): stop what an earlier
    # run left and start from an empty directory.
    stop_all
    rm -rf "${STATE:?}"/{etc,run,log,ctld,slurmd,mysql,munge,dev}
    mkdir -p "$CONF_DIR" "$RUN" "$LOG" "$STATE/ctld" "$STATE/slurmd" "$STATE/munge"
    chmod 755 "$RUN"; chmod 700 "$STATE/munge"
    install_packages

    for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
        port_free "$port" || die "port $port is in use (another SLURM or database?); set OVERLEARNING_SLURM*_PORT"
    done

    DB_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    write_configs
    link_system_conf
    export SLURM_CONF=$CONF_DIR/slurm.conf

    # munge: our own key, at the default socket unless a munged already serves it.
    if munge --socket="$MUNGE_SOCKET" --no-input >/dev/null 2>&1; then
        say "munged: using the one already running at $MUNGE_SOCKET"
    else
        mkdir -p "$(dirname "$MUNGE_SOCKET")"
        chmod 755 "$(dirname "$MUNGE_SOCKET")"
        head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
        chmod 400 "$STATE/munge/munge.key"
        munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
            --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" \
            --seed-file="$STATE/munge/seed" </dev/null >>"$LOG/munged.out" 2>&1 \
            || { cat "$LOG/munged.log" >&2; die "munged did not start"; }
        wait_for 10 munged munge --socket="$MUNGE_SOCKET" --no-input \
            || die "munged not answering; see $LOG/munged.log"
    fi

    # MariaDB for slurmdbd: a throw-away data directory, loopback TCP on its own port.
    mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
        --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
        || { tail -20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$DB_SOCKET" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$RUN/mariadbd.pid" \
        --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=64M \
        --innodb-lock-wait-timeout=900 --skip-name-resolve </dev/null >>"$LOG/mariadb.out" 2>&1 &
    wait_for 60 mariadb mariadb --no-defaults --socket="$DB_SOCKET" -uroot -e "SELECT 1" \
        || { tail -20 "$LOG/mariadb.log" >&2; die "MariaDB did not start"; }
    mariadb --no-defaults --socket="$DB_SOCKET" -uroot <<EOF
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF

    slurmdbd </dev/null >>"$LOG/slurmdbd.out" 2>&1 \
        || { tail -20 "$LOG/slurmdbd.log" >&2; die "slurmdbd did not start"; }
    wait_for 60 slurmdbd sacctmgr -i list cluster \
        || { tail -20 "$LOG/slurmdbd.log" >&2; die "slurmdbd not answering"; }
    sacctmgr -i add cluster "$CLUSTER" >>"$LOG/sacctmgr.log" 2>&1 || true
    # An account for the `slurm_account` resource; root belongs to it.
    sacctmgr -i add account overlearning Cluster="$CLUSTER" Description=tests Organization=tests \
        >>"$LOG/sacctmgr.log" 2>&1 || true
    sacctmgr -i add user root Account=overlearning Cluster="$CLUSTER" >>"$LOG/sacctmgr.log" 2>&1 || true

    slurmctld -f "$SLURM_CONF" </dev/null >>"$LOG/slurmctld.out" 2>&1 \
        || { tail -20 "$LOG/slurmctld.log" >&2; die "slurmctld did not start"; }
    slurmd -f "$SLURM_CONF" </dev/null >>"$LOG/slurmd.out" 2>&1 \
        || { tail -20 "$LOG/slurmd.log" >&2; die "slurmd did not start"; }
    node_idle() { sinfo -h -n "$NODE" -o %t | grep -qx 'idle'; }
    wait_for 60 "node $NODE idle" node_idle \
        || { sinfo -N -l >&2; tail -20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2; die "node did not become idle"; }
    say "cluster $CLUSTER up in $((SECONDS - start_time)) s; export SLURM_CONF=$SLURM_CONF"
    echo "export SLURM_CONF=$SLURM_CONF"
}

status() {
    export SLURM_CONF=$CONF_DIR/slurm.conf
    for d in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$d"); then echo "$d: running ($pid)"; else echo "$d: stopped"; fi
    done
    pid_of slurmctld >/dev/null && sinfo -N -o '%N %t %c %m %G' && squeue
    return 0
}

case ${1:-} in
    start) start_all ;;
    stop) stop_all; say "stopped" ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF_DIR/slurm.conf" ;;
    install) need_root; mkdir -p "$LOG"; install_packages ;;
    *) echo "usage: $0 start|stop|status|env|install" >&2; exit 2 ;;
esac
