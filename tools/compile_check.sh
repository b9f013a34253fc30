#!/usr/bin/env bash
# 3.14 API compile check: compile every C unit in csrc/ against CPython 3.14's headers, once as a
# GIL build and once with -DPy_GIL_DISABLED=1, with the project's warning flags and -Werror.
# Compile only (nothing is linked or run): it catches 3.14 API breakage (removed or changed
# functions, new deprecations) on a machine that only has 3.13.
#
# The headers come from Debian unstable's binary package libpython3.14-dev, fetched through the
# private apt configuration of tools/apt.sh (the machine's own apt sources are not touched) and
# unpacked with dpkg -x into $THRASKS_CACHE/py314-headers: downloaded once per machine, no network
# afterwards. Debian ships no free-threaded 3.14 headers; the GIL package's pyconfig.h leaves
# Py_GIL_DISABLED undefined, so defining it on the command line gives the free-threaded API.
#
#   tools/compile_check.sh            check csrc/*.c
#   tools/compile_check.sh FILE.c...  check only these files
#   CC=clang tools/compile_check.sh   another compiler
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THRASKS_CACHE="${THRASKS_CACHE:-$HOME/.cache/thrasks-dev}"
export THRASKS_CACHE
CC="${CC:-gcc}"
PKG=libpython3.14-dev
HEADERS="$THRASKS_CACHE/py314-headers"

log() { echo "[compile_check] $*" >&2; }

# fetch_headers: unpack libpython3.14-dev into $HEADERS/root once; print the root.
fetch_headers() {
    local tmp v deb
    mkdir -p "$THRASKS_CACHE"
    exec 9>"$THRASKS_CACHE/py314-headers.lock"
    flock 9
    if [ -f "$HEADERS/ok" ] && [ -f "$HEADERS/root/usr/include/python3.14/Python.h" ]; then
        echo "$HEADERS/root"
        return 0
    fi
    if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
        log "apt-get and dpkg are needed to fetch $PKG"
        return 1
    fi
    # shellcheck source=tools/apt.sh
    . "$repo/tools/apt.sh"
    log "fetching $PKG from Debian $APT_SUITE (once per machine) into $HEADERS"
    apt_private_update
    rm -rf "$HEADERS"
    tmp="$HEADERS.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    for v in $(apt_versions show "$PKG"); do
        if (cd "$tmp" && apt_private apt-get -q download "$PKG=$v" >&2); then
            deb=$(ls "$tmp"/"$PKG"_*.deb)
            dpkg -x "$deb" "$tmp/root"
            echo "$PKG $v" > "$tmp/ok"
            rm -f "$deb"
            mv "$tmp" "$HEADERS"
            echo "$HEADERS/root"
            return 0
        fi
        log "could not download $PKG=$v, trying an older version"
    done
    log "no version of $PKG could be downloaded"
    return 1
}

main() {
    local root inc arch files=() f mode failed=0 n=0 out
    root=$(fetch_headers)
    inc="$root/usr/include/python3.14"
    [ -f "$inc/Python.h" ] || { log "no Python.h under $inc"; exit 1; }
    arch=$("$CC" -print-multiarch 2>/dev/null || true)
    [ -z "$arch" ] || [ -f "$root/usr/include/$arch/python3.14/pyconfig.h" ] \
        || { log "$PKG has no pyconfig.h for $arch"; exit 1; }

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
    # with -I, as meson does, so warnings inside 3.14's headers fail us too: they would fail the
    # project's own -Werror build on 3.14. Extra flags: $THRASKS_CHECK_CFLAGS.
    # shellcheck disable=SC2206
    local cflags=(-std=c11 -Wall -Wextra -Werror -O2 -fPIC -pthread ${THRASKS_CHECK_CFLAGS:-}
                  -I "$repo/csrc" -I "$inc" -I "$root/usr/include")
    echo "3.14 API compile check: $(cat "$HEADERS/ok"), $("$CC" --version | head -n1)"
    for mode in gil ft; do
        local extra=()
        [ "$mode" = ft ] && extra=(-DPy_GIL_DISABLED=1)
        for f in "${files[@]}"; do
            n=$((n + 1))
            if out=$("$CC" "${cflags[@]}" "${extra[@]}" -c "$f" -o /dev/null 2>&1); then
                printf '  ok    %-3s %s\n' "$mode" "${f#"$repo"/}"
            else
                printf '  FAIL  %-3s %s\n' "$mode" "${f#"$repo"/}"
                printf '%s\n' "$out" | sed 's/^/        /'
                failed=$((failed + 1))
            fi
        done
    done
    echo "flags: ${cflags[*]} [-DPy_GIL_DISABLED=1]"
    if [ "$failed" -gt 0 ]; then
        echo "3.14 API compile check: $failed of $n compilations FAILED"
        exit 1
    fi
    echo "3.14 API compile check: all $n compilations passed (${#files[@]} files x GIL, free-threaded)"
}

main "$@"
