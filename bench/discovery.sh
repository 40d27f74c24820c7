#!/bin/sh
# Local discovery: how long two fresh nodes on one LAN take to meet, and
# how many discovery packets they send once they have.
#
# Why it exists: the issue's target is an established session between two
# nodes of one federation in under 1 s from the start of the second one,
# with no address typed; docs/benchmarks.md may only quote numbers a
# command measured. It builds the LAN of tests/integration/netns-lib.sh
# (a bridge and two hosts in network namespaces of its own, 10.77.0.0/24;
# nothing outside them is touched), so it must run as root.
#
# 1. Time to session. A starts and settles for SETTLE seconds, then B
#    starts with `--join` of A's key-only invite (`fedmesh invite
#    --no-addresses`): t0 is taken just before B is spawned, t1 is the
#    timestamp of B's first debug log line saying that A's peer entry
#    became "connected" (the daemon logs every peer state change at
#    --log-level debug, with millisecond timestamps from the same wall
#    clock). Repeated RUNS times for each mode, each time with two fresh
#    nodes: both mechanisms (default), mDNS alone (--no-beacon on both),
#    beacon alone (--no-mdns on both).
# 2. Steady-state packet counts. With A and B connected (default config),
#    the discovery counters of /metrics are read 10 s after B started and
#    then at the end of WINDOWS consecutive windows of WINDOW seconds: the
#    differences, per node, scaled to one minute. (The mDNS querier backs
#    off 1 s, 2 s, 4 s ... up to an hour, so the rate keeps falling; the
#    windows show how fast. "Received" includes a node's own multicasts,
#    which come back to it by IP_MULTICAST_LOOP.)
#
# Usage: bench/discovery.sh [FEDMESHD [FEDMESH]]
#   FEDMESHD, FEDMESH (env or arguments)  the binaries (default:
#                    build/src/daemon/fedmeshd and build/src/cli/fedmesh
#                    under the repository root)
#   RUNS     runs per mode (default 10)
#   SETTLE   seconds A runs before each B (default 3)
#   WINDOW   seconds of each steady-state window (default 60)
#   WINDOWS  number of windows (default 3)
# Runs from any directory. Every wait is bounded; an exit trap stops the
# daemons and deletes the namespaces.
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
	echo "discovery.sh: unknown option '$1' (see --help)" >&2
	exit 2
	;;
esac

here=$(pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
abs() {
	case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac
}
FEDMESHD=$(abs "${1:-${FEDMESHD:-$root/build/src/daemon/fedmeshd}}")
FEDMESH=$(abs "${2:-${FEDMESH:-$root/build/src/cli/fedmesh}}")
export FEDMESHD FEDMESH
RUNS=${RUNS:-10}
SETTLE=${SETTLE:-3}
WINDOW=${WINDOW:-60}
WINDOWS=${WINDOWS:-3}
for v in "$RUNS" "$SETTLE" "$WINDOW" "$WINDOWS"; do
	case "$v" in *[!0-9]* | '' | 0)
		echo "discovery.sh: RUNS, SETTLE, WINDOW and WINDOWS must be positive integers" >&2
		exit 2
		;;
	esac
done
[ -x "$FEDMESHD" ] && [ -x "$FEDMESH" ] || {
	echo "discovery.sh: $FEDMESHD or $FEDMESH is not an executable (build first)" >&2
	exit 2
}

set +e
. "$root/tests/integration/netns-lib.sh"
if ! why=$(netns_available); then
	echo "discovery.sh: cannot run: $why" >&2
	exit 1
fi
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-bench.XXXXXX")
DAEMON_PIDS=""
cleanup() {
	for p in $DAEMON_PIDS; do
		kill "$p" 2>/dev/null
	done
	lan_cleanup
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT INT TERM

stop() {
	kill -TERM "$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# log_ms LINE: the log line's timestamp (2026-11-23T05:29:36.705Z) in Unix ms.
log_ms() {
	date -u -d "$(echo "$1" | cut -c1-24)" +%s%3N
}

echo "# fedmesh local discovery benchmark"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc) cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
	"kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "fedmeshd: $FEDMESHD ($("$FEDMESHD" --version))"
echo "command: RUNS=$RUNS SETTLE=$SETTLE WINDOW=$WINDOW WINDOWS=$WINDOWS $0 $*"
echo

lan_setup 2 || {
	echo "discovery.sh: cannot build the namespaces" >&2
	exit 1
}

# time_runs MODE FLAGS...: RUNS measurements for one mode, each with a
# fresh pair (new state directories, so new identities; a node that reuses
# the address of a departed one is another case, see docs/DISCOVERY.md);
# prints one line per run and a summary.
time_runs() {
	mode=$1
	shift
	results=""
	run=1
	while [ "$run" -le "$RUNS" ]; do
		lan_daemon_start "a-$mode-$run" 1 --log-level debug "$@" || exit 1
		A_PID=$PID A_STATE=$STATE
		A_ID=$(lan_cli 1 "$A_STATE" id)
		invite=$(lan_cli 1 "$A_STATE" invite --no-addresses)
		sleep "$SETTLE"
		name=b-$mode-$run
		mkdir -p "$TEST_TMP/$name"
		t0=$(now_ms)
		ip netns exec "$(lan_host_ns 2)" "$FEDMESHD" --state-dir "$TEST_TMP/$name" \
			--api 127.0.0.1:0 --allow-root --log-level debug --join "$invite" "$@" \
			>"$TEST_TMP/$name.log" 2>&1 </dev/null &
		B_PID=$!
		DAEMON_PIDS="$DAEMON_PIDS $B_PID"
		line=""
		i=0
		while [ -z "$line" ] && [ $i -lt 100 ]; do
			sleep 0.1
			line=$(grep -m1 "peer $(echo "$A_ID" | cut -c1-16) connected" "$TEST_TMP/$name.log")
			i=$((i + 1))
		done
		if [ -z "$line" ]; then
			ms="timeout"
		else
			ms=$(($(log_ms "$line") - t0))
			results="$results $ms"
		fi
		src=$(echo "$line" | sed -n 's/.*(source \([a-z]*\)).*/\1/p')
		echo "  $mode run $run: ${ms} ms (B's entry for A from: ${src:-?})"
		stop "$B_PID"
		stop "$A_PID"
		run=$((run + 1))
	done
	echo "$results" | tr ' ' '\n' | grep -v '^$' | sort -n | awk -v m="$mode" '
		{ v[NR] = $1; s += $1 }
		END {
			if (NR == 0) { print "  " m ": no run connected"; exit }
			med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "  %s: n=%d min=%d median=%s mean=%.0f max=%d ms\n", m, NR, v[1], med, s / NR, v[NR]
		}'
}

echo "## time from starting B to an established session"
time_runs default
time_runs mdns-only --no-beacon
time_runs beacon-only --no-mdns
echo

echo "## packets per minute at steady state (default config, per node)"
lan_daemon_start sa 1 || exit 1
SA=$STATE
SA_PID=$PID
invite=$(lan_cli 1 "$SA" invite --no-addresses)
sleep "$SETTLE"
lan_daemon_start sb 2 --join "$invite" || exit 1
SB=$STATE
SB_PID=$PID
metrics="fedmesh_mdns_packets_sent_total fedmesh_mdns_packets_received_total fedmesh_beacons_sent_total fedmesh_beacons_received_total"
sleep 10
for m in $metrics; do
	eval "a0_$m=$(lan_metric 1 "$SA" "$m")"
	eval "b0_$m=$(lan_metric 2 "$SB" "$m")"
done
w=1
while [ "$w" -le "$WINDOWS" ]; do
	sleep "$WINDOW"
	echo "  window $w: from $((10 + (w - 1) * WINDOW)) s to $((10 + w * WINDOW)) s after B started"
	for m in $metrics; do
		a1=$(lan_metric 1 "$SA" "$m")
		b1=$(lan_metric 2 "$SB" "$m")
		eval "a0=\$a0_$m b0=\$b0_$m"
		echo "    $m: A $(((a1 - a0) * 60 / WINDOW))/min, B $(((b1 - b0) * 60 / WINDOW))/min" \
			"(totals: A $a1, B $b1)"
		eval "a0_$m=$a1 b0_$m=$b1"
	done
	w=$((w + 1))
done
echo "  peers connected at the end: A $(lan_metric 1 "$SA" fedmesh_peers_connected), B $(lan_metric 2 "$SB" fedmesh_peers_connected)"
stop "$SB_PID"
stop "$SA_PID"
