#!/usr/bin/env bash
# Find or build the interpreters thrasks is developed and tested on; print the chosen path.
#
#   tools/python.sh ft    a free-threaded CPython >= 3.13: $THRASKS_PYTHON, python3.14t / python3.13t
#                         on PATH, then the per-machine cache; else build one from Debian's source
#                         package (./configure --disable-gil) into the cache.
#   tools/python.sh gil   a regular (GIL) CPython >= 3.13: $THRASKS_GIL_PYTHON, python3.14 /
#                         python3.13 on PATH, pyenv's versions; else build one the same way.
#
# The cache ($THRASKS_CACHE, default ~/.cache/thrasks-dev) lives outside the repository, so the
# interpreter is built once per machine (about 5 minutes on 2 cores). Progress goes to stderr.
set -euo pipefail

THRASKS_CACHE="${THRASKS_CACHE:-$HOME/.cache/thrasks-dev}"
export THRASKS_CACHE
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/apt.sh
. "$here/apt.sh"

log() { echo "[python.sh] $*" >&2; }

# is_wanted PYTHON KIND: true when PYTHON runs, is >= 3.13, and matches KIND (ft | gil).
is_wanted() {
    local want=1
    [ "$2" = ft ] || want=0
    "$1" - "$want" >/dev/null 2>&1 <<'PY'
import sys, sysconfig
ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
ok = sys.version_info >= (3, 13) and ft == bool(int(sys.argv[1]))
ok = ok and __import__("venv") is not None and __import__("ensurepip") is not None
sys.exit(0 if ok else 1)
PY
}

candidates() {
    local kind=$1 p
    if [ "$kind" = ft ]; then
        [ -n "${THRASKS_PYTHON:-}" ] && echo "$THRASKS_PYTHON"
        for p in python3.14t python3.13t; do command -v "$p" || true; done
    else
        [ -n "${THRASKS_GIL_PYTHON:-}" ] && echo "$THRASKS_GIL_PYTHON"
        for p in python3.14 python3.13; do
            # pyenv shims exist for every installed version but fail when not selected; the
            # direct paths below cover pyenv, so skip shims here.
            p=$(command -v "$p" || true)
            case "$p" in ""|*/shims/*) ;; *) echo "$p" ;; esac
        done
        for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 \
                 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.[2-9][0-9]*/bin/python3; do
            [ -x "$p" ] && echo "$p"
        done
    fi
    ls "$THRASKS_CACHE/python-$kind"/bin/python3.1[3-9]* 2>/dev/null | grep -v -- '-config$' || true
}

find_python() {
    local c
    while IFS= read -r c; do
        [ -n "$c" ] && is_wanted "$c" "$1" && { echo "$c"; return 0; }
    done < <(candidates "$1")
    return 1
}

ensure_build_deps() {
    local pkgs=(build-essential pkg-config dpkg-dev libssl-dev zlib1g-dev libffi-dev libbz2-dev
                liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libgdbm-dev libexpat1-dev
                xz-utils) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing build dependencies: ${missing[*]}"
        apt-get -q update >&2
        DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

# fetch_source: download CPython's Debian source package (3.14 first, then 3.13), newest version
# whose files are actually served; print the path of the upstream tarball.
fetch_source() {
    local dir="$THRASKS_CACHE/src" pkg v tarball
    mkdir -p "$dir"
    tarball=$(ls "$dir"/python3.1[3-9]_*.orig.tar.* 2>/dev/null | sort -rV | head -n1 || true)
    [ -n "$tarball" ] && { echo "$tarball"; return 0; }
    apt_private_update
    for pkg in python3.14 python3.13; do
        for v in $(apt_versions showsrc "$pkg"); do
            log "trying source $pkg=$v"
            if (cd "$dir" && apt_private apt-get -q source --download-only "$pkg=$v" >&2); then
                tarball=$(ls "$dir"/"${pkg}"_*.orig.tar.* | sort -rV | head -n1)
                echo "$tarball"
                return 0
            fi
            rm -f "$dir"/"${pkg}"_"${v}"* "$dir"/"${pkg}"_*.orig.tar.*
        done
    done
    log "no CPython >= 3.13 source package could be downloaded"
    return 1
}

build_python() {
    local kind=$1 tarball src build prefix="$THRASKS_CACHE/python-$kind" flags=()
    ensure_build_deps
    tarball=$(fetch_source)
    build="$THRASKS_CACHE/build-$kind"
    rm -rf "$build" "$prefix"
    mkdir -p "$build"
    log "building $kind CPython from $(basename "$tarball") into $prefix (about 5 minutes)"
    tar -xf "$tarball" -C "$build"
    src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n1)
    [ "$kind" = ft ] && flags+=(--disable-gil)
    (
        cd "$src"
        ./configure --prefix="$prefix" --with-ensurepip=install "${flags[@]}" > "$build/configure.log" 2>&1
        make -j"$(nproc)" > "$build/make.log" 2>&1
        make install > "$build/install.log" 2>&1
    ) || { log "build failed; see logs in $build"; return 1; }
    rm -rf "$src"
}

main() {
    local kind=${1:-}
    case "$kind" in ft|gil) ;; *) echo "usage: $0 ft|gil" >&2; exit 2 ;; esac
    mkdir -p "$THRASKS_CACHE"
    # One build per machine even when two runs start at once.
    exec 9>"$THRASKS_CACHE/python-$kind.lock"
    flock 9
    if ! find_python "$kind"; then
        build_python "$kind"
        find_python "$kind" || { log "built $kind interpreter does not pass the checks"; exit 1; }
    fi
}

main "$@"
