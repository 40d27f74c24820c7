#!/bin/sh
# End-to-end test of local discovery (mDNS / DNS-SD and the encrypted
# beacon) on a LAN simulated with network namespaces (netns-lib.sh): one
# bridge, one namespace per host, 10.77.0.0/24, nothing outside touched.
#
#   (a) A prints an invite without addresses; B, then C, join with it and
#       no bootstrap address: every pair connects within 5 s, each session
#       dialled from an address found by mdns or the beacon. Then the same
#       with mDNS alone (--no-beacon on both).
#   (d) avahi-daemon (with its own dbus-daemon) in B's namespace, sharing
#       port 5353 with B: avahi-browse resolves A and B with their TXT id;
#       services published with avahi-publish (garbage _fedmesh._udp TXT, a
#       forged member-looking one, an unrelated _http._tcp) are ignored or
#       counted as foreign and never become peers; A's goodbye on SIGTERM
#       removes it from avahi's cache at once.
#   (b) D, a node of another federation on the same LAN: seen (A counts a
#       foreign node and an invalid beacon) but never dialled, over 10 s.
#   (c) with --no-mdns on both, the beacon alone finds the peer.
#   (e) a new node at the address of one that left is found, and the one
#       that left is not blamed.
#
# Root only (namespaces); TAP output, "1..0 # SKIP reason" otherwise. Every
# wait is bounded; an exit trap kills the daemons and deletes the
# namespaces.
set -u
top=${top_srcdir:-$(dirname "$0")/../..}

. "$top/tests/integration/netns-lib.sh"
if ! why=$(netns_available); then
	echo "1..0 # SKIP $why"
	exit 0
fi
. "$top/tests/integration/lib.sh"

AVAHI_PIDS=""
cleanup_lan() {
	for p in $AVAHI_PIDS; do
		kill "$p" 2>/dev/null
	done
	cleanup_all
	lan_cleanup
}
trap cleanup_lan EXIT INT TERM


# Seconds within which every pair must be connected (the issue's bar).
CONNECT_WITHIN_S=5

# connected_pair HX SX IDX HY SY IDY: both sides list each other connected.
connected_pair() {
	set -- "$(lan_peer "$1" "$2" "$6")" "$(lan_peer "$4" "$5" "$3")"
	[ "${1%% *}" = connected ] && [ "${2%% *}" = connected ]
}

# discovered_pair ...: as connected_pair, and the side that dialled learned
# the other's address from mdns or beacon (the other side lists the
# session as inbound).
discovered_pair() {
	set -- "$(lan_peer "$1" "$2" "$6")" "$(lan_peer "$4" "$5" "$3")"
	[ "${1%% *}" = connected ] && [ "${2%% *}" = connected ] || return 1
	case "${1#* } ${2#* }" in
	*mdns* | *beacon*) return 0 ;;
	esac
	return 1
}

# wait_ms LIMIT_MS COMMAND...: polls COMMAND every 0.1 s until it succeeds
# or LIMIT_MS passed; prints the elapsed ms; fails on timeout.
wait_ms() {
	limit=$1
	shift
	t0=$(now_ms)
	while :; do
		if "$@"; then
			echo $(($(now_ms) - t0))
			return 0
		fi
		[ $(($(now_ms) - t0)) -ge "$limit" ] && return 1
		sleep 0.1
	done
}

# no_other_sources HOST STATE: no peer came from an invite or a bootstrap
# address (the invite had none).
no_other_sources() {
	! lan_cli "$1" "$2" peers --json 2>/dev/null |
		grep -Eq '"source": "(invite|bootstrap)"'
}

# stop_all: SIGTERM every daemon started so far, bounded; sets STOP_OK=0
# when one did not exit 0.
stop_all() {
	STOP_OK=1
	for p in $DAEMON_PIDS; do
		kill -0 "$p" 2>/dev/null || continue
		stop_daemon "$p"
		[ "$EXIT_CODE" = 0 ] || STOP_OK=0
	done
	DAEMON_PIDS=""
}

lan_setup 4 || {
	echo "1..0 # SKIP cannot build the test LAN with ip netns"
	exit 0
}

# ---- (a) two, then three nodes from one key-only invite --------------------
lan_daemon_start a 1 || { not_ok "A starts in its namespace"; tap_done; exit 1; }
A_PID=$PID A_STATE=$STATE
A_ID=$(lan_cli 1 "$A_STATE" id)
INVITE=$(lan_cli 1 "$A_STATE" invite --no-addresses 2>&1)
json=$(lan_cli 1 "$A_STATE" invite --no-addresses --json 2>&1)
if echo "$INVITE" | grep -Eq '^fedmesh1[a-z0-9]+$' &&
	echo "$json" | tr -d ' \n' | grep -q '"addresses":\[\]'; then
	ok "fedmesh invite --no-addresses prints an invite with no address"
else
	not_ok "fedmesh invite --no-addresses prints an invite with no address" "$INVITE" "$json"
fi
status=$(lan_cli 1 "$A_STATE" status --json 2>&1)
if echo "$status" | tr -d ' \n' | grep -q '"discovery":{"mdns":true,"beacon":true,"hostname":"[^"]*\.local","interfaces":\["eth0"\]}'; then
	ok "/v1/status: discovery on (mDNS and beacon) on eth0 only"
else
	not_ok "/v1/status: discovery on (mDNS and beacon) on eth0 only" "$status"
fi

lan_daemon_start b 2 --join "$INVITE" || { not_ok "B starts"; tap_done; exit 1; }
B_PID=$PID B_STATE=$STATE
B_ID=$(lan_cli 2 "$B_STATE" id)
if ms=$(wait_ms $((CONNECT_WITHIN_S * 1000)) discovered_pair 1 "$A_STATE" "$A_ID" 2 "$B_STATE" "$B_ID"); then
	ok "A and B connect with no address typed, found by discovery ($ms ms after B started)"
else
	not_ok "A and B connect with no address typed, found by discovery" \
		"A sees B: $(lan_peer 1 "$A_STATE" "$B_ID")" "B sees A: $(lan_peer 2 "$B_STATE" "$A_ID")"
fi

lan_daemon_start c 3 --join "$INVITE" || { not_ok "C starts"; tap_done; exit 1; }
C_PID=$PID C_STATE=$STATE
C_ID=$(lan_cli 3 "$C_STATE" id)
three() {
	discovered_pair 1 "$A_STATE" "$A_ID" 3 "$C_STATE" "$C_ID" &&
		discovered_pair 2 "$B_STATE" "$B_ID" 3 "$C_STATE" "$C_ID" &&
		connected_pair 1 "$A_STATE" "$A_ID" 2 "$B_STATE" "$B_ID"
}
if ms=$(wait_ms $((CONNECT_WITHIN_S * 1000)) three); then
	ok "three nodes: every pair connected within ${CONNECT_WITHIN_S} s ($ms ms after C started)"
else
	not_ok "three nodes: every pair connected within ${CONNECT_WITHIN_S} s" \
		"A-C: $(lan_peer 1 "$A_STATE" "$C_ID") / $(lan_peer 3 "$C_STATE" "$A_ID")" \
		"B-C: $(lan_peer 2 "$B_STATE" "$C_ID") / $(lan_peer 3 "$C_STATE" "$B_ID")"
fi
if no_other_sources 1 "$A_STATE" && no_other_sources 2 "$B_STATE" && no_other_sources 3 "$C_STATE"; then
	ok "no peer came from an invite or bootstrap address"
else
	not_ok "no peer came from an invite or bootstrap address"
fi
v=$(lan_metric 1 "$A_STATE" fedmesh_peers_discovered_total)
[ "$v" -ge 2 ] && ok "A counts the members it discovered (fedmesh_peers_discovered_total $v)" ||
	not_ok "A counts the members it discovered" "fedmesh_peers_discovered_total $v"
v=$(lan_metric 1 "$A_STATE" fedmesh_mdns_packets_received_total)
w=$(lan_metric 1 "$A_STATE" fedmesh_beacons_received_total)
[ "$v" -gt 0 ] && [ "$w" -gt 0 ] && ok "A received mDNS packets ($v) and beacons ($w)" ||
	not_ok "A received mDNS packets and beacons" "mdns $v beacons $w"

# ---- (d) interoperability with avahi-daemon ---------------------------------
# avahi needs a system bus: a private dbus-daemon on a socket in TEST_TMP,
# found through DBUS_SYSTEM_BUS_ADDRESS, so no /run/dbus is touched and no
# mount namespace is needed. avahi runs in B's namespace, sharing port 5353
# with B, as on a desktop where avahi-daemon is already running.
AVAHI_SKIP=""
for tool in dbus-daemon avahi-daemon avahi-browse avahi-publish; do
	command -v "$tool" >/dev/null 2>&1 ||
		AVAHI_SKIP="$tool not installed (scripts/deps.sh --test installs dbus, avahi-daemon, avahi-utils)"
done
BUS=$TEST_TMP/system_bus_socket
if [ -z "$AVAHI_SKIP" ]; then
	cat >"$TEST_TMP/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$BUS</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
	# Only eth0, nothing published but what avahi-publish asks for.
	cat >"$TEST_TMP/avahi.conf" <<EOF
[server]
use-ipv4=yes
use-ipv6=yes
allow-interfaces=eth0
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
publish-addresses=yes
[reflector]
[rlimits]
EOF
	if timeout 10 dbus-daemon --config-file="$TEST_TMP/bus.conf" --fork \
		--nopidfile --print-pid=3 3>"$TEST_TMP/dbus.pid" >/dev/null 2>&1; then
		AVAHI_PIDS="$AVAHI_PIDS $(cat "$TEST_TMP/dbus.pid")"
	else
		AVAHI_SKIP="dbus-daemon did not start with a private system bus"
	fi
fi
if [ -z "$AVAHI_SKIP" ]; then
	DBUS_SYSTEM_BUS_ADDRESS=unix:path=$BUS
	export DBUS_SYSTEM_BUS_ADDRESS
	# ip netns exec runs the command in a mount namespace of its own:
	# a tmpfs there gives avahi a private /run/avahi-daemon (its pid file
	# and socket), so a system avahi-daemon neither blocks it nor sees it.
	# shellcheck disable=SC2016 # $@ is for the inner shell
	ip netns exec "$(lan_host_ns 2)" sh -c '
		if [ -d /run/avahi-daemon ]; then
			mount -t tmpfs -o mode=0755 fm-avahi /run/avahi-daemon || exit 1
		fi
		exec avahi-daemon "$@"' avahi-daemon -f "$TEST_TMP/avahi.conf" --no-drop-root \
		--no-chroot --no-proc-title --no-rlimits >"$TEST_TMP/avahi.log" 2>&1 </dev/null &
	AVAHI_PID=$!
	AVAHI_PIDS="$AVAHI_PIDS $AVAHI_PID"
	i=0
	until grep -q "Server startup complete" "$TEST_TMP/avahi.log" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$AVAHI_PID" 2>/dev/null; then
			AVAHI_SKIP="avahi-daemon did not start: $(tail -n 3 "$TEST_TMP/avahi.log" | tr '\n' ' ')"
			break
		fi
		sleep 0.1
	done
fi

# browse: avahi-browse's resolved lines for _fedmesh._udp (bounded).
browse() {
	in_host 2 timeout 10 avahi-browse -rpt _fedmesh._udp 2>/dev/null | grep '^='
}
resolves() {
	browse | grep -F "\"id=$1\"" | grep -q ";7420;"
}
if [ -n "$AVAHI_SKIP" ]; then
	for t in "avahi-browse resolves our nodes with their TXT id" \
		"avahi-publish services confuse no node" \
		"A's goodbye removes it from avahi's cache" \
		"avahi kept its host name (no conflict with our records)"; do
		ok "$t # SKIP $AVAHI_SKIP"
	done
else
	if wait_ms 5000 resolves "$A_ID" >/dev/null && wait_ms 5000 resolves "$B_ID" >/dev/null; then
		ok "avahi-browse resolves A (other host) and B (same host) with TXT id, port 7420"
	else
		not_ok "avahi-browse resolves A (other host) and B (same host) with TXT id, port 7420" \
			"$(in_host 2 timeout 10 avahi-browse -rpt _fedmesh._udp 2>&1)"
	fi

	foreign_before=$(lan_metric 1 "$A_STATE" fedmesh_foreign_nodes_seen_total)
	FAKE_ID=$(printf 'ab%.0s' $(seq 32))
	ip netns exec "$(lan_host_ns 2)" avahi-publish -s garbage _fedmesh._udp 7420 "v=1" "id=zz" "fed=" \
		>"$TEST_TMP/pub1.log" 2>&1 </dev/null &
	AVAHI_PIDS="$AVAHI_PIDS $!"
	ip netns exec "$(lan_host_ns 2)" avahi-publish -s "fedmesh-forged" _fedmesh._udp 7420 "v=1" \
		"id=$FAKE_ID" "fed=0011223344556677" >"$TEST_TMP/pub2.log" 2>&1 </dev/null &
	AVAHI_PIDS="$AVAHI_PIDS $!"
	ip netns exec "$(lan_host_ns 2)" avahi-publish -s test _http._tcp 80 >"$TEST_TMP/pub3.log" 2>&1 </dev/null &
	AVAHI_PIDS="$AVAHI_PIDS $!"
	foreign_grew() {
		[ "$(lan_metric 1 "$A_STATE" fedmesh_foreign_nodes_seen_total)" -gt "$foreign_before" ]
	}
	wait_ms 5000 foreign_grew >/dev/null
	sleep 1
	if kill -0 "$A_PID" && kill -0 "$B_PID" && kill -0 "$C_PID" &&
		[ "$(lan_peer_count 1 "$A_STATE")" = 2 ] && [ "$(lan_peer_count 2 "$B_STATE")" = 2 ] &&
		[ -z "$(lan_peer 1 "$A_STATE" "$FAKE_ID")" ] && foreign_grew &&
		connected_pair 1 "$A_STATE" "$A_ID" 2 "$B_STATE" "$B_ID"; then
		ok "avahi-publish services confuse no node (the forged member is counted foreign, never a peer)"
	else
		not_ok "avahi-publish services confuse no node" \
			"A peers: $(lan_peer_count 1 "$A_STATE"), B peers: $(lan_peer_count 2 "$B_STATE")" \
			"foreign before $foreign_before, now $(lan_metric 1 "$A_STATE" fedmesh_foreign_nodes_seen_total)" \
			"$(cat "$TEST_TMP"/pub*.log)"
	fi
fi

# ---- (b) a node of another federation on the same LAN -------------------------
foreign_before=$(lan_metric 1 "$A_STATE" fedmesh_foreign_nodes_seen_total)
lan_daemon_start d 4 || { not_ok "D starts"; tap_done; exit 1; }
D_STATE=$STATE
D_ID=$(lan_cli 4 "$D_STATE" id)
foreign_seen() {
	[ "$(lan_metric 1 "$A_STATE" fedmesh_foreign_nodes_seen_total)" -gt "$foreign_before" ] &&
		[ "$(lan_metric 1 "$A_STATE" fedmesh_beacons_invalid_total)" -ge 1 ] &&
		[ "$(lan_metric 4 "$D_STATE" fedmesh_foreign_nodes_seen_total)" -ge 3 ]
}
if ms=$(wait_ms 5000 foreign_seen); then
	ok "D (another federation) and A, B, C see each other as foreign ($ms ms)"
else
	not_ok "D (another federation) and A, B, C see each other as foreign" \
		"A foreign $(lan_metric 1 "$A_STATE" fedmesh_foreign_nodes_seen_total) beacons_invalid $(lan_metric 1 "$A_STATE" fedmesh_beacons_invalid_total)" \
		"D foreign $(lan_metric 4 "$D_STATE" fedmesh_foreign_nodes_seen_total)"
fi
# Nobody dials across federations: each attempt would show as bad_mac at
# the side dialled. 10 s is several beacon replies and mDNS query rounds.
sleep 10
d_mac=$(lan_metric 4 "$D_STATE" 'fedmesh_session_errors_total{reason="bad_mac"}')
a_mac=$(lan_metric 1 "$A_STATE" 'fedmesh_session_errors_total{reason="bad_mac"}')
d_hs=$(lan_metric 4 "$D_STATE" fedmesh_handshakes_completed_total)
if [ "$d_mac" = 0 ] && [ "$a_mac" = 0 ] && [ "$d_hs" = 0 ] &&
	[ "$(lan_peer_count 4 "$D_STATE")" = 0 ] && [ -z "$(lan_peer 1 "$A_STATE" "$D_ID")" ] &&
	[ -z "$(lan_peer 2 "$B_STATE" "$D_ID")" ] && [ -z "$(lan_peer 3 "$C_STATE" "$D_ID")" ]; then
	ok "over 10 s, nobody dials across federations (bad_mac 0 at A and D, D has no peer)"
else
	not_ok "over 10 s, nobody dials across federations" \
		"bad_mac at D $d_mac, at A $a_mac; D handshakes $d_hs; D peers $(lan_peer_count 4 "$D_STATE")"
fi

# ---- goodbyes --------------------------------------------------------------
stop_daemon "$A_PID"
[ "$EXIT_CODE" = 0 ] && ok "A stops cleanly on SIGTERM" || not_ok "A stops cleanly on SIGTERM" "exit $EXIT_CODE"
if [ -z "$AVAHI_SKIP" ]; then
	gone() {
		! browse | grep -qF "\"id=$A_ID\""
	}
	# Without a goodbye avahi would keep A's PTR for its TTL (75 min).
	if ms=$(wait_ms 5000 gone); then
		ok "A's goodbye removes it from avahi's cache ($ms ms)"
	else
		not_ok "A's goodbye removes it from avahi's cache" "$(browse)"
	fi
	# avahi logs "Host name conflict" and renames itself when another
	# responder claims its name with other data.
	if kill -0 "$AVAHI_PID" 2>/dev/null && ! grep -qi conflict "$TEST_TMP/avahi.log"; then
		ok "avahi kept its host name (no conflict with our records)"
	else
		not_ok "avahi kept its host name (no conflict with our records)" "$(tail -n 5 "$TEST_TMP/avahi.log")"
	fi
fi
stop_all
[ "$STOP_OK" = 1 ] && ok "B, C and D stop cleanly" || not_ok "B, C and D stop cleanly"
for p in $AVAHI_PIDS; do
	kill "$p" 2>/dev/null
done
AVAHI_PIDS=""

# ---- mDNS alone (--no-beacon), then (c) the beacon alone (--no-mdns) -------
for mode in mdns beacon; do
	if [ "$mode" = mdns ]; then flag=--no-beacon; else flag=--no-mdns; fi
	lan_daemon_start "e-$mode" 1 "$flag" || { not_ok "E ($flag) starts"; continue; }
	E_STATE=$STATE
	E_ID=$(lan_cli 1 "$E_STATE" id)
	INVITE=$(lan_cli 1 "$E_STATE" invite --no-addresses)
	lan_daemon_start "f-$mode" 3 "$flag" --join "$INVITE" || { not_ok "F ($flag) starts"; continue; }
	F_STATE=$STATE
	F_ID=$(lan_cli 3 "$F_STATE" id)
	only() {
		discovered_pair 1 "$E_STATE" "$E_ID" 3 "$F_STATE" "$F_ID" || return 1
		s=$(lan_peer 1 "$E_STATE" "$F_ID")" "$(lan_peer 3 "$F_STATE" "$E_ID")
		case "$s" in *"$mode"*) return 0 ;; esac
		return 1
	}
	if ms=$(wait_ms $((CONNECT_WITHIN_S * 1000)) only); then
		ok "$flag on both: $mode alone connects the two ($ms ms)"
	else
		not_ok "$flag on both: $mode alone connects the two" \
			"E sees F: $(lan_peer 1 "$E_STATE" "$F_ID")" "F sees E: $(lan_peer 3 "$F_STATE" "$E_ID")"
	fi
	if [ "$mode" = mdns ]; then
		quiet=$(lan_metric 1 "$E_STATE" fedmesh_beacons_sent_total)
	else
		quiet=$(lan_metric 1 "$E_STATE" fedmesh_mdns_packets_sent_total)
	fi
	off=$(lan_cli 1 "$E_STATE" status --json | tr -d ' \n' | grep -o '"discovery":{[^}]*}')
	if [ "$quiet" = 0 ] && case "$off" in *"\"${flag#--no-}\":false"*) true ;; *) false ;; esac; then
		ok "$flag: nothing sent by the disabled mechanism; status says it is off"
	else
		not_ok "$flag: nothing sent by the disabled mechanism; status says it is off" "sent $quiet" "$off"
	fi
	stop_all
	[ "$STOP_OK" = 1 ] || not_ok "E and F ($flag) stop cleanly"
done

# ---- (e) a new node at the address of one that left ------------------------
# DHCP hands addresses out again, and a reinstalled machine comes back with
# a new identity: the newcomer must be found, and the node that left must
# not be blamed for what the newcomer said (the core drops the stale address
# from the old peer: session error wrong_node, no reputation cost).
lan_daemon_start g 1 --no-mdns || { not_ok "G starts"; tap_done; exit 1; }
G_STATE=$STATE
G_ID=$(lan_cli 1 "$G_STATE" id)
INVITE=$(lan_cli 1 "$G_STATE" invite --no-addresses)
lan_daemon_start h1 3 --no-mdns --join "$INVITE" || { not_ok "H1 starts"; tap_done; exit 1; }
H1_PID=$PID H1_STATE=$STATE
H1_ID=$(lan_cli 3 "$H1_STATE" id)
if wait_ms 5000 discovered_pair 1 "$G_STATE" "$G_ID" 3 "$H1_STATE" "$H1_ID" >/dev/null; then
	stop_daemon "$H1_PID"
	sleep 1
	lan_daemon_start h2 3 --no-mdns --join "$INVITE" || { not_ok "H2 starts"; tap_done; exit 1; }
	H2_STATE=$STATE
	H2_ID=$(lan_cli 3 "$H2_STATE" id)
	if ms=$(wait_ms $((CONNECT_WITHIN_S * 1000)) discovered_pair 1 "$G_STATE" "$G_ID" 3 "$H2_STATE" "$H2_ID"); then
		ok "a new node at a departed node's address is found ($ms ms)"
	else
		not_ok "a new node at a departed node's address is found" \
			"G sees H2: $(lan_peer 1 "$G_STATE" "$H2_ID")" "H2 sees G: $(lan_peer 3 "$H2_STATE" "$G_ID")"
	fi
	sleep 3
	st=$(lan_peer 1 "$G_STATE" "$H1_ID")
	if [ "${st%% *}" != banned ]; then
		ok "the departed node is not banned for the newcomer's identity"
	else
		not_ok "the departed node is not banned for the newcomer's identity" "G sees H1: $st"
	fi
else
	not_ok "G and H1 connect (beacon alone)"
fi
stop_all

tap_done
