#!/bin/sh
# fedmesh-sim's jobs workload end to end, in a few seconds: a shortened
# jobs-slow-peer (1 submitter, 11 workers, one 10 x slower; 20 s of
# arrivals) compared over every routing strategy, twice: every job must
# succeed, the core's router (p2c) must beat round robin on p99, and both
# runs must be byte-identical. Then a shortened failover scenario: a worker
# crashes with jobs in flight and every job still completes, elsewhere,
# within a second. No jq: plain sed/awk. TAP output.
set -u
: "${FEDMESH_SIM:?FEDMESH_SIM must point at the fedmesh-sim binary}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-sim-jobs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
check() { # check DESCRIPTION COMMAND...
	d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# num FILE OBJECT KEY: the number stored under "KEY" inside the first
# object named "OBJECT" of a JSON file written with two-space indents.
num() {
	awk -v obj="\"$2\": {" -v key="\"$3\":" '
		index($0, obj) { inside = 1; next }
		inside && index($0, key) {
			sub(/^[^:]*: */, ""); sub(/,$/, ""); print; exit
		}' "$1"
}
holds() { awk "BEGIN { exit !($1) }"; }

# The comparison needs a core that lets each node choose its strategy
# (fm_node_config.job_strategy); fedmesh-sim says so when it does not.
if "$FEDMESH_SIM" --scenario jobs-slow-peer --strategy round_robin \
	--duration 6s --quiet 2>&1 | grep -q 'needs a core'; then
	echo "1..0 # SKIP this core cannot select a job routing strategy"
	exit 0
fi

echo "1..12"

small="--strategy all --duration 30s --set jobs.start=3s --set jobs.stop=23s --set jobs.rate=200"
start=$(date +%s)
# shellcheck disable=SC2086
"$FEDMESH_SIM" --scenario jobs-slow-peer $small --quiet --out "$tmp/a" \
	>"$tmp/a.log" 2>&1
rc_a=$?
# shellcheck disable=SC2086
"$FEDMESH_SIM" --scenario jobs-slow-peer $small --quiet --out "$tmp/b" \
	>"$tmp/b.log" 2>&1
rc_b=$?
check "jobs-slow-peer, every strategy, ran twice (exit $rc_a, $rc_b)" \
	test "$rc_a" = 0 -a "$rc_b" = 0
[ "$rc_a" = 0 ] || sed 's/^/# /' "$tmp/a.log"

r="$tmp/a/results.deterministic.json"
files=1
for s in random round_robin least_pending p2c; do
	for f in "jobs_$s.csv" "job_latency_$s.csv" "jobs_nodes_$s.csv"; do
		test -s "$tmp/a/$f" || files=0
	done
done
check "a jobs CSV, a latency CSV and a per-node CSV per strategy" \
	test "$files" = 1

all_done=1
for s in random round_robin least_pending p2c; do
	count=$(num "$r" "$s" count)
	rate=$(num "$r" "$s" success_rate)
	echo "# $s: $count jobs, success rate $rate, p99 $(num "$r" "$s" latency_ms_p99) ms"
	holds "${count:-0} > 3000 && ${rate:-0} == 1" || all_done=0
done
check "every strategy: > 3000 jobs, all of them done" test "$all_done" = 1

rr=$(num "$r" round_robin latency_ms_p99)
p2c=$(num "$r" p2c latency_ms_p99)
check "p2c p99 ($p2c ms) at least 2 x lower than round robin's ($rr ms)" \
	holds "${p2c:-1e9} > 0 && 2 * ${p2c:-1e9} <= ${rr:-0}"

share=$(num "$r" p2c slow_node_share)
check "p2c sends under 2 % of the jobs to the slow worker (${share})" \
	holds "${share:-1} < 0.02"

same=1
csv=0
for f in "$tmp"/a/results.deterministic.json "$tmp"/a/*.csv; do
	case $f in *.csv) csv=$((csv + 1)) ;; esac
	if ! cmp -s "$f" "$tmp/b/$(basename "$f")"; then
		same=0
		echo "# differs: $(basename "$f")"
	fi
done
check "both runs byte-identical (results.deterministic.json, $csv CSV files)" \
	test "$same" = 1

"$FEDMESH_SIM" --scenario jobs-slow-peer --strategy p2c --duration 30s \
	--set jobs.start=3s --set jobs.stop=23s --set jobs.rate=200 \
	--quiet --out "$tmp/c" >/dev/null 2>&1
check "a p2c run alone gives the p2c figures of the comparison" \
	test "$(num "$tmp/c/results.deterministic.json" p2c latency_ms_p99)" = "$p2c"

"$FEDMESH_SIM" --scenario failover --duration 20s --set jobs.start=3s \
	--set jobs.stop=15s --set failover.at=8s --quiet --out "$tmp/f" \
	>"$tmp/f.log" 2>&1
rc=$?
check "failover scenario ran (exit $rc)" test "$rc" = 0
[ "$rc" = 0 ] || sed 's/^/# /' "$tmp/f.log"
f="$tmp/f/results.deterministic.json"
check "failover: every job done ($(num "$f" p2c count) jobs)" \
	holds "$(num "$f" p2c success_rate) == 1 && $(num "$f" p2c unfinished) == 0"
# "failover" is the last top-level object: the section after it.
fo="$tmp/f/failover.json"
sed -n '/^  "failover": {/,$p' "$f" >"$fo"
inflight=$(num "$fo" p2c jobs_in_flight_on_dead_node)
elsewhere=$(num "$fo" p2c completed_elsewhere)
by_dead=$(num "$fo" p2c completed_by_dead_node)
check "failover: $inflight jobs in flight on the dead worker, all completed ($elsewhere elsewhere, $by_dead sent before it died)" \
	holds "${inflight:-0} > 0 && ${elsewhere:-0} + ${by_dead:-0} == ${inflight:-0} && $(num "$fo" p2c not_completed) == 0"
max=$(num "$fo" p2c time_to_complete_elsewhere_ms_max)
check "failover: completed elsewhere within 1 s of the death (max $max ms)" \
	holds "${max:-1e9} > 0 && ${max:-1e9} < 1000"

"$FEDMESH_SIM" --scenario smoke --strategy all --quiet >/dev/null 2>&1
rc1=$?
"$FEDMESH_SIM" --scenario jobs-slow-peer --strategy fastest --quiet \
	>/dev/null 2>&1
rc2=$?
check "a strategy without jobs, or an unknown one, is a usage error (exit $rc1, $rc2)" \
	test "$rc1" = 2 -a "$rc2" = 2
echo "# took $(($(date +%s) - start))s"
