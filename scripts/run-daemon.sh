#!/bin/bash
# Builds fedmeshd if needed and runs it in the foreground with its embedded
# defaults: the README's first command. Arguments go to fedmeshd, e.g.
#   scripts/run-daemon.sh --print-config
#   scripts/run-daemon.sh --log-level debug
# Build output goes to stderr; the build is incremental in build/ (shared with
# scripts/run-tests.sh).
set -eu

cd "$(dirname "$0")/.."

scripts/deps.sh

if [ ! -x configure ] || [ configure -ot configure.ac ] || [ configure -ot Makefile.am ] ||
	[ ! -f Makefile.in ] || [ Makefile.in -ot Makefile.am ] || [ Makefile.in -ot configure.ac ]; then
	./autogen.sh >&2
fi

mkdir -p build
if [ ! -f build/Makefile ]; then
	(cd build && ../configure) >&2
fi
make -C build -s --no-print-directory -j"$(nproc 2>/dev/null || echo 2)" >&2

# A fresh container is usually root; fedmeshd refuses root unless told.
if [ "$(id -u)" = 0 ]; then
	echo "run-daemon.sh: warning: running fedmeshd as root is discouraged (passing --allow-root)" >&2
	set -- --allow-root "$@"
fi

exec build/src/daemon/fedmeshd "$@"
