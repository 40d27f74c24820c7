# A simulated LAN in network namespaces, for the local discovery tests
# (tests/integration/discovery.sh) and benchmark (bench/discovery.sh).
#
# lan_setup N creates, all named after this shell's PID so that runs never
# collide and nothing outside is touched:
#   fm-lan-$$       a namespace holding the bridge fmbr (the "switch");
#   fm-hI-$$        one namespace per host I = 1..N, with loopback up and
#                   eth0, the inner end of a veth pair whose other end (vI)
#                   is a port of fmbr, addressed 10.77.0.I/24 (broadcast
#                   10.77.0.255).
# Both ends of every veth pair are created inside these namespaces, never
# in the caller's, and deleting the namespaces (lan_cleanup) deletes the
# bridge and the veths with them. The inner end is named eth0 because
# fedmeshd skips veth* interfaces by default. 10.77.0.0/24 exists only in
# these namespaces.
#
# Needs root and ip(8) with netns support: netns_available says whether
# both are there (and prints the reason when not).

LAN_ID=$$
LAN_NS=fm-lan-$LAN_ID

lan_host_ns() {
	echo "fm-h$1-$LAN_ID"
}

# netns_available: 0 when namespaces can be created here; otherwise prints
# why on stdout (for a TAP SKIP line) and returns 1.
netns_available() {
	if [ "$(id -u)" != 0 ]; then
		echo "not root"
		return 1
	fi
	if ! command -v ip >/dev/null 2>&1; then
		echo "ip netns unavailable (no ip command: install iproute2)"
		return 1
	fi
	if ! ip netns add "fm-probe-$LAN_ID" >/dev/null 2>&1; then
		echo "ip netns unavailable (cannot create a network namespace)"
		return 1
	fi
	ok_probe=0
	ip -n "fm-probe-$LAN_ID" link add fmprobe type bridge >/dev/null 2>&1 &&
		ip -n "fm-probe-$LAN_ID" link add fmprobe0 type veth peer name fmprobe1 >/dev/null 2>&1 &&
		ok_probe=1
	ip netns del "fm-probe-$LAN_ID" >/dev/null 2>&1
	if [ "$ok_probe" != 1 ]; then
		echo "ip netns unavailable (no bridge or veth support in the kernel)"
		return 1
	fi
	return 0
}

# lan_setup N: the bridge and N hosts. Returns non-zero on the first
# failure (the caller's cleanup removes what was made).
lan_setup() {
	ip netns add "$LAN_NS" || return 1
	ip -n "$LAN_NS" link add fmbr type bridge || return 1
	# No STP listening delay: ports forward at once.
	ip -n "$LAN_NS" link set fmbr type bridge forward_delay 0 stp_state 0 2>/dev/null
	ip -n "$LAN_NS" link set fmbr up || return 1
	i=1
	while [ "$i" -le "$1" ]; do
		lan_add_host "$i" || return 1
		i=$((i + 1))
	done
	return 0
}

# lan_add_host I: host namespace I on the bridge, 10.77.0.I/24.
lan_add_host() {
	ns=$(lan_host_ns "$1")
	ip netns add "$ns" || return 1
	ip -n "$LAN_NS" link add "v$1" type veth peer name eth0 netns "$ns" || return 1
	ip -n "$LAN_NS" link set "v$1" master fmbr || return 1
	ip -n "$LAN_NS" link set "v$1" up || return 1
	ip -n "$ns" link set lo up || return 1
	ip -n "$ns" addr add "10.77.0.$1/24" broadcast 10.77.0.255 dev eth0 || return 1
	ip -n "$ns" link set eth0 up || return 1
	# No route is needed for 224.0.0.251: fedmeshd picks the interface
	# of every mDNS packet itself.
	return 0
}

# lan_cleanup: deletes every namespace lan_setup made (and with them the
# bridge, the veths and their addresses).
lan_cleanup() {
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
		case "$ns" in
		"$LAN_NS" | fm-h*-"$LAN_ID") ip netns del "$ns" 2>/dev/null ;;
		esac
	done
}

# in_host I CMD...: runs CMD in host namespace I (not for use with &:
# see lan_daemon_start).
in_host() {
	h=$1
	shift
	ip netns exec "$(lan_host_ns "$h")" "$@"
}

# lan_daemon_start NAME HOST [ARGS...]: fedmeshd in host namespace HOST
# with state directory $TEST_TMP/NAME, default peer port (7420 on every
# wildcard address, as a real LAN node), API on the namespace's loopback.
# Waits (10 s at most) for its API and sets PID and STATE.
lan_daemon_start() {
	name=$1
	host=$2
	shift 2
	STATE=$TEST_TMP/$name
	mkdir -p "$STATE"
	rm -f "$STATE/api.addr"
	# Not through in_host: a function run with & is a subshell, and $!
	# would be its PID rather than the daemon's.
	ip netns exec "$(lan_host_ns "$host")" "$FEDMESHD" --state-dir "$STATE" \
		--api 127.0.0.1:0 --allow-root "$@" >>"$TEST_TMP/$name.log" 2>&1 </dev/null &
	PID=$!
	DAEMON_PIDS="$DAEMON_PIDS $PID"
	i=0
	while [ ! -s "$STATE/api.addr" ]; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$PID" 2>/dev/null; then
			echo "# fedmeshd $name did not start; its log:"
			sed 's/^/#   /' "$TEST_TMP/$name.log"
			return 1
		fi
		sleep 0.05
	done
	return 0
}

# lan_cli HOST STATE_DIR ARGS...: the fedmesh CLI against the daemon of
# STATE_DIR, from inside its namespace (its API is on that loopback).
lan_cli() {
	h=$1
	s=$2
	shift 2
	in_host "$h" "$FEDMESH" --state-dir "$s" "$@"
}

# lan_metric HOST STATE_DIR NAME: the value of one metrics line ("NAME " or
# "NAME{...} "), 0 when absent.
lan_metric() {
	v=$(in_host "$1" curl -s -m 5 -H "Authorization: Bearer $(cat "$2/api.token")" \
		"http://$(cat "$2/api.addr")/metrics" |
		awk -v m="$3 " 'index($0, m) == 1 { print $2; exit }')
	echo "${v:-0}"
}

# lan_peer HOST STATE_DIR NODE_ID: prints "STATE SOURCE" of NODE_ID in the
# peers of STATE_DIR, nothing when it is not listed. The CLI indents its
# JSON by two, so a peer's own fields are at four spaces.
lan_peer() {
	lan_cli "$1" "$2" peers --json 2>/dev/null | awk -v id="$3" '
		/^  \{/ { inpeer = 1; nid = ""; st = ""; src = ""; next }
		/^  \}/ { if (inpeer && nid == id) print st, src; inpeer = 0; next }
		inpeer && /^    "node_id": / { nid = $2; gsub(/[",]/, "", nid) }
		inpeer && /^    "state": / { st = $2; gsub(/[",]/, "", st) }
		inpeer && /^    "source": / { src = $2; gsub(/[",]/, "", src) }'
}

# lan_peer_count HOST STATE_DIR: how many peers STATE_DIR lists.
lan_peer_count() {
	lan_cli "$1" "$2" peers --json 2>/dev/null | grep -c '^    "node_id": '
}

# now_ms: wall clock in milliseconds (GNU date).
now_ms() {
	date +%s%3N
}
