#!/usr/bin/env bash
# bench-core.sh: core needle benchmark for `make bench`.
#
# Measures the local disk (dd with every 1 MiB write synced, and fio if it is
# installed), starts one master and two volume servers on loopback with their
# data on the same disk, runs `cairn benchmark` against them and reports
# cairn's numbers and their ratio to the disk baseline.
#
# Environment (all optional):
#   BENCH_DIR          parent of the scratch directory (default /var/tmp; not tmpfs)
#   BENCH_OUT          summary file (default bench-results.txt in the repo root)
#   BENCH_N            needles in the 1 KiB runs (default 20000)
#   BENCH_IP           loopback address for the servers (default 127.0.0.1)
#   BENCH_MASTER_PORT  master HTTP port (default 9333)
#   BENCH_VOL1_PORT    first volume server HTTP port (default 8080)
#   BENCH_VOL2_PORT    second volume server HTTP port (default 8081)
#   CAIRN_BIN          binary to test (default bin/cairn in the repo root)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CAIRN_BIN:-$ROOT/bin/cairn}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
BENCH_N=${BENCH_N:-20000}
IP=${BENCH_IP:-127.0.0.1}
MPORT=${BENCH_MASTER_PORT:-9333}
V1PORT=${BENCH_VOL1_PORT:-8080}
V2PORT=${BENCH_VOL2_PORT:-8081}
MASTER=$IP:$MPORT
WAIT_LIMIT=60

PIDS=()
WORK=""
FAILED=0
SUMMARY=()

BENCH_NAME=bench-core
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $WORK && -d $WORK ]]; then
		rm -rf -- "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ratio A B: A/B with two decimals, "n/a" if either is missing or B is 0.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) { print "n/a"; exit }
		printf "%.2f\n", a / b
	}'
}

now() { date +%s.%N; }

[[ -x $BIN ]] || die "no cairn binary at $BIN (run make build first)"
command -v curl >/dev/null || die "curl is needed to wait for the servers"

PARENT=${BENCH_DIR:-/var/tmp}
mkdir -p -- "$PARENT"
WORK=$(mktemp -d "$PARENT/cairn-bench.XXXXXX")
FSTYPE=$(stat -f -c %T "$WORK" 2>/dev/null || echo unknown)
log "scratch directory $WORK (filesystem $FSTYPE)"
if [[ $FSTYPE == tmpfs ]]; then
	log "warning: $WORK is on tmpfs, the baseline and cairn numbers say nothing about a disk"
fi

add "date" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
add "host" "$(uname -sr), $(nproc 2>/dev/null || echo '?') CPUs"
CAIRN_VERSION=$("$BIN" version 2>/dev/null | head -n 1) || CAIRN_VERSION=unknown
add "cairn" "${CAIRN_VERSION:-unknown}"
add "scratch filesystem" "$FSTYPE"

# ---- 1. disk baseline ----
BASE=$WORK/baseline
mkdir -p "$BASE"
log "baseline: writing 256 MiB of random data"
dd if=/dev/urandom of="$BASE/src" bs=1M count=256 status=none
log "baseline: dd 256 x 1 MiB with oflag=dsync"
t0=$(now)
dd if="$BASE/src" of="$BASE/out" bs=1M oflag=dsync status=none
t1=$(now)
DD_MBS=$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f\n", 268435456 / (t1 - t0) / 1e6 }')
rm -f -- "$BASE/out"
add "baseline dd 1MiB oflag=dsync write MB/s (10^6 B/s)" "$DD_MBS"

FIO_MBS=n/a
if command -v fio >/dev/null; then
	log "baseline: fio sequential 1 MiB writes with fdatasync"
	mkdir -p "$BASE/fio"
	if fio --name=seq --rw=write --bs=1M --size=256M --fdatasync=1 \
		--directory="$BASE/fio" --output-format=json >"$BASE/fio.json" 2>"$BASE/fio.err"; then
		bw=$(grep -o '"bw_bytes"[[:space:]]*:[[:space:]]*[0-9]*' "$BASE/fio.json" |
			awk -F: '{ v = $2 + 0; if (v > m) m = v } END { print m + 0 }')
		FIO_MBS=$(awk -v b="$bw" 'BEGIN { printf "%.2f\n", b / 1e6 }')
	else
		log "fio failed: $(tail -n 3 "$BASE/fio.err")"
	fi
	rm -rf -- "$BASE/fio"
	add "baseline fio 1MiB fdatasync write MB/s" "$FIO_MBS"
else
	log "fio is not installed: fio baseline skipped"
	add "baseline fio 1MiB fdatasync write MB/s" "skipped (fio not installed)"
fi
rm -f -- "$BASE/src"

# ---- 2. servers ----
D=$WORK/data
mkdir -p "$D/m" "$D/v1" "$D/v2" "$WORK/logs"

start master master --dir "$D/m" --ip "$IP" --port "$MPORT" --default-replication 000
MPID=${PIDS[-1]}
start volume1 volume --dir "$D/v1" --ip "$IP" --port "$V1PORT" --master "$MASTER" --max 20 --dc dc1 --rack r1
V1PID=${PIDS[-1]}
start volume2 volume --dir "$D/v2" --ip "$IP" --port "$V2PORT" --master "$MASTER" --max 20 --dc dc1 --rack r1
V2PID=${PIDS[-1]}

wait_for master "http://$MASTER/readyz" "$MPID"
wait_for volume1 "http://$IP:$V1PORT/healthz" "$V1PID"
wait_for volume2 "http://$IP:$V2PORT/healthz" "$V2PID"
# Both volume servers have registered once the master can place two copies.
wait_for master "http://$MASTER/dir/assign?replication=001" "$MPID" '"fid"'
log "servers ready"

# ---- 3. benchmarks ----
# bench NAME ARGS...: run one benchmark; its report goes to stdout and
# logs/NAME.out, its RESULT line is kept for field().
bench() {
	local name=$1 rc
	shift
	log "benchmark $name: cairn benchmark --master $MASTER $*"
	set +e
	"$BIN" benchmark --master "$MASTER" "$@" | tee "$WORK/logs/$name.out"
	rc=${PIPESTATUS[0]}
	set -e
	if ((rc != 0)); then
		log "benchmark $name FAILED (exit $rc)"
		FAILED=1
		add "$name status" "FAILED (exit $rc)"
	fi
}

bench small-000 -n "$BENCH_N" -c 16 --size 1024 --replication 000
bench small-001 -n "$BENCH_N" -c 16 --size 1024 --replication 001
bench large-c1 -n 256 -c 1 --size 1048576 --replication 000
bench large-c4 -n 256 -c 4 --size 1048576 --replication 000

for run in small-000 small-001; do
	repl=${run#small-}
	add "1KiB x $BENCH_N, c16, repl $repl: write req/s" "$(field "$run" write_req_per_sec)"
	add "1KiB x $BENCH_N, c16, repl $repl: write p50 / p99 ms" "$(field "$run" write_p50_ms) / $(field "$run" write_p99_ms)"
	add "1KiB x $BENCH_N, c16, repl $repl: read req/s" "$(field "$run" read_req_per_sec)"
	add "1KiB x $BENCH_N, c16, repl $repl: read p50 / p99 ms" "$(field "$run" read_p50_ms) / $(field "$run" read_p99_ms)"
	add "1KiB x $BENCH_N, c16, repl $repl: errors / corrupt reads" "$(field "$run" errors) / $(field "$run" corrupt_reads)"
done
add "1KiB write req/s ratio repl 001 / repl 000" \
	"$(ratio "$(field small-001 write_req_per_sec)" "$(field small-000 write_req_per_sec)")"

for c in 1 4; do
	run=large-c$c
	w=$(field "$run" write_mb_per_sec)
	add "1MiB x 256, c$c, repl 000: write MB/s" "$w"
	add "1MiB x 256, c$c, repl 000: write p50 / p99 ms" "$(field "$run" write_p50_ms) / $(field "$run" write_p99_ms)"
	add "1MiB x 256, c$c, repl 000: read MB/s" "$(field "$run" read_mb_per_sec)"
	add "1MiB x 256, c$c, repl 000: errors / corrupt reads" "$(field "$run" errors) / $(field "$run" corrupt_reads)"
	add "ratio 1MiB c$c write MB/s / dd dsync MB/s" "$(ratio "$w" "$DD_MBS")"
	if [[ $FIO_MBS != n/a ]]; then
		add "ratio 1MiB c$c write MB/s / fio fdatasync MB/s" "$(ratio "$w" "$FIO_MBS")"
	fi
done

# ---- 4. summary ----
{
	echo "cairn core benchmark summary"
	printf '%s\n' "${SUMMARY[@]}"
	if ((FAILED)); then
		echo "RESULT: at least one benchmark run FAILED (see its report above)"
	else
		echo "RESULT: all benchmark runs completed without errors"
	fi
} >"$WORK/summary.txt"
echo
cat "$WORK/summary.txt"
cp -- "$WORK/summary.txt" "$BENCH_OUT"
log "summary written to $BENCH_OUT"
exit "$FAILED"
