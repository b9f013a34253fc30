#!/usr/bin/env bash
# callgrind_per_trip.sh VARIANT KIND N: instructions per round trip of KIND (see roundtrip_loop.py)
# for build/variants/VARIANT, by callgrind (repeatable, independent of machine load): the total of a
# run with N round trips minus that of a run with none (start-up and warm-up), divided by N.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
v=$1 kind=$2 n=$3
out=$(mktemp -d)
total() {
    PYTHONPATH="$repo/build/variants/$v" valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" \
        "$repo/.venv-ft/bin/python" -P "$repo/tools/perf/roundtrip_loop.py" "$kind" "$1" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
t0=$(total 0)
t1=$(total "$n")
echo "$v $kind: $(( (t1 - t0) / n )) instructions per round trip (callgrind, ($t1 - $t0) / $n)"
rm -rf "$out"
