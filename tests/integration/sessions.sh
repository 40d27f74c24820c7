#!/bin/sh
# End-to-end test of secure sessions and federation membership on loopback:
# A prints an invite, B joins with it and both see each other connected with
# a measured RTT; C, a federation of its own, dials A and gets nothing (A
# counts bad_mac and never lists it), nor does raw garbage on A's port; B
# restarted without invite or --bootstrap reconnects from its stored peers; a
# mistyped invite is refused; the federation key stays in its 0600 file and
# out of every API answer but the invite. TAP output.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

# Seconds within which two daemons on loopback must have found each other.
CONNECT_WITHIN_S=10

# peer_field NODE_ID FIELD: reads `fedmesh peers --json` on stdin and
# prints FIELD of the peer NODE_ID (strings unquoted, null as null). The
# CLI indents by two, so a peer's own fields are the lines at four spaces.
peer_field() {
	awk -v id="$1" -v f="$2" '
		/^  \{/ { inpeer = 1; nid = ""; val = ""; next }
		/^  \}/ { if (inpeer && nid == id) print val; inpeer = 0; next }
		inpeer && /^    "node_id": / { nid = $2; gsub(/[",]/, "", nid) }
		inpeer && index($0, "    \"" f "\": ") == 1 {
			v = substr($0, length(f) + 9); sub(/,$/, "", v)
			gsub(/"/, "", v); val = v
		}'
}

# connected_with_rtt STATE_DIR NODE_ID: the daemon of STATE_DIR lists
# NODE_ID as connected with a measured RTT.
connected_with_rtt() {
	json=$("$FEDMESH" --state-dir "$1" peers --json 2>/dev/null) || return 1
	state=$(printf '%s\n' "$json" | peer_field "$2" state)
	rtt=$(printf '%s\n' "$json" | peer_field "$2" rtt_ms)
	[ "$state" = connected ] && [ -n "$rtt" ] && [ "$rtt" != null ]
}

# lists STATE_DIR NODE_ID: NODE_ID appears in the peers of STATE_DIR at all.
lists() {
	"$FEDMESH" --state-dir "$1" peers --json 2>/dev/null | grep -q "\"$2\""
}

federated() {
	"$FEDMESH" --state-dir "$1" status --json 2>/dev/null | grep -q '"mode": "federated"'
}

# peer_port STATE_DIR: the bound peer port, from `fedmesh status --json`.
peer_port() {
	"$FEDMESH" --state-dir "$1" status --json 2>/dev/null |
		grep -o '"addr": "127\.0\.0\.1:[0-9]*"' | head -n1 | sed 's/.*://; s/"//'
}

# metric API TOKEN LINE_PREFIX: the value of one metrics line, 0 if absent.
metric() {
	v=$(curl -s -m 5 -H "Authorization: Bearer $2" "http://$1/metrics" |
		grep -F "$3 " | head -n1 | awk '{ print $2 }')
	echo "${v:-0}"
}

bad_mac_above() {
	[ "$(metric "$A_API" "$A_TOKEN" 'fedmesh_session_errors_total{reason="bad_mac"}')" -gt "$1" ]
}

# ---- two daemons, one invite --------------------------------------------------
start_daemon a || { not_ok "A starts"; tap_done; exit 1; }
A_PID=$PID A_STATE=$STATE A_API=$API A_TOKEN=$TOKEN
start_daemon b || { not_ok "B starts"; tap_done; exit 1; }
B_PID=$PID B_STATE=$STATE
ok "A and B start, each a federation of its own"
A_ID=$("$FEDMESH" --state-dir "$A_STATE" id)
B_ID=$("$FEDMESH" --state-dir "$B_STATE" id)
A_PORT=$(peer_port "$A_STATE")

mode=$(stat -c %a "$A_STATE/federation.key" 2>&1)
[ "$mode" = 600 ] && ok "federation.key is created mode 0600" || not_ok "federation.key is created mode 0600" "$mode"
if grep -Eqx '[0-9a-f]{64}' "$A_STATE/federation.key" &&
	! cmp -s "$A_STATE/federation.key" "$B_STATE/federation.key"; then
	ok "federation.key holds 64 hex characters, different on A and B"
else
	not_ok "federation.key holds 64 hex characters, different on A and B"
fi

INVITE=$("$FEDMESH" --state-dir "$A_STATE" invite 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ "$(printf '%s\n' "$INVITE" | wc -l)" -eq 1 ] &&
	echo "$INVITE" | grep -Eq '^fedmesh1[a-z0-9]+$'; then
	ok "fedmesh invite prints one word starting with fedmesh1"
else
	not_ok "fedmesh invite prints one word starting with fedmesh1" "rc=$rc" "$INVITE"
fi
out=$("$FEDMESH" --state-dir "$A_STATE" invite --json 2>&1)
if echo "$out" | grep -q '"invite": "fedmesh1' && echo "$out" | grep -q "127.0.0.1:$A_PORT"; then
	ok "fedmesh invite --json carries A's peer address"
else
	not_ok "fedmesh invite --json carries A's peer address" "port $A_PORT" "$out"
fi

out=$("$FEDMESH" --state-dir "$B_STATE" join "$INVITE" 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ "$out" = "Joined the federation; connecting to 1 bootstrap address(es)." ]; then
	ok "fedmesh join INVITE on B"
else
	not_ok "fedmesh join INVITE on B" "rc=$rc" "$out"
fi
if cmp -s "$A_STATE/federation.key" "$B_STATE/federation.key" &&
	[ "$(stat -c %a "$B_STATE/federation.key")" = 600 ]; then
	ok "B keeps A's federation key, mode 0600"
else
	not_ok "B keeps A's federation key, mode 0600"
fi

if wait_until "$CONNECT_WITHIN_S" connected_with_rtt "$A_STATE" "$B_ID"; then
	ok "A lists B as connected with a measured RTT within ${CONNECT_WITHIN_S} s"
else
	not_ok "A lists B as connected with a measured RTT within ${CONNECT_WITHIN_S} s" \
		"$("$FEDMESH" --state-dir "$A_STATE" peers 2>&1)" "$(tail -n 20 "$TEST_TMP/a.log")"
fi
if wait_until "$CONNECT_WITHIN_S" connected_with_rtt "$B_STATE" "$A_ID"; then
	ok "B lists A as connected with a measured RTT"
else
	not_ok "B lists A as connected with a measured RTT" \
		"$("$FEDMESH" --state-dir "$B_STATE" peers 2>&1)" "$(tail -n 20 "$TEST_TMP/b.log")"
fi
if federated "$A_STATE" && federated "$B_STATE"; then
	ok "fedmesh status --json says mode federated on A and B"
else
	not_ok "fedmesh status --json says mode federated on A and B" \
		"$("$FEDMESH" --state-dir "$A_STATE" status 2>&1)"
fi
out=$("$FEDMESH" --state-dir "$A_STATE" peers 2>&1)
B_SHORT=$(echo "$B_ID" | cut -c1-16)
if echo "$out" | head -n1 | grep -q 'STATE *RTT *SCORE' &&
	echo "$out" | grep "^$B_SHORT" | grep -q ' connected .*ms'; then
	ok "fedmesh peers shows B connected with its RTT in the table"
else
	not_ok "fedmesh peers shows B connected with its RTT in the table" "$out"
fi

# ---- outsiders get silence ------------------------------------------------------
before=$(metric "$A_API" "$A_TOKEN" 'fedmesh_session_errors_total{reason="bad_mac"}')
start_daemon c --bootstrap "127.0.0.1:$A_PORT" || not_ok "C starts"
C_PID=$PID C_STATE=$STATE
C_ID=$("$FEDMESH" --state-dir "$C_STATE" id)
if wait_until "$CONNECT_WITHIN_S" bad_mac_above "$before"; then
	ok "C's dial to A counts as bad_mac on A"
else
	not_ok "C's dial to A counts as bad_mac on A" "before=$before" "$(tail -n 10 "$TEST_TMP/c.log")"
fi
sleep 1
if ! lists "$A_STATE" "$C_ID" && ! lists "$B_STATE" "$C_ID"; then
	ok "A's and B's peers never list C"
else
	not_ok "A's and B's peers never list C" "$("$FEDMESH" --state-dir "$A_STATE" peers 2>&1)"
fi
if ! lists "$C_STATE" "$A_ID" && ! federated "$C_STATE"; then
	ok "C learns nothing of A and stays alone"
else
	not_ok "C learns nothing of A and stays alone" "$("$FEDMESH" --state-dir "$C_STATE" peers 2>&1)"
fi
reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$A_PORT; head -c 512 /dev/urandom >&3; timeout 2 cat <&3 | head -c 64 | od -An -c" 2>/dev/null)
[ -z "$reply" ] && ok "random bytes on A's peer port get no byte back" || not_ok "random bytes on A's peer port get no byte back" "$reply"
stop_daemon "$C_PID"

# ---- secrets stay secret --------------------------------------------------------
KEY_HEX=$(cat "$A_STATE/federation.key")
leaked=""
for s in "$A_STATE" "$B_STATE"; do
	for cmd in status peers id; do
		"$FEDMESH" --state-dir "$s" $cmd --json 2>&1 | grep -q "$KEY_HEX" && leaked="$leaked $s:$cmd"
	done
done
curl -s -m 5 -H "Authorization: Bearer $A_TOKEN" "http://$A_API/metrics" | grep -q "$KEY_HEX" && leaked="$leaked metrics"
[ -z "$leaked" ] && ok "no status, peers, id or metrics answer contains the federation key" || not_ok "no status, peers, id or metrics answer contains the federation key" "$leaked"
res=$(http "http://$A_API/v1/invite")
[ "$(echo "$res" | tail -n1)" = 401 ] && ok "GET /v1/invite needs the token" || not_ok "GET /v1/invite needs the token" "$res"

# ---- a mistyped invite ------------------------------------------------------------
# One character changed, in the middle of the word.
pos=20
orig=$(printf '%s' "$INVITE" | cut -c$pos)
[ "$orig" = a ] && repl=b || repl=a
WRONG=$(printf '%s' "$INVITE" | sed "s/./$repl/$pos")
out=$("$FEDMESH" --state-dir "$B_STATE" join "$WRONG" 2>&1)
rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -qi 'not a valid fedmesh invite'; then
	ok "a mistyped invite is refused with a clear message (exit $rc)"
else
	not_ok "a mistyped invite is refused with a clear message" "rc=$rc" "$out"
fi
cmp -s "$A_STATE/federation.key" "$B_STATE/federation.key" &&
	ok "the refused invite left B's federation alone" ||
	not_ok "the refused invite left B's federation alone"
out=$("$FEDMESH" --state-dir "$B_STATE" join 2>&1)
rc=$?
[ $rc -eq 2 ] && ok "fedmesh join without an invite is a usage error" || not_ok "fedmesh join without an invite is a usage error" "rc=$rc" "$out"

# ---- restart from stored peers ----------------------------------------------------
stop_daemon "$B_PID"
[ "$EXIT_CODE" = 0 ] && ok "SIGTERM: B exits 0" || not_ok "SIGTERM: B exits 0" "exit $EXIT_CODE"
# No invite and no --bootstrap: B starts from what its store kept.
start_daemon b || not_ok "B restarts"
B_PID=$PID
if wait_until 5 grep -q 'restored 1 stored peer' "$TEST_TMP/b.log"; then
	ok "restarted B restores A from its peer table"
else
	not_ok "restarted B restores A from its peer table" "$(tail -n 20 "$TEST_TMP/b.log")"
fi
if wait_until "$CONNECT_WITHIN_S" connected_with_rtt "$B_STATE" "$A_ID"; then
	ok "restarted B reconnects to A from its stored peers within ${CONNECT_WITHIN_S} s"
else
	not_ok "restarted B reconnects to A from its stored peers within ${CONNECT_WITHIN_S} s" \
		"$("$FEDMESH" --state-dir "$B_STATE" peers 2>&1)" "$(tail -n 20 "$TEST_TMP/b.log")"
fi
if wait_until "$CONNECT_WITHIN_S" connected_with_rtt "$A_STATE" "$B_ID"; then
	ok "A sees the restarted B connected again"
else
	not_ok "A sees the restarted B connected again" "$("$FEDMESH" --state-dir "$A_STATE" peers 2>&1)"
fi

# ---- fedmeshd --join ------------------------------------------------------------
start_daemon d --join "$INVITE" || not_ok "D starts with --join"
D_PID=$PID D_STATE=$STATE
D_ID=$("$FEDMESH" --state-dir "$D_STATE" id)
if wait_until "$CONNECT_WITHIN_S" connected_with_rtt "$D_STATE" "$A_ID"; then
	ok "fedmeshd --join INVITE joins A's federation at start"
else
	not_ok "fedmeshd --join INVITE joins A's federation at start" "$(tail -n 20 "$TEST_TMP/d.log")"
fi
if ! tr '\0' ' ' <"/proc/$D_PID/cmdline" | grep -q "$INVITE"; then
	ok "the invite is wiped from fedmeshd's command line"
else
	not_ok "the invite is wiped from fedmeshd's command line"
fi
wait_until "$CONNECT_WITHIN_S" lists "$A_STATE" "$D_ID" && ok "A lists D" || not_ok "A lists D"
out=$(timeout 10 "$FEDMESHD" --state-dir "$TEST_TMP/e" --listen 127.0.0.1:0 --api 127.0.0.1:0 $ROOT_FLAG --join "$WRONG" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'join' && ok "fedmeshd --join with a mistyped invite refuses to start" ||
	not_ok "fedmeshd --join with a mistyped invite refuses to start" "rc=$rc" "$out"

# ---- a loose federation key is refused --------------------------------------------
stop_daemon "$D_PID"
chmod 644 "$D_STATE/federation.key"
out=$(timeout 10 "$FEDMESHD" --state-dir "$D_STATE" --listen 127.0.0.1:0 --api 127.0.0.1:0 $ROOT_FLAG 2>&1)
rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q 'chmod 600'; then
	ok "a federation.key readable by others is refused at start"
else
	not_ok "a federation.key readable by others is refused at start" "rc=$rc" "$out"
fi

stop_daemon "$B_PID"
stop_daemon "$A_PID"
[ "$EXIT_CODE" = 0 ] && ok "SIGTERM: A exits 0" || not_ok "SIGTERM: A exits 0" "exit $EXIT_CODE"

tap_done
