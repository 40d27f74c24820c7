#!/bin/sh
# Jobs benchmarks between fedmeshd daemons on loopback.
#
# Why it exists: docs/benchmarks.md may only quote numbers that a command
# measured on a stated machine. This is that command for jobs. It starts its
# own daemons (temporary state directories, loopback, ports chosen by the
# kernel, no mDNS or beacon), joins them by invite, prints the machine and
# every command, measures, and stops the daemons. Nothing outlives it.
#
#   throughput  echo jobs per second through the session layer: node A
#               runs no built-in itself ([jobs] builtins = false), so every
#               job goes to node B and back. wrk keeps CONNS clients each
#               POSTing /v1/jobs?wait=30 (one request = one job, answered
#               when the job is done) for DURATION seconds after a 2 s
#               warm-up. A's and B's metrics are read before and after, to
#               show the jobs ran on B.
#   failover    time from a peer's death to its in-flight jobs completing
#               elsewhere: A submits FAILOVER_JOBS jobs of the exec service
#               "work", offered by B (where it hangs: sleep 60) and C (where
#               it is cat). Once the jobs that went to C are done, B is
#               killed with SIGKILL; the report is the time from the kill to
#               each of B's jobs being done on A (finished_at): min, median
#               and max; and to the last of them being sent to C (the start
#               of its last attempt), which separates failover from the
#               cost of C starting that many processes at once.
#
# Usage: bench/jobs.sh [throughput|failover|all]   (default all)
#   FEDMESHD       fedmeshd binary (default build/src/daemon/fedmeshd)
#   FEDMESH        fedmesh CLI (default build/src/cli/fedmesh)
#   CONNS          wrk connections (default 64)
#   THREADS        wrk threads (default 2)
#   DURATION       measured seconds (default 10)
#   FAILOVER_JOBS  jobs in the failover run (default 100)
# Needs wrk and curl (scripts/deps.sh --bench). Runs from any directory.
set -eu

usage() {
	sed -n '2,/^set -eu$/p' "$0" | sed -e '/^set -eu$/d' -e 's/^# \{0,1\}//'
}

what=${1:-all}
case "$what" in
-h | --help)
	usage
	exit 0
	;;
throughput | failover | all) ;;
*)
	echo "jobs.sh: unknown argument '$what' (see --help)" >&2
	exit 2
	;;
esac

here=$(pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
fedmeshd=$(abs "${FEDMESHD:-$root/build/src/daemon/fedmeshd}")
fedmesh=$(abs "${FEDMESH:-$root/build/src/cli/fedmesh}")
conns=${CONNS:-64}
threads=${THREADS:-2}
duration=${DURATION:-10}
failover_jobs=${FAILOVER_JOBS:-100}
case "$conns$threads$duration$failover_jobs" in *[!0-9]* | '')
	echo "jobs.sh: CONNS, THREADS, DURATION and FAILOVER_JOBS are whole numbers" >&2
	exit 2
	;;
esac
[ -x "$fedmeshd" ] && [ -x "$fedmesh" ] || {
	echo "jobs.sh: build first: no $fedmeshd or $fedmesh" >&2
	exit 1
}
for tool in wrk curl; do
	command -v "$tool" >/dev/null || {
		echo "jobs.sh: $tool is not installed (scripts/deps.sh --bench)" >&2
		exit 1
	}
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-bench-jobs.XXXXXX")
pids=""
root_flag=""
[ "$(id -u)" = 0 ] && root_flag="--allow-root"

cleanup() {
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null || true
	done
	sleep 0.5
	for p in $pids; do
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME [ARGS...]: a daemon with state $tmp/NAME; sets PID API TOKEN.
start() {
	name=$1
	shift
	mkdir -p "$tmp/$name"
	"$fedmeshd" --state-dir "$tmp/$name" --listen 127.0.0.1:0 \
		--api 127.0.0.1:0 --no-mdns --no-beacon $root_flag "$@" \
		>"$tmp/$name.log" 2>&1 &
	PID=$!
	pids="$pids $PID"
	i=0
	while [ ! -s "$tmp/$name/api.addr" ]; do
		i=$((i + 1))
		[ "$i" -le 100 ] && kill -0 "$PID" 2>/dev/null || {
			echo "jobs.sh: fedmeshd $name did not start:" >&2
			cat "$tmp/$name.log" >&2
			exit 1
		}
		sleep 0.1
	done
	API=$(cat "$tmp/$name/api.addr")
	TOKEN=$(cat "$tmp/$name/api.token")
}

# offered STATE SERVICE N: N connected peers offer SERVICE (60 s at most).
offered() {
	i=0
	while [ "$("$fedmesh" --state-dir "$1" peers --json 2>/dev/null |
		grep -c "\"name\": \"$2\"")" -lt "$3" ]; do
		i=$((i + 1))
		[ "$i" -le 300 ] || {
			echo "jobs.sh: peers of $1 do not offer $2" >&2
			exit 1
		}
		sleep 0.2
	done
}

# metric API TOKEN NAME: one metrics line's value (0 when absent).
metric() {
	v=$(curl -s -m 5 -H "Authorization: Bearer $2" "http://$1/metrics" |
		awk -v m="$3" 'index($0, m " ") == 1 { print $2; exit }')
	echo "${v:-0}"
}

jfield() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n1; }
ms_of() { date -u -d "$1" +%s%3N; }

echo "== machine"
echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc=$(nproc)"
echo "cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
echo "kernel=$(uname -r)"
echo "debian=$(cat /etc/debian_version 2>/dev/null || echo unknown)"
echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk=$(wrk -v 2>&1 | head -n 1 || true)"
echo "fedmeshd=$fedmeshd ($("$fedmeshd" --version 2>&1 | head -n 1))"

throughput() {
	printf '[jobs]\nbuiltins = false\n' >"$tmp/a.conf"
	start ta --config "$tmp/a.conf"
	A_API=$API A_TOKEN=$TOKEN A_PID=$PID
	start tb --join "$("$fedmesh" --state-dir "$tmp/ta" invite)"
	B_API=$API B_TOKEN=$TOKEN B_PID=$PID
	offered "$tmp/ta" echo 1
	cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"service": "echo", "input_b64": "aGVsbG8K"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("FEDMESH_TOKEN")
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("requests=%d\n", summary.requests))
	io.write(string.format("duration_s=%.3f\n", summary.duration / 1e6))
	io.write(string.format("jobs_per_s=%.1f\n",
		summary.requests / (summary.duration / 1e6)))
	io.write(string.format("latency_p50_ms=%.3f\n", latency:percentile(50) / 1000))
	io.write(string.format("latency_p99_ms=%.3f\n", latency:percentile(99) / 1000))
	io.write(string.format("errors=%d\n",
		e.status + e.connect + e.read + e.write + e.timeout))
end
EOF
	url="http://$A_API/v1/jobs?wait=30"
	echo "== throughput: warm-up (2 s)"
	FEDMESH_TOKEN=$A_TOKEN wrk -t"$threads" -c"$conns" -d2s -s "$tmp/post.lua" \
		"$url" | grep -E '^(jobs_per_s|errors)='
	done0=$(metric "$A_API" "$A_TOKEN" 'fedmesh_jobs_total{state="done"}')
	remote0=$(metric "$A_API" "$A_TOKEN" 'fedmesh_jobs_ran_total{where="remote"}')
	served0=$(metric "$B_API" "$B_TOKEN" fedmesh_jobs_served_total)
	cpu0_a=$(awk '{ print $14 + $15 }' "/proc/$A_PID/stat")
	cpu0_b=$(awk '{ print $14 + $15 }' "/proc/$B_PID/stat")
	echo "== throughput: measured"
	echo "command=FEDMESH_TOKEN=\$(cat A/api.token) wrk -t$threads -c$conns -d${duration}s -s post.lua $url"
	FEDMESH_TOKEN=$A_TOKEN wrk -t"$threads" -c"$conns" -d"${duration}s" \
		-s "$tmp/post.lua" "$url" | grep -E '^[a-z_0-9]+='
	tck=$(getconf CLK_TCK)
	cpu1_a=$(awk '{ print $14 + $15 }' "/proc/$A_PID/stat")
	cpu1_b=$(awk '{ print $14 + $15 }' "/proc/$B_PID/stat")
	echo "a_jobs_done=$(($(metric "$A_API" "$A_TOKEN" 'fedmesh_jobs_total{state="done"}') - done0))"
	echo "a_jobs_ran_remote=$(($(metric "$A_API" "$A_TOKEN" 'fedmesh_jobs_ran_total{where="remote"}') - remote0))"
	echo "b_jobs_served=$(($(metric "$B_API" "$B_TOKEN" fedmesh_jobs_served_total) - served0))"
	echo "a_cpu_share=$(awk -v c=$((cpu1_a - cpu0_a)) -v t="$tck" -v d="$duration" 'BEGIN { printf "%.2f", c / t / d }')"
	echo "b_cpu_share=$(awk -v c=$((cpu1_b - cpu0_b)) -v t="$tck" -v d="$duration" 'BEGIN { printf "%.2f", c / t / d }')"
}

failover() {
	printf '[jobs]\nbuiltins = false\n' >"$tmp/fa.conf"
	printf '[service.work]\ncommand = /bin/sleep\nargs = 60\noffer = true\nmax_concurrent = 256\n' >"$tmp/fb.conf"
	printf '[service.work]\ncommand = /bin/cat\noffer = true\nmax_concurrent = 256\n' >"$tmp/fc.conf"
	start fa --config "$tmp/fa.conf"
	A_API=$API A_TOKEN=$TOKEN
	invite=$("$fedmesh" --state-dir "$tmp/fa" invite)
	start fb --config "$tmp/fb.conf" --join "$invite"
	B_PID=$PID B_ID=$("$fedmesh" --state-dir "$tmp/fb" id)
	start fc --config "$tmp/fc.conf" --join "$invite"
	offered "$tmp/fa" work 2
	echo "== failover: $failover_jobs jobs; 'work' hangs on B, is cat on C"
	seq 1 "$failover_jobs" | xargs -P 16 -I{} curl -s -o /dev/null -m 10 \
		-H "Authorization: Bearer $A_TOKEN" -X POST "http://$A_API/v1/jobs" \
		-d '{"service": "work", "id": "fo-{}", "input_b64": "aGkK"}'
	# The jobs C got finish at once; what is left is B's.
	# (the count of active jobs on A stays put for 1 s; 10 s at most).
	i=0
	same=0
	last=-1
	while [ "$same" -lt 5 ] && [ "$i" -lt 50 ]; do
		sleep 0.2
		left=$(metric "$A_API" "$A_TOKEN" fedmesh_jobs_active)
		if [ "$left" = "$last" ]; then
			same=$((same + 1))
		else
			same=0
		fi
		last=$left
		i=$((i + 1))
	done
	echo "in_flight_on_b=$left"
	[ "$left" -gt 0 ] || {
		echo "jobs.sh: no job went to B; nothing to fail over" >&2
		return 1
	}
	kill_ms=$(date +%s%3N)
	kill -KILL "$B_PID"
	worst=0
	: >"$tmp/fo.ms"
	for i in $(seq 1 "$failover_jobs"); do
		res=$(curl -s -m 40 -H "Authorization: Bearer $A_TOKEN" \
			"http://$A_API/v1/jobs/fo-$i?wait=30")
		echo "$res" | grep -q "\"node_id\":\"$B_ID\"" || continue
		[ "$(echo "$res" | jfield state)" = done ] || {
			echo "jobs.sh: job fo-$i did not complete: $res" >&2
			continue
		}
		t=$(ms_of "$(echo "$res" | jfield finished_at)")
		echo $((t - kill_ms)) >>"$tmp/fo.ms"
		# The last attempt's start: when A sent it elsewhere.
		t=$(ms_of "$(echo "$res" | sed -n 's/.*"start":"\([^"]*\)".*/\1/p')")
		echo $((t - kill_ms)) >>"$tmp/fo.redispatch"
	done
	echo "jobs_failed_over=$(wc -l <"$tmp/fo.ms")"
	echo "kill_to_redispatch_max_ms=$(sort -n "$tmp/fo.redispatch" | tail -n 1)"
	echo "kill_to_done_min_ms=$(sort -n "$tmp/fo.ms" | head -n 1)"
	echo "kill_to_done_max_ms=$(sort -n "$tmp/fo.ms" | tail -n 1)"
	echo "kill_to_done_median_ms=$(sort -n "$tmp/fo.ms" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
	echo "a_job_retries_total=$(metric "$A_API" "$A_TOKEN" fedmesh_job_retries_total)"
}

case "$what" in
throughput) throughput ;;
failover) failover ;;
all)
	throughput
	failover
	;;
esac
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
