#!/bin/sh
# Every C file follows .clang-format. Formatting drift is caught here rather
# than in review. Skips (TAP SKIP) when clang-format is not installed;
# scripts/deps.sh --test installs it. TAP output.
set -u
src=${top_srcdir:-$(dirname "$0")/..}
if ! command -v clang-format >/dev/null 2>&1; then
	echo "1..0 # SKIP clang-format not installed"
	exit 0
fi
cd "$src" || exit 1
files=$(find include src tests sim bench fuzz -name '*.[ch]' 2>/dev/null | sort)
echo "1..1"
bad=""
for f in $files; do
	clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -z "$bad" ]; then
	echo "ok 1 - $(echo "$files" | wc -w) C files follow .clang-format"
else
	echo "not ok 1 - files not formatted (run clang-format -i on them):"
	for f in $bad; do echo "#   $f"; done
fi
