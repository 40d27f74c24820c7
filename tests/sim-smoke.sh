#!/bin/sh
# fedmesh-sim end to end: the smoke scenario (100 nodes, 3 simulated
# minutes) runs twice; its results must stay within bounds and both runs
# must be byte-identical (results.deterministic.json and every CSV), and
# results.json must equal the deterministic copy once its host section is
# removed. No jq: plain sed/awk, so CI needs nothing extra. TAP output.
set -u
: "${FEDMESH_SIM:?FEDMESH_SIM must point at the fedmesh-sim binary}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-sim-smoke.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
check() { # check DESCRIPTION COMMAND...
	d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# num FILE KEY: the first number stored under "KEY" in a JSON file.
num() {
	sed -n "s/^ *\"$2\": \(-\{0,1\}[0-9][0-9.eE+-]*\),\{0,1\}\$/\1/p" "$1" |
		head -n 1
}
# holds EXPR: an awk comparison of numbers, e.g. holds "3 <= 4".
holds() { awk "BEGIN { exit !($1) }"; }

echo "1..14"

start=$(date +%s)
"$FEDMESH_SIM" --scenario smoke --quiet --out "$tmp/a" >"$tmp/a.log" 2>&1
rc_a=$?
"$FEDMESH_SIM" --scenario smoke --quiet --out "$tmp/b" >"$tmp/b.log" 2>&1
rc_b=$?
elapsed=$(($(date +%s) - start))
check "fedmesh-sim --scenario smoke ran twice (exit $rc_a, $rc_b)" \
	test "$rc_a" = 0 -a "$rc_b" = 0
[ "$rc_a" = 0 ] || sed 's/^/# /' "$tmp/a.log"

r="$tmp/a/results.deterministic.json"
check "results.json, results.deterministic.json and CSVs written" \
	test -s "$tmp/a/results.json" -a -s "$r" -a -s "$tmp/a/timeseries.csv" \
	-a -s "$tmp/a/handshake_ms.csv" -a -s "$tmp/a/nodes.csv"

nodes=$(num "$r" nodes)
events=$(num "$r" events)
check "100 nodes, 180 s simulated, events counted ($events)" \
	holds "${nodes:-0} == 100 && $(num "$r" sim_time_s) == 180 && ${events:-0} > 1000"

pairs=$(num "$r" bootstrap_pairs)
est=$(num "$r" bootstrap_established)
check "sessions established for >= 95 % of bootstrap pairs ($est of $pairs)" \
	holds "${pairs:-0} > 100 && ${est:-0} * 100 >= ${pairs:-0} * 95"

p50=$(num "$r" handshake_ms_p50)
p99=$(num "$r" handshake_ms_p99)
rtt=$(num "$r" max_rtt_ms)
# connect (one RTT) + Noise XX (one RTT) = 2 RTTs; a lost SYN adds 1 s
check "handshake p50 $p50 ms, p99 $p99 ms within 2 x max RTT ($rtt ms) + 1 s" \
	holds "${p50:-0} > 0 && ${p50:-0} <= ${p99:-0} && ${p99:-1e9} <= 2 * ${rtt:-0} + 1000"

mean=$(num "$r" connected_peers_mean)
check "connected peers per node: mean $mean >= 2, none isolated" \
	holds "${mean:-0} >= 2 && $(num "$r" connected_peers_min) >= 1"

check "no session broke: idle_timeout, bad_frame, handshake_timeout all 0" \
	holds "$(num "$r" idle_timeout) == 0 && $(num "$r" bad_frame) == 0 && $(num "$r" handshake_timeout) == 0"

check "results.deterministic.json has no host section" \
	test -z "$(grep -n '"host"' "$r")"
check "results.json has host measurements" \
	grep -q '"peak_rss_bytes"' "$tmp/a/results.json"

# results.json minus its host object (the last member) = the deterministic
# copy.
awk '
	/^  "host": \{/ { skip = 1; sub(/,$/, "", prev); next }
	skip && /^  \}/ { skip = 0; next }
	skip { next }
	{ if (have) print prev; prev = $0; have = 1 }
	END { if (have) print prev }
' "$tmp/a/results.json" >"$tmp/stripped.json"
check "results.json without host equals results.deterministic.json" \
	cmp -s "$tmp/stripped.json" "$r"

same=1
for f in "$tmp"/a/results.deterministic.json "$tmp"/a/*.csv; do
	b="$tmp/b/$(basename "$f")"
	if ! cmp -s "$f" "$b"; then
		same=0
		echo "# differs: $(basename "$f")"
	fi
done
check "both runs byte-identical (results.deterministic.json, $(ls "$tmp"/a/*.csv | wc -l) CSV files)" \
	test "$same" = 1

"$FEDMESH_SIM" --scenario smoke --quiet --seed 2 --out "$tmp/c" >/dev/null 2>&1
check "another seed gives other results" \
	test -s "$tmp/c/timeseries.csv" -a -n "$(cmp "$tmp/a/timeseries.csv" "$tmp/c/timeseries.csv" 2>&1)"

"$FEDMESH_SIM" --list-scenarios >"$tmp/list" 2>&1
check "--list-scenarios shows smoke and partition" \
	sh -c "grep -q '^  smoke ' '$tmp/list' && grep -q '^  partition ' '$tmp/list'"

"$FEDMESH_SIM" --scenario no-such-scenario --quiet >/dev/null 2>&1
rc1=$?
"$FEDMESH_SIM" --scenario smoke --set network.los=0.1 --quiet >/dev/null 2>&1
rc2=$?
check "an unknown scenario or key is a usage error (exit $rc1, $rc2)" \
	test "$rc1" = 2 -a "$rc2" = 2
echo "# two smoke runs took ${elapsed}s"
