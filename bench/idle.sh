#!/bin/sh
# Idle footprint of fedmeshd: memory, CPU time and wakeups with no traffic.
#
# Why it exists: fedmeshd is meant to run all day on laptops and small boxes,
# where an idle daemon must cost (almost) nothing: no polling, no periodic
# busy work, a small resident set. docs/benchmarks.md may only quote numbers
# that a command measured on a stated machine; this is that command. It
# starts its own fedmeshd (temporary state directory, loopback, ports chosen
# by the kernel, no peers), lets it settle for 5 s, then watches it for
# DURATION seconds through /proc only (it sends nothing to the daemon):
#   - CPU time: utime + stime delta from /proc/PID/stat, in ms and as a
#     share of the window;
#   - wakeups: voluntary + nonvoluntary context switches delta, summed over
#     the daemon's threads (/proc/PID/task/*/status; with one thread this is
#     /proc/PID/status); every return from epoll_wait is one of these;
#   - memory at the end: VmRSS and VmHWM from /proc/PID/status.
# Then it stops the daemon with SIGTERM. Every step runs under timeout(1)
# and an exit trap stops the daemon.
#
# Usage: bench/idle.sh [FEDMESHD]
#   FEDMESHD (env or first argument)  fedmeshd binary
#                                     (default: build/src/daemon/fedmeshd
#                                     under the repository root)
#   DURATION  measured seconds (default 60)
# Runs from any directory.
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
	echo "idle.sh: unknown option '$1' (see --help)" >&2
	exit 2
	;;
esac
[ $# -le 1 ] || {
	echo "idle.sh: at most one argument, the fedmeshd binary (see --help)" >&2
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

duration=${DURATION:-60}
settle=5
case "$duration" in *[!0-9]* | '')
	echo "idle.sh: DURATION must be a whole number of seconds" >&2
	exit 2
	;;
esac
[ "$duration" -ge 1 ] || {
	echo "idle.sh: DURATION must be at least 1" >&2
	exit 2
}
[ -x "$fedmeshd" ] || {
	echo "idle.sh: no fedmeshd binary at $fedmeshd (build it, or pass its path)" >&2
	exit 1
}

state=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-idle.XXXXXX")
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
		echo "idle.sh: fedmeshd ignored SIGTERM for 10 s; killing it" >&2
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
echo "fedmeshd=$fedmeshd"
echo "fedmeshd_version=$("$fedmeshd" --version 2>&1 | head -n 1 || true)"

# ---- the daemon ----------------------------------------------------------
set -- --state-dir "$state" --listen 127.0.0.1:0 --api 127.0.0.1:0
[ "$(id -u)" != 0 ] || set -- "$@" --allow-root
# Hard bound on the daemon's life even if this script is killed outright.
timeout -k 5 $((duration + settle + 120)) "$fedmeshd" "$@" >"$state/fedmeshd.log" 2>&1 &
wrapper_pid=$!

# Wait (at most 10 s) for api.addr: the daemon is then fully up.
i=0
while [ ! -s "$state/api.addr" ]; do
	if ! kill -0 "$wrapper_pid" 2>/dev/null || [ "$i" -ge 100 ]; then
		echo "idle.sh: fedmeshd did not publish its API address; its log:" >&2
		cat "$state/fedmeshd.log" >&2
		exit 1
	fi
	sleep 0.1
	i=$((i + 1))
done
daemon_pid=$(pgrep -P "$wrapper_pid" | head -n 1 || true)
if [ -z "$daemon_pid" ] || [ ! -r "/proc/$daemon_pid/stat" ]; then
	echo "idle.sh: cannot find the fedmeshd process under timeout(1)" >&2
	exit 1
fi
echo "fedmeshd_pid=$daemon_pid"
echo "command=$fedmeshd $*"

# utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat, for the
# whole thread group; the command name in field 2 cannot contain ") " here).
cpu_ticks() {
	sed 's/^.*) //' "/proc/$daemon_pid/stat" | awk '{ print $12 + $13 }'
}

# Context switches of all threads (voluntary + nonvoluntary).
ctxt_switches() {
	cat /proc/"$daemon_pid"/task/*/status |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

status_kb() {
	awk -v key="$1:" '$1 == key { print $2 }' "/proc/$daemon_pid/status"
}

echo "== settle ${settle} s, then measure ${DURATION:-60} s"
timeout 30 sleep "$settle"
kill -0 "$daemon_pid" 2>/dev/null || {
	echo "idle.sh: fedmeshd exited while settling; its log:" >&2
	cat "$state/fedmeshd.log" >&2
	exit 1
}
t0=$(cpu_ticks)
c0=$(ctxt_switches)
up0=$(cut -d' ' -f1 /proc/uptime)
timeout $((duration + 30)) sleep "$duration"
t1=$(cpu_ticks)
c1=$(ctxt_switches)
up1=$(cut -d' ' -f1 /proc/uptime)
rss_kb=$(status_kb VmRSS)
hwm_kb=$(status_kb VmHWM)
threads=$(status_kb Threads)

echo "== results"
awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v u0="$up0" -v u1="$up1" \
	-v hz="$(getconf CLK_TCK)" -v rss="$rss_kb" -v hwm="$hwm_kb" -v thr="$threads" 'BEGIN {
	win = u1 - u0
	cpu_ms = (t1 - t0) * 1000 / hz
	printf "window_s=%.2f\n", win
	printf "threads=%d\n", thr
	printf "vmrss_kb=%d\n", rss
	printf "vmhwm_kb=%d\n", hwm
	printf "vmrss_mib=%.2f\n", rss / 1024
	printf "vmhwm_mib=%.2f\n", hwm / 1024
	printf "cpu_ms=%d\n", cpu_ms
	printf "cpu_resolution_ms=%d\n", 1000 / hz
	printf "cpu_pct=%.4f\n", 100 * cpu_ms / 1000 / win
	printf "wakeups=%d\n", c1 - c0
	printf "wakeups_per_s=%.2f\n", (c1 - c0) / win
}'
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"

stop_daemon
echo "daemon_exit_status=$daemon_status"
if grep -E ' (warn|error) ' "$state/fedmeshd.log" >/dev/null; then
	echo "== daemon warnings and errors"
	grep -E ' (warn|error) ' "$state/fedmeshd.log" | head -n 20
fi
