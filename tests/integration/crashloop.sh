#!/bin/sh
# Crash safety (issue 8): fedmeshd is killed with SIGKILL at a random
# moment while it processes jobs, 30 times in a row, and restarted each
# time; jobs keep arriving meanwhile. Then: every job the API accepted is
# still known and ends (none lost), none ran twice on the node (its exec
# service appends each job's ID to a trace file, and SIGKILL of the daemon
# takes its runs with it), and sqlite's integrity_check says ok after
# every kill. Loopback only, TAP output, about 40 s.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

ROUNDS=${FEDMESH_CRASH_ROUNDS:-30}
JOBS_PER_ROUND=6
# The longest a job may take to end once the daemon runs undisturbed.
FINAL_WITHIN_S=60

if ! command -v sqlite3 >/dev/null 2>&1; then
	echo "1..0 # SKIP sqlite3 (the CLI) is not installed: scripts/deps.sh --test"
	exit 0
fi

TRACE=$TEST_TMP/trace
CONF=$TEST_TMP/crash.conf
# The run appends its job's ID before it works and answers with it after:
# a run the kill interrupts has left its trace, so a second run of the
# same job on this node would show as a duplicate line.
cat >"$CONF" <<EOF
[service.mark]
command = /bin/sh
args = -c "read id; echo \$id >> $TRACE; sleep 0.3; echo \$id"
max_concurrent = 4
EOF

# The kill delays, 50 to 1550 ms after the start: awk's generator seeded
# once (the seed is printed so a failure can be replayed with
# FEDMESH_CRASH_SEED).
SEED=${FEDMESH_CRASH_SEED:-$(date +%s)}
echo "# seed $SEED"
awk -v s="$SEED" -v n="$ROUNDS" 'BEGIN { srand(s); for (i = 0; i < n; i++) printf "%.3f\n", (50 + int(rand() * 1500)) / 1000 }' >"$TEST_TMP/delays"

# submit ROUND: POSTs the round's jobs one after another; an ID whose POST
# was answered 202 or 200 is accepted and goes into $TEST_TMP/accepted.
submit() {
	k=1
	while [ "$k" -le "$JOBS_PER_ROUND" ]; do
		id=cl-$1-$k
		code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' \
			-H "Authorization: Bearer $TOKEN" -X POST "http://$API/v1/jobs" \
			-d "{\"service\": \"mark\", \"id\": \"$id\", \"input_b64\": \"$(printf '%s\n' "$id" | base64)\"}")
		case "$code" in
		200 | 202) echo "$id" >>"$TEST_TMP/accepted" ;;
		esac
		k=$((k + 1))
		sleep 0.05
	done
}

: >"$TEST_TMP/accepted"
integrity_bad=""
start_failed=0
r=1
while [ "$r" -le "$ROUNDS" ]; do
	if ! start_daemon a --config "$CONF" --no-mdns --no-beacon --no-dht; then
		start_failed=$((start_failed + 1))
		break
	fi
	submit "$r" &
	SUBMITTER=$!
	sleep "$(sed -n "${r}p" "$TEST_TMP/delays")"
	kill -9 "$PID"
	wait "$PID" 2>/dev/null
	wait "$SUBMITTER" 2>/dev/null
	res=$(sqlite3 "$STATE/fedmesh.db" 'PRAGMA integrity_check;' 2>&1)
	[ "$res" = ok ] || integrity_bad="$integrity_bad round $r: $res;"
	r=$((r + 1))
done
[ "$start_failed" = 0 ] && ok "fedmeshd was killed with SIGKILL and restarted $ROUNDS times" ||
	not_ok "fedmeshd was killed with SIGKILL and restarted $ROUNDS times" "a restart failed in round $r"
[ -z "$integrity_bad" ] && ok "PRAGMA integrity_check is ok after every kill" ||
	not_ok "PRAGMA integrity_check is ok after every kill" "$integrity_bad"

# ---- undisturbed: every accepted job ends ------------------------------------------
start_daemon a --config "$CONF" --no-mdns --no-beacon --no-dht ||
	{ not_ok "fedmeshd starts after the last kill"; tap_done; exit 1; }
accepted=$(wc -l <"$TEST_TMP/accepted")
lost=""
done_n=0
interrupted_n=0
wrong=""
while read -r id; do
	res=$(curl -s -m $((FINAL_WITHIN_S + 5)) -H "Authorization: Bearer $TOKEN" \
		"http://$API/v1/jobs/$id?wait=$FINAL_WITHIN_S")
	state=$(echo "$res" | sed -n 's/.*"state":"\([^"]*\)".*/\1/p')
	case "$state" in
	done)
		done_n=$((done_n + 1))
		out=$(echo "$res" | sed -n 's/.*"output_b64":"\([^"]*\)".*/\1/p' | base64 -d)
		[ "$out" = "$id" ] || wrong="$wrong $id(output '$out')"
		;;
	failed)
		# A run the kill interrupted is not started again: it fails,
		# saying so (docs/OPERATIONS.md). Any other failure is wrong.
		if echo "$res" | grep -q 'interrupted'; then
			interrupted_n=$((interrupted_n + 1))
		else
			wrong="$wrong $id(failed: $(echo "$res" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p'))"
		fi
		;;
	*) lost="$lost $id(${state:-unknown: $res})" ;;
	esac
done <"$TEST_TMP/accepted"
if [ "$accepted" -ge "$ROUNDS" ] && [ -z "$lost" ]; then
	ok "none of the $accepted accepted jobs was lost: $done_n done, $interrupted_n interrupted by a kill"
else
	not_ok "none of the accepted jobs was lost" "accepted: $accepted" "lost:$lost"
fi
[ -z "$wrong" ] && ok "every job that ended did so correctly (right output, or failed as interrupted)" ||
	not_ok "every job that ended did so correctly" "$wrong"
dups=$(sort "$TRACE" | uniq -d)
[ -z "$dups" ] && ok "no job ran twice on the node ($(wc -l <"$TRACE") runs, all distinct)" ||
	not_ok "no job ran twice on the node" "ran more than once:" "$dups"
# A job that is done ran here exactly once (the trace has it).
missing=""
while read -r id; do
	res=$(curl -s -m 5 -H "Authorization: Bearer $TOKEN" "http://$API/v1/jobs/$id")
	echo "$res" | grep -q '"state":"done"' || continue
	grep -qx "$id" "$TRACE" || missing="$missing $id"
done <"$TEST_TMP/accepted"
[ -z "$missing" ] && ok "every done job left its trace: it ran here" ||
	not_ok "every done job left its trace" "$missing"
# The loop made progress: jobs did finish between the kills, or after
# them (a run a kill interrupted is refused, not started again, so how
# many end that way depends on how often the kills fall during runs).
[ "$done_n" -ge "$ROUNDS" ] && ok "jobs finished despite the kills ($done_n of $accepted done)" ||
	not_ok "jobs finished despite the kills" "$done_n of $accepted done"
stop_daemon "$PID"
res=$(sqlite3 "$STATE/fedmesh.db" 'PRAGMA integrity_check;' 2>&1)
[ "$res" = ok ] && ok "PRAGMA integrity_check is ok at the end" || not_ok "PRAGMA integrity_check is ok at the end" "$res"
tap_done
