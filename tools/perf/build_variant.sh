#!/usr/bin/env bash
# build_variant.sh NAME [REV] [C_ARGS]: build thrasks (release) from git revision REV (default:
# the work tree, uncommitted changes included) into build/variants/NAME, a directory to put first
# on PYTHONPATH. C_ARGS (one word) goes to the C compiler, e.g. -DTHRASKS_TRACE. PATCHES="a.diff
# b.diff" applies those diffs (patch -p1) on top of REV first: one prototype alone, or combined.
# Used to compare prototypes side by side: tools/perf/ab.py runs the variants interleaved.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
name=$1
rev=${2:-WORKTREE}
cargs=${3:-}
py="$repo/.venv-ft/bin/python"
src="$repo/build/variants/src-$name"
out="$repo/build/variants/$name"
rm -rf "$src" "$out"
mkdir -p "$src"
if [ "$rev" = WORKTREE ]; then
    (cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$src"
else
    git -C "$repo" archive "$rev" | tar -xf - -C "$src"
fi
for patch in ${PATCHES:-}; do
    patch -s -p1 -d "$src" < "$patch"
done
args=(-Csetup-args=-Dbuildtype=release)
[ -n "$cargs" ] && args+=("-Csetup-args=-Dc_args=$cargs")
PATH="$repo/.venv-ft/bin:$PATH" "$py" -m pip install -q --no-build-isolation --no-deps --target "$out" \
    -Cbuild-dir="$repo/build/variants/b-$name" "${args[@]}" "$src"
echo "$out"
