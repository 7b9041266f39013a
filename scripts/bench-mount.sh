#!/usr/bin/env bash
# bench-mount.sh: FUSE mount benchmark for `make bench`.
#
# Runs the same fio profiles, a small-file creation loop and pgbench against
# four targets, one after the other, all on the same disk:
#   local        a directory on the local disk
#   passthrough  that directory through a go-fuse loopback mount
#                (internal/bench/passthrough, options like cairn's mount)
#   cairn 000    a cairn mount: one master, one volume server, one filer,
#                `cairn mount`, replication 000
#   cairn 001    a cairn mount over a master with --default-replication 001
#                and two volume servers in the same rack (two copies)
# and prints a table (rows: profiles; columns: targets and the ratios
# cairn / passthrough, next to the goals), which is also appended to the
# summary file.
#
# Reads are cold: before each read profile the page cache is dropped
# (sync; echo 3 > /proc/sys/vm/drop_caches), which also empties the FUSE
# mounts' kernel caches and the volume servers' cached volume files; reads
# are buffered (the path applications take, with kernel read-ahead).
#
# Needs root (drop_caches, FUSE allow_other, runuser), fio, python3, curl,
# fusermount3 and go (to build the passthrough). pgbench rows are skipped
# when the PostgreSQL binaries are missing. Installs nothing.
#
# Environment (all optional):
#   BENCH_DIR                parent of the scratch directory (default /var/tmp; not tmpfs)
#   BENCH_OUT                summary file, appended to (default bench-results.txt in the repo root)
#   CAIRN_BIN                binary to test (default bin/cairn in the repo root)
#   GO                       go command used to build the passthrough (default go)
#   BENCH_IP                 address of the cairn servers (default 127.0.0.1)
#   BENCH_MOUNT_MASTER_PORT  master HTTP port (default 9433; gRPC +10000, Raft +20000)
#   BENCH_MOUNT_VOL1_PORT    first volume server HTTP port (default 8180)
#   BENCH_MOUNT_VOL2_PORT    second volume server HTTP port (default 8181)
#   BENCH_MOUNT_FILER_PORT   filer HTTP port (default 8988)
#   BENCH_PG_PORT            PostgreSQL port (default 5499; unix socket only)
#   BENCH_SEQ_MB             size of the sequential file in MiB (default 512)
#   BENCH_RAND_SECONDS       runtime of the 4 KiB random profiles (default 20)
#   BENCH_RANDREAD_MB        MiB read by the 4 KiB random read, at most (default 64)
#   BENCH_SMALL_FILES        files in the small-file profile (default 10000)
#   BENCH_SMALL_SECONDS      stop creating files after this long (default 30)
#   BENCH_PG_SCALE           pgbench scale (default 10)
#   BENCH_PG_CLIENTS         pgbench clients (default 4)
#   BENCH_PG_SECONDS         pgbench runtime (default 30)
#   BENCH_MOUNT_TARGETS      targets to run (default "local passthrough c000 c001")
#   BENCH_KEEP               if set, keep the scratch directory (logs, fio JSON) at exit
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CAIRN_BIN:-$ROOT/bin/cairn}
GO=${GO:-go}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
IP=${BENCH_IP:-127.0.0.1}
MPORT=${BENCH_MOUNT_MASTER_PORT:-9433}
V1PORT=${BENCH_MOUNT_VOL1_PORT:-8180}
V2PORT=${BENCH_MOUNT_VOL2_PORT:-8181}
FPORT=${BENCH_MOUNT_FILER_PORT:-8988}
PGPORT=${BENCH_PG_PORT:-5499}
SEQ_MB=${BENCH_SEQ_MB:-512}
RAND_SECS=${BENCH_RAND_SECONDS:-20}
RANDREAD_MB=${BENCH_RANDREAD_MB:-64}
SMALL_N=${BENCH_SMALL_FILES:-10000}
SMALL_SECS=${BENCH_SMALL_SECONDS:-30}
PG_SCALE=${BENCH_PG_SCALE:-10}
PG_CLIENTS=${BENCH_PG_CLIENTS:-4}
PG_SECS=${BENCH_PG_SECONDS:-30}
read -r -a TARGETS <<<"${BENCH_MOUNT_TARGETS:-local passthrough c000 c001}"
MASTER=$IP:$MPORT
FILER=$IP:$FPORT
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
declare -A TLABEL=([local]="local" [passthrough]="passthrough" [c000]="cairn 000" [c001]="cairn 001")
# GOAL[profile]="min-ratio configs": the ratio to the passthrough wanted.
declare -A GOAL=(
	[seqwrite]="0.70 c000 c001"
	[seqread]="0.70 c000 c001"
	[randwrite]="0.50 c000"
	[pgbench]="0.50 c000 c001"
)
declare -A RES=()    # RES[profile.target] = figure, or n/a / FAIL / skipped
declare -A DETAIL=() # DETAIL[profile.target] = latencies and the like
declare -A CPU=()    # CPU[profile.target] = CPU seconds of the FUSE and cairn processes
declare -A PNAME=()  # PNAME[pid] = name of a process this script started
declare -A TICKS0=() # per-process CPU ticks at the start of a profile
WALL0=0

PIDS=()       # servers, stopped last
MOUNT_PIDS=() # mount processes (passthrough, cairn mount), stopped first
MNTS=()       # mount points, lazily unmounted if still mounted at exit
PG_DATA=""    # PGDATA of the running postgres, if any
WORK=""
FAILED=0
SUMMARY=()

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

# pg_stop: stop the running postgres (fast, then immediate, then SIGKILL).
pg_stop() {
	local pid
	[[ -n $PG_DATA ]] || return 0
	if ! runuser -u postgres -- "$PG_CTL" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1; then
		runuser -u postgres -- "$PG_CTL" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
		pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
		[[ $pid =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null || true
	fi
	PG_DATA=""
}

cleanup() {
	local rc=$? pid m busy=0
	trap - EXIT INT TERM
	pg_stop
	for pid in "${MOUNT_PIDS[@]}"; do
		stop_pid "$pid"
	done
	for m in "${MNTS[@]}"; do
		if is_mounted "$m"; then
			fusermount3 -u -z -- "$m" 2>/dev/null || umount -l -- "$m" 2>/dev/null || true
		fi
	done
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
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

[[ $(id -u) == 0 ]] || die "run as root (drop_caches, FUSE allow_other, postgres via runuser)"
[[ -x $BIN ]] || die "no cairn binary at $BIN (run make build first)"
for cmd in fio python3 curl fusermount3 mountpoint "$GO"; do
	command -v "$cmd" >/dev/null || die "$cmd is needed (make bench installs fio)"
done
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

# PostgreSQL: PATH first, then the newest /usr/lib/postgresql/*/bin.
PG_BIN=""
for d in "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")" \
	$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
	if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
		PG_BIN=$d
		break
	fi
done
PG_CTL=${PG_BIN:+$PG_BIN/pg_ctl}
PGBENCH=$(command -v pgbench 2>/dev/null || true)
[[ -z $PGBENCH && -n $PG_BIN && -x $PG_BIN/pgbench ]] && PGBENCH=$PG_BIN/pgbench
PG_SKIP=""
if [[ -z $PG_BIN || -z $PGBENCH ]]; then
	PG_SKIP="PostgreSQL binaries (initdb, pg_ctl, postgres, pgbench) not found"
elif ! id postgres >/dev/null 2>&1; then
	PG_SKIP="no postgres user"
elif ! command -v runuser >/dev/null; then
	PG_SKIP="runuser not found"
fi
[[ -n $PG_SKIP ]] && log "pgbench rows skipped: $PG_SKIP"

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
add "cold reads" "$([[ $DROP == yes ]] && echo "page cache dropped before each read profile (echo 3 > drop_caches), buffered reads" || echo "NOT cold: drop_caches not writable")"

# ---- processes ----

# start NAME ARGS...: run a server in the background, logging to logs/NAME.log
# (this script's own: it also knows the mount processes, unlike bench-lib's).
start() {
	local name=$1
	shift
	"$BIN" "$@" >"$WORK/logs/$name.log" 2>&1 &
	PIDS+=("$!")
	PNAME[$!]=$name
	log "started $name (pid $!): cairn $*"
}

# forget PID: stop a server or mount process and drop it from the cleanup lists.
forget() {
	local pid=$1 p keep=() mkeep=()
	stop_pid "$pid"
	for p in "${PIDS[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	for p in "${MOUNT_PIDS[@]}"; do
		[[ $p == "$pid" ]] || mkeep+=("$p")
	done
	PIDS=("${keep[@]}")
	MOUNT_PIDS=("${mkeep[@]}")
}

# mount_start NAME MNT CMD...: run a FUSE server in the foreground of a
# background job and wait until MNT is a mount point.
mount_start() {
	local name=$1 mnt=$2 deadline pid
	shift 2
	mkdir -p "$mnt"
	MNTS+=("$mnt")
	"$@" >"$WORK/logs/$name.log" 2>&1 &
	pid=$!
	MOUNT_PIDS+=("$pid")
	PNAME[$pid]=$name
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
	LAST_MOUNT_PID=$pid
}

# mount_stop PID MNT: stop a FUSE server (it flushes and unmounts) and make
# sure MNT is gone.
mount_stop() {
	local pid=$1 mnt=$2
	forget "$pid"
	if is_mounted "$mnt"; then
		log "$mnt still mounted after its server stopped; unmounting lazily"
		fusermount3 -u -z -- "$mnt" || true
	fi
}

# cairn_up REPL VOLUMES: master (default replication REPL), VOLUMES volume
# servers in dc1/rack1, a filer, all on loopback, data under WORK/cairn-REPL.
cairn_up() {
	local repl=$1 nvol=$2 d=$WORK/cairn-$1 i port vpids=() mpid fpid
	mkdir -p "$d"
	start "master-$repl" master --dir "$d/m" --ip "$IP" --port "$MPORT" --default-replication "$repl"
	mpid=${PIDS[-1]}
	for ((i = 1; i <= nvol; i++)); do
		port=$V1PORT
		((i == 2)) && port=$V2PORT
		start "volume$i-$repl" volume --dir "$d/v$i" --ip "$IP" --port "$port" --master "$MASTER" \
			--max 30 --dc dc1 --rack rack1
		vpids+=("${PIDS[-1]}")
	done
	wait_for "master-$repl" "http://$MASTER/readyz" "$mpid"
	for ((i = 1; i <= nvol; i++)); do
		port=$V1PORT
		((i == 2)) && port=$V2PORT
		wait_for "volume$i-$repl" "http://$IP:$port/healthz" "${vpids[i - 1]}"
	done
	# Every volume server has registered once the master can place the copies.
	wait_for "master-$repl" "http://$MASTER/dir/assign?replication=$repl" "$mpid" '"fid"'
	start "filer-$repl" filer --dir "$d/f" --ip "$IP" --port "$FPORT" --master "$MASTER"
	fpid=${PIDS[-1]}
	wait_for "filer-$repl" "http://$FILER/readyz" "$fpid"
	log "cairn $repl ready: master $MASTER, $nvol volume server(s), filer $FILER"
}

# cairn_down: stop every server (mounts must be gone already).
cairn_down() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		forget "$pid"
	done
}

# ---- profiles ----

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# ticks PID: user+system CPU ticks of PID so far (empty if it is gone).
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || true; }

# cpu_begin: note the CPU time of every process started here and the clock.
cpu_begin() {
	local pid
	TICKS0=()
	for pid in "${MOUNT_PIDS[@]}" "${PIDS[@]}"; do
		TICKS0[$pid]=$(ticks "$pid")
	done
	WALL0=$(date +%s.%N)
}

# cpu_end PROFILE TARGET: CPU seconds each process used since cpu_begin,
# next to the wall time (the machine has nproc CPUs to share).
cpu_end() {
	local pid t1 out="" wall
	wall=$(awk -v a="$WALL0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	for pid in "${MOUNT_PIDS[@]}" "${PIDS[@]}"; do
		t1=$(ticks "$pid")
		[[ -n $t1 && -n ${TICKS0[$pid]:-} ]] || continue
		out+=$(awk -v n="${PNAME[$pid]}" -v a="${TICKS0[$pid]}" -v b="$t1" -v hz="$CLK_TCK" \
			'BEGIN { printf ", %s %.1f", n, (b - a) / hz }')
	done
	[[ -z $out ]] || CPU[$1.$2]="wall ${wall} s; CPU s:${out#,}"
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

# fio_run NAME ARGS...: one fio job with JSON output; returns fio's status.
fio_run() {
	local name=$1 rc
	shift
	log "fio $name: $*"
	set +e
	cpu_begin
	fio --name="$name" --ioengine=psync --output-format=json "$@" \
		>"$WORK/logs/$name.json" 2>"$WORK/logs/$name.err"
	rc=$?
	cpu_end "${name%-*}" "${name##*-}"
	set -e
	if ((rc != 0)); then
		log "fio $name FAILED (exit $rc): $(tail -n 3 "$WORK/logs/$name.err")"
	fi
	return "$rc"
}

# set_result PROFILE TARGET VALUE [DETAIL]
set_result() {
	RES[$1.$2]=$3
	[[ -z ${4:-} ]] || DETAIL[$1.$2]=$4
	log "result $1 on $2: $3${4:+ ($4)}"
}

# fail_result PROFILE TARGET: the profile failed on this target.
fail_result() {
	RES[$1.$2]=FAIL
	FAILED=1
}

# run_fio_profiles TARGET DIR
run_fio_profiles() {
	local t=$1 dir=$2 f=$2/seq.dat n
	drop_caches
	n="seqwrite-$t"
	if fio_run "$n" --filename="$f" --rw=write --bs=1M --size="${SEQ_MB}M" --end_fsync=1; then
		set_result seqwrite "$t" "$(fio_get "$n" 'job["write"]["bw_bytes"] / MB')" \
			"$(fio_get "$n" '"%.1f s for %d MiB" % (job["job_runtime"] / 1000, job["write"]["io_bytes"] >> 20)')"
	else
		fail_result seqwrite "$t"
		return 0 # the other fio profiles need this file
	fi

	drop_caches
	n="seqread-$t"
	if fio_run "$n" --filename="$f" --rw=read --bs=1M --size="${SEQ_MB}M" --invalidate=1; then
		set_result seqread "$t" "$(fio_get "$n" 'job["read"]["bw_bytes"] / MB')"
	else
		fail_result seqread "$t"
	fi

	drop_caches
	n="randread-$t"
	if fio_run "$n" --filename="$f" --rw=randread --bs=4k --size="${SEQ_MB}M" --invalidate=1 \
		--io_size="${RANDREAD_MB}M" --runtime="$RAND_SECS"; then
		set_result randread "$t" "$(fio_get "$n" 'job["read"]["iops"]')" \
			"$(fio_get "$n" '"clat p50 %.2f ms, p99 %.2f ms" % (pct(job["read"]["clat_ns"], "50.000000"), pct(job["read"]["clat_ns"], "99.000000"))')"
	else
		fail_result randread "$t"
	fi

	drop_caches
	n="randwrite-$t"
	if fio_run "$n" --filename="$f" --rw=randwrite --bs=4k --size="${SEQ_MB}M" --fsync=1 \
		--runtime="$RAND_SECS" --time_based; then
		set_result randwrite "$t" "$(fio_get "$n" 'job["write"]["iops"]')" \
			"$(fio_get "$n" '"write p50 %.3f ms, fsync mean %.2f ms / p99 %.2f ms" % (pct(job["write"]["clat_ns"], "50.000000"), job["sync"]["lat_ns"]["mean"] / 1e6, pct(job["sync"]["lat_ns"], "99.000000"))')"
	else
		fail_result randwrite "$t"
	fi
	rm -f -- "$f"
}

# run_smallfiles TARGET DIR: create SMALL_N files of 1 KiB (open, write,
# close) in one directory, then syncfs the scratch disk (which holds the
# data of every target); files/s over both.
run_smallfiles() {
	local t=$1 dir=$2 out rc all loop syncs done
	log "small files on $t: $SMALL_N x 1 KiB in $dir/small (at most ${SMALL_SECS}s)"
	drop_caches
	set +e
	cpu_begin
	out=$(python3 - "$dir/small" "$SMALL_N" "$WORK" "$SMALL_SECS" <<'EOF' 2>"$WORK/logs/smallfiles-$t.err"
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
	cpu_end smallfiles "$t"
	set -e
	if ((rc != 0)); then
		log "small files on $t FAILED: $(tail -n 3 "$WORK/logs/smallfiles-$t.err")"
		fail_result smallfiles "$t"
		return 0
	fi
	read -r all loop syncs done <<<"$out"
	set_result smallfiles "$t" "$all" "$done files; without the final syncfs ${loop} files/s; syncfs took ${syncs} s"
	rm -rf -- "$dir/small"
}

# pg_tps LOG: the tps of a pgbench report.
pg_tps() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$1" | tail -n 1; }

# run_pgbench TARGET DIR: initdb with PGDATA in DIR, pgbench -i, then
# PG_CLIENTS clients for PG_SECS seconds with synchronous_commit on.
run_pgbench() {
	local t=$1 dir=$2 data=$2/pgdata sock=$WORK/pg/sock-$t tps
	if [[ -n $PG_SKIP ]]; then
		RES[pgbench.$t]=skipped
		return 0
	fi
	log "pgbench on $t: PGDATA $data"
	# initdb is retried (twice at most) so that one failed file operation
	# does not cost the row; every failure is reported in the summary.
	local attempt ok=0
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
		log "initdb on $t FAILED (attempt $attempt): $(grep -m 1 -E 'FATAL|ERROR|error' "$WORK/logs/initdb-$t.log" || tail -n 1 "$WORK/logs/initdb-$t.log")"
		add "initdb on ${TLABEL[$t]} attempt $attempt FAILED" \
			"$(grep -m 1 -E 'FATAL|ERROR|error' "$WORK/logs/initdb-$t.log" || tail -n 1 "$WORK/logs/initdb-$t.log")"
	done
	if ((!ok)); then
		fail_result pgbench "$t"
		return 0
	fi
	PG_DATA=$data
	if ! runuser -u postgres -- "$PG_CTL" -D "$data" -l "$WORK/pg/postgres-$t.log" -w -t 120 \
		-o "-p $PGPORT -k $sock -c listen_addresses='' -c fsync=on -c synchronous_commit=on -c shared_buffers=128MB" \
		start >"$WORK/logs/pg_ctl-$t.log" 2>&1; then
		log "postgres on $t did not start: $(tail -n 5 "$WORK/pg/postgres-$t.log" 2>/dev/null)"
		pg_stop
		fail_result pgbench "$t"
		return 0
	fi
	local pg=("$PGBENCH" -h "$sock" -p "$PGPORT" -U postgres)
	if ! "${pg[@]}" -i -q -s "$PG_SCALE" postgres >"$WORK/logs/pgbench-init-$t.log" 2>&1; then
		log "pgbench -i on $t FAILED: $(tail -n 5 "$WORK/logs/pgbench-init-$t.log")"
		pg_stop
		fail_result pgbench "$t"
		return 0
	fi
	log "pgbench on $t: $PG_CLIENTS clients, ${PG_SECS}s"
	cpu_begin
	if "${pg[@]}" -c "$PG_CLIENTS" -j "$PG_CLIENTS" -T "$PG_SECS" postgres >"$WORK/logs/pgbench-$t.log" 2>&1 &&
		cpu_end pgbench "$t" && tps=$(pg_tps "$WORK/logs/pgbench-$t.log") && [[ -n $tps ]]; then
		set_result pgbench "$t" "$(printf '%.1f' "$tps")" \
			"$(sed -n 's/^latency average = \(.*\)/latency average \1/p' "$WORK/logs/pgbench-$t.log")"
	else
		log "pgbench on $t FAILED: $(tail -n 5 "$WORK/logs/pgbench-$t.log")"
		fail_result pgbench "$t"
	fi
	pg_stop
	rm -rf -- "$data"
}

# run_target TARGET DIR: every profile in DIR (created here).
run_target() {
	local t=$1 dir=$2 t0=$SECONDS load
	load=$(cut -d ' ' -f 1-3 /proc/loadavg)
	mkdir -p "$dir"
	log "---- target ${TLABEL[$t]}: $dir"
	run_fio_profiles "$t" "$dir"
	run_smallfiles "$t" "$dir"
	run_pgbench "$t" "$dir"
	log "---- target ${TLABEL[$t]} done in $((SECONDS - t0)) s"
	add "time on ${TLABEL[$t]} (load average before)" "$((SECONDS - t0)) s ($load)"
}

# ---- targets ----
for t in "${TARGETS[@]}"; do
	case $t in
	local)
		run_target local "$WORK/local/t-local"
		;;
	passthrough)
		mount_start passthrough "$WORK/mnt-pt" "$WORK/passthrough" "$WORK/local" "$WORK/mnt-pt"
		pt_pid=$LAST_MOUNT_PID
		run_target passthrough "$WORK/mnt-pt/t-pt"
		mount_stop "$pt_pid" "$WORK/mnt-pt"
		;;
	c000 | c001)
		repl=${t#c}
		nvol=1
		[[ $repl == 000 ]] || nvol=2
		cairn_up "$repl" "$nvol"
		mount_start "mount-$repl" "$WORK/mnt-$repl" "$BIN" mount --filer "$FILER" --dir "$WORK/mnt-$repl"
		m_pid=$LAST_MOUNT_PID
		run_target "$t" "$WORK/mnt-$repl/bench"
		mount_stop "$m_pid" "$WORK/mnt-$repl"
		cairn_down
		;;
	*)
		die "unknown target $t (want local, passthrough, c000, c001)"
		;;
	esac
done

# ---- table ----
goal_col() {
	local p=$1 spec want cfgs c r out=""
	spec=${GOAL[$p]:-}
	[[ -n $spec ]] || return 0
	read -r want cfgs <<<"$spec"
	out=">= $want x pt:"
	for c in $cfgs; do
		r=$(ratio "${RES[$p.$c]:-}" "${RES[$p.passthrough]:-}")
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
	printf '%-34s %12s %12s %12s %12s %8s %8s  %s\n' \
		profile local passthrough "cairn 000" "cairn 001" "000/pt" "001/pt" "goal (cairn / passthrough)"
	for p in "${PROFILES[@]}"; do
		printf '%-34s %12s %12s %12s %12s %8s %8s  %s\n' "${PLABEL[$p]}" \
			"${RES[$p.local]:-n/a}" "${RES[$p.passthrough]:-n/a}" "${RES[$p.c000]:-n/a}" "${RES[$p.c001]:-n/a}" \
			"$(ratio "${RES[$p.c000]:-}" "${RES[$p.passthrough]:-}")" \
			"$(ratio "${RES[$p.c001]:-}" "${RES[$p.passthrough]:-}")" \
			"$(goal_col "$p")"
	done
} >"$TABLE"

add "seq file / 4 KiB random runtime / random read cap" "${SEQ_MB} MiB / ${RAND_SECS} s / ${RANDREAD_MB} MiB"
add "small files" "$SMALL_N x 1 KiB (at most ${SMALL_SECS} s), open+write+close each, then syncfs of the scratch disk"
if [[ -n $PG_SKIP ]]; then
	add "pgbench" "skipped: $PG_SKIP"
else
	add "pgbench" "scale $PG_SCALE, $PG_CLIENTS clients, ${PG_SECS} s, synchronous_commit=on, fsync=on"
fi
for p in "${PROFILES[@]}"; do
	for t in "${TARGETS[@]}"; do
		[[ -z ${DETAIL[$p.$t]:-} ]] || add "${PLABEL[$p]%% (*} on ${TLABEL[$t]}" "${DETAIL[$p.$t]}"
		[[ -z ${CPU[$p.$t]:-} ]] || add "${PLABEL[$p]%% (*} on ${TLABEL[$t]}, processes" "${CPU[$p.$t]}"
	done
done
add "total runtime" "$((SECONDS - START)) s"
add "load average at the end" "$(cut -d ' ' -f 1-3 /proc/loadavg) (other work on this machine skews every column)"

{
	echo "cairn FUSE mount benchmark summary"
	printf '%s\n' "${SUMMARY[@]}"
	cat "$TABLE"
	if ((FAILED)); then
		echo "RESULT: at least one mount benchmark profile FAILED (see the log above)"
	else
		echo "RESULT: all mount benchmark profiles completed"
	fi
} >"$WORK/summary.txt"
echo
cat "$WORK/summary.txt"
cat -- "$WORK/summary.txt" >>"$BENCH_OUT"
log "summary appended to $BENCH_OUT"
exit "$FAILED"
