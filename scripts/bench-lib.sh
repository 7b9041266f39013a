# bench-lib.sh: helpers shared by the bench-*.sh scripts. Source it after
# setting BENCH_NAME (the prefix of fatal messages); the helpers use the
# caller's BIN, WORK, PIDS, SUMMARY and WAIT_LIMIT.

log() { printf '== %s\n' "$*" >&2; }

die() {
	printf '%s: %s\n' "$BENCH_NAME" "$*" >&2
	exit 1
}

# add LABEL VALUE: a line of the summary.
add() { SUMMARY+=("$(printf '%-58s %s' "$1:" "$2")"); }

# start NAME ARGS...: run `cairn ARGS...` in the background, its output in
# $WORK/logs/NAME.log, its pid appended to PIDS.
start() {
	local name=$1
	shift
	"$BIN" "$@" >"$WORK/logs/$name.log" 2>&1 &
	PIDS+=("$!")
	log "started $name (pid $!): cairn $*"
}

# wait_for NAME URL PID [GREP]: poll URL until it answers (and its body
# contains GREP, if given) or WAIT_LIMIT seconds pass or PID exits.
wait_for() {
	local name=$1 url=$2 pid=$3 want=${4:-} deadline body
	deadline=$((SECONDS + WAIT_LIMIT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$WORK/logs/$name.log" >&2 || true
			die "$name exited before it was ready (log above)"
		fi
		if body=$(curl -sf --max-time 2 "$url" 2>/dev/null); then
			if [[ -z $want || $body == *"$want"* ]]; then
				return 0
			fi
		fi
		sleep 0.2
	done
	tail -n 30 "$WORK/logs/$name.log" >&2 || true
	die "$name not ready at $url after ${WAIT_LIMIT}s (log above)"
}

# field NAME KEY: KEY's value in benchmark NAME's RESULT line, or n/a.
field() {
	local v
	v=$(grep -h '^RESULT ' "$WORK/logs/$1.out" 2>/dev/null | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p")
	printf '%s\n' "${v:-n/a}"
}
