#!/usr/bin/env bash
# strace_per_trip.sh VARIANT KIND N: system calls per round trip of KIND (see roundtrip_loop.py)
# for build/variants/VARIANT, by strace -f -c: a run with N round trips minus a run with none.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
v=$1 kind=$2 n=$3
out=$(mktemp -d)
for k in 0 "$n"; do
    PYTHONPATH="$repo/build/variants/$v" strace -f -c -o "$out/s.$k" \
        "$repo/.venv-ft/bin/python" -P "$repo/tools/perf/roundtrip_loop.py" "$kind" "$k" 2>/dev/null
done
python3 - "$out/s.0" "$out/s.$n" "$n" "$v" "$kind" <<'PY'
import sys
def parse(p):
    d = {}
    for line in open(p):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit():
            try:
                d[f[-1]] = int(f[3])
            except ValueError:
                pass
    return d
a, b, n = parse(sys.argv[1]), parse(sys.argv[2]), int(sys.argv[3])
per = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in b}
shown = {k: round(v, 2) for k, v in sorted(per.items(), key=lambda x: -x[1]) if v >= 0.05 and k != "total"}
print(f"{sys.argv[4]} {sys.argv[5]}: {per.get('total', 0):.1f} syscalls per round trip (strace -c): {shown}")
PY
rm -rf "$out"
