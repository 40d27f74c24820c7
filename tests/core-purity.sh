#!/bin/sh
# The protocol core must perform no I/O: no clock, socket, file, database or
# libuv call. This test lists every symbol the core library needs from
# outside and fails on any that is not on the allowlist below, so a stray
# time(), fopen() or uv_* in src/core breaks the build's tests at once.
# TAP output.
set -u
: "${CORE_LIB:?CORE_LIB must point at libfedmesh_core.a}"
: "${NM:=nm}"

# Pure functions only: memory and string helpers, formatting into buffers,
# libsodium and msgpack-c, pow() from libm, and compiler/sanitizer runtime
# hooks.
ALLOW='^(crypto_[a-z0-9_]+|sodium_[a-z0-9_]+|msgpack_[a-z0-9_]+|mem(cpy|move|set|cmp|chr)|str(len|nlen|chr|rchr|cmp|ncmp|str|tol|toul|toull|spn|cspn)|v?snprintf|calloc|malloc|realloc|free|qsort|bsearch|pow|inet_pton|inet_ntop|__stack_chk_fail|__assert_fail|__memcpy_chk|__memset_chk|__snprintf_chk|__vsnprintf_chk|__(a|ub)san_[A-Za-z0-9_]+|__sanitizer_[A-Za-z0-9_]+|_GLOBAL_OFFSET_TABLE_)$'

forbidden() {
	grep -Ev "$ALLOW" || true
}

echo "1..3"
# Undefined in some object of the archive and defined in none of them.
"$NM" --defined-only "$CORE_LIB" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"core-purity.defined.$$"
syms=$("$NM" -u "$CORE_LIB" 2>/dev/null | awk 'NF == 2 && $1 == "U" { print $2 }' | sort -u | comm -23 - "core-purity.defined.$$")
rm -f "core-purity.defined.$$"
if [ -n "$syms" ]; then
	echo "ok 1 - nm lists the core's external symbols ($(echo "$syms" | wc -l) found)"
else
	echo "not ok 1 - nm found no external symbols in $CORE_LIB"
fi
bad=$(echo "$syms" | forbidden)
if [ -z "$bad" ]; then
	echo "ok 2 - the core calls no I/O, clock or non-core library"
else
	echo "not ok 2 - the core calls functions outside its allowlist:"
	echo "$bad" | sed 's/^/#   /'
fi
# The check itself must be able to fail.
caught=$(printf 'memcpy\nuv_run\nclock_gettime\nsqlite3_open\nfopen\n' | forbidden | tr '\n' ' ')
if [ "$caught" = "uv_run clock_gettime sqlite3_open fopen " ]; then
	echo "ok 3 - the allowlist rejects uv_run, clock_gettime, sqlite3_open, fopen"
else
	echo "not ok 3 - the allowlist let through: '$caught'"
fi
