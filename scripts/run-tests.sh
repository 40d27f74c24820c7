#!/bin/bash
# The whole fedmesh test suite, as CI (.ci/run) and the README run it:
#
#   1. scripts/deps.sh --test        install what is missing (silent if nothing)
#   2. ./autogen.sh                  only when configure/Makefile.in are stale
#   3. build/       ../configure --enable-werror;      make; make check
#   4. build-asan/  ../configure --enable-sanitizers --disable-werror;
#                   make -j2; make -j2 check
#      (ASan + UBSan: the unit and the integration tests run under them)
#   5. build-fuzz/  scripts/fuzz.sh: CC=clang --enable-fuzzing, make fuzz,
#                   every libFuzzer harness for FEDMESH_FUZZ_SECONDS (default
#                   25; 0 skips the stage), two at a time; one passed or
#                   failed per harness, and a crash input is saved in
#                   fuzz/regressions/ (docs/FUZZING.md)
#   6. make distcheck in build/      only with --distcheck or FEDMESH_DISTCHECK=1
#
# Every stage runs even when an earlier one failed, so one run shows every
# problem. The closing line is "N passed, N failed[, N skipped]", summed over
# the test-suite.log of both builds (passed = PASS + XFAIL, failed = FAIL +
# XPASS + ERROR); a stage that fails outside the tests (deps, autogen,
# configure, build, distcheck) counts as one failure. Exit status 0 only when
# nothing failed and at least one test passed.
#
# Usage: scripts/run-tests.sh [--distcheck]     (from any directory)
set -u

usage() { echo "usage: $0 [--distcheck]   (or FEDMESH_DISTCHECK=1)"; }

do_distcheck=0
[ "${FEDMESH_DISTCHECK:-0}" = 1 ] && do_distcheck=1
for arg in "$@"; do
	case "$arg" in
	--distcheck) do_distcheck=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
# Nothing here reads a terminal; make sure no test blocks on one either.
exec </dev/null

jobs=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
skipped=0
summary=()      # one line per stage, printed at the end
failed_logs=()  # test logs to show at the end
run_start=$SECONDS

# run_stage NAME CMD...: runs CMD in a subshell, prints and records its
# duration and outcome, returns its exit status.
run_stage() {
	local name=$1 start rc dur
	shift
	echo
	echo "==> $name"
	start=$SECONDS
	("$@")
	rc=$?
	dur=$((SECONDS - start))
	if [ "$rc" = 0 ]; then
		echo "<== $name: ok (${dur}s)"
		summary+=("$(printf '%-28s ok       %5ss' "$name" "$dur")")
	else
		echo "<== $name: FAILED, exit $rc (${dur}s)"
		summary+=("$(printf '%-28s FAILED   %5ss  (exit %s)' "$name" "$dur" "$rc")")
	fi
	return "$rc"
}

# remember_failed_logs TEST-SUITE-LOG: each test that did not pass has a
# section in test-suite.log, a line "FAIL: name" (or XPASS/ERROR) underlined
# with '='; its own log is name.log beside test-suite.log.
remember_failed_logs() {
	local log=$1 t
	while IFS= read -r t; do
		failed_logs+=("$(dirname "$log")/$t.log")
	done < <(awk '
		prev != "" && /^=+$/ && length($0) == length(prev) { sub(/^(FAIL|XPASS|ERROR): /, "", prev); print prev }
		{ prev = ($0 ~ /^(FAIL|XPASS|ERROR): /) ? $0 : "" }
	' "$log")
}

# count_suite DIR: adds DIR/test-suite.log's totals to passed/failed/skipped
# and remembers the logs of the tests that did not pass; sets suite_failed
# to the number of failed tests. Returns 1 when there is no test-suite.log.
suite_failed=0
count_suite() {
	local dir=$1 log=$1/test-suite.log pass xfail skip fail xpass error
	suite_failed=0
	[ -f "$log" ] || return 1
	# The header comes first; later lines may be test output, so only the
	# first occurrence of each key counts.
	read -r pass xfail skip fail xpass error < <(awk '
		/^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):/ {
			k = $2; sub(/:$/, "", k)
			if (!(k in v)) v[k] = $3 + 0
		}
		END { printf "%d %d %d %d %d %d\n", v["PASS"], v["XFAIL"], v["SKIP"], v["FAIL"], v["XPASS"], v["ERROR"] }
	' "$log")
	passed=$((passed + pass + xfail))
	skipped=$((skipped + skip))
	suite_failed=$((fail + xpass + error))
	failed=$((failed + suite_failed))
	echo "    $dir: $((pass + xfail)) passed, $suite_failed failed, $skip skipped"
	remember_failed_logs "$log"
	return 0
}

# configure_in DIR ARGS...: out-of-tree configure (run_stage's subshell keeps
# the cd local).
configure_in() {
	cd "$1" && shift && ../configure "$@"
}

# build DIR LABEL JOBS CONFIGURE-ARGS...: configure (only when needed), make,
# make check in DIR, and count the results.
build() {
	local dir=$1 label=$2 make_jobs=$3 need=0 a rc cfg
	shift 3
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ] || [ ! -x "$dir/config.status" ]; then
		need=1
	else
		# Reconfigure if the tree was configured with other options
		# (e.g. by scripts/run-daemon.sh, which uses the defaults).
		# config.status --config quotes an option only when it has to.
		cfg=" $("$dir/config.status" --config) "
		for a in "$@"; do
			case "$cfg" in
			*" $a "* | *" '$a' "*) ;;
			*) need=1 ;;
			esac
		done
	fi
	if [ "$need" = 1 ]; then
		if ! run_stage "$label: configure" configure_in "$dir" "$@"; then
			failed=$((failed + 1))
			return
		fi
	fi
	if ! run_stage "$label: make" make -C "$dir" -k -j"$make_jobs"; then
		failed=$((failed + 1))
		return
	fi
	# A test-suite.log left by an earlier run must not be counted again.
	rm -f "$dir/test-suite.log"
	run_stage "$label: make check" make -C "$dir" -k -j"$make_jobs" check
	rc=$?
	if count_suite "$dir"; then
		# make check failed but no test did: something outside the tests
		# (a check program that did not compile, a check-local rule).
		if [ "$rc" != 0 ] && [ "$suite_failed" = 0 ]; then
			failed=$((failed + 1))
		fi
	else
		echo "    $dir: no test-suite.log: the tests did not run"
		failed=$((failed + 1))
	fi
}

# ---- 1. dependencies --------------------------------------------------------
run_stage "deps" scripts/deps.sh --test || failed=$((failed + 1))

# ---- 2. autogen ----------------------------------------------------------------
if [ ! -x configure ] || [ configure -ot configure.ac ] || [ configure -ot Makefile.am ] ||
	[ ! -f Makefile.in ] || [ Makefile.in -ot Makefile.am ] || [ Makefile.in -ot configure.ac ]; then
	run_stage "autogen" ./autogen.sh || failed=$((failed + 1))
fi

# ---- 3. and 4. the two builds -------------------------------------------------
build build "build" "$jobs" --enable-werror
# Sanitizers make GCC emit false-positive warnings (-Wmaybe-uninitialized,
# -Wstringop-overflow, ...); -Werror is enforced by the build above.
build build-asan "build-asan" 2 --enable-sanitizers --disable-werror

# ---- 5. fuzzing ---------------------------------------------------------------------
# fuzz_stage SECONDS TAP-LOG: scripts/fuzz.sh, its TAP kept for counting.
fuzz_stage() {
	scripts/fuzz.sh "$1" | tee "$2"
	return "${PIPESTATUS[0]}"
}
fuzz_seconds=${FEDMESH_FUZZ_SECONDS:-25}
if [ "$fuzz_seconds" != 0 ]; then
	mkdir -p build-fuzz
	fuzz_tap=build-fuzz/fuzz.tap
	rm -f "$fuzz_tap"
	run_stage "fuzz: ${fuzz_seconds}s per harness" fuzz_stage "$fuzz_seconds" "$fuzz_tap"
	rc=$?
	fuzz_ok=$(grep -c '^ok ' "$fuzz_tap" 2>/dev/null)
	fuzz_not_ok=$(grep -c '^not ok ' "$fuzz_tap" 2>/dev/null)
	passed=$((passed + ${fuzz_ok:-0}))
	failed=$((failed + ${fuzz_not_ok:-0}))
	echo "    build-fuzz: ${fuzz_ok:-0} passed, ${fuzz_not_ok:-0} failed"
	# fuzz.sh failed but no harness did (it could not even start).
	if [ "$rc" != 0 ] && [ "${fuzz_not_ok:-0}" = 0 ]; then
		failed=$((failed + 1))
	fi
fi

# ---- 6. distcheck -------------------------------------------------------------------
if [ "$do_distcheck" = 1 ]; then
	if [ -f build/Makefile ]; then
		# What an earlier failed distcheck left behind (read-only) goes
		# first, so that only this run's results are shown.
		for d in build/fedmesh-*/; do
			[ -d "$d" ] && chmod -R u+w "$d" && rm -rf "$d"
		done
		if ! run_stage "distcheck" make -C build -j"$jobs" distcheck; then
			failed=$((failed + 1))
			# A failed distcheck leaves its tree behind: show why.
			for log in build/fedmesh-*/_build/sub/test-suite.log; do
				[ -f "$log" ] || continue
				echo "    distcheck test results: $(awk '/^# [A-Z]+:/ && !seen[$2]++ { printf "%s %s  ", $2, $3 }' "$log")"
				remember_failed_logs "$log"
			done
		fi
	else
		echo
		echo "==> distcheck: skipped, build/ is not configured"
		summary+=("$(printf '%-28s FAILED   %5ss  (build/ not configured)' distcheck 0)")
		failed=$((failed + 1))
	fi
fi

# ---- report ----------------------------------------------------------------------
if [ "${#failed_logs[@]}" -gt 0 ]; then
	for log in "${failed_logs[@]}"; do
		echo
		echo "=================== $log ==================="
		if [ ! -f "$log" ]; then
			echo "(missing)"
			continue
		fi
		lines=$(wc -l <"$log")
		if [ "$lines" -le 400 ]; then
			cat "$log"
		else
			head -n 100 "$log"
			echo "... ($((lines - 400)) lines cut; full log: $root/$log) ..."
			tail -n 300 "$log"
		fi
	done
fi

echo
echo "stages:"
for line in "${summary[@]}"; do
	echo "  $line"
done
echo "  total: $((SECONDS - run_start))s"
[ "$passed" = 0 ] && echo "no test passed: the suite did not run"

tail="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && tail="$tail, $skipped skipped"
echo "$tail"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
