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

# FEDMESH_WRAPPER: a command fedmeshd is started under, e.g. "valgrind
# --error-exitcode=99" (tests/integration/valgrind.sh); empty by default.
# FEDMESH_START_WAIT_S: how long start_daemon waits for the API (a daemon
# under valgrind starts ten times slower).
FEDMESH_WRAPPER=${FEDMESH_WRAPPER:-}
FEDMESH_START_WAIT_S=${FEDMESH_START_WAIT_S:-10}

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

# In a sanitizer build (build-asan/) a daemon's ASan, LSan or UBSan report
# goes to its log; one that did not stop the daemon, or stopped it where
# no test looked, must still fail the test.
sanitizer_check() {
	reports=$(grep -l -E '^(==[0-9]+==ERROR: (Address|Leak)Sanitizer|.*: runtime error: )' \
		"$TEST_TMP"/*.log 2>/dev/null)
	if [ -n "$reports" ]; then
		for f in $reports; do
			not_ok "no sanitizer report in $(basename "$f")" \
				"$(grep -m1 -A12 -E 'Sanitizer|runtime error' "$f")"
		done
	fi
}

tap_done() {
	sanitizer_check
	echo "1..$TAP_N"
	[ "$TAP_FAILED" -eq 0 ]
}

# start_daemon NAME [ARGS...]: starts fedmeshd (under $FEDMESH_WRAPPER)
# with state dir $TEST_TMP/NAME, waits ($FEDMESH_START_WAIT_S s at most) for
# its API address file, and sets PID, STATE, API (host:port) and TOKEN.
start_daemon() {
	name=$1
	shift
	STATE=$TEST_TMP/$name
	mkdir -p "$STATE"
	rm -f "$STATE/api.addr"
	# shellcheck disable=SC2086 # the wrapper is a command line
	$FEDMESH_WRAPPER "$FEDMESHD" --state-dir "$STATE" --listen 127.0.0.1:0 \
		--api 127.0.0.1:0 $ROOT_FLAG "$@" \
		>>"$TEST_TMP/$name.log" 2>&1 &
	PID=$!
	DAEMON_PIDS="$DAEMON_PIDS $PID"
	i=0
	while [ ! -s "$STATE/api.addr" ]; do
		i=$((i + 1))
		if [ $i -gt $((FEDMESH_START_WAIT_S * 10)) ] || ! kill -0 "$PID" 2>/dev/null; then
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

# stop_daemon PID: SIGTERM, then wait up to $FEDMESH_START_WAIT_S s (10 s
# by default); sets EXIT_CODE.
stop_daemon() {
	kill -TERM "$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt $((FEDMESH_START_WAIT_S * 10)) ]; then
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

# wait_until SECONDS COMMAND...: polls COMMAND every 0.2 s; fails when it
# has not succeeded within SECONDS.
wait_until() {
	tries=$(($1 * 5))
	shift
	n=0
	while ! "$@"; do
		n=$((n + 1))
		[ "$n" -ge "$tries" ] && return 1
		sleep 0.2
	done
	return 0
}

# F STATE_DIR ARGS...: the CLI against the daemon whose state is STATE_DIR.
F() {
	f_state=$1
	shift
	"$FEDMESH" --state-dir "$f_state" "$@"
}

# http [CURL ARGS...] PATH: curl against the API with a 5 s limit; prints
# the body and then the status code on the last line.
http() {
	curl -s -m 5 -w '\n%{http_code}' "$@"
}

# metric API TOKEN REGEX: the sum of the /metrics samples whose line
# matches REGEX (anchored at the start), 0 when none.
metric() {
	curl -s -m 5 -H "Authorization: Bearer $2" "http://$1/metrics" |
		grep -E "^$3" | awk '{ s += $NF } END { printf "%d\n", s }'
}

# proc_kb PID FIELD: a field of /proc/PID/status in kB (VmRSS, VmHWM).
proc_kb() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}

# peer_port API TOKEN: the peer port of a daemon started by start_daemon
# (its listen address in /v1/status that is not the API's).
peer_port() {
	curl -s -m 5 -H "Authorization: Bearer $2" "http://$1/v1/status" |
		grep -o '127\.0\.0\.1:[0-9]*' | grep -v "^$1\$" | head -n1 | cut -d: -f2
}
