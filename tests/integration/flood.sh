#!/bin/sh
# Garbage and flood (issue 8): while 200 jobs run on two joined daemons,
# node A's peer port gets 100,000 random or mutated UDP datagrams and 400
# TCP connections that send garbage or nothing, from four other loopback
# addresses. A must stay up, keep its memory bounded, finish every job,
# keep its session with B, and count what it dropped. Loopback only, TAP
# output, every wait bounded (about 30 s in all).
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

: "${FEDMESH_FLOOD:?FEDMESH_FLOOD must point at tests/tools/fedmesh-flood}"

DATAGRAMS=100000
# Connections per flooding address, and the addresses (all loopback: the
# daemons talk among themselves from 127.0.0.1, the flood comes from
# elsewhere, as an outsider's would).
CONNECTIONS=100
SOURCES="127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5"
JOBS=200
JOB_CLIENTS=4
JOBS_WITHIN_S=60

start_daemon a --no-mdns --no-beacon || { not_ok "A starts"; tap_done; exit 1; }
A_PID=$PID A_STATE=$STATE A_API=$API A_TOKEN=$TOKEN
start_daemon b --no-mdns --no-beacon --join "$(F "$A_STATE" invite)" ||
	{ not_ok "B starts"; tap_done; exit 1; }
B_PID=$PID B_STATE=$STATE
connected() { F "$A_STATE" peers --json 2>/dev/null | grep -q '"state": "connected"'; }
if wait_until 15 connected; then
	ok "A and B are connected before the flood"
else
	not_ok "A and B are connected before the flood" "$(F "$A_STATE" peers 2>&1)"
fi
PORT=$(peer_port "$A_API" "$A_TOKEN")

# Warm up (allocator arenas, sqlite's page cache, the thread pool) so the
# baseline is the daemon at work, not the daemon just started.
for i in $(seq 1 40); do
	printf 'warm-%s' "$i" | F "$A_STATE" run echo >/dev/null 2>&1
done
RSS0=$(proc_kb "$A_PID" VmRSS)
DROP0=$(metric "$A_API" "$A_TOKEN" 'fedmesh_(dht_)?datagrams_dropped_total')
BADMAC0=$(metric "$A_API" "$A_TOKEN" 'fedmesh_session_errors_total\{reason="(bad_mac|bad_handshake|oversize)"\}')

# ---- the jobs, submitted while the flood runs -------------------------------------
# Client c submits jobs c, c + 4, ...: echo of its ID, or a 50 ms sleep,
# and records "ID STATE OUTPUT" once each is final.
submit_jobs() {
	c=$1
	i=$c
	while [ "$i" -le "$JOBS" ]; do
		if [ $((i % 2)) = 0 ]; then
			body="{\"service\": \"echo\", \"id\": \"fl-$i\", \"input_b64\": \"$(printf 'fl-%s' "$i" | base64)\"}"
		else
			body="{\"service\": \"sleep\", \"id\": \"fl-$i\", \"input_b64\": \"$(printf 50 | base64)\"}"
		fi
		curl -s -m "$JOBS_WITHIN_S" -H "Authorization: Bearer $A_TOKEN" \
			-X POST "http://$A_API/v1/jobs?wait=$JOBS_WITHIN_S" -d "$body" \
			>"$TEST_TMP/job-$i.json" 2>/dev/null
		i=$((i + JOB_CLIENTS))
	done
}
T0=$(date +%s)
CLIENTS=""
for c in $(seq 1 $JOB_CLIENTS); do
	submit_jobs "$c" &
	CLIENTS="$CLIENTS $!"
done

# ---- the flood -------------------------------------------------------------------------
FLOODERS=""
n=0
for src in $SOURCES; do
	n=$((n + 1))
	FEDMESH_FLOOD_SOURCE=$src "$FEDMESH_FLOOD" udp 127.0.0.1 "$PORT" \
		$((DATAGRAMS / 4)) "$n" >"$TEST_TMP/udp-$n.out" 2>&1 &
	FLOODERS="$FLOODERS $!"
	FEDMESH_FLOOD_SOURCE=$src "$FEDMESH_FLOOD" tcp 127.0.0.1 "$PORT" \
		"$CONNECTIONS" mixed 3000 5 "$n" >"$TEST_TMP/tcp-$n.out" 2>&1 &
	FLOODERS="$FLOODERS $!"
done
flood_failed=0
for p in $FLOODERS; do
	wait "$p" || flood_failed=$((flood_failed + 1))
done
sent=$(cat "$TEST_TMP"/udp-*.out | awk '/^sent/ { s += $2 } END { print s + 0 }')
conns=$(cat "$TEST_TMP"/tcp-*.out | awk '/^open/ { s += $2 + $4 } END { print s + 0 }')
if [ "$flood_failed" = 0 ] && [ "$sent" = "$DATAGRAMS" ] && [ "$conns" = $((CONNECTIONS * 4)) ]; then
	ok "the flood ran: $sent datagrams, $conns TCP connections (garbage or silent)"
else
	not_ok "the flood ran" "failed=$flood_failed sent=$sent connected=$conns" "$(cat "$TEST_TMP"/udp-*.out "$TEST_TMP"/tcp-*.out)"
fi
for p in $CLIENTS; do
	wait "$p"
done
T1=$(date +%s)

# ---- what must hold ---------------------------------------------------------------------
kill -0 "$A_PID" 2>/dev/null && [ "$(http "http://$A_API/livez" | tail -n1)" = 200 ] &&
	ok "A is up and answers /livez after the flood" ||
	not_ok "A is up and answers /livez after the flood" "$(tail -n 20 "$TEST_TMP/a.log")"

bad=""
for i in $(seq 1 $JOBS); do
	f=$TEST_TMP/job-$i.json
	grep -q '"state":"done"' "$f" 2>/dev/null || { bad="$bad fl-$i"; continue; }
	if [ $((i % 2)) = 0 ]; then
		[ "$(sed -n 's/.*"output_b64":"\([^"]*\)".*/\1/p' "$f" | base64 -d)" = "fl-$i" ] ||
			bad="$bad fl-$i(output)"
	fi
done
if [ -z "$bad" ]; then
	ok "all $JOBS jobs submitted during the flood are done, outputs right ($((T1 - T0)) s)"
else
	not_ok "all $JOBS jobs submitted during the flood are done" "not done:$bad" \
		"$(cat "$TEST_TMP/job-$(echo "$bad" | awk '{ sub(/fl-/, "", $1); sub(/\(.*/, "", $1); print $1 }').json" 2>/dev/null)"
fi

drop=$(($(metric "$A_API" "$A_TOKEN" 'fedmesh_(dht_)?datagrams_dropped_total') - DROP0))
# The kernel drops what A's socket buffer cannot hold while A is busy, so
# not all 100,000 reach A; what does is refused and counted, none answered.
if [ "$drop" -ge $((DATAGRAMS / 10)) ]; then
	ok "dropped-datagram counters rose by $drop"
else
	not_ok "dropped-datagram counters rose by at least $((DATAGRAMS / 10))" "rose by $drop"
fi
badmac=$(($(metric "$A_API" "$A_TOKEN" 'fedmesh_session_errors_total\{reason="(bad_mac|bad_handshake|oversize)"\}') - BADMAC0))
refused=$(metric "$A_API" "$A_TOKEN" 'fedmesh_connections_refused_total')
limit=$(metric "$A_API" "$A_TOKEN" 'fedmesh_session_errors_total\{reason="limit"\}')
if [ "$badmac" -gt 0 ] && [ "$refused" -gt 0 ]; then
	ok "garbage connections were counted (bad first message: $badmac, refused: $refused, handshake cap: $limit)"
else
	not_ok "garbage connections were counted" "bad first message: $badmac, refused: $refused, limit: $limit"
fi

# Memory. Everything the flood can make A hold is bounded: 256 connections
# (connections_max), of which 32 unauthenticated, each with at most one
# partial frame (64 KiB) buffered, i.e. under 20 MiB in the worst case; one
# static datagram buffer; 200 small jobs. So its peak may not exceed the
# warm baseline by 32 MiB (measured: well under 1 MiB); a leak of 1.5 KiB
# per datagram that reaches it (over 20,000 do; the kernel drops the
# rest), or of one 64 KiB buffer per connection, would. Under
# AddressSanitizer freed memory is held in quarantine and every
# allocation has red zones (measured: 26 MiB over the baseline), so the
# bound is 128 MiB there.
HWM=$(proc_kb "$A_PID" VmHWM)
bound_kb=$((32 * 1024))
grep -q libasan "/proc/$A_PID/maps" 2>/dev/null && bound_kb=$((128 * 1024))
if [ -n "$HWM" ] && [ -n "$RSS0" ] && [ $((HWM - RSS0)) -lt "$bound_kb" ]; then
	ok "A's peak memory stayed within $((bound_kb / 1024)) MiB of its baseline (VmRSS $RSS0 kB before, VmHWM $HWM kB)"
else
	not_ok "A's peak memory stayed within $((bound_kb / 1024)) MiB of its baseline" "VmRSS before: $RSS0 kB, VmHWM: $HWM kB"
fi

if wait_until 10 connected; then
	ok "A and B are still connected after the flood"
else
	not_ok "A and B are still connected after the flood" "$(F "$A_STATE" peers 2>&1)"
fi
out=$(printf after | F "$A_STATE" run echo 2>&1)
[ "$out" = after ] && ok "a new job runs after the flood" || not_ok "a new job runs after the flood" "$out"

stop_daemon "$A_PID"
[ "$EXIT_CODE" = 0 ] && ok "A exits 0 on SIGTERM after the flood" ||
	not_ok "A exits 0 on SIGTERM after the flood" "exit $EXIT_CODE" "$(tail -n 20 "$TEST_TMP/a.log")"
stop_daemon "$B_PID"
tap_done
