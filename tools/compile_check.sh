#!/usr/bin/env bash
# C API compile check: compile every C unit in csrc/ against the headers of CPython 3.14 and 3.15,
# each once as a GIL build and once with -DPy_GIL_DISABLED=1 (the free-threaded API), with the
# project's warning flags and -Werror. Compile only (nothing is linked or run): it catches API
# breakage (removed or changed functions, new deprecations) in versions whose free-threaded build
# cannot be run here.
#
# The headers are those of the interpreters tools/python.sh 3.14 / 3.15 provides (Debian unstable's
# binary packages, libpython3.X-dev among them, unpacked once per machine into $THRASKS_CACHE; the
# same trees pytest-3.14 / pytest-3.15 run on). Debian ships no free-threaded 3.14t / 3.15t headers;
# the GIL package's pyconfig.h leaves Py_GIL_DISABLED undefined, so defining it on the command line
# gives the free-threaded API (as a 3.14t/3.15t pyconfig.h would).
#
#   tools/compile_check.sh            check csrc/*.c
#   tools/compile_check.sh FILE.c...  check only these files
#   CC=clang tools/compile_check.sh   another compiler
#   THRASKS_CHECK_VERSIONS="3.15"     only these versions (default "3.14 3.15")
#
# Exit status: 0 all compilations passed (a version that no index serves any more is listed as
# SKIPPED); 1 a compilation failed; 3 no version's headers could be had at all.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THRASKS_CACHE="${THRASKS_CACHE:-$HOME/.cache/thrasks-dev}"
export THRASKS_CACHE
CC="${CC:-gcc}"
VERSIONS="${THRASKS_CHECK_VERSIONS:-3.14 3.15}"

log() { echo "[compile_check] $*" >&2; }

# include_dirs PYTHON: the -I flags for PYTHON's headers: its include directory, and the directory
# above it, where Debian keeps the multiarch pyconfig.h that pythonX.Y/pyconfig.h includes.
include_dirs() {
    "$1" - <<'PY'
import os, sysconfig
inc = sysconfig.get_path("include")
print(f"-I{inc}")
print(f"-I{os.path.dirname(inc)}")
PY
}

main() {
    local files=() f v mode python rc failed=0 n=0 checked=() skipped=() out
    if [ $# -gt 0 ]; then
        files=("$@")
    else
        shopt -s nullglob
        files=("$repo"/csrc/*.c)
        shopt -u nullglob
    fi
    [ ${#files[@]} -gt 0 ] || { log "no C files to check in $repo/csrc"; exit 1; }

    # C11 with -Wall -Wextra -Werror, optimised (some warnings only appear with -O2), plus
    # -fPIC/-pthread as for a shared extension module. The Python include directories are passed
    # with -I, as meson does, so warnings inside the new headers fail us too: they would fail the
    # project's own -Werror build on that version. Extra flags: $THRASKS_CHECK_CFLAGS.
    # shellcheck disable=SC2206
    local cflags=(-std=c11 -Wall -Wextra -Werror -O2 -fPIC -pthread ${THRASKS_CHECK_CFLAGS:-}
                  -I "$repo/csrc")
    echo "C API compile check: $("$CC" --version | head -n1)"
    for v in $VERSIONS; do
        rc=0
        python=$("$repo/tools/python.sh" "$v") || rc=$?
        if [ "$rc" -eq 3 ]; then
            echo "  SKIPPED $v: no version of Debian's python$v packages downloads any more"
            skipped+=("$v")
            continue
        fi
        [ "$rc" -eq 0 ] || { log "tools/python.sh $v failed"; exit 1; }
        local incs=()
        mapfile -t incs < <(include_dirs "$python")
        [ -f "${incs[0]#-I}/Python.h" ] || { log "no Python.h under ${incs[0]#-I}"; exit 1; }
        echo "CPython $("$python" -c 'import sys; print(sys.version.split()[0])') headers: ${incs[0]#-I}"
        checked+=("$v")
        for mode in gil ft; do
            local extra=()
            [ "$mode" = ft ] && extra=(-DPy_GIL_DISABLED=1)
            for f in "${files[@]}"; do
                n=$((n + 1))
                if out=$("$CC" "${cflags[@]}" "${incs[@]}" "${extra[@]}" -c "$f" -o /dev/null 2>&1); then
                    printf '  ok    %-5s %-3s %s\n' "$v" "$mode" "${f#"$repo"/}"
                else
                    printf '  FAIL  %-5s %-3s %s\n' "$v" "$mode" "${f#"$repo"/}"
                    printf '%s\n' "$out" | sed 's/^/        /'
                    failed=$((failed + 1))
                fi
            done
        done
    done
    echo "flags: ${cflags[*]} -I<include> [-DPy_GIL_DISABLED=1]"
    if [ ${#checked[@]} -eq 0 ]; then
        echo "C API compile check: no headers of ${VERSIONS// /, } could be had"
        exit 3
    fi
    if [ "$failed" -gt 0 ]; then
        echo "C API compile check: $failed of $n compilations FAILED"
        exit 1
    fi
    echo "C API compile check: all $n compilations passed (${#files[@]} files x {${checked[*]}} x {GIL, free-threaded})${skipped[*]:+; skipped: ${skipped[*]}}"
}

main "$@"
