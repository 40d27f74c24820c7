#!/bin/sh
# End-to-end test of the Kademlia DHT on loopback: eight daemons, seven of
# them joined through the first one's invite; each ends up with the others
# in its routing table (`fedmesh dht --json`) and `fedmesh find echo` on any
# of them lists the providers; with the bootstrap daemon stopped, another
# daemon restarted with its state directory and no invite or --bootstrap
# rejoins from its stored table. Also GET /v1/dht's shape, the DHT metrics
# and the find errors (bad name, empty table, --no-dht). mDNS and the beacon
# are off, so only the invite and the DHT find peers. TAP output; every
# wait is bounded.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/lib.sh"

NODES=8
# Seconds within which every table must hold the others, and providers
# must be found (each daemon joins, self-looks-up and publishes at once).
FILL_WITHIN_S=30
FIND_WITHIN_S=30
# Entries each table must reach: the seven others, less one for slack
# (a bucket refusal or a late challenge would not be a DHT failure).
TABLE_MIN=6
PROVIDERS_MIN=2

# num FIELD: the first integer value of "FIELD": N in JSON on stdin.
num() {
	v=$(grep -o "\"$1\": *[0-9]*" | head -n1 | sed 's/.*: *//')
	echo "${v:-0}"
}

table_size() { F "$1" dht --json 2>/dev/null | num table_size; }
table_live() { F "$1" dht --json 2>/dev/null | num table_live; }
table_at_least() { [ "$(table_size "$1")" -ge "$2" ]; }
live_at_least() { [ "$(table_live "$1")" -ge "$2" ]; }
# providers STATE SERVICE: how many providers `fedmesh find` lists.
providers() {
	F "$1" find "$2" --json 2>/dev/null | grep -c '"node_id"'
}
providers_at_least() { [ "$(providers "$1" "$2")" -ge "$3" ]; }

state_of() { eval "echo \$STATE_$1"; }
pid_of() { eval "echo \$PID_$1"; }

DFLAGS="--no-mdns --no-beacon"

# ---- the bootstrap node, alone -------------------------------------------------
start_daemon d1 $DFLAGS || {
	not_ok "daemon 1 starts"
	tap_done
	exit 1
}
PID_1=$PID STATE_1=$STATE API_1=$API TOKEN_1=$TOKEN

out=$(http -H "Authorization: Bearer $TOKEN_1" "http://$API_1/v1/find/echo")
code=$(printf '%s\n' "$out" | tail -n1)
if [ "$code" = 503 ] && printf '%s\n' "$out" | grep -q '"dht_empty"'; then
	ok "find on a node with an empty table: 503 dht_empty"
else
	not_ok "find on a node with an empty table: 503 dht_empty" "$out"
fi
out=$(http -H "Authorization: Bearer $TOKEN_1" "http://$API_1/v1/find/No%20Such")
if [ "$(printf '%s\n' "$out" | tail -n1)" = 400 ]; then
	ok "find with an invalid service name: 400"
else
	not_ok "find with an invalid service name: 400" "$out"
fi
out=$(http -X POST -H "Authorization: Bearer $TOKEN_1" "http://$API_1/v1/dht")
if [ "$(printf '%s\n' "$out" | tail -n1)" = 405 ]; then
	ok "POST /v1/dht: 405"
else
	not_ok "POST /v1/dht: 405" "$out"
fi
out=$(http "http://$API_1/v1/dht")
if [ "$(printf '%s\n' "$out" | tail -n1)" = 401 ]; then
	ok "GET /v1/dht without the token: 401"
else
	not_ok "GET /v1/dht without the token: 401" "$out"
fi

INVITE=$(F "$STATE_1" invite 2>&1)
if echo "$INVITE" | grep -Eq '^fedmesh1[a-z0-9]+$'; then
	ok "daemon 1 prints an invite"
else
	not_ok "daemon 1 prints an invite" "$INVITE"
	tap_done
	exit 1
fi

# ---- seven more join with it ----------------------------------------------------
# (lib.sh's start_daemon uses $i: this loop counts with $idx.)
started=1
idx=2
while [ $idx -le $NODES ]; do
	if start_daemon "d$idx" $DFLAGS --join "$INVITE"; then
		eval "PID_$idx=\$PID STATE_$idx=\$STATE"
		started=$((started + 1))
	fi
	idx=$((idx + 1))
done
if [ $started -eq $NODES ]; then
	ok "$NODES daemons start, $((NODES - 1)) of them with --join INVITE"
else
	not_ok "$NODES daemons start" "only $started started"
	tap_done
	exit 1
fi

# ---- every table holds the others ------------------------------------------------
all_tables_full() {
	j=1
	while [ $j -le $NODES ]; do
		table_at_least "$(state_of $j)" $TABLE_MIN || return 1
		j=$((j + 1))
	done
	return 0
}
if wait_until $FILL_WITHIN_S all_tables_full; then
	ok "within ${FILL_WITHIN_S}s every table holds >= $TABLE_MIN of the $((NODES - 1)) others"
else
	sizes=""
	j=1
	while [ $j -le $NODES ]; do
		sizes="$sizes d$j=$(table_size "$(state_of $j)")"
		j=$((j + 1))
	done
	not_ok "within ${FILL_WITHIN_S}s every table holds >= $TABLE_MIN others" "sizes:$sizes"
fi

# ---- every node finds the providers of echo ---------------------------------------
all_find() {
	j=1
	while [ $j -le $NODES ]; do
		providers_at_least "$(state_of $j)" echo $PROVIDERS_MIN || return 1
		j=$((j + 1))
	done
	return 0
}
if wait_until $FIND_WITHIN_S all_find; then
	ok "fedmesh find echo lists >= $PROVIDERS_MIN providers on each of the $NODES daemons"
else
	counts=""
	j=1
	while [ $j -le $NODES ]; do
		counts="$counts d$j=$(providers "$(state_of $j)" echo)"
		j=$((j + 1))
	done
	not_ok "fedmesh find echo lists providers on every daemon" "providers:$counts"
fi
out=$(F "$STATE_3" find echo --json 2>&1)
if printf '%s\n' "$out" | grep -Eq '"node_id": "[0-9a-f]{64}"' &&
	printf '%s\n' "$out" | grep -Eq '"127\.0\.0\.1:[0-9]+"'; then
	ok "find --json: objects with a node_id and its addresses"
else
	not_ok "find --json: objects with a node_id and its addresses" "$out"
fi
out=$(F "$STATE_3" find echo 2>&1)
if printf '%s\n' "$out" | head -n1 | grep -q '^NODE  *SLOTS  *ADDRESSES$' &&
	[ "$(printf '%s\n' "$out" | wc -l)" -ge $((PROVIDERS_MIN + 1)) ]; then
	ok "fedmesh find echo prints a table of providers"
else
	not_ok "fedmesh find echo prints a table of providers" "$out"
fi
out=$(F "$STATE_3" find nosuchservice 2>&1)
if [ $? -eq 0 ] && printf '%s\n' "$out" | grep -q "No provider of 'nosuchservice'"; then
	ok "find of a service nobody offers: none found"
else
	not_ok "find of a service nobody offers: none found" "$out"
fi

# ---- GET /v1/dht, fedmesh dht, metrics ----------------------------------------------
out=$(F "$STATE_2" dht --json 2>&1)
missing=""
for k in enabled table_size table_live buckets index fill lookups count \
	success_rate hops_mean messages_mean last_bootstrap known_addrs \
	values_stored datagrams received sent dropped rpc_timeouts; do
	printf '%s\n' "$out" | grep -q "\"$k\":" || missing="$missing $k"
done
if [ -z "$missing" ] && printf '%s\n' "$out" | grep -q '"enabled": true' &&
	printf '%s\n' "$out" | grep -Eq '"last_bootstrap": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"' &&
	[ "$(printf '%s\n' "$out" | num count)" -ge 1 ]; then
	ok "GET /v1/dht: table, buckets, lookups, last bootstrap, counters"
else
	not_ok "GET /v1/dht: table, buckets, lookups, last bootstrap, counters" "missing:$missing" "$out"
fi
out=$(F "$STATE_2" dht 2>&1)
if printf '%s\n' "$out" | grep -Eq '^Routing table: +[0-9]+ entries, [0-9]+ live$' &&
	printf '%s\n' "$out" | grep -q '^Lookups: .*succeeded' &&
	printf '%s\n' "$out" | grep -Eq '^ +[0-9]+  [#.]{20} [0-9]+$' &&
	printf '%s\n' "$out" | grep -q '^Last bootstrap: '; then
	ok "fedmesh dht prints a summary with bucket bars"
else
	not_ok "fedmesh dht prints a summary with bucket bars" "$out"
fi
metrics=$(curl -s -m 5 -H "Authorization: Bearer $TOKEN_1" "http://$API_1/metrics")
missing=""
for m in fedmesh_dht_table_size fedmesh_dht_lookups_total \
	fedmesh_dht_lookups_succeeded_total fedmesh_dht_datagrams_received_total \
	fedmesh_dht_datagrams_dropped_total fedmesh_dht_rpc_timeouts_total; do
	printf '%s\n' "$metrics" | grep -Eq "^$m [0-9]+$" || missing="$missing $m"
done
size=$(printf '%s\n' "$metrics" | sed -n 's/^fedmesh_dht_table_size //p')
if [ -z "$missing" ] && [ "${size:-0}" -ge $TABLE_MIN ]; then
	ok "/metrics has the DHT counters (table size $size)"
else
	not_ok "/metrics has the DHT counters" "missing:$missing size=$size"
fi

# ---- the bootstrap daemon goes; another restarts from its stored table ---------------
stop_daemon "$PID_1"
ok "the bootstrap daemon stops"
if providers_at_least "$STATE_4" echo $PROVIDERS_MIN; then
	ok "without the bootstrap daemon, find still works"
else
	not_ok "without the bootstrap daemon, find still works" "$(F "$STATE_4" find echo 2>&1)"
fi

R=5
R_STATE=$(state_of $R)
if stop_daemon "$(pid_of $R)" && [ "$EXIT_CODE" = 0 ]; then
	ok "daemon $R stops cleanly (its table is saved)"
else
	not_ok "daemon $R stops cleanly" "exit $EXIT_CODE"
fi
# Same state directory; no --join, no --bootstrap. Its stored invite
# address is the stopped bootstrap daemon's, and a new port (port 0) means
# the others know it at a stale address: only its stored table can help.
if start_daemon "d$R" $DFLAGS; then
	ok "daemon $R restarts without an invite or a bootstrap address"
else
	not_ok "daemon $R restarts without an invite or a bootstrap address"
	tap_done
	exit 1
fi
if grep -Eq 'restored the stored routing table: ([6-9]|[1-9][0-9]+) known' "$TEST_TMP/d$R.log"; then
	ok "daemon $R restored its stored routing table"
else
	not_ok "daemon $R restored its stored routing table" "$(grep dht "$TEST_TMP/d$R.log")"
fi
if wait_until $FILL_WITHIN_S live_at_least "$R_STATE" $((NODES - 2)); then
	ok "daemon $R rejoins: its table holds the $((NODES - 2)) running others again"
else
	not_ok "daemon $R rejoins from its stored table" "$(F "$R_STATE" dht 2>&1)"
fi
if wait_until $FIND_WITHIN_S providers_at_least "$R_STATE" echo $PROVIDERS_MIN; then
	ok "daemon $R finds the providers of echo after the restart"
else
	not_ok "daemon $R finds the providers of echo after the restart" "$(F "$R_STATE" find echo 2>&1)"
fi

# ---- --no-dht ------------------------------------------------------------------------------
if start_daemon off $DFLAGS --no-dht; then
	out=$(F "$STATE" dht --json 2>&1)
	out2=$(http -H "Authorization: Bearer $TOKEN" "http://$API/v1/find/echo")
	if printf '%s\n' "$out" | grep -q '"enabled": false' &&
		[ "$(printf '%s\n' "$out2" | tail -n1)" = 503 ] &&
		printf '%s\n' "$out2" | grep -q '"dht_disabled"'; then
		ok "--no-dht: enabled false, find answers 503 dht_disabled"
	else
		not_ok "--no-dht: enabled false, find answers 503 dht_disabled" "$out" "$out2"
	fi
else
	not_ok "a daemon starts with --no-dht"
fi

# ---- every daemon still stops cleanly --------------------------------------------------------
bad=""
for p in $DAEMON_PIDS; do
	kill -0 "$p" 2>/dev/null || continue
	stop_daemon "$p"
	[ "$EXIT_CODE" = 0 ] || bad="$bad $p:$EXIT_CODE"
done
if [ -z "$bad" ]; then
	ok "every daemon stops cleanly"
else
	not_ok "every daemon stops cleanly" "exit codes:$bad"
fi

tap_done
