#!/bin/sh
# The local API's defences (docs/SECURITY.md), route by route: the token
# on everything but /livez and /readyz, the Host check (DNS rebinding), no
# CORS headers, bodies capped before they are read, malformed JSON answered
# 400 with a message; the modes of the state directory and its files,
# re-checked at every start; root refused without --allow-root (or
# [security] allow_root). Loopback only, TAP output, every wait bounded.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

start_daemon a --no-mdns --no-beacon --no-dht || { not_ok "fedmeshd starts"; tap_done; exit 1; }
A_PID=$PID A_STATE=$STATE
URL=http://$API
AUTH="Authorization: Bearer $TOKEN"

# code [CURL ARGS...]: only the status code.
code() { curl -s -m 5 -o /dev/null -w '%{http_code}' "$@"; }

# ---- the token --------------------------------------------------------------------------
# Every route, with its method; unknown paths too, so the API's shape is
# not revealed without the token.
ROUTES="GET:/v1/status GET:/v1/peers GET:/v1/invite POST:/v1/join GET:/metrics
GET:/v1/jobs POST:/v1/jobs GET:/v1/jobs/some-id DELETE:/v1/jobs/some-id
GET:/v1/dht GET:/v1/find/echo GET:/v1/nope GET:/ POST:/livez.x"
bad=""
for r in $ROUTES; do
	m=${r%%:*} p=${r#*:}
	c=$(code -X "$m" "$URL$p")
	[ "$c" = 401 ] || bad="$bad $m $p: $c (no token);"
	c=$(code -X "$m" -H "Authorization: Bearer $(echo "$TOKEN" | tr 0-9a-f 1-9a-f0)" "$URL$p")
	[ "$c" = 401 ] || bad="$bad $m $p: $c (wrong token);"
	c=$(code -X "$m" -H "Authorization: Basic $TOKEN" "$URL$p")
	[ "$c" = 401 ] || bad="$bad $m $p: $c (Basic);"
	c=$(code -X "$m" "$URL$p?token=$TOKEN")
	[ "$c" = 401 ] || bad="$bad $m $p: $c (token in the query);"
done
[ -z "$bad" ] && ok "every route but /livez and /readyz answers 401 without the right bearer token" ||
	not_ok "every route but /livez and /readyz answers 401 without the right bearer token" "$bad"
c1=$(code "$URL/livez") c2=$(code "$URL/readyz") c3=$(code -H "$AUTH" "$URL/v1/status")
[ "$c1$c2$c3" = 200200200 ] && ok "/livez and /readyz answer without a token; the token opens /v1/status" ||
	not_ok "/livez and /readyz answer without a token; the token opens /v1/status" "$c1 $c2 $c3"
out=$(curl -s -m 5 "$URL/livez")
echo "$out" | grep -q "$(cat "$A_STATE/identity.key" | tail -c 20)" && not_ok "/livez reveals nothing" "$out" ||
	ok "/livez reveals nothing of the node's secrets"

# ---- the Host header --------------------------------------------------------------------
bad=""
for h in evil.example localhost.evil.example 127.0.0.1.evil.example evil.example:80 \
	'localhost@evil.example' 192.168.1.1 '[::2]' 'localhost:80:80'; do
	for p in /livez /v1/status; do
		c=$(code -H "$AUTH" -H "Host: $h" "$URL$p")
		[ "$c" = 403 ] || bad="$bad Host $h on $p: $c;"
	done
done
c=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --http1.0 -H 'Host:' -H "$AUTH" "$URL/v1/status")
[ "$c" = 403 ] || bad="$bad no Host (HTTP/1.0): $c;"
[ -z "$bad" ] && ok "a foreign or missing Host is 403 on every route, even with the token (DNS rebinding)" ||
	not_ok "a foreign or missing Host is 403 on every route, even with the token" "$bad"
bad=""
for h in localhost "localhost:${API##*:}" 127.0.0.1 "127.0.0.1:${API##*:}" '[::1]' "[::1]:${API##*:}"; do
	c=$(code -H "$AUTH" -H "Host: $h" "$URL/v1/status")
	[ "$c" = 200 ] || bad="$bad Host $h: $c;"
done
[ -z "$bad" ] && ok "Host localhost, 127.0.0.1, [::1] (with or without the port) are accepted" ||
	not_ok "Host localhost, 127.0.0.1, [::1] are accepted" "$bad"

# ---- CORS ---------------------------------------------------------------------------------
hdrs=""
for p in /livez /v1/status /v1/jobs /metrics /v1/nope; do
	hdrs="$hdrs$(curl -s -m 5 -D - -o /dev/null -H "$AUTH" -H 'Origin: http://evil.example' "$URL$p")"
	hdrs="$hdrs$(curl -s -m 5 -D - -o /dev/null -X OPTIONS -H 'Origin: http://evil.example' \
		-H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization' "$URL$p")"
done
if echo "$hdrs" | grep -qi '^access-control-'; then
	not_ok "no answer carries a CORS header, preflights included" "$(echo "$hdrs" | grep -i '^access-control-')"
else
	ok "no answer carries a CORS header, preflights included (a page cannot read or send with the token)"
fi
c=$(code -X OPTIONS -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST' "$URL/v1/jobs")
[ "$c" = 401 ] && ok "a CORS preflight without the token is 401" || not_ok "a CORS preflight without the token is 401" "$c"

# ---- bodies ---------------------------------------------------------------------------------
# /v1/join takes 4 KiB at most, other small routes 64 KiB, /v1/jobs an
# input of input_max in base64: each is refused with 413 from the
# announced length, before the body is read; a chunked body that grows
# past the cap is cut off with 413 too.
head -c 100000 /dev/zero | tr '\0' a >"$TEST_TMP/100k"
c=$(code -H "$AUTH" -X POST --data-binary @"$TEST_TMP/100k" "$URL/v1/join")
[ "$c" = 413 ] && ok "POST /v1/join with 100 kB is 413" || not_ok "POST /v1/join with 100 kB is 413" "$c"
head -c 30000000 /dev/zero | tr '\0' a >"$TEST_TMP/30m"
t0=$(date +%s)
c=$(code -H "$AUTH" -X POST -H 'Content-Type: application/json' --data-binary @"$TEST_TMP/30m" "$URL/v1/jobs")
[ "$c" = 413 ] && ok "POST /v1/jobs with 30 MB (over 16 MiB of input in base64) is 413" ||
	not_ok "POST /v1/jobs with 30 MB is 413" "$c"
# Chunked, the size is only known as it arrives: the daemon keeps at most
# the cap, marks the request for 413, and past the cap drops the
# connection (MHD cannot answer in the middle of an upload), so curl sees
# a 413 or its send fail (exit 55/56). Either way nothing more is read.
c=$(code -H "$AUTH" -X POST -H 'Transfer-Encoding: chunked' --data-binary @"$TEST_TMP/30m" "$URL/v1/jobs")
rc=$?
if { [ "$c" = 413 ] || [ "$rc" = 55 ] || [ "$rc" = 56 ]; } && [ "$(code "$URL/livez")" = 200 ]; then
	ok "the same body chunked (no Content-Length) is cut off at the cap (curl: $c, exit $rc)"
else
	not_ok "the same body chunked (no Content-Length) is cut off at the cap" "code=$c exit=$rc"
fi
c=$(code -H "$AUTH" -X POST -H 'Transfer-Encoding: chunked' --data-binary @"$TEST_TMP/100k" "$URL/v1/status")
[ "$c" = 413 ] || [ "$c" = 405 ] && ok "a 100 kB chunked body to a GET route is refused ($c)" ||
	not_ok "a 100 kB chunked body to a GET route is refused" "$c"
rss=$(proc_kb "$A_PID" VmHWM)
# The 30 MB bodies were refused, not buffered: the daemon held at most the
# cap of /v1/jobs (22 MiB) and never a whole body.
[ -n "$rss" ] && [ "$rss" -lt 40000 ] || grep -q libasan "/proc/$A_PID/maps" &&
	ok "the refused bodies were never held in memory (VmHWM $rss kB)" ||
	not_ok "the refused bodies were never held in memory" "VmHWM $rss kB"

# ---- malformed JSON ---------------------------------------------------------------------------
# json_400 PATH BODY: 400 with a JSON error object and a message.
bad=""
json_400() {
	res=$(curl -s -m 5 -w '\n%{http_code}' -H "$AUTH" -X POST --data-binary "$2" "$URL$1")
	if [ "$(echo "$res" | tail -n1)" != 400 ] ||
		! echo "$res" | grep -q '"error"' || ! echo "$res" | grep -q '"message": *"[^"]\{8,\}'; then
		bad="$bad [$1 $2 -> $(echo "$res" | tr '\n' ' ')]"
	fi
}
json_400 /v1/jobs '{'
json_400 /v1/jobs ''
json_400 /v1/jobs '[]'
json_400 /v1/jobs '"service"'
json_400 /v1/jobs '{"service": 5, "input_b64": ""}'
json_400 /v1/jobs '{"service": "echo", "input_b64": "!!!not base64"}'
json_400 /v1/jobs '{"service": "echo", "input_b64": "", "id": "../../etc"}'
json_400 /v1/jobs '{"service": "echo", "input_b64": "", "timeout_ms": -1}'
json_400 /v1/jobs "$(printf '{"service": "ech\377o", "input_b64": ""}')"
json_400 /v1/jobs '{"service": "echo", "input_b64": "", "service": "sha256"}x'
json_400 /v1/join '{'
json_400 /v1/join '{"invite": 12}'
json_400 /v1/join '{"invite": "fedmesh1notaninvite"}'
[ -z "$bad" ] && ok "malformed JSON and bad fields are 400 with an error and a message" ||
	not_ok "malformed JSON and bad fields are 400 with an error and a message" "$bad"
kill -0 "$A_PID" 2>/dev/null && ok "the daemon is still up after the malformed requests" ||
	not_ok "the daemon is still up after the malformed requests"
stop_daemon "$A_PID"

# ---- the state directory and its files -------------------------------------------------------
modes=$(stat -c '%n %a' "$A_STATE" "$A_STATE/identity.key" "$A_STATE/federation.key" \
	"$A_STATE/api.token" "$A_STATE/fedmesh.db" 2>&1 | sed "s|$A_STATE|STATE|")
want="STATE 700
STATE/identity.key 600
STATE/federation.key 600
STATE/api.token 600
STATE/fedmesh.db 600"
[ "$modes" = "$want" ] && ok "state dir 0700; identity.key, federation.key, api.token, fedmesh.db 0600" ||
	not_ok "state dir 0700; identity.key, federation.key, api.token, fedmesh.db 0600" "$modes"

# start_refused WHAT HINT: a start that must fail, naming HINT.
start_refused() {
	out=$(timeout 10 "$FEDMESHD" --state-dir "$A_STATE" --listen 127.0.0.1:0 --api 127.0.0.1:0 \
		--no-mdns --no-beacon --no-dht $ROOT_FLAG 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && echo "$out" | grep -q "$2"; then
		ok "$1 is refused at start ($2)"
	else
		not_ok "$1 is refused at start ($2)" "rc=$rc" "$out"
	fi
}
chmod 640 "$A_STATE/federation.key"
start_refused "federation.key readable by the group" 'chmod 600'
chmod 600 "$A_STATE/federation.key"
chmod 604 "$A_STATE/identity.key"
start_refused "identity.key readable by others" 'chmod 600'
chmod 600 "$A_STATE/identity.key"
chmod 777 "$A_STATE"
start_refused "a state directory others may write to" 'chmod 700'
chmod 755 "$A_STATE"
chmod 644 "$A_STATE/api.token" "$A_STATE/fedmesh.db"
start_daemon a --no-mdns --no-beacon --no-dht || not_ok "fedmeshd starts again"
modes=$(stat -c '%a' "$A_STATE" "$A_STATE/api.token" "$A_STATE/fedmesh.db" | tr '\n' ' ')
[ "$modes" = "700 600 600 " ] &&
	ok "a readable state dir, api.token and fedmesh.db are made private again at start" ||
	not_ok "a readable state dir, api.token and fedmesh.db are made private again at start" "$modes"
stop_daemon "$PID"

# ---- root ------------------------------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
	out=$(timeout 10 "$FEDMESHD" --state-dir "$A_STATE" --listen 127.0.0.1:0 --api 127.0.0.1:0 --no-mdns --no-beacon --no-dht 2>&1)
	rc=$?
	[ $rc -ne 0 ] && echo "$out" | grep -q 'allow-root' && ok "root without --allow-root is refused, naming the flag" ||
		not_ok "root without --allow-root is refused, naming the flag" "rc=$rc" "$out"
	printf '[security]\nallow_root = true\n' >"$TEST_TMP/root.conf"
	ROOT_FLAG_SAVED=$ROOT_FLAG
	ROOT_FLAG=""
	if start_daemon a --config "$TEST_TMP/root.conf" --no-mdns --no-beacon --no-dht; then
		ok "root with [security] allow_root = true starts"
		stop_daemon "$PID"
	else
		not_ok "root with [security] allow_root = true starts"
	fi
	ROOT_FLAG=$ROOT_FLAG_SAVED
else
	ok "# SKIP root refusal: not running as root"
fi

tap_done
