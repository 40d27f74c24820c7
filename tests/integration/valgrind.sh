#!/bin/sh
# tests/integration/daemon.sh again, with every fedmeshd it starts running
# under valgrind (memcheck): an invalid read or write, a use of
# uninitialised memory or a definite leak makes that daemon exit 99, which
# daemon.sh's "SIGTERM: fedmeshd exits 0" reports. A smaller subset than
# the AddressSanitizer build runs (valgrind is some 20 times slower), but
# it checks the binary built without instrumentation, as installed.
# Skipped where valgrind is missing and in a sanitizer build (valgrind
# cannot run ASan binaries).
set -u
: "${FEDMESHD:?FEDMESHD must point at the fedmeshd binary}"
here=${top_srcdir:-$(dirname "$0")/../..}/tests/integration

if ! command -v valgrind >/dev/null 2>&1; then
	echo "1..0 # SKIP valgrind is not installed (scripts/deps.sh --test)"
	exit 0
fi
if ldd "$FEDMESHD" 2>/dev/null | grep -q 'libasan\|libubsan'; then
	echo "1..0 # SKIP fedmeshd is built with sanitizers; valgrind cannot run it"
	exit 0
fi

# --errors-for-leak-kinds=definite: memory still reachable at exit (libuv
# and sqlite caches, static tables) is not a leak.
FEDMESH_WRAPPER="valgrind --quiet --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite \
--track-fds=no --num-callers=30"
FEDMESH_START_WAIT_S=60
export FEDMESH_WRAPPER FEDMESH_START_WAIT_S
exec sh "$here/daemon.sh"
