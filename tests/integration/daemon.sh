#!/bin/sh
# End-to-end test of fedmeshd and the fedmesh CLI on loopback: start with a
# fresh state dir and port 0, query through the CLI and through plain HTTP,
# check the API's token and Host defences, /livez and /metrics, that the
# peer port stays silent to outsiders, that SIGTERM exits 0 and that a
# restart keeps the node ID. TAP output.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

start_daemon a || { not_ok "fedmeshd starts"; tap_done; exit 1; }
ok "fedmeshd starts with an empty state dir and port 0"
A_PID=$PID A_STATE=$STATE A_API=$API A_TOKEN=$TOKEN

# ---- files in the state dir ------------------------------------------------
mode=$(stat -c %a "$A_STATE/identity.key")
[ "$mode" = 600 ] && ok "identity.key is mode 0600" || not_ok "identity.key is mode 0600" "mode $mode"
mode=$(stat -c %a "$A_STATE/api.token")
[ "$mode" = 600 ] && ok "api.token is mode 0600" || not_ok "api.token is mode 0600" "mode $mode"
echo "$A_TOKEN" | grep -Eq '^[0-9a-f]{64}$' && ok "api.token holds 64 hex characters" || not_ok "api.token holds 64 hex characters" "$A_TOKEN"
case $A_API in
127.0.0.1:[1-9]*) ok "api.addr names the bound loopback port ($A_API)" ;;
*) not_ok "api.addr names the bound loopback port" "$A_API" ;;
esac

# ---- the CLI --------------------------------------------------------------
out=$("$FEDMESH" --state-dir "$A_STATE" status 2>&1)
rc=$?
NODE_ID=$("$FEDMESH" --state-dir "$A_STATE" id 2>/dev/null)
if [ $rc -eq 0 ] && echo "$NODE_ID" | grep -Eq '^[0-9a-f]{64}$' &&
	echo "$out" | grep -q "$NODE_ID" && echo "$out" | grep -qi 'alone'; then
	ok "fedmesh status shows the node ID and mode alone"
else
	not_ok "fedmesh status shows the node ID and mode alone" "rc=$rc id=$NODE_ID" "$out"
fi
out=$(FEDMESH_STATE_DIR=$A_STATE "$FEDMESH" status --json 2>&1)
if echo "$out" | grep -q "\"node_id\": *\"$NODE_ID\"" &&
	echo "$out" | grep -q '"mode": *"alone"' &&
	echo "$out" | grep -q '"peers_connected": *0'; then
	ok "FEDMESH_STATE_DIR + fedmesh status --json gives the status object"
else
	not_ok "FEDMESH_STATE_DIR + fedmesh status --json gives the status object" "$out"
fi
out=$(FEDMESH_TOKEN=$A_TOKEN "$FEDMESH" --api "http://$A_API" --state-dir /nonexistent peers --json 2>&1)
[ "$(echo "$out" | tr -d ' \n')" = "[]" ] && ok "fedmesh --api URL with FEDMESH_TOKEN: peers --json is []" || not_ok "fedmesh --api URL with FEDMESH_TOKEN: peers --json is []" "$out"
out=$("$FEDMESH" --state-dir "$A_STATE" peers 2>&1)
[ $? -eq 0 ] && ok "fedmesh peers succeeds with no peers" || not_ok "fedmesh peers succeeds with no peers" "$out"
out=$(FEDMESH_TOKEN=0000 "$FEDMESH" --api "http://$A_API" --state-dir /nonexistent status 2>&1)
rc=$?
[ $rc -eq 4 ] && ok "a wrong token makes the CLI exit 4" || not_ok "a wrong token makes the CLI exit 4" "rc=$rc" "$out"

# ---- plain HTTP -------------------------------------------------------------
AUTH="Authorization: Bearer $A_TOKEN"
res=$(http "http://$A_API/livez")
[ "$(echo "$res" | tail -n1)" = 200 ] && ok "/livez answers 200 without a token" || not_ok "/livez answers 200 without a token" "$res"
res=$(http "http://$A_API/readyz")
[ "$(echo "$res" | tail -n1)" = 200 ] && ok "/readyz answers 200 without a token" || not_ok "/readyz answers 200 without a token" "$res"
res=$(http "http://$A_API/v1/status")
if [ "$(echo "$res" | tail -n1)" = 401 ] && echo "$res" | grep -q '"error"'; then
	ok "/v1/status without a token is 401 with a JSON error"
else
	not_ok "/v1/status without a token is 401 with a JSON error" "$res"
fi
res=$(http -H "Authorization: Bearer nottherighttoken" "http://$A_API/v1/status")
[ "$(echo "$res" | tail -n1)" = 401 ] && ok "/v1/status with a wrong token is 401" || not_ok "/v1/status with a wrong token is 401" "$res"
res=$(http -H "$AUTH" -H "Host: evil.example" "http://$A_API/v1/status")
[ "$(echo "$res" | tail -n1)" = 403 ] && ok "Host: evil.example is 403 even with the token" || not_ok "Host: evil.example is 403 even with the token" "$res"
res=$(http -H "Host: evil.example" "http://$A_API/livez")
[ "$(echo "$res" | tail -n1)" = 403 ] && ok "Host: evil.example is 403 on /livez too" || not_ok "Host: evil.example is 403 on /livez too" "$res"
res=$(http -H "$AUTH" -H "Host: localhost:1234" "http://$A_API/v1/status")
[ "$(echo "$res" | tail -n1)" = 200 ] && ok "Host: localhost:PORT is accepted" || not_ok "Host: localhost:PORT is accepted" "$res"
res=$(http -H "$AUTH" "http://$A_API/v1/status")
body=$(echo "$res" | sed '$d')
missing=""
for field in '"node_id": *"'"$NODE_ID"'"' '"version": *"[0-9]' '"uptime_s": *[0-9]' '"mode": *"alone"' '"peers_connected": *0' '"listen": *\['; do
	echo "$body" | grep -q "$field" || missing="$missing $field"
done
if [ "$(echo "$res" | tail -n1)" = 200 ] && [ -z "$missing" ]; then
	ok "/v1/status has node_id, version, uptime_s, mode, peers_connected, listen"
else
	not_ok "/v1/status has node_id, version, uptime_s, mode, peers_connected, listen" "missing:$missing" "$res"
fi
res=$(http -H "$AUTH" "http://$A_API/v1/nope")
[ "$(echo "$res" | tail -n1)" = 404 ] && ok "an unknown route is 404" || not_ok "an unknown route is 404" "$res"
res=$(head -c 100000 /dev/zero | tr '\0' 'x' | http -H "$AUTH" -X POST --data-binary @- "http://$A_API/v1/status")
[ "$(echo "$res" | tail -n1)" = 413 ] && ok "a 100 kB body is refused with 413" || not_ok "a 100 kB body is refused with 413" "$(echo "$res" | tail -n2)"

# ---- the peer port stays silent to outsiders --------------------------------
# The peer port: the listen address in /v1/status that is not the API's.
PEER_PORT=$(echo "$body" | grep -o '127\.0\.0\.1:[0-9]*' | grep -v "^$A_API\$" | head -n1 | cut -d: -f2)
if [ -n "$PEER_PORT" ]; then
	# Garbage over UDP: dropped and counted, never answered.
	for i in 1 2 3 4 5; do
		printf 'garbage %s' "$i" | timeout 2 bash -c "cat >/dev/udp/127.0.0.1/$PEER_PORT" 2>/dev/null
	done
	reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PEER_PORT; printf 'hello' >&3; cat <&3 | head -c 64 | od -An -c" 2>/dev/null)
	[ -z "$reply" ] && ok "a TCP connection to the peer port gets no bytes back" || not_ok "a TCP connection to the peer port gets no bytes back" "$reply"
	sleep 0.2
else
	not_ok "found the peer port in /v1/status" "$body"
fi

# ---- metrics ----------------------------------------------------------------
res=$(http -H "$AUTH" "http://$A_API/metrics")
code=$(echo "$res" | tail -n1)
metrics=$(echo "$res" | sed '$d')
bad=$(echo "$metrics" | grep -v '^#' | grep -v '^$' | grep -Ev '^fedmesh_[a-z0-9_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$' | head -n3)
if [ "$code" = 200 ] && [ -z "$bad" ] && echo "$metrics" | grep -q '^# TYPE fedmesh_[a-z_]* counter'; then
	ok "/metrics is Prometheus text with fedmesh_ names"
else
	not_ok "/metrics is Prometheus text with fedmesh_ names" "code=$code" "$bad"
fi
bad=$(echo "$metrics" | awk '/^# TYPE/ && $4 == "counter" && $3 !~ /_total$/ { print $3 }')
[ -z "$bad" ] && ok "every counter name ends in _total" || not_ok "every counter name ends in _total" "$bad"
dropped=$(echo "$metrics" | grep '^fedmesh_datagrams_dropped_total' | awk '{ s += $2 } END { print s + 0 }')
[ "$dropped" -ge 5 ] && ok "the garbage datagrams were dropped and counted ($dropped)" || not_ok "the garbage datagrams were dropped and counted" "dropped=$dropped"
res=$(http "http://$A_API/metrics")
[ "$(echo "$res" | tail -n1)" = 401 ] && ok "/metrics needs the token" || not_ok "/metrics needs the token" "$(echo "$res" | tail -n1)"

# ---- shutdown and restart -----------------------------------------------------
stop_daemon "$A_PID"
[ "$EXIT_CODE" = 0 ] && ok "SIGTERM: fedmeshd exits 0" || not_ok "SIGTERM: fedmeshd exits 0" "exit $EXIT_CODE" "$(tail -n 5 "$TEST_TMP/a.log")"
[ ! -e "$A_STATE/api.addr" ] && ok "api.addr is removed on shutdown" || not_ok "api.addr is removed on shutdown"
out=$("$FEDMESH" --state-dir "$A_STATE" status 2>&1)
rc=$?
if [ $rc -eq 3 ] && echo "$out" | grep -q 'fedmeshd'; then
	ok "with the daemon stopped, the CLI says so and exits 3"
else
	not_ok "with the daemon stopped, the CLI says so and exits 3" "rc=$rc" "$out"
fi
start_daemon a || not_ok "fedmeshd restarts"
id2=$("$FEDMESH" --state-dir "$STATE" id 2>&1)
[ "$id2" = "$NODE_ID" ] && ok "a restart keeps the node ID" || not_ok "a restart keeps the node ID" "$NODE_ID" "$id2"
[ "$TOKEN" != "$A_TOKEN" ] && ok "a restart issues a new API token" || not_ok "a restart issues a new API token"
stop_daemon "$PID"

# ---- refusals -------------------------------------------------------------------
chmod 644 "$A_STATE/identity.key"
out=$(timeout 10 "$FEDMESHD" --state-dir "$A_STATE" --listen 127.0.0.1:0 --api 127.0.0.1:0 $ROOT_FLAG 2>&1)
rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q 'chmod 600'; then
	ok "a key file readable by others is refused with a hint to chmod 600"
else
	not_ok "a key file readable by others is refused with a hint to chmod 600" "rc=$rc" "$out"
fi
chmod 600 "$A_STATE/identity.key"
if [ "$(id -u)" = 0 ]; then
	out=$(timeout 10 "$FEDMESHD" --state-dir "$A_STATE" --listen 127.0.0.1:0 --api 127.0.0.1:0 2>&1)
	rc=$?
	[ $rc -ne 0 ] && echo "$out" | grep -q 'root' && ok "root without --allow-root is refused" || not_ok "root without --allow-root is refused" "rc=$rc" "$out"
fi
out=$("$FEDMESHD" --state-dir "$A_STATE" --listen 127.0.0.1:9 --print-config 2>&1)
echo "$out" | grep -q '^listen = 127.0.0.1:9$' && ok "--print-config shows the effective listen address" || not_ok "--print-config shows the effective listen address" "$out"
out=$("$FEDMESHD" --listen nonsense 2>&1)
rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q nonsense && ok "a bad --listen is a usage error naming the value" || not_ok "a bad --listen is a usage error naming the value" "rc=$rc" "$out"
check "fedmeshd --help exits 0" "$FEDMESHD" --help
check "fedmesh --help exits 0" "$FEDMESH" --help

tap_done
