#!/bin/sh
# fedmesh-sim with the DHT workloads, end to end, on small networks:
# - dht-1k shrunk to 150 nodes, run twice: node and provider lookups
#   succeed, hops and latencies are sane, no session was opened (bootstrap
#   through the DHT only), the output files are there, and both runs are
#   byte-identical;
# - the Ed25519 verification cache changes nothing but the time: a run with
#   it off is byte-identical to one with it on;
# - churn: nodes leave and come back with their saved tables, lookups keep
#   succeeding;
# - sybil: sybils and liars are created and active, lookups of their
#   target are counted;
# - lan-discovery: every node finds its LAN segment by mDNS.
# No jq: plain sed/awk, as tests/sim-smoke.sh. TAP output.
set -u
: "${FEDMESH_SIM:?FEDMESH_SIM must point at the fedmesh-sim binary}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-sim-dht.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
check() { # check DESCRIPTION COMMAND...
	d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# num FILE KEY [N]: the Nth (default first) number stored under "KEY".
num() {
	sed -n "s/^ *\"$2\": \(-\{0,1\}[0-9][0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" |
		sed -n "${3:-1}p"
}
# obj FILE NAME: the lines of top-level object NAME.
obj() {
	awk -v name="$2" '
		$0 ~ "^  \"" name "\": \\{" { on = 1 }
		on { print }
		on && /^  \}/ { exit }
	' "$1"
}
holds() { awk "BEGIN { exit !($1) }"; }
sim() { "$FEDMESH_SIM" --quiet "$@"; }
same_outputs() { # same_outputs DIR_A DIR_B
	for f in "$1"/results.deterministic.json "$1"/*.csv; do
		if ! cmp -s "$f" "$2/$(basename "$f")"; then
			echo "# differs: $(basename "$f")"
			return 1
		fi
	done
	return 0
}

echo "1..18"

small="--scenario dht-1k --nodes 150 --duration 3m --set lookups.rate=10 --set lookups.provider_rate=2"
start=$(date +%s)
# shellcheck disable=SC2086
sim $small --out "$tmp/a" >"$tmp/a.log" 2>&1
rc_a=$?
# shellcheck disable=SC2086
sim $small --out "$tmp/b" >"$tmp/b.log" 2>&1
rc_b=$?
check "dht-1k at 150 nodes ran twice (exit $rc_a, $rc_b)" \
	test "$rc_a" = 0 -a "$rc_b" = 0
[ "$rc_a" = 0 ] || sed 's/^/# /' "$tmp/a.log"

r="$tmp/a/results.deterministic.json"
obj "$r" lookups >"$tmp/lk"
obj "$r" provider_lookups >"$tmp/pk"
obj "$r" dht >"$tmp/dht"
count=$(num "$tmp/lk" count)
rate=$(num "$tmp/lk" success_rate)
check "node lookups: $count, success rate $rate >= 0.99" \
	holds "${count:-0} >= 300 && ${rate:-0} >= 0.99"
hops=$(num "$tmp/lk" hops_mean)
p99=$(num "$tmp/lk" hops_p99)
check "node lookups: mean hops $hops in [1, 3], p99 $p99 <= 5" \
	holds "${hops:-0} >= 1 && ${hops:-9} <= 3 && ${p99:-9} <= 5"
l50=$(num "$tmp/lk" latency_ms_p50)
l99=$(num "$tmp/lk" latency_ms_p99)
msgs=$(num "$tmp/lk" messages_per_lookup)
check "node lookups: latency p50 $l50 ms <= p99 $l99 ms <= 3 s, $msgs messages each" \
	holds "${l50:-0} > 0 && ${l50:-0} <= ${l99:-0} && ${l99:-1e9} <= 3000 && ${msgs:-0} >= 1 && ${msgs:-99} <= 40"
pcount=$(num "$tmp/pk" count)
prate=$(num "$tmp/pk" success_rate)
pmean=$(num "$tmp/pk" providers_per_lookup_mean)
check "provider lookups: $pcount, success rate $prate >= 0.99, $pmean providers each" \
	holds "${pcount:-0} >= 50 && ${prate:-0} >= 0.99 && ${pmean:-0} >= 1"
tsize=$(num "$tmp/dht" table_size_mean)
check "routing tables: mean size $tsize > 10; no session dialled (DHT bootstrap)" \
	holds "${tsize:-0} > 10 && $(num "$r" dials) == 0"
check "lookup_hops.csv, lookup_ms.csv, provider_lookup_ms.csv, dht_table.csv, dht_buckets.csv written" \
	test -s "$tmp/a/lookup_hops.csv" -a -s "$tmp/a/lookup_ms.csv" \
	-a -s "$tmp/a/provider_lookup_ms.csv" -a -s "$tmp/a/dht_table.csv" \
	-a -s "$tmp/a/dht_buckets.csv"
check "both runs byte-identical (results.deterministic.json, $(ls "$tmp"/a/*.csv | wc -l) CSV files)" \
	same_outputs "$tmp/a" "$tmp/b"

tiny="--scenario dht-1k --nodes 60 --duration 150s --set bootstrap.join_spread=20s --set lookups.start=60s"
# shellcheck disable=SC2086
sim $tiny --out "$tmp/c" >/dev/null 2>&1
rc_c=$?
# The default models the cryptography (sim/sigcache.c); real Ed25519 and
# XChaCha20-Poly1305, with and without the verification cache, must give
# the same results byte for byte.
# shellcheck disable=SC2086
sim $tiny --set dht.crypto=real --out "$tmp/d" >/dev/null 2>&1
rc_d=$?
# shellcheck disable=SC2086
sim $tiny --set dht.crypto=real --set dht.verify_cache=off --out "$tmp/e" >/dev/null 2>&1
rc_e=$?
if [ "$rc_c" = 0 ] && [ "$rc_d" = 0 ] && [ "$rc_e" = 0 ] &&
	grep -q '"crypto": "modeled"' "$tmp/c/results.json" &&
	grep -q '"crypto": "real"' "$tmp/d/results.json" &&
	grep -q '"verify_cache": "off"' "$tmp/e/results.json" &&
	same_outputs "$tmp/c" "$tmp/d" && same_outputs "$tmp/d" "$tmp/e"; then
	ok "modeled crypto, real crypto and real crypto without the verify cache give byte-identical outputs (exit $rc_c, $rc_d, $rc_e)"
else
	not_ok "modeled crypto, real crypto and real crypto without the verify cache give byte-identical outputs (exit $rc_c, $rc_d, $rc_e)"
fi

# Adversaries too: liars, sybils and garbage senders (random and altered
# datagrams, which the model must refuse as the AEAD does).
adv="--scenario sybil --nodes 120 --duration 150s --set garbage.fraction=0.05"
# shellcheck disable=SC2086
sim $adv --out "$tmp/m1" >/dev/null 2>&1
rc_f=$?
# shellcheck disable=SC2086
sim $adv --set dht.crypto=real --out "$tmp/m2" >/dev/null 2>&1
rc_g=$?
if [ "$rc_f" = 0 ] && [ "$rc_g" = 0 ] && same_outputs "$tmp/m1" "$tmp/m2"; then
	ok "sybil with garbage: modeled and real crypto give byte-identical outputs"
else
	not_ok "sybil with garbage: modeled and real crypto give byte-identical outputs (exit $rc_f, $rc_g)"
fi

sim --scenario churn-10k --nodes 150 --duration 8m --set churn.session_median=3m \
	--set churn.session_p80=12m --set churn.offline_mean=1m \
	--set bootstrap.join_spread=30s --set lookups.start=60s \
	--out "$tmp/e" >"$tmp/e.log" 2>&1
r="$tmp/e/results.deterministic.json"
obj "$r" lookups >"$tmp/lk"
returns=$(num "$r" returns)
rate=$(num "$tmp/lk" success_rate)
check "churn: $returns nodes came back with their saved tables, lookup success $rate >= 0.97" \
	holds "${returns:-0} >= 20 && ${rate:-0} >= 0.97"
truth=$(awk -F, 'NR > 1 && $6 != "" { v = $6 } END { print v + 0 }' "$tmp/e/dht_table.csv")
check "churn: dht_table.csv has the ground-truth live fraction ($truth)" \
	holds "$truth > 0.5 && $truth <= 1"

sim --scenario sybil --nodes 150 --duration 3m --set sybil.prefix_bits=8 \
	--set sybil.sybils=10 --set sybil.liars=10 --out "$tmp/f" >"$tmp/f.log" 2>&1
r="$tmp/f/results.deterministic.json"
obj "$r" sybil >"$tmp/sy"
bits=$(num "$tmp/sy" prefix_bits_min)
proofs=$(num "$tmp/sy" proofs_sent)
lies=$(num "$tmp/sy" lying_answers)
tl=$(num "$tmp/sy" target_lookups)
check "sybil: IDs share >= 8 bits ($bits) with the target, $proofs proofs and $lies lies sent" \
	holds "${bits:-0} >= 8 && ${proofs:-0} > 0 && ${lies:-0} > 0"
check "sybil: $tl lookups of the target counted" holds "${tl:-0} > 20"

# 20 sybils on one public /24 (one attacker's network): the subnet caps of
# the tables and of the lookups' shortlists keep the victim reachable.
sim --scenario sybil --nodes 300 --duration 5m --set sybil.subnet=shared \
	--out "$tmp/s" >"$tmp/s.log" 2>&1
obj "$tmp/s/results.deterministic.json" sybil >"$tmp/ss"
tl=$(num "$tmp/ss" target_lookups)
tok=$(num "$tmp/ss" target_lookups_succeeded)
check "sybil on one /24: $tok of $tl lookups of the victim succeed (>= 99 %)" \
	holds "${tl:-0} > 100 && ${tok:-0} * 100 >= ${tl:-1} * 99"

sim --scenario lan-discovery --nodes 60 --duration 60s --set lan.segment_size=10 \
	--set bootstrap.join_spread=20s --out "$tmp/g" >"$tmp/g.log" 2>&1
r="$tmp/g/results.deterministic.json"
obj "$r" discovery >"$tmp/di"
measured=$(num "$tmp/di" nodes_measured)
found=$(num "$tmp/di" all_found)
d99=$(num "$tmp/di" all_peers_ms_p99)
check "lan-discovery: $found of $measured nodes found their whole segment, p99 $d99 ms <= 5 s" \
	holds "${measured:-0} >= 50 && ${found:-0} == ${measured:-1} && ${d99:-1e9} <= 5000"
check "lan-discovery: sessions to every segment peer ($(num "$r" connected_peers_mean) per node)" \
	holds "$(num "$r" connected_peers_min) == 9"

"$FEDMESH_SIM" --scenario dht-1k --set lookups.count=x --quiet >/dev/null 2>&1
rc1=$?
"$FEDMESH_SIM" --scenario dht-1k --set dht.enabled=false --quiet >/dev/null 2>&1
rc2=$?
check "bad lookup keys are usage errors (exit $rc1, $rc2)" test "$rc1" = 2 -a "$rc2" = 2
echo "# took $(($(date +%s) - start))s"
