#!/bin/bash
# Runs every libFuzzer harness of fuzz/ for a bounded time (docs/FUZZING.md).
#
#   1. configures build-fuzz/ with CC=clang --enable-fuzzing (only when it is
#      not configured that way yet) and runs 'make fuzz';
#   2. runs each harness for SECONDS (default 60) with -max_total_time,
#      FUZZ_JOBS at a time (default 2), on a scratch copy of its seed corpus
#      and regression inputs (fuzz/corpus/NAME, fuzz/regressions/NAME), so
#      the tree is not filled with the inputs libFuzzer generates;
#   3. copies every crash, leak or timeout input into fuzz/regressions/NAME/
#      (where every build's make check replays it from then on) and prints
#      its reproduction command.
#
# Output is TAP, one test per harness ("ok 3 - dns: 60 s, 812345 runs,
# 13540 exec/s, cov 512 ft 1830, corpus 240"); the exit status is 0 only
# when no harness failed. scripts/run-tests.sh runs this as a stage with a
# shorter time (FEDMESH_FUZZ_SECONDS, default 25).
#
# Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
#   FUZZ_JOBS=N       harnesses run at once (default 2)
#   FUZZ_BUILD=DIR    build directory (default build-fuzz)
#   FUZZ_KEEP=DIR     keep each run's corpus in DIR/NAME (default: discarded)
set -u

seconds=${1:-60}
case "$seconds" in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS] [HARNESS...]" >&2
	exit 2
	;;
esac
[ $# -gt 0 ] && shift

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
exec </dev/null
build=${FUZZ_BUILD:-build-fuzz}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
jobs=${FUZZ_JOBS:-2}

# Every fuzz/fuzz_NAME.c is a harness.
all=()
for f in fuzz/fuzz_*.c; do
	n=${f#fuzz/fuzz_}
	all+=("${n%.c}")
done
if [ $# -gt 0 ]; then
	harnesses=("$@")
	for h in "${harnesses[@]}"; do
		if [ ! -f "fuzz/fuzz_$h.c" ]; then
			echo "fuzz.sh: no harness '$h' (have: ${all[*]})" >&2
			exit 2
		fi
	done
else
	harnesses=("${all[@]}")
fi

echo "1..${#harnesses[@]}"

# bail REASON: every harness fails (so CI counts them), then exit 1.
bail() {
	local i=0 h
	for h in "${harnesses[@]}"; do
		i=$((i + 1))
		echo "not ok $i - $h: not run: $1"
	done
	exit 1
}

if ! command -v clang >/dev/null 2>&1; then
	bail "clang is not installed (scripts/deps.sh --test installs it)"
fi
if [ ! -x configure ] || [ configure -ot configure.ac ] || [ configure -ot Makefile.am ] ||
	[ ! -f Makefile.in ] || [ Makefile.in -ot Makefile.am ]; then
	./autogen.sh >"$root/fuzz-autogen.log" 2>&1 || bail "autogen.sh failed: see fuzz-autogen.log"
	rm -f "$root/fuzz-autogen.log"
fi
mkdir -p "$build"
if [ ! -f "$build/Makefile" ] ||
	! "$build/config.status" --config 2>/dev/null | grep -q -- --enable-fuzzing; then
	echo "# configuring $build (CC=clang --enable-fuzzing)"
	(cd "$build" && CC=clang "$root/configure" --enable-fuzzing --disable-werror) \
		>"$build/fuzz-configure.log" 2>&1 ||
		bail "configure failed: see $build/fuzz-configure.log"
fi
echo "# building the harnesses in $build (make fuzz)"
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz/fuzz_$h"); done
make -C "$build" -j"$jobs" "${targets[@]}" >"$build/fuzz-make.log" 2>&1 ||
	{ tail -n 30 "$build/fuzz-make.log" | sed 's/^/# /'; bail "make fuzz failed: see $build/fuzz-make.log"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fedmesh-fuzz.XXXXXX") || exit 1
pids=()
cleanup() {
	local p
	# Each subshell's libFuzzer first, then the subshell.
	for p in "${pids[@]}"; do
		pkill -P "$p" 2>/dev/null
		kill "$p" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_one NAME: fuzzes one harness in $work/NAME; its result is the exit
# status of libFuzzer, its log $work/NAME.log.
run_one() {
	local h=$1 dir=$work/$1
	mkdir -p "$dir/corpus" "$dir/artifacts"
	cp fuzz/corpus/"$h"/* "$dir/corpus/" 2>/dev/null
	[ -d "fuzz/regressions/$h" ] && cp fuzz/regressions/"$h"/* "$dir/corpus/" 2>/dev/null
	# Leaks count as failures, as in make check; -rss_limit_mb bounds a
	# harness that grows; -timeout flags an input that takes > 10 s.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$build/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$dir/artifacts/" "$dir/corpus" \
		>"$dir.log" 2>&1
}

# Runs the harnesses FUZZ_JOBS at a time; each records its exit status.
start=$SECONDS
for h in "${harnesses[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n 2>/dev/null || true
	done
	(
		run_one "$h"
		echo $? >"$work/$h.rc"
	) &
	pids+=($!)
done
wait
pids=()

failed=0
i=0
for h in "${harnesses[@]}"; do
	i=$((i + 1))
	log=$work/$h.log
	rc=$(cat "$work/$h.rc" 2>/dev/null || echo 1)
	# libFuzzer's last status line and final stats.
	runs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log")
	eps=$(awk '/^stat::average_exec_per_sec:/ { print $2 }' "$log")
	cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n 1 |
		awk '{ print "cov " $2 " ft " $4 ", corpus " $6 }')
	stats="${seconds} s, ${runs:-?} runs, ${eps:-?} exec/s, ${cov:-no coverage line}"
	crashes=("$work/$h/artifacts"/*)
	if [ "$rc" = 0 ] && [ ! -e "${crashes[0]}" ]; then
		echo "ok $i - $h: $stats"
		if [ -n "${FUZZ_KEEP:-}" ]; then
			mkdir -p "$FUZZ_KEEP/$h" && cp "$work/$h/corpus"/* "$FUZZ_KEEP/$h/"
		fi
		continue
	fi
	failed=$((failed + 1))
	echo "not ok $i - $h: exit $rc after $stats"
	grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+:|.*runtime error)' "$log" | head -n 5 | sed 's/^/#   /'
	mkdir -p "fuzz/regressions/$h"
	for a in "${crashes[@]}"; do
		[ -f "$a" ] || continue
		dest="fuzz/regressions/$h/$(basename "$a")"
		cp "$a" "$dest"
		echo "#   input saved as $dest"
		echo "#   reproduce: $build/fuzz/fuzz_$h $dest"
	done
	if [ ! -e "${crashes[0]}" ]; then
		echo "#   no input was saved; the end of the log:"
		tail -n 20 "$log" | sed 's/^/#   /'
	fi
done
echo "# ${#harnesses[@]} harnesses, $failed failed, $((SECONDS - start)) s of fuzzing"
[ "$failed" = 0 ]
