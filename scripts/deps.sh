#!/bin/sh
# Installs the Debian packages needed to build (and, with --test, to test;
# with --bench, to benchmark) fedmesh, and nothing else.
#
# Why it exists: every machine this project runs on -- a developer's, CI's, a
# fresh container -- starts from a plain Debian 12 image that may lack even a
# compiler, and nothing installed by hand survives a change of machine. So
# scripts/run-tests.sh and scripts/run-daemon.sh call this first, every time.
# It must therefore be silent and fast when everything is already installed
# (one dpkg-query, no apt, no network), and only otherwise run apt-get: as is
# when root (a fresh container usually has no sudo), through sudo otherwise.
#
# Usage: scripts/deps.sh [--test] [--bench]
set -eu

want_test=0
want_bench=0
for arg in "$@"; do
	case "$arg" in
	--test) want_test=1 ;;
	--bench) want_bench=1 ;;
	-h | --help)
		echo "usage: $0 [--test] [--bench]"
		exit 0
		;;
	*)
		echo "deps.sh: unknown option '$arg' (usage: $0 [--test] [--bench])" >&2
		exit 2
		;;
	esac
done

# msgpack-c's -dev package is libmsgpack-dev on Debian 12 and
# libmsgpack-c-dev on newer releases; either one satisfies configure.
MSGPACK_PLACEHOLDER=@msgpack@

pkgs="build-essential autoconf automake pkg-config libsodium-dev libuv1-dev
libmicrohttpd-dev $MSGPACK_PLACEHOLDER libsqlite3-dev libjansson-dev
libinih-dev libcurl4-openssl-dev libcmocka-dev"
# Test extras: curl drives the HTTP API, procps gives ps/pgrep, iproute2
# gives ss (which ports are bound) to the integration tests, clang-format
# checks the style (tests/format.sh), valgrind runs daemon.sh under memcheck
# (tests/integration/valgrind.sh), sqlite3 checks the store's integrity
# after SIGKILLs (tests/integration/crashloop.sh), clang and
# libclang-rt-dev (which pulls in the libclang_rt.fuzzer of Debian's default
# clang, 14 on Debian 12: libclang-rt-14-dev) build the libFuzzer harnesses
# (scripts/fuzz.sh).
[ "$want_test" = 1 ] && pkgs="$pkgs curl procps iproute2 clang-format dbus avahi-daemon avahi-utils valgrind sqlite3 clang libclang-rt-dev"
[ "$want_bench" = 1 ] && pkgs="$pkgs wrk curl procps"

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps.sh: dpkg-query not found: this script supports Debian/Ubuntu only." >&2
	echo "deps.sh: install by hand the equivalents of: $pkgs" | tr '\n' ' ' >&2
	echo >&2
	exit 1
fi

installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=""
for p in $pkgs; do
	case "$p" in
	"$MSGPACK_PLACEHOLDER")
		if installed libmsgpack-dev || installed libmsgpack-c-dev; then
			continue
		fi
		;;
	*)
		if installed "$p"; then
			continue
		fi
		;;
	esac
	case " $missing " in
	*" $p "*) ;;
	*) missing="${missing:+$missing }$p" ;;
	esac
done

# Fast path: everything is there. Say nothing.
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
	as_root=""
elif command -v sudo >/dev/null 2>&1; then
	# With no terminal (CI) a password prompt cannot be answered: fail at
	# once instead of hanging.
	if [ -t 0 ]; then as_root="sudo"; else as_root="sudo -n"; fi
else
	shown=$(echo "$missing" | sed "s/$MSGPACK_PLACEHOLDER/libmsgpack-dev/")
	echo "deps.sh: missing packages: $shown" >&2
	echo "deps.sh: cannot install them: not root and sudo is not installed." >&2
	echo "deps.sh: run as root or install sudo (or, as root: apt-get install $shown)." >&2
	exit 1
fi

echo "deps.sh: installing missing packages: $missing" | sed "s/$MSGPACK_PLACEHOLDER/libmsgpack-dev/" >&2

# Wait for another apt/dpkg (e.g. unattended-upgrades) instead of failing.
apt_opts="-o DPkg::Lock::Timeout=300"
# shellcheck disable=SC2086 # word splitting of $as_root/$apt_opts is wanted
$as_root env DEBIAN_FRONTEND=noninteractive apt-get $apt_opts update

# Only now, with fresh package lists, can we tell which msgpack name exists
# (on a fresh image the lists are empty and apt-cache knows nothing).
case " $missing " in
*" $MSGPACK_PLACEHOLDER "*)
	# A purely virtual name makes apt-cache show exit 0 printing nothing,
	# so look for a real record.
	if apt-cache show libmsgpack-dev 2>/dev/null | grep -q '^Package:'; then
		msgpack=libmsgpack-dev
	else
		msgpack=libmsgpack-c-dev
	fi
	missing=$(echo "$missing" | sed "s/$MSGPACK_PLACEHOLDER/$msgpack/")
	;;
esac

# shellcheck disable=SC2086
$as_root env DEBIAN_FRONTEND=noninteractive apt-get $apt_opts install -y \
	--no-install-recommends $missing
