#!/usr/bin/env bash
# bench-mount.sh: FUSE mount benchmark for `make bench`.
#
# Runs the same fio profiles, a small-file creation loop and pgbench against
# four targets, all on the same disk:
#   local        a directory on the local disk
#   passthrough  that directory through a go-fuse loopback mount
#                (internal/bench/passthrough, options like cairn's mount)
#   cairn 000    a cairn mount: one master, one volume server, one filer,
#                `cairn mount`, replication 000
#   cairn 001    a second cluster on other ports: a master with
#                --default-replication 001, two volume servers in the same
#                rack (two copies), a filer, `cairn mount`
#
# The host's speed swings within minutes, so a sample of one target taken
# minutes after another's compares the host's moods as much as the targets.
# So every target is brought up first and they all stay up for the whole
# run; then BENCH_ROUNDS rounds each run every profile on every target back
# to back (profile-major: seq write on every target, then seq read on every
# target, ...), the order of the targets rotating from round to round so
# that none always goes first. A cell of the table is the median of its
# samples; a ratio cairn / passthrough is the median of the per-round
# ratios, since the two samples of one round are seconds apart and share
# the host's state. The summary lists every sample and every per-round
# ratio. Summary and table are appended to the summary file.
#
# Reads are cold: before each read sample the page cache is dropped
# (sync; echo 3 > /proc/sys/vm/drop_caches), which also empties the FUSE
# mounts' kernel caches and the volume servers' cached volume files, on
# every target at once; reads are buffered (the path applications take,
# with kernel read-ahead).
#
# Needs root (drop_caches, FUSE allow_other, runuser), fio, python3, curl,
# fusermount3 and go (to build the passthrough). pgbench rows are skipped
# when the PostgreSQL binaries are missing. Installs nothing.
#
# Environment (all optional):
#   BENCH_DIR                     parent of the scratch directory (default /var/tmp; not tmpfs)
#   BENCH_OUT                     summary file, appended to (default bench-results.txt in the repo root)
#   CAIRN_BIN                     binary to test (default bin/cairn in the repo root)
#   GO                            go command used to build the passthrough (default go)
#   BENCH_IP                      address of the cairn servers (default 127.0.0.1)
#   BENCH_MOUNT_MASTER_PORT       cairn 000: master HTTP port (default 9433; gRPC +10000, Raft +20000)
#   BENCH_MOUNT_VOL1_PORT         cairn 000: volume server HTTP port (default 8180; gRPC +10000)
#   BENCH_MOUNT_FILER_PORT        cairn 000: filer HTTP port (default 8988; gRPC +10000, Raft +20000)
#   BENCH_MOUNT_C001_MASTER_PORT  cairn 001: master HTTP port (default 9443)
#   BENCH_MOUNT_C001_VOL1_PORT    cairn 001: first volume server HTTP port (default 8190)
#   BENCH_MOUNT_C001_VOL2_PORT    cairn 001: second volume server HTTP port (default 8191)
#   BENCH_MOUNT_C001_FILER_PORT   cairn 001: filer HTTP port (default 8998)
#   BENCH_PG_PORT                 PostgreSQL port of the local target; passthrough, cairn 000 and
#                                 cairn 001 take the next three (default 5499; unix sockets only)
#   BENCH_ROUNDS                  rounds (default 3)
#   BENCH_SEQ_MB                  size of the sequential file in MiB (default 512)
#   BENCH_RAND_SECONDS            runtime of the 4 KiB random profiles (default 15)
#   BENCH_RANDREAD_MB             MiB read by the 4 KiB random read, at most (default 64)
#   BENCH_SMALL_FILES             files in the small-file profile (default 10000)
#   BENCH_SMALL_SECONDS           stop creating files after this long (default 20)
#   BENCH_PG_SCALE                pgbench scale (default 10)
#   BENCH_PG_CLIENTS              pgbench clients (default 4)
#   BENCH_PG_SECONDS              pgbench runtime (default 20)
#   BENCH_MOUNT_TARGETS           targets to run (default "local passthrough c000 c001")
#   BENCH_KEEP                    if set, keep the scratch directory (logs, fio JSON) at exit
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CAIRN_BIN:-$ROOT/bin/cairn}
GO=${GO:-go}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
IP=${BENCH_IP:-127.0.0.1}
MPORT=${BENCH_MOUNT_MASTER_PORT:-9433}
V1PORT=${BENCH_MOUNT_VOL1_PORT:-8180}
FPORT=${BENCH_MOUNT_FILER_PORT:-8988}
C1MPORT=${BENCH_MOUNT_C001_MASTER_PORT:-9443}
C1V1PORT=${BENCH_MOUNT_C001_VOL1_PORT:-8190}
C1V2PORT=${BENCH_MOUNT_C001_VOL2_PORT:-8191}
C1FPORT=${BENCH_MOUNT_C001_FILER_PORT:-8998}
PGPORT=${BENCH_PG_PORT:-5499}
ROUNDS=${BENCH_ROUNDS:-3}
SEQ_MB=${BENCH_SEQ_MB:-512}
RAND_SECS=${BENCH_RAND_SECONDS:-15}
RANDREAD_MB=${BENCH_RANDREAD_MB:-64}
SMALL_N=${BENCH_SMALL_FILES:-10000}
SMALL_SECS=${BENCH_SMALL_SECONDS:-20}
PG_SCALE=${BENCH_PG_SCALE:-10}
PG_CLIENTS=${BENCH_PG_CLIENTS:-4}
PG_SECS=${BENCH_PG_SECONDS:-20}
read -r -a TARGETS <<<"${BENCH_MOUNT_TARGETS:-local passthrough c000 c001}"
WAIT_LIMIT=60

PROFILES=(seqwrite seqread randread randwrite smallfiles pgbench)
declare -A PLABEL=(
	[seqwrite]="seq write 1 MiB, end_fsync (MB/s)"
	[seqread]="seq read 1 MiB, cold (MB/s)"
	[randread]="rand read 4 KiB, cold (IOPS)"
	[randwrite]="rand write 4 KiB + fsync (IOPS)"
	[smallfiles]="create 1 KiB files (files/s)"
	[pgbench]="pgbench TPS"
)
COLUMNS_T=(local passthrough c000 c001) # the table's columns, in order
declare -A TLABEL=([local]="local" [passthrough]="passthrough" [c000]="cairn 000" [c001]="cairn 001")
# GOAL[profile]="min-ratio configs": the ratio to the passthrough wanted.
declare -A GOAL=(
	[seqwrite]="0.70 c000 c001"
	[seqread]="0.70 c000 c001"
	[randwrite]="0.50 c000"
	[pgbench]="0.50 c000 c001"
)
# The cairn clusters, side by side: CL[target.role] = HTTP port.
declare -A CL=(
	[c000.master]=$MPORT [c000.vol1]=$V1PORT [c000.filer]=$FPORT
	[c001.master]=$C1MPORT [c001.vol1]=$C1V1PORT [c001.vol2]=$C1V2PORT [c001.filer]=$C1FPORT
)
declare -A NVOL=([c000]=1 [c001]=2)
declare -A PGPORT_OF=()

declare -A SAMPLE=() # SAMPLE[profile.target.round] = figure, or FAIL / n/a / skipped
declare -A DETAIL=() # DETAIL[profile.target.round] = latencies and the like
declare -A WALL=()   # WALL[profile.target.round] = wall seconds of the sample
declare -A PCPU=()   # PCPU[profile.target.round] = "name=CPU-seconds ..." of the target's processes
declare -A TDIR=()   # TDIR[target] = the directory the profiles use
declare -A TPIDS=()  # TPIDS[target] = pids of the target's processes (servers, mount)
declare -A PNAME=()  # PNAME[pid] = name of a process this script started
declare -A TICKS0=() # per-process CPU ticks at the start of a sample
declare -A SEQ_OK=() # SEQ_OK[target] = 1 when this round's seq write left its file
declare -A PG_RUN=() # PG_RUN[target] = PGDATA of the target's running postgres
declare -A PG_OK=()  # PG_OK[target] = 1 once initdb and pgbench -i succeeded
WALL0=0

PIDS=()       # servers, stopped last
MOUNT_PIDS=() # mount processes (passthrough, cairn mounts), stopped first
MNTS=()       # mount points, lazily unmounted if still mounted at exit
WORK=""
FAILED=0
SUMMARY=()
NSAMPLES=0 # samples planned
NDONE=0    # samples taken

# shellcheck disable=SC2034 # used by bench-lib.sh
BENCH_NAME=bench-mount
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
START=$SECONDS

# stop_pid PID: SIGTERM, up to 20s grace (a mount flushes first), then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

is_mounted() { mountpoint -q -- "$1" 2>/dev/null; }

# pg_stop TARGET: stop the target's postgres (fast, then immediate, then SIGKILL).
pg_stop() {
	local data=${PG_RUN[$1]:-} pid
	[[ -n $data ]] || return 0
	if ! runuser -u postgres -- "$PG_CTL" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
		runuser -u postgres -- "$PG_CTL" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
		pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	unset "PG_RUN[$1]"
}

# stop_all: every postgres, then every mount (they flush and unmount; a
# mount point still there is unmounted lazily), then every server.
stop_all() {
	local t pid m
	for t in "${!PG_RUN[@]}"; do
		pg_stop "$t"
	done
	for pid in "${MOUNT_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${MOUNT_PIDS[@]}"; do
		stop_pid "$pid"
	done
	MOUNT_PIDS=()
	for m in "${MNTS[@]}"; do
		if is_mounted "$m"; then
			log "$m still mounted after its server stopped; unmounting lazily"
			fusermount3 -u -z -- "$m" 2>/dev/null || umount -l -- "$m" 2>/dev/null || true
		fi
	done
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	PIDS=()
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$? m busy=0
	trap - EXIT INT TERM
	stop_all
	if [[ -n $WORK && -d $WORK ]]; then
		for m in "${MNTS[@]}"; do
			is_mounted "$m" && busy=1
		done
		if ((busy)); then
			log "a mount under $WORK is still there; leaving $WORK in place"
		elif [[ -n ${BENCH_KEEP:-} ]]; then
			log "keeping $WORK (BENCH_KEEP)"
		else
			rm -rf -- "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ratio A B: A/B with two decimals, "n/a" if either is not a number or B is 0.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) { print "n/a"; exit }
		printf "%.2f\n", a / b
	}'
}

# median FORMAT NUMBER...: the median (the mean of the middle two for an
# even count) printed with the printf FORMAT; n/a without numbers.
median() {
	local fmt=$1
	shift
	if (($# == 0)); then
		echo n/a
		return 0
	fi
	printf '%s\n' "$@" | sort -g | awk -v f="$fmt" '{ v[NR] = $1 }
		END { printf f "\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

[[ $(id -u) == 0 ]] || die "run as root (drop_caches, FUSE allow_other, postgres via runuser)"
[[ -x $BIN ]] || die "no cairn binary at $BIN (run make build first)"
for cmd in fio python3 curl fusermount3 mountpoint "$GO"; do
	command -v "$cmd" >/dev/null || die "$cmd is needed (make bench installs fio)"
done
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer (got '$ROUNDS')"
[[ $PGPORT =~ ^[0-9]+$ ]] || die "BENCH_PG_PORT must be a number (got '$PGPORT')"
PGPORT_OF=([local]=$PGPORT [passthrough]=$((PGPORT + 1)) [c000]=$((PGPORT + 2)) [c001]=$((PGPORT + 3)))
((${#TARGETS[@]} > 0)) || die "BENCH_MOUNT_TARGETS names no target"
declare -A seen=()
for t in "${TARGETS[@]}"; do
	[[ -n ${TLABEL[$t]:-} ]] || die "unknown target $t (want local, passthrough, c000, c001)"
	[[ -z ${seen[$t]:-} ]] || die "target $t named twice in BENCH_MOUNT_TARGETS"
	seen[$t]=1
done
unset seen
[[ -z ${BENCH_MOUNT_VOL2_PORT:-} ]] ||
	log "BENCH_MOUNT_VOL2_PORT is not used any more: cairn 001 has its own ports (BENCH_MOUNT_C001_*_PORT)"

# running TARGET: whether TARGET is among the targets of this run.
running() {
	local t
	for t in "${TARGETS[@]}"; do
		[[ $t == "$1" ]] && return 0
	done
	return 1
}

# check_ports: every port the cairn servers of this run listen on (HTTP
# port P, gRPC P+10000, and Raft P+20000 for masters and filers) must be
# distinct, valid and free on IP.
check_ports() {
	local t role p port extra list=() owner
	declare -A by=()
	for t in c000 c001; do
		running "$t" || continue
		for role in master vol1 vol2 filer; do
			p=${CL[$t.$role]:-}
			[[ -n $p ]] || continue
			[[ $p =~ ^[0-9]+$ ]] || die "$t $role port must be a number (got '$p')"
			extra="0 10000"
			[[ $role == master || $role == filer ]] && extra+=" 20000"
			for port in $extra; do
				port=$((p + port))
				owner="${TLABEL[$t]} $role"
				((port > 0 && port < 65536)) || die "$owner: derived port $port out of range"
				[[ -z ${by[$port]:-} ]] || die "port $port is used by both ${by[$port]} and $owner"
				by[$port]=$owner
				list+=("$port")
			done
		done
	done
	for port in "${list[@]}"; do
		if (: <"/dev/tcp/$IP/$port") 2>/dev/null; then
			die "port $IP:$port (${by[$port]}) is already in use"
		fi
	done
}
check_ports

# PostgreSQL: PATH first, then the newest /usr/lib/postgresql/*/bin.
PG_BIN=""
for d in "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")" \
	$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
	if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
		PG_BIN=$d
		break
	fi
done
PG_CTL=${PG_BIN:+$PG_BIN/pg_ctl}
PGBENCH=$(command -v pgbench 2>/dev/null || true)
[[ -z $PGBENCH && -n $PG_BIN && -x $PG_BIN/pgbench ]] && PGBENCH=$PG_BIN/pgbench
PSQL=$(command -v psql 2>/dev/null || true)
[[ -z $PSQL && -n $PG_BIN && -x $PG_BIN/psql ]] && PSQL=$PG_BIN/psql
PG_SKIP=""
if [[ -z $PG_BIN || -z $PGBENCH ]]; then
	PG_SKIP="PostgreSQL binaries (initdb, pg_ctl, postgres, pgbench) not found"
elif ! id postgres >/dev/null 2>&1; then
	PG_SKIP="no postgres user"
elif ! command -v runuser >/dev/null; then
	PG_SKIP="runuser not found"
fi
[[ -n $PG_SKIP ]] && log "pgbench rows skipped: $PG_SKIP"
[[ -n $PG_SKIP || -n $PSQL ]] || log "no psql: no CHECKPOINT after pgbench runs"

# ---- plan ----
NT=${#TARGETS[@]}
NPROF=${#PROFILES[@]}
[[ -z $PG_SKIP ]] || NPROF=$((NPROF - 1))
NSAMPLES=$((ROUNDS * NT * NPROF))
NCAIRN=0
for t in c000 c001; do
	if running "$t"; then NCAIRN=$((NCAIRN + 1)); fi
done
# A rough upper bound of the duration: every time limit reached, sequential
# transfers at 200 MB/s, 1.5 s per sample of sync, cache drop and the like
# (pgbench's warm-up and CHECKPOINT), 15 s to start a cairn cluster and its
# mount, initdb and pgbench -i at 2 s per unit of scale. The local disk and
# the passthrough finish their random reads and file creations well before
# the limits.
EST=$((ROUNDS * NT * (SEQ_MB * 2 / 200 + 2 * RAND_SECS + SMALL_SECS + NPROF * 3 / 2)))
EST=$((EST + 15 * NCAIRN + 10))
if [[ -z $PG_SKIP ]]; then
	EST=$((EST + ROUNDS * NT * PG_SECS + NT * (5 + 2 * PG_SCALE)))
fi
log "plan: $ROUNDS round(s) x $NPROF profiles x $NT target(s) (${TARGETS[*]}) = $NSAMPLES samples; at most about $(((EST + 59) / 60)) min"

PARENT=${BENCH_DIR:-/var/tmp}
mkdir -p -- "$PARENT"
WORK=$(mktemp -d "$PARENT/cairn-bench-mount.XXXXXX")
chmod 0755 "$WORK" # postgres (another user) keeps PGDATA under it
FSTYPE=$(stat -f -c %T "$WORK" 2>/dev/null || echo unknown)
log "scratch directory $WORK (filesystem $FSTYPE)"
if [[ $FSTYPE == tmpfs ]]; then
	log "warning: $WORK is on tmpfs, the numbers say nothing about a disk"
fi
mkdir -p "$WORK/logs" "$WORK/local" "$WORK/pg"
chown postgres: "$WORK/pg" 2>/dev/null || true

DROP=yes
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	DROP=no
	log "warning: cannot write /proc/sys/vm/drop_caches: reads may be served from the page cache"
fi

# drop_caches: write back, then drop the page cache, dentries and inodes.
drop_caches() {
	[[ $DROP == yes ]] || return 0
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

log "building the passthrough"
(cd "$ROOT" && "$GO" build -o "$WORK/passthrough" ./internal/bench/passthrough)

add "date" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
add "host" "$(uname -sr), $(nproc 2>/dev/null || echo '?') CPUs, $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
CAIRN_VERSION=$("$BIN" version 2>/dev/null | head -n 1) || CAIRN_VERSION=unknown
add "cairn" "${CAIRN_VERSION:-unknown}"
add "fio" "$(fio --version 2>/dev/null || echo unknown)"
add "scratch filesystem" "$FSTYPE"
add "cold reads" "$([[ $DROP == yes ]] && echo "page cache dropped before each read sample (echo 3 > drop_caches), buffered reads" || echo "NOT cold: drop_caches not writable")"
add "method" "$ROUNDS rounds, each every profile on every target back to back, target order rotated each round; cell: median of the rounds; ratio: median of the per-round ratios"

# ---- processes ----

# start TARGET NAME ARGS...: run a server of TARGET in the background,
# logging to logs/NAME.log (this script's own: it also keeps the pids per
# target, unlike bench-lib's); its pid in LAST_PID.
start() {
	local t=$1 name=$2
	shift 2
	"$BIN" "$@" >"$WORK/logs/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
	PNAME[$LAST_PID]=$name
	TPIDS[$t]="${TPIDS[$t]:-} $LAST_PID"
	log "started $name (pid $LAST_PID): cairn $*"
}

# mount_start TARGET NAME MNT CMD...: run a FUSE server of TARGET in the
# foreground of a background job and wait until MNT is a mount point.
mount_start() {
	local t=$1 name=$2 mnt=$3 deadline pid
	shift 3
	mkdir -p "$mnt"
	MNTS+=("$mnt")
	"$@" >"$WORK/logs/$name.log" 2>&1 &
	pid=$!
	MOUNT_PIDS+=("$pid")
	PNAME[$pid]=$name
	TPIDS[$t]="${TPIDS[$t]:-} $pid"
	log "started $name (pid $pid): $*"
	deadline=$((SECONDS + WAIT_LIMIT))
	while ! is_mounted "$mnt"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$WORK/logs/$name.log" >&2 || true
			die "$name exited before $mnt was mounted (log above)"
		fi
		((SECONDS < deadline)) || die "$name: $mnt not mounted after ${WAIT_LIMIT}s"
		sleep 0.1
	done
}

# cairn_up TARGET: TARGET's cluster on its own ports (CL): a master (default
# replication from the target's name), NVOL volume servers in dc1/rack1, a
# filer, all on IP, data under WORK/cairn-REPL; then its mount at
# WORK/mnt-REPL.
cairn_up() {
	local t=$1 repl=${1#c} nvol=${NVOL[$1]} i mpid fpid vpids=() master filer d
	d=$WORK/cairn-$repl
	master=$IP:${CL[$t.master]}
	filer=$IP:${CL[$t.filer]}
	mkdir -p "$d"
	start "$t" "master-$repl" master --dir "$d/m" --ip "$IP" --port "${CL[$t.master]}" --default-replication "$repl"
	mpid=$LAST_PID
	for ((i = 1; i <= nvol; i++)); do
		start "$t" "volume$i-$repl" volume --dir "$d/v$i" --ip "$IP" --port "${CL[$t.vol$i]}" --master "$master" \
			--max 30 --dc dc1 --rack rack1
		vpids+=("$LAST_PID")
	done
	wait_for "master-$repl" "http://$master/readyz" "$mpid"
	for ((i = 1; i <= nvol; i++)); do
		wait_for "volume$i-$repl" "http://$IP:${CL[$t.vol$i]}/healthz" "${vpids[i - 1]}"
	done
	# Every volume server has registered once the master can place the copies.
	wait_for "master-$repl" "http://$master/dir/assign?replication=$repl" "$mpid" '"fid"'
	start "$t" "filer-$repl" filer --dir "$d/f" --ip "$IP" --port "${CL[$t.filer]}" --master "$master"
	fpid=$LAST_PID
	wait_for "filer-$repl" "http://$filer/readyz" "$fpid"
	log "cairn $repl ready: master $master, $nvol volume server(s), filer $filer"
	mount_start "$t" "mount-$repl" "$WORK/mnt-$repl" "$BIN" mount --filer "$filer" --dir "$WORK/mnt-$repl"
	TDIR[$t]=$WORK/mnt-$repl/bench
}

# ---- samples ----

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# ticks PID: user+system CPU ticks of PID so far (empty if it is gone).
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || true; }

# cpu_begin TARGET: note the CPU time of TARGET's processes and the clock.
cpu_begin() {
	local pid pids
	TICKS0=()
	read -r -a pids <<<"${TPIDS[$1]:-}"
	for pid in "${pids[@]}"; do
		TICKS0[$pid]=$(ticks "$pid")
	done
	WALL0=$(date +%s.%N)
}

# cpu_end PROFILE TARGET ROUND: the wall time since cpu_begin and the CPU
# seconds each of TARGET's processes used in it (the machine has nproc CPUs
# to share).
cpu_end() {
	local k=$1.$2.$3 pid pids t1 out=""
	WALL[$k]=$(awk -v a="$WALL0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	read -r -a pids <<<"${TPIDS[$2]:-}"
	for pid in "${pids[@]}"; do
		t1=$(ticks "$pid")
		[[ -n $t1 && -n ${TICKS0[$pid]:-} ]] || continue
		out+=$(awk -v n="${PNAME[$pid]}" -v a="${TICKS0[$pid]}" -v b="$t1" -v hz="$CLK_TCK" \
			'BEGIN { printf " %s=%.1f", n, (b - a) / hz }')
	done
	PCPU[$k]=${out# }
	return 0
}

# fio_get NAME EXPR: a figure from fio run NAME's JSON; EXPR is Python over
# job (the first job) and MB (1e6); prints n/a when missing.
fio_get() {
	python3 - "$WORK/logs/$1.json" "$2" <<'EOF' 2>/dev/null || echo n/a
import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
MB = 1e6
def pct(lat, p):
    return lat.get("percentile", {}).get(p, 0) / 1e6
v = eval(sys.argv[2])
print(v if isinstance(v, str) else "%.1f" % v)
EOF
}

# fio_run PROFILE TARGET ROUND ARGS...: one fio job with JSON output in
# logs/PROFILE-TARGET-rROUND.json; returns fio's status.
fio_run() {
	local p=$1 t=$2 r=$3 name=$1-$2-r$3 rc
	shift 3
	log "fio $name: $*"
	set +e
	cpu_begin "$t"
	fio --name="$name" --ioengine=psync --output-format=json "$@" \
		>"$WORK/logs/$name.json" 2>"$WORK/logs/$name.err"
	rc=$?
	cpu_end "$p" "$t" "$r"
	set -e
	if ((rc != 0)); then
		log "fio $name FAILED (exit $rc): $(tail -n 3 "$WORK/logs/$name.err")"
	fi
	return "$rc"
}

# set_result PROFILE TARGET ROUND VALUE [DETAIL]
set_result() {
	SAMPLE[$1.$2.$3]=$4
	[[ -z ${5:-} ]] || DETAIL[$1.$2.$3]=$5
	NDONE=$((NDONE + 1))
	log "result $1 on $2 round $3/$ROUNDS: $4${5:+ ($5)}"
}

# fail_result PROFILE TARGET ROUND [WHY]: the sample failed; its cell shows
# FAIL and the script exits non-zero.
fail_result() {
	SAMPLE[$1.$2.$3]=FAIL
	FAILED=1
	NDONE=$((NDONE + 1))
	log "result $1 on $2 round $3/$ROUNDS: FAIL${4:+ ($4)}"
}

# no_file PROFILE TARGET ROUND: true (after noting the sample as n/a) when
# this round's seq write left no file on TARGET to read or rewrite.
no_file() {
	[[ ${SEQ_OK[$2]:-0} == 1 ]] && return 1
	SAMPLE[$1.$2.$3]=n/a
	NDONE=$((NDONE + 1))
	log "result $1 on $2 round $3/$ROUNDS: n/a (this round's seq write failed)"
	return 0
}

# fio_sample PROFILE TARGET ROUND VALUE DETAIL FIO_ARGS...: one fio sample
# of the round's file on TARGET, after the page cache is dropped: VALUE and
# DETAIL (fio_get expressions; DETAIL may be empty) make its result, a
# failed fio a FAIL. Returns fio's status.
fio_sample() {
	local p=$1 t=$2 r=$3 value=$4 detail=$5 n=$1-$2-r$3
	shift 5
	drop_caches
	if fio_run "$p" "$t" "$r" --filename="${TDIR[$t]}/seq.dat" --size="${SEQ_MB}M" "$@"; then
		set_result "$p" "$t" "$r" "$(fio_get "$n" "$value")" "${detail:+$(fio_get "$n" "$detail")}"
		return 0
	fi
	fail_result "$p" "$t" "$r"
	return 1
}

# run_seqwrite TARGET ROUND: write the round's file (fresh, 1 MiB writes,
# end_fsync); the round's read and random write samples use it.
run_seqwrite() {
	local t=$1 r=$2
	rm -f -- "${TDIR[$t]}/seq.dat"
	SEQ_OK[$t]=0
	if fio_sample seqwrite "$t" "$r" 'job["write"]["bw_bytes"] / MB' \
		'"%.1f s for %d MiB" % (job["job_runtime"] / 1000, job["write"]["io_bytes"] >> 20)' \
		--rw=write --bs=1M --end_fsync=1; then
		SEQ_OK[$t]=1
	fi
}

# run_seqread TARGET ROUND: 1 MiB buffered reads of the round's file, cold.
run_seqread() {
	no_file seqread "$1" "$2" && return 0
	fio_sample seqread "$1" "$2" 'job["read"]["bw_bytes"] / MB' '' --rw=read --bs=1M --invalidate=1 || true
}

# run_randread TARGET ROUND: 4 KiB buffered random reads, cold.
run_randread() {
	no_file randread "$1" "$2" && return 0
	fio_sample randread "$1" "$2" 'job["read"]["iops"]' \
		'"clat p50 %.2f ms, p99 %.2f ms" % (pct(job["read"]["clat_ns"], "50.000000"), pct(job["read"]["clat_ns"], "99.000000"))' \
		--rw=randread --bs=4k --invalidate=1 --io_size="${RANDREAD_MB}M" --runtime="$RAND_SECS" || true
}

# run_randwrite TARGET ROUND: 4 KiB random writes, fsync after each.
run_randwrite() {
	no_file randwrite "$1" "$2" && return 0
	fio_sample randwrite "$1" "$2" 'job["write"]["iops"]' \
		'"write p50 %.3f ms, fsync mean %.2f ms / p99 %.2f ms" % (pct(job["write"]["clat_ns"], "50.000000"), job["sync"]["lat_ns"]["mean"] / 1e6, pct(job["sync"]["lat_ns"], "99.000000"))' \
		--rw=randwrite --bs=4k --fsync=1 --runtime="$RAND_SECS" --time_based || true
}

# run_smallfiles TARGET ROUND: create SMALL_N files of 1 KiB (open, write,
# close) in a fresh directory, then syncfs the scratch disk (which holds the
# data of every target); files/s over both. The directory goes afterwards.
run_smallfiles() {
	local t=$1 r=$2 dir out rc all loop syncs created
	dir=${TDIR[$t]}/small-r$r
	log "small files on $t round $r/$ROUNDS: $SMALL_N x 1 KiB in $dir (at most ${SMALL_SECS}s)"
	drop_caches
	set +e
	cpu_begin "$t"
	out=$(python3 - "$dir" "$SMALL_N" "$WORK" "$SMALL_SECS" <<'EOF' 2>"$WORK/logs/smallfiles-$t-r$r.err"
import ctypes, os, sys, time
d, n, scratch, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
os.makedirs(d)
buf = os.urandom(1024)
libc = ctypes.CDLL(None, use_errno=True)
t0 = time.monotonic()
done = 0
for i in range(n):
    fd = os.open("%s/f%06d" % (d, i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    if os.write(fd, buf) != len(buf):
        sys.exit("short write")
    os.close(fd)
    done += 1
    if done % 100 == 0 and time.monotonic() - t0 > limit:
        break
t1 = time.monotonic()
fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
if libc.syncfs(fd) != 0:
    sys.exit("syncfs: errno %d" % ctypes.get_errno())
os.close(fd)
t2 = time.monotonic()
print("%.1f %.1f %.3f %d" % (done / (t2 - t0), done / (t1 - t0), t2 - t1, done))
EOF
	)
	rc=$?
	cpu_end smallfiles "$t" "$r"
	set -e
	if ((rc != 0)); then
		fail_result smallfiles "$t" "$r" "$(tail -n 3 "$WORK/logs/smallfiles-$t-r$r.err")"
	else
		read -r all loop syncs created <<<"$out"
		set_result smallfiles "$t" "$r" "$all" "$created files, ${loop} files/s before the syncfs, syncfs ${syncs} s"
	fi
	rm -rf -- "$dir"
}

# pg_sql TARGET SQL: run SQL on TARGET's postgres (psql, if there is one).
pg_sql() {
	[[ -n $PSQL ]] || return 0
	"$PSQL" -h "$WORK/pg/sock-$1" -p "${PGPORT_OF[$1]}" -U postgres -q -X -c "$2" postgres \
		>>"$WORK/logs/psql-$1.log" 2>&1
}

# pg_setup TARGET: initdb with PGDATA on the target, start its postgres (own
# port and socket directory), pgbench -i, CHECKPOINT. The postgres stays up
# for the rounds; PG_OK[TARGET]=1 on success.
pg_setup() {
	local t=$1 data sock attempt ok=0 msg pg
	data=${TDIR[$t]}/pgdata
	sock=$WORK/pg/sock-$t
	log "postgres on $t: PGDATA $data, port ${PGPORT_OF[$t]}"
	# initdb is retried (twice at most) so that one failed file operation
	# does not cost the row; every failure is reported in the summary.
	for attempt in 1 2 3; do
		rm -rf -- "$data"
		mkdir -p "$data" "$sock"
		chown postgres: "$data" "$sock"
		chmod 0700 "$data"
		if runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres -A trust -N \
			>"$WORK/logs/initdb-$t.log" 2>&1; then
			ok=1
			break
		fi
		FAILED=1
		msg=$(grep -m 1 -E 'FATAL|ERROR|error' "$WORK/logs/initdb-$t.log" || tail -n 1 "$WORK/logs/initdb-$t.log")
		log "initdb on $t FAILED (attempt $attempt): $msg"
		add "initdb on ${TLABEL[$t]} attempt $attempt FAILED" "$msg"
	done
	((ok)) || return 0
	PG_RUN[$t]=$data
	if ! runuser -u postgres -- "$PG_CTL" -D "$data" -l "$WORK/pg/postgres-$t.log" -w -t 120 \
		-o "-p ${PGPORT_OF[$t]} -k $sock -c listen_addresses='' -c fsync=on -c synchronous_commit=on -c shared_buffers=128MB" \
		start >"$WORK/logs/pg_ctl-$t.log" 2>&1; then
		FAILED=1
		log "postgres on $t did not start: $(tail -n 5 "$WORK/pg/postgres-$t.log" 2>/dev/null)"
		pg_stop "$t"
		return 0
	fi
	pg=("$PGBENCH" -h "$sock" -p "${PGPORT_OF[$t]}" -U postgres)
	if ! "${pg[@]}" -i -q -s "$PG_SCALE" postgres >"$WORK/logs/pgbench-init-$t.log" 2>&1; then
		FAILED=1
		log "pgbench -i on $t FAILED: $(tail -n 5 "$WORK/logs/pgbench-init-$t.log")"
		pg_stop "$t"
		return 0
	fi
	pg_sql "$t" CHECKPOINT || log "CHECKPOINT on $t failed (logs/psql-$t.log)"
	PG_OK[$t]=1
}

# pg_tps LOG: the tps of a pgbench report.
pg_tps() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$1" | tail -n 1; }

# run_pgbench TARGET ROUND: PG_CLIENTS clients for PG_SECS seconds with
# synchronous_commit on. Before it (untimed): sync, and a read of the
# database's files so that every run starts with them in the page cache,
# as right after pgbench -i. After it (untimed): CHECKPOINT, so that no
# checkpoint of this run's writes lands in another sample.
run_pgbench() {
	local t=$1 r=$2 out tps rc
	out=$WORK/logs/pgbench-$t-r$r.log
	if [[ -n $PG_SKIP ]]; then
		SAMPLE[pgbench.$t.$r]=skipped
		return 0
	fi
	if [[ ${PG_OK[$t]:-} != 1 ]]; then
		fail_result pgbench "$t" "$r" "postgres setup failed, see above"
		return 0
	fi
	sync
	find "${PG_RUN[$t]}/base" -type f -exec cat -- {} + >/dev/null 2>&1 || true
	log "pgbench on $t round $r/$ROUNDS: $PG_CLIENTS clients, ${PG_SECS}s"
	cpu_begin "$t"
	rc=0
	"$PGBENCH" -h "$WORK/pg/sock-$t" -p "${PGPORT_OF[$t]}" -U postgres \
		-c "$PG_CLIENTS" -j "$PG_CLIENTS" -T "$PG_SECS" postgres >"$out" 2>&1 || rc=$?
	cpu_end pgbench "$t" "$r"
	tps=$(pg_tps "$out")
	if ((rc == 0)) && [[ -n $tps ]]; then
		set_result pgbench "$t" "$r" "$(printf '%.1f' "$tps")" \
			"$(sed -n 's/^latency average = \(.*\)/latency average \1/p' "$out")"
	else
		fail_result pgbench "$t" "$r" "$(tail -n 5 "$out" | tr '\n' ' ')"
	fi
	pg_sql "$t" CHECKPOINT || log "CHECKPOINT on $t failed (logs/psql-$t.log)"
}

# ---- targets: all up for the whole run ----
log "bringing up every target"
T_SETUP=$SECONDS
for t in "${TARGETS[@]}"; do
	case $t in
	local)
		TDIR[local]=$WORK/local/t-local
		;;
	passthrough)
		mount_start passthrough passthrough "$WORK/mnt-pt" "$WORK/passthrough" "$WORK/local" "$WORK/mnt-pt"
		TDIR[passthrough]=$WORK/mnt-pt/t-pt
		;;
	c000 | c001)
		cairn_up "$t"
		;;
	esac
	mkdir -p "${TDIR[$t]}"
done
if [[ -z $PG_SKIP ]]; then
	for t in "${TARGETS[@]}"; do
		pg_setup "$t"
	done
fi
add "setup (servers, mounts, initdb, pgbench -i)" "$((SECONDS - T_SETUP)) s"
log "every target is up ($((SECONDS - T_SETUP)) s)"

# ---- rounds ----
for ((r = 1; r <= ROUNDS; r++)); do
	ORDER=()
	for ((i = 0; i < NT; i++)); do
		ORDER+=("${TARGETS[(i + r - 1) % NT]}")
	done
	t0=$SECONDS
	load=$(cut -d ' ' -f 1-3 /proc/loadavg)
	log "---- round $r/$ROUNDS, order ${ORDER[*]}: samples $((NDONE + 1)) to $((NDONE + NT * NPROF)) of $NSAMPLES, $(((SECONDS - START) / 60)) min in"
	for p in "${PROFILES[@]}"; do
		log "-- round $r/$ROUNDS: $p"
		for t in "${ORDER[@]}"; do
			case $p in
			seqwrite) run_seqwrite "$t" "$r" ;;
			seqread) run_seqread "$t" "$r" ;;
			randread) run_randread "$t" "$r" ;;
			randwrite) run_randwrite "$t" "$r" ;;
			smallfiles) run_smallfiles "$t" "$r" ;;
			pgbench) run_pgbench "$t" "$r" ;;
			esac
		done
		if [[ $p == randwrite ]]; then # the last user of the round's file
			for t in "${ORDER[@]}"; do
				rm -f -- "${TDIR[$t]}/seq.dat"
			done
		fi
	done
	log "---- round $r/$ROUNDS done in $((SECONDS - t0)) s"
	add "round $r: order ${ORDER[*]} (load average before)" "$((SECONDS - t0)) s ($load)"
done

log "stopping every target"
stop_all

# ---- table ----

# cell PROFILE TARGET: the median of the target's samples; FAIL if one
# failed, n/a if one is missing (or the target did not run), skipped.
cell() {
	local r v vals=() fail=0 miss=0 skip=0
	for ((r = 1; r <= ROUNDS; r++)); do
		v=${SAMPLE[$1.$2.$r]:-}
		case $v in
		FAIL) fail=1 ;;
		skipped) skip=1 ;;
		*)
			if [[ $v =~ ^[0-9.]+$ ]]; then vals+=("$v"); else miss=1; fi
			;;
		esac
	done
	if ((fail)); then
		echo FAIL
	elif ((skip)); then
		echo skipped
	elif ((miss)); then
		echo n/a
	else
		median '%.1f' "${vals[@]}"
	fi
}

# samples PROFILE TARGET: every sample in round order.
samples() {
	local r out=()
	for ((r = 1; r <= ROUNDS; r++)); do
		out+=("${SAMPLE[$1.$2.$r]:-n/a}")
	done
	printf '%s' "${out[*]}"
}

# round_ratios PROFILE CAIRN: sample / passthrough sample, round by round.
round_ratios() {
	local r out=()
	for ((r = 1; r <= ROUNDS; r++)); do
		out+=("$(ratio "${SAMPLE[$1.$2.$r]:-}" "${SAMPLE[$1.passthrough.$r]:-}")")
	done
	printf '%s' "${out[*]}"
}

# med_ratio PROFILE CAIRN: the median of the per-round ratios; n/a if a
# round has none.
med_ratio() {
	local rs
	read -r -a rs <<<"$(round_ratios "$1" "$2")"
	if [[ " ${rs[*]} " == *" n/a "* ]]; then
		echo n/a
	else
		median '%.2f' "${rs[@]}"
	fi
}

# cpu_summary PROFILE TARGET: the median wall time and the median CPU
# seconds of each of the target's processes over the rounds.
cpu_summary() {
	local r kv name walls=() names=() out
	declare -A per=()
	for ((r = 1; r <= ROUNDS; r++)); do
		[[ -n ${WALL[$1.$2.$r]:-} ]] && walls+=("${WALL[$1.$2.$r]}")
		for kv in ${PCPU[$1.$2.$r]:-}; do
			name=${kv%%=*}
			[[ -n ${per[$name]:-} ]] || names+=("$name")
			per[$name]+=" ${kv#*=}"
		done
	done
	((${#names[@]} > 0)) || return 0
	out="median of ${#walls[@]}: wall $(median '%.1f' "${walls[@]}") s; CPU s:"
	for name in "${names[@]}"; do
		# shellcheck disable=SC2086 # a list of numbers
		out+=" $name $(median '%.1f' ${per[$name]}),"
	done
	printf '%s' "${out%,}"
}

goal_col() {
	local p=$1 spec want cfgs c r out=""
	spec=${GOAL[$p]:-}
	[[ -n $spec ]] || return 0
	read -r want cfgs <<<"$spec"
	out=">= $want x pt:"
	for c in $cfgs; do
		r=$(med_ratio "$p" "$c")
		if [[ $r == n/a ]]; then
			out+=" ${c#c} n/a"
		elif awk -v r="$r" -v w="$want" 'BEGIN { exit !(r >= w) }'; then
			out+=" ${c#c} ok"
		else
			out+=" ${c#c} BELOW"
		fi
	done
	printf '%s' "$out"
}

TABLE=$WORK/table.txt
{
	echo "cells: median of $ROUNDS round(s); 000/pt, 001/pt: median of the per-round ratios"
	printf '%-34s %12s %12s %12s %12s %8s %8s  %s\n' \
		profile local passthrough "cairn 000" "cairn 001" "000/pt" "001/pt" "goal (cairn / passthrough)"
	for p in "${PROFILES[@]}"; do
		printf '%-34s %12s %12s %12s %12s %8s %8s  %s\n' "${PLABEL[$p]}" \
			"$(cell "$p" local)" "$(cell "$p" passthrough)" "$(cell "$p" c000)" "$(cell "$p" c001)" \
			"$(med_ratio "$p" c000)" "$(med_ratio "$p" c001)" "$(goal_col "$p")"
	done
} >"$TABLE"

add "seq file / 4 KiB random runtime / random read cap" "${SEQ_MB} MiB / ${RAND_SECS} s / ${RANDREAD_MB} MiB"
add "small files" "$SMALL_N x 1 KiB (at most ${SMALL_SECS} s), open+write+close each, then syncfs of the scratch disk"
if [[ -n $PG_SKIP ]]; then
	add "pgbench" "skipped: $PG_SKIP"
else
	add "pgbench" "scale $PG_SCALE, $PG_CLIENTS clients, ${PG_SECS} s, synchronous_commit=on, fsync=on; database files read before and CHECKPOINT after each run (untimed)"
fi
for p in "${PROFILES[@]}"; do
	[[ $p != pgbench || -z $PG_SKIP ]] || continue
	label=${PLABEL[$p]%% (*}
	for t in "${COLUMNS_T[@]}"; do
		running "$t" || continue
		add "$label on ${TLABEL[$t]}" "$(cell "$p" "$t") (rounds: $(samples "$p" "$t"))"
	done
	if running passthrough; then
		for c in c000 c001; do
			running "$c" || continue
			add "$label, ${TLABEL[$c]} / passthrough" "$(med_ratio "$p" "$c") (rounds: $(round_ratios "$p" "$c"))"
		done
	fi
	for t in "${COLUMNS_T[@]}"; do
		running "$t" || continue
		details=""
		for ((r = 1; r <= ROUNDS; r++)); do
			[[ -z ${DETAIL[$p.$t.$r]:-} ]] || details+="; r$r ${DETAIL[$p.$t.$r]}"
		done
		[[ -z $details ]] || add "$label on ${TLABEL[$t]}, per round" "${details#; }"
		cpu=$(cpu_summary "$p" "$t")
		[[ -z $cpu ]] || add "$label on ${TLABEL[$t]}, processes" "$cpu"
	done
done
add "total runtime" "$((SECONDS - START)) s"
add "load average at the end" "$(cut -d ' ' -f 1-3 /proc/loadavg) (other work on this machine skews every column)"

{
	echo "cairn FUSE mount benchmark summary"
	printf '%s\n' "${SUMMARY[@]}"
	cat "$TABLE"
	if ((FAILED)); then
		echo "RESULT: at least one mount benchmark sample FAILED (see the log above)"
	else
		echo "RESULT: all mount benchmark samples completed"
	fi
} >"$WORK/summary.txt"
echo
cat "$WORK/summary.txt"
cat -- "$WORK/summary.txt" >>"$BENCH_OUT"
log "summary appended to $BENCH_OUT"
exit "$FAILED"
