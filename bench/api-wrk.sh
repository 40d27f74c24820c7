#!/bin/sh
# Load test of fedmeshd's local HTTP API: GET /v1/status under wrk.
#
# Why it exists: docs/benchmarks.md may only quote numbers that a command
# measured on a stated machine. This is that command for the API: it starts
# its own fedmeshd (temporary state directory, loopback, ports chosen by the
# kernel), warms it up for 2 s, runs wrk, prints the machine, the exact wrk
# command and the results (wrk's report plus key=value lines from
# bench/wrk-report.lua), and stops the daemon with SIGTERM. Nothing outlives
# it: every step runs under timeout(1) and an exit trap stops the daemon.
#
# Usage: bench/api-wrk.sh [FEDMESHD]
#   FEDMESHD (env or first argument)  fedmeshd binary
#                                     (default: build/src/daemon/fedmeshd
#                                     under the repository root)
#   CONNS     wrk connections (default 32)
#   DURATION  measured seconds (default 10)
# Needs wrk (scripts/deps.sh --bench). Runs from any directory.
set -eu

usage() {
	sed -n '2,/^set -eu$/p' "$0" | sed -e '/^set -eu$/d' -e 's/^# \{0,1\}//'
}

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
-*)
	echo "api-wrk.sh: unknown option '$1' (see --help)" >&2
	exit 2
	;;
esac
[ $# -le 1 ] || {
	echo "api-wrk.sh: at most one argument, the fedmeshd binary (see --help)" >&2
	exit 2
}

here=$(pwd)
root=$(cd "$(dirname "$0")/.." && pwd)

fedmeshd=${1:-${FEDMESHD:-build/src/daemon/fedmeshd}}
# A path given by the caller is relative to where they are; the default is
# relative to the repository root, where everything below runs.
if [ -n "${1:-${FEDMESHD:-}}" ]; then
	case "$fedmeshd" in /*) ;; *) fedmeshd="$here/$fedmeshd" ;; esac
fi
cd "$root"

conns=${CONNS:-32}
duration=${DURATION:-10}
case "$conns$duration" in *[!0-9]* | '')
	echo "api-wrk.sh: CONNS and DURATION must be whole numbers" >&2
	exit 2
	;;
esac
if [ "$conns" -lt 2 ] || [ "$duration" -lt 1 ]; then
	echo "api-wrk.sh: need CONNS >= 2 (wrk -t2) and DURATION >= 1" >&2
	exit 2
fi
[ -x "$fedmeshd" ] || {
	echo "api-wrk.sh: no fedmeshd binary at $fedmeshd (build it, or pass its path)" >&2
	exit 1
}
command -v wrk >/dev/null || {
	echo "api-wrk.sh: wrk is not installed (scripts/deps.sh --bench)" >&2
	exit 1
}

state=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-bench.XXXXXX")
wrapper_pid=""
daemon_pid=""

# Stops the daemon (SIGTERM, then SIGKILL after 10 s) and reaps the timeout
# wrapper; sets daemon_status.
stop_daemon() {
	daemon_status=""
	[ -n "$wrapper_pid" ] || return 0
	if [ -n "$daemon_pid" ]; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
	else
		kill -TERM "$wrapper_pid" 2>/dev/null || true
	fi
	i=0
	while kill -0 "$wrapper_pid" 2>/dev/null && [ "$i" -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$wrapper_pid" 2>/dev/null; then
		echo "api-wrk.sh: fedmeshd ignored SIGTERM for 10 s; killing it" >&2
		[ -z "$daemon_pid" ] || kill -KILL "$daemon_pid" 2>/dev/null || true
		kill -KILL "$wrapper_pid" 2>/dev/null || true
	fi
	daemon_status=0
	wait "$wrapper_pid" || daemon_status=$?
	wrapper_pid=""
	daemon_pid=""
}

cleanup() {
	stop_daemon
	rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the machine ---------------------------------------------------------
cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
echo "== machine"
echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc=$(nproc)"
echo "cpu_model=${cpu_model:-unknown}"
echo "kernel=$(uname -r)"
echo "debian=$(cat /etc/debian_version 2>/dev/null || echo unknown)"
echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk=$(wrk -v 2>&1 | head -n 1 || true)"
echo "fedmeshd=$fedmeshd"
echo "fedmeshd_version=$("$fedmeshd" --version 2>&1 | head -n 1 || true)"

# ---- the daemon ----------------------------------------------------------
set -- --state-dir "$state" --listen 127.0.0.1:0 --api 127.0.0.1:0
[ "$(id -u)" != 0 ] || set -- "$@" --allow-root
# Hard bound on the daemon's life even if this script is killed outright.
timeout -k 5 $((duration + 120)) "$fedmeshd" "$@" >"$state/fedmeshd.log" 2>&1 &
wrapper_pid=$!

# Wait (at most 10 s) for api.addr and api.token.
i=0
while [ ! -s "$state/api.addr" ] || [ ! -s "$state/api.token" ]; do
	if ! kill -0 "$wrapper_pid" 2>/dev/null || [ "$i" -ge 100 ]; then
		echo "api-wrk.sh: fedmeshd did not publish its API address; its log:" >&2
		cat "$state/fedmeshd.log" >&2
		exit 1
	fi
	sleep 0.1
	i=$((i + 1))
done
daemon_pid=$(pgrep -P "$wrapper_pid" | head -n 1 || true)
addr=$(head -n 1 "$state/api.addr" | tr -d '[:space:]')
case "$addr" in
127.*:[0-9]* | '[::1]':[0-9]*) ;;
*)
	echo "api-wrk.sh: API address '$addr' is not loopback; refusing" >&2
	exit 1
	;;
esac
FEDMESH_TOKEN=$(head -n 1 "$state/api.token" | tr -d '[:space:]')
export FEDMESH_TOKEN
url="http://$addr/v1/status"
echo "fedmeshd_pid=$daemon_pid"
echo "daemon_command=$fedmeshd $*"

cpu_ticks() {
	# utime + stime of the daemon, in clock ticks (fields 14 and 15; the
	# command name in field 2 cannot contain ") " here).
	sed 's/^.*) //' "/proc/$daemon_pid/stat" | awk '{ print $12 + $13 }'
}

# ---- warm-up (2 s, not reported) ------------------------------------------
echo "== warm-up"
echo "command=wrk -t2 -c$conns -d2s --latency -s bench/wrk-report.lua $url"
timeout -k 5 30 wrk -t2 -c"$conns" -d2s --latency -s bench/wrk-report.lua "$url" |
	grep -E '^(requests_per_s|errors)=' | sed 's/^/warmup_/'

# ---- the measured run -------------------------------------------------------
echo "== run"
echo "command=FEDMESH_TOKEN=\$(cat STATE/api.token) wrk -t2 -c$conns -d${duration}s --latency -s bench/wrk-report.lua $url"
t0=""
[ -z "$daemon_pid" ] || t0=$(cpu_ticks)
up0=$(cut -d' ' -f1 /proc/uptime)
timeout -k 5 $((duration + 60)) \
	wrk -t2 -c"$conns" -d"${duration}s" --latency -s bench/wrk-report.lua "$url"
up1=$(cut -d' ' -f1 /proc/uptime)
if [ -n "$t0" ]; then
	t1=$(cpu_ticks)
	# Share of one core the daemon (one loop thread) used during the run.
	awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v u0="$up0" -v u1="$up1" \
		'BEGIN { printf "daemon_cpu_pct_of_one_core=%.1f\n", 100 * (t1 - t0) / hz / (u1 - u0) }'
fi
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"

stop_daemon
echo "daemon_exit_status=$daemon_status"
if grep -E ' (warn|error) ' "$state/fedmeshd.log" >/dev/null; then
	echo "== daemon warnings and errors"
	grep -E ' (warn|error) ' "$state/fedmeshd.log" | head -n 20
fi
