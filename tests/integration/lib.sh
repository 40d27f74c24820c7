# Shared helpers of the integration tests: TAP output, temporary state
# directories, and starting/stopping fedmeshd with bounded waits. Every
# daemon is started on loopback with port 0 and killed at exit.

: "${FEDMESHD:?FEDMESHD must point at the fedmeshd binary}"
: "${FEDMESH:?FEDMESH must point at the fedmesh binary}"

TAP_N=0
TAP_FAILED=0
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-it.XXXXXX")
DAEMON_PIDS=""

# Root may only run the daemon when it says so explicitly (CI runs as root).
ROOT_FLAG=""
[ "$(id -u)" = 0 ] && ROOT_FLAG="--allow-root"

cleanup_all() {
	for p in $DAEMON_PIDS; do
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$TEST_TMP"
}
trap cleanup_all EXIT INT TERM

ok() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $1"
}

not_ok() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $1"
	shift
	for line in "$@"; do
		printf '%s\n' "$line" | sed 's/^/# /'
	done
}

# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
	desc=$1
	shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		not_ok "$desc" "command: $*" "$out"
	fi
}

tap_done() {
	echo "1..$TAP_N"
	[ "$TAP_FAILED" -eq 0 ]
}

# start_daemon NAME [ARGS...]: starts fedmeshd with state dir
# $TEST_TMP/NAME, waits (10 s at most) for its API address file, and sets
# PID, STATE, API (host:port) and TOKEN.
start_daemon() {
	name=$1
	shift
	STATE=$TEST_TMP/$name
	mkdir -p "$STATE"
	rm -f "$STATE/api.addr"
	"$FEDMESHD" --state-dir "$STATE" --listen 127.0.0.1:0 \
		--api 127.0.0.1:0 $ROOT_FLAG "$@" \
		>>"$TEST_TMP/$name.log" 2>&1 &
	PID=$!
	DAEMON_PIDS="$DAEMON_PIDS $PID"
	i=0
	while [ ! -s "$STATE/api.addr" ]; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
			echo "# fedmeshd $name did not start; its log:"
			sed 's/^/#   /' "$TEST_TMP/$name.log"
			return 1
		fi
		sleep 0.1
	done
	API=$(cat "$STATE/api.addr")
	TOKEN=$(cat "$STATE/api.token")
	return 0
}

# stop_daemon PID: SIGTERM, then wait up to 10 s; sets EXIT_CODE.
stop_daemon() {
	kill -TERM "$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			kill -9 "$1" 2>/dev/null
			EXIT_CODE=timeout
			return 1
		fi
		sleep 0.1
	done
	wait "$1"
	EXIT_CODE=$?
	return 0
}

# http [CURL ARGS...] PATH: curl against the API with a 5 s limit; prints
# the body and then the status code on the last line.
http() {
	curl -s -m 5 -w '\n%{http_code}' "$@"
}
