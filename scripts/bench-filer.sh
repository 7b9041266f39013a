#!/usr/bin/env bash
# bench-filer.sh: filer metadata benchmark for `make bench`.
#
# Starts one master and one filer on loopback and runs the metadata
# benchmark (create, stat, rename, unlink of N files, then listing of a
# directory of 10k entries) at concurrency 1 and 16; then starts a group of
# three filers on 127.0.0.11-13 and runs the same benchmarks against all
# three addresses. The ops/s per phase and configuration are appended to
# the summary file and printed.
#
# Environment (all optional):
#   BENCH_DIR           parent of the scratch directory (default /var/tmp; not tmpfs)
#   BENCH_OUT           summary file, appended to (default bench-results.txt in the repo root)
#   BENCH_META_N        files per phase (default 10000)
#   BENCH_META_LIST     entries of the listed directory (default 10000)
#   BENCH_MASTER_PORT   master HTTP port (default 9333)
#   BENCH_FILER_PORT    filer HTTP port (default 8888; gRPC +10000, Raft +20000)
#   CAIRN_BIN           binary to test (default bin/cairn in the repo root)
#   CAIRN_META_CMD      command running the metadata benchmark
#                       (default "$CAIRN_BIN benchmark meta"); split on spaces
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CAIRN_BIN:-$ROOT/bin/cairn}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
N=${BENCH_META_N:-10000}
LIST=${BENCH_META_LIST:-10000}
MPORT=${BENCH_MASTER_PORT:-9333}
FPORT=${BENCH_FILER_PORT:-8888}
read -r -a META_CMD <<<"${CAIRN_META_CMD:-$BIN benchmark meta}"
MASTER=127.0.0.1:$MPORT
SINGLE=127.0.0.1:$FPORT
GROUP=127.0.0.11:$FPORT,127.0.0.12:$FPORT,127.0.0.13:$FPORT
WAIT_LIMIT=60
PHASES=(create stat rename unlink create_shared unlink_shared)

PIDS=()
WORK=""
FAILED=0
SUMMARY=()

BENCH_NAME=bench-filer
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# stop_pid PID: SIGTERM, up to 10s grace, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	if [[ -n $WORK && -d $WORK ]]; then
		rm -rf -- "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x $BIN ]] || die "no cairn binary at $BIN (run make build first)"
command -v curl >/dev/null || die "curl is needed to wait for the servers"
[[ ${#META_CMD[@]} -gt 0 ]] || die "CAIRN_META_CMD is empty"

PARENT=${BENCH_DIR:-/var/tmp}
mkdir -p -- "$PARENT"
WORK=$(mktemp -d "$PARENT/cairn-bench-filer.XXXXXX")
FSTYPE=$(stat -f -c %T "$WORK" 2>/dev/null || echo unknown)
log "scratch directory $WORK (filesystem $FSTYPE)"
if [[ $FSTYPE == tmpfs ]]; then
	log "warning: $WORK is on tmpfs, the numbers say nothing about a disk"
fi
D=$WORK/data
mkdir -p "$D" "$WORK/logs"

add "date" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
add "host" "$(uname -sr), $(nproc 2>/dev/null || echo '?') CPUs"
CAIRN_VERSION=$("$BIN" version 2>/dev/null | head -n 1) || CAIRN_VERSION=unknown
add "cairn" "${CAIRN_VERSION:-unknown}"
add "scratch filesystem" "$FSTYPE"
add "files per phase / entries listed" "$N / $LIST"

# forget PID: stop a server and drop it from the cleanup list.
forget() {
	local pid=$1 p keep=()
	stop_pid "$pid"
	for p in "${PIDS[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# bench NAME FILERS C: run the metadata benchmark; its report goes to
# stdout and logs/NAME.out, its RESULT line is kept for field().
bench() {
	local name=$1 filers=$2 c=$3 rc
	log "benchmark $name: ${META_CMD[*]} --filer $filers -n $N -c $c --list-entries $LIST"
	set +e
	"${META_CMD[@]}" --filer "$filers" -n "$N" -c "$c" --list-entries "$LIST" | tee "$WORK/logs/$name.out"
	rc=${PIPESTATUS[0]}
	set -e
	if ((rc != 0)); then
		log "benchmark $name FAILED (exit $rc)"
		FAILED=1
		add "$name status" "FAILED (exit $rc)"
	fi
}

# report NAME LABEL: the summary lines of benchmark NAME.
report() {
	local name=$1 label=$2 p
	for p in "${PHASES[@]}"; do
		add "$label: $p ops/s (p50 / p99 ms)" \
			"$(field "$name" "${p}_ops_per_sec") ($(field "$name" "${p}_p50_ms") / $(field "$name" "${p}_p99_ms"))"
	done
	add "$label: readdir entries/s, ms per full listing" \
		"$(field "$name" readdir_entries_per_sec), $(field "$name" readdir_listing_ms)"
	add "$label: errors" "$(field "$name" errors)"
}

# ---- 1. one master, one filer ----
start master master --dir "$D/m" --ip 127.0.0.1 --port "$MPORT"
MPID=${PIDS[-1]}
wait_for master "http://$MASTER/readyz" "$MPID"
start filer filer --dir "$D/f1" --ip 127.0.0.1 --port "$FPORT" --master "$MASTER"
FPID=${PIDS[-1]}
wait_for filer "http://$SINGLE/readyz" "$FPID"
log "single filer ready"

bench single-c1 "$SINGLE" 1
bench single-c16 "$SINGLE" 16
forget "$FPID"

# ---- 2. three filers in one Raft group ----
GPIDS=()
for i in 1 2 3; do
	start "filer3-$i" filer --dir "$D/f3-$i" --ip "127.0.0.1$i" --port "$FPORT" --master "$MASTER" --peers "$GROUP"
	GPIDS+=("${PIDS[-1]}")
done
for i in 1 2 3; do
	wait_for "filer3-$i" "http://127.0.0.1$i:$FPORT/readyz" "${GPIDS[i - 1]}"
done
log "filer group ready: $GROUP"

bench group-c1 "$GROUP" 1
bench group-c16 "$GROUP" 16

report single-c1 "meta 1 filer, c1"
report single-c16 "meta 1 filer, c16"
report group-c1 "meta 3 filers, c1"
report group-c16 "meta 3 filers, c16"

# ---- 3. summary ----
{
	echo "cairn filer metadata benchmark summary"
	printf '%s\n' "${SUMMARY[@]}"
	if ((FAILED)); then
		echo "RESULT: at least one metadata benchmark run FAILED (see its report above)"
	else
		echo "RESULT: all metadata benchmark runs completed without errors"
	fi
} >"$WORK/summary.txt"
echo
cat "$WORK/summary.txt"
cat -- "$WORK/summary.txt" >>"$BENCH_OUT"
log "summary appended to $BENCH_OUT"
exit "$FAILED"
