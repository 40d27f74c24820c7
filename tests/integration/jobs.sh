#!/bin/sh
# End-to-end test of jobs on loopback: a node alone runs `fedmesh run`
# locally (built-ins and exec services, exit status passed through); three
# nodes joined by invite spread 300 sha256 jobs; kill -9 of a node with jobs
# in flight loses none; kill -9 of the submitting node with jobs queued
# loses none and runs none twice on a node; an exec service with
# offer = false never runs for a peer. TAP output; every wait is bounded.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

# Seconds within which nodes on loopback must have found each other, and
# within which a batch of jobs must be done.
CONNECT_WITHIN_S=15
JOBS_WITHIN_S=60
# The spread test: jobs, and how many curl clients submit them at once.
SPREAD_JOBS=300
SPREAD_PARALLEL=30

# Fields of a compact JSON job object (one line, as the API answers).
jfield() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n1; }

# post API TOKEN BODY [QUERY]: POST /v1/jobs; prints the answer, then the
# status on the last line.
post() {
	curl -s -m "$JOBS_WITHIN_S" -w '\n%{http_code}' \
		-H "Authorization: Bearer $2" -X POST \
		"http://$1/v1/jobs${4:-}" -d "$3"
}

# get_job API TOKEN ID [WAIT]: the job, after at most WAIT seconds.
get_job() {
	curl -s -m "$JOBS_WITHIN_S" -H "Authorization: Bearer $2" \
		"http://$1/v1/jobs/$3?wait=${4:-0}"
}

b64() { printf '%s' "$1" | base64 | tr -d '\n'; }

# connected_peers STATE: peers this node lists as connected.
connected_peers() {
	F "$1" peers --json 2>/dev/null | grep -c '"state": "connected"'
}
peers_at_least() { [ "$(connected_peers "$1")" -ge "$2" ]; }
# offers STATE SERVICE COUNT: COUNT connected peers offer SERVICE.
offers() {
	[ "$(F "$1" peers --json 2>/dev/null | grep -c "\"name\": \"$2\"")" -ge "$3" ]
}

# job_done API TOKEN ID: the job is final within the wait.
job_final() {
	state=$(get_job "$1" "$2" "$3" 20 | jfield state)
	case "$state" in
	done | failed | timed_out | cancelled) return 0 ;;
	esac
	return 1
}

# ---- one node alone ----------------------------------------------------------
A_CONF=$TEST_TMP/a.conf
cat >"$A_CONF" <<EOF
[jobs]
input_max = 64K

[service.exit7]
command = /bin/sh
args = -c "cat; echo oops >&2; exit 7"

[service.pwd]
command = /bin/pwd
EOF
start_daemon a --config "$A_CONF" --no-mdns --no-beacon ||
	{ not_ok "A starts"; tap_done; exit 1; }
A_PID=$PID A_STATE=$STATE A_API=$API A_TOKEN=$TOKEN
A_ID=$(F "$A_STATE" id)

want=$(printf 'hello\n' | sha256sum | cut -d' ' -f1)
got=$(echo hello | F "$A_STATE" run sha256 --verbose 2>"$TEST_TMP/verbose")
rc=$?
if [ "$rc" = 0 ] && [ "$got" = "$want" ]; then
	ok "alone: 'echo hello | fedmesh run sha256' prints the digest"
else
	not_ok "alone: 'echo hello | fedmesh run sha256' prints the digest" \
		"rc=$rc got=$got want=$want"
fi
if grep -q "this node" "$TEST_TMP/verbose"; then
	ok "alone: --verbose says the job ran on this node"
else
	not_ok "alone: --verbose says the job ran on this node" "$(cat "$TEST_TMP/verbose")"
fi
check "alone: /v1/status mode is alone" \
	sh -c "'$FEDMESH' --state-dir '$A_STATE' status --json | grep -q '\"mode\": \"alone\"'"

head -c 50000 /dev/urandom >"$TEST_TMP/blob"
if F "$A_STATE" run echo <"$TEST_TMP/blob" | cmp -s - "$TEST_TMP/blob"; then
	ok "run echo: 50 kB of binary input comes back byte for byte"
else
	not_ok "run echo: 50 kB of binary input comes back byte for byte"
fi

out=$(printf 'in' | F "$A_STATE" run exit7 2>"$TEST_TMP/exit7.err")
rc=$?
if [ "$rc" = 7 ] && [ "$out" = in ]; then
	ok "run: the exit status and output of an exec service pass through"
else
	not_ok "run: the exit status and output of an exec service pass through" \
		"rc=$rc out=$out" "$(cat "$TEST_TMP/exit7.err")"
fi
scratch=$(F "$A_STATE" run pwd </dev/null)
case "$scratch" in
"$A_STATE"/jobs/*) ok "exec: the program runs in a scratch dir under STATE_DIR/jobs" ;;
*) not_ok "exec: the program runs in a scratch dir under STATE_DIR/jobs" "pwd=$scratch" ;;
esac
if [ -n "$scratch" ] && [ ! -e "$scratch" ]; then
	ok "exec: the scratch dir is removed after the run"
else
	sleep 1
	if [ -n "$scratch" ] && [ ! -e "$scratch" ]; then
		ok "exec: the scratch dir is removed after the run"
	else
		not_ok "exec: the scratch dir is removed after the run" "$scratch"
	fi
fi

echo 5000 | F "$A_STATE" run sleep --timeout 0.3 >/dev/null 2>"$TEST_TMP/to.err"
rc=$?
if [ "$rc" = 1 ] && grep -q timed_out "$TEST_TMP/to.err"; then
	ok "run: a job over its timeout ends timed_out, exit 1"
else
	not_ok "run: a job over its timeout ends timed_out, exit 1" "rc=$rc" \
		"$(cat "$TEST_TMP/to.err")"
fi

# The HTTP API's own answers.
res=$(post "$A_API" "$A_TOKEN" '{"service": "echo", "id": "idem-1", "input_b64": "aGk="}')
code1=$(echo "$res" | tail -n1)
res=$(post "$A_API" "$A_TOKEN" '{"service": "echo", "id": "idem-1", "input_b64": "aGk="}' '?wait=5')
code2=$(echo "$res" | tail -n1)
if [ "$code1" = 202 ] && [ "$code2" = 200 ] &&
	[ "$(echo "$res" | jfield output_b64)" = aGk= ]; then
	ok "POST /v1/jobs: 202 for a new job, 200 with the same job for its ID again"
else
	not_ok "POST /v1/jobs: 202 for a new job, 200 with the same job for its ID again" \
		"codes $code1 $code2" "$res"
fi
code=$(post "$A_API" "$A_TOKEN" '{"service": ' | tail -n1)
check "POST /v1/jobs: malformed JSON is 400" test "$code" = 400
big=$(head -c 70000 /dev/zero | base64 | tr -d '\n')
code=$(post "$A_API" "$A_TOKEN" "{\"service\": \"echo\", \"input_b64\": \"$big\"}" | tail -n1)
check "POST /v1/jobs: an input over [jobs] input_max is 413" test "$code" = 413
res=$(post "$A_API" "$A_TOKEN" '{"service": "no-such", "input_b64": ""}' '?wait=5')
if [ "$(echo "$res" | jfield state)" = failed ]; then
	ok "POST /v1/jobs: a service nobody offers fails"
else
	not_ok "POST /v1/jobs: a service nobody offers fails" "$res"
fi
post "$A_API" "$A_TOKEN" "{\"service\": \"sleep\", \"id\": \"cx\", \"input_b64\": \"$(b64 30000)\"}" >/dev/null
F "$A_STATE" cancel cx >/dev/null
if [ "$(get_job "$A_API" "$A_TOKEN" cx 5 | jfield state)" = cancelled ]; then
	ok "fedmesh cancel: a running job ends cancelled"
else
	not_ok "fedmesh cancel: a running job ends cancelled"
fi
check "fedmesh jobs --state cancelled lists it" \
	sh -c "'$FEDMESH' --state-dir '$A_STATE' jobs --state cancelled | grep -q '^cx '"
check "metrics: job counters and the latency histogram" \
	sh -c "curl -s -H 'Authorization: Bearer $A_TOKEN' http://$A_API/metrics |
		grep -q 'fedmesh_job_duration_seconds_bucket{le=\"+Inf\"}' &&
		curl -s -H 'Authorization: Bearer $A_TOKEN' http://$A_API/metrics |
		grep -q 'fedmesh_jobs_ran_total{where=\"local\"}'"

# ---- three nodes -----------------------------------------------------------------
# B and C offer "count" (it records the job IDs it runs, one a line); B
# also has "priv", which it does not offer.
for n in b c; do
	cat >"$TEST_TMP/$n.conf" <<EOF
[service.count]
command = /bin/sh
args = -c "read id; echo \$id >> $TEST_TMP/$n.runs; sleep 1; echo \$id"
offer = true
max_concurrent = 64

[service.priv]
command = /bin/sh
args = -c "echo x >> $TEST_TMP/$n.priv; echo private"
offer = false
EOF
done
INVITE=$(F "$A_STATE" invite)
start_daemon b --config "$TEST_TMP/b.conf" --no-mdns --no-beacon --join "$INVITE" ||
	{ not_ok "B starts"; tap_done; exit 1; }
B_PID=$PID B_STATE=$STATE B_API=$API B_TOKEN=$TOKEN
B_ID=$(F "$B_STATE" id)
start_daemon c --config "$TEST_TMP/c.conf" --no-mdns --no-beacon --join "$INVITE" ||
	{ not_ok "C starts"; tap_done; exit 1; }
C_PID=$PID C_STATE=$STATE C_ID=$(F "$STATE" id)
if wait_until "$CONNECT_WITHIN_S" peers_at_least "$A_STATE" 2 &&
	wait_until "$CONNECT_WITHIN_S" offers "$A_STATE" count 2; then
	ok "three nodes: A is connected to B and C, which offer count"
else
	not_ok "three nodes: A is connected to B and C, which offer count" \
		"$(F "$A_STATE" peers)"
fi

# 300 sha256 jobs on A, by 30 clients at a time, each waiting for its job.
mkdir -p "$TEST_TMP/spread"
seq 1 "$SPREAD_JOBS" | xargs -P "$SPREAD_PARALLEL" -I{} sh -c "
	curl -s -m $JOBS_WITHIN_S -H 'Authorization: Bearer $A_TOKEN' -X POST \
		'http://$A_API/v1/jobs?wait=$JOBS_WITHIN_S' \
		-d '{\"service\": \"sha256\", \"input_b64\": \"'\$(printf 'job-{}' | base64)'\"}' \
		>'$TEST_TMP/spread/{}'"
bad=0
: >"$TEST_TMP/spread.ran"
i=1
while [ "$i" -le "$SPREAD_JOBS" ]; do
	res=$(cat "$TEST_TMP/spread/$i" 2>/dev/null)
	got=$(echo "$res" | jfield output_b64 | base64 -d 2>/dev/null)
	want=$(printf 'job-%s' "$i" | sha256sum | cut -d' ' -f1)
	[ "$(echo "$res" | jfield state)" = done ] && [ "$got" = "$want" ] ||
		bad=$((bad + 1))
	echo "$res" | jfield ran_on >>"$TEST_TMP/spread.ran"
	i=$((i + 1))
done
nodes=$(sort -u "$TEST_TMP/spread.ran" | grep -c .)
if [ "$bad" = 0 ]; then
	ok "spread: $SPREAD_JOBS sha256 jobs on A all done with the right digest"
else
	not_ok "spread: $SPREAD_JOBS sha256 jobs on A all done with the right digest" "$bad wrong"
fi
if [ "$nodes" -ge 2 ]; then
	ok "spread: they ran on $nodes nodes"
else
	not_ok "spread: they ran on at least two nodes" \
		"$(sort "$TEST_TMP/spread.ran" | uniq -c)"
fi

# ---- a node dies with jobs in flight -------------------------------------------------
for i in $(seq 1 60); do
	post "$A_API" "$A_TOKEN" "{\"service\": \"sleep\", \"id\": \"die-$i\", \"input_b64\": \"$(b64 1500)\"}" >/dev/null
done
sleep 0.5
kill -9 "$C_PID"
bad=0
on_c=0
for i in $(seq 1 60); do
	res=$(get_job "$A_API" "$A_TOKEN" "die-$i" 30)
	[ "$(echo "$res" | jfield state)" = done ] || bad=$((bad + 1))
	echo "$res" | grep -q "\"node_id\":\"$C_ID\"" && on_c=$((on_c + 1))
done
if [ "$bad" = 0 ]; then
	ok "kill -9 of C: all 60 jobs done ($on_c had an attempt on C)"
else
	not_ok "kill -9 of C: all 60 jobs done" "$bad not done; $on_c had an attempt on C"
fi
[ "$on_c" -gt 0 ] && ok "kill -9 of C: C had jobs in flight" ||
	not_ok "kill -9 of C: C had jobs in flight"
start_daemon c --config "$TEST_TMP/c.conf" --no-mdns --no-beacon ||
	{ not_ok "C restarts"; tap_done; exit 1; }
C_PID=$PID
wait_until "$CONNECT_WITHIN_S" offers "$A_STATE" count 2 ||
	not_ok "C is back" "$(F "$A_STATE" peers)"

# ---- the submitting node dies with jobs queued ---------------------------------------
# A has no "count" of its own: B and C run them, each logging the IDs.
rm -f "$TEST_TMP/b.runs" "$TEST_TMP/c.runs"
for i in $(seq 1 30); do
	post "$A_API" "$A_TOKEN" "{\"service\": \"count\", \"id\": \"cr-$i\", \"input_b64\": \"$(b64 "cr-$i
")\"}" >/dev/null
done
sleep 0.5
kill -9 "$A_PID"
wait "$A_PID" 2>/dev/null
start_daemon a --config "$A_CONF" --no-mdns --no-beacon ||
	{ not_ok "A restarts"; tap_done; exit 1; }
A_PID=$PID A_API=$API A_TOKEN=$TOKEN
bad=0
for i in $(seq 1 30); do
	res=$(get_job "$A_API" "$A_TOKEN" "cr-$i" 30)
	[ "$(echo "$res" | jfield state)" = done ] &&
		[ "$(echo "$res" | jfield output_b64 | base64 -d)" = "cr-$i" ] ||
		bad=$((bad + 1))
done
if [ "$bad" = 0 ]; then
	ok "kill -9 of the submitter: after its restart all 30 jobs are done"
else
	not_ok "kill -9 of the submitter: after its restart all 30 jobs are done" \
		"$bad not done" "$(F "$A_STATE" jobs | head -n 40)"
fi
dups=$(cat "$TEST_TMP/b.runs" 2>/dev/null | sort | uniq -d | wc -l)
dups=$((dups + $(cat "$TEST_TMP/c.runs" 2>/dev/null | sort | uniq -d | wc -l)))
runs=$(cat "$TEST_TMP/b.runs" "$TEST_TMP/c.runs" 2>/dev/null | sort -u | wc -l)
if [ "$dups" = 0 ] && [ "$runs" = 30 ]; then
	ok "kill -9 of the submitter: no job ran twice on a node (30 distinct runs)"
else
	not_ok "kill -9 of the submitter: no job ran twice on a node" \
		"duplicates: $dups, distinct jobs run: $runs"
fi

# ---- an exec service not offered stays home ------------------------------------------
rm -f "$TEST_TMP/b.priv"
bad=0
for i in $(seq 1 20); do
	res=$(post "$B_API" "$B_TOKEN" '{"service": "priv", "input_b64": ""}' '?wait=20')
	[ "$(echo "$res" | jfield ran_on)" = "$B_ID" ] || bad=$((bad + 1))
done
check "offer = false: 20 priv jobs submitted on B all ran on B" test "$bad" = 0
runs_before=$(wc -l <"$TEST_TMP/b.priv")
for i in $(seq 1 20); do
	res=$(post "$A_API" "$A_TOKEN" '{"service": "priv", "input_b64": ""}' '?wait=20')
	[ "$(echo "$res" | jfield state)" = failed ] || bad=$((bad + 1))
done
if [ "$bad" = 0 ] && [ "$(wc -l <"$TEST_TMP/b.priv")" = "$runs_before" ]; then
	ok "offer = false: priv jobs submitted on A never ran on B"
else
	not_ok "offer = false: priv jobs submitted on A never ran on B" "$bad"
fi

for n in A B C; do
	eval "stop_daemon \"\$${n}_PID\""
	if [ "$EXIT_CODE" = 0 ]; then
		ok "$n exits 0 on SIGTERM"
	else
		not_ok "$n exits 0 on SIGTERM" "exit $EXIT_CODE" \
			"$(tail -n 20 "$TEST_TMP/$(echo "$n" | tr ABC abc).log")"
	fi
done

# ---- results are swept after [jobs] keep --------------------------------------------
# The sweep is armed for the first result due to expire (src/daemon/jobs.c),
# not a fixed timer: a result stored after an idle start must still go.
printf '[jobs]\nkeep = 2s\n' >"$TEST_TMP/k.conf"
if start_daemon k --config "$TEST_TMP/k.conf" --no-mdns --no-beacon; then
	K_PID=$PID
	sleep 1.5 # idle first: nothing stored, no sweep armed
	kid=$(post "$API" "$TOKEN" "{\"service\": \"echo\", \"input_b64\": \"$(b64 hi)\"}" \
		'?wait=10' | jfield id)
	kstate=$(get_job "$API" "$TOKEN" "$kid" | jfield state)
	gone() { get_job "$API" "$TOKEN" "$kid" | grep -q 'no such job'; }
	if [ "$kstate" = done ] && wait_until 10 gone; then
		ok "keep = 2s: a result is swept within seconds of expiring"
	else
		not_ok "keep = 2s: a result is swept within seconds of expiring" \
			"id=$kid state=$kstate" "$(get_job "$API" "$TOKEN" "$kid")"
	fi
	stop_daemon "$K_PID"
else
	not_ok "keep = 2s: the daemon starts"
fi
tap_done
