#!/usr/bin/env bash
# Find or build the interpreters thrasks is developed and tested on; print the chosen path.
#
#   tools/python.sh ft        a free-threaded CPython >= 3.13: $THRASKS_PYTHON, python3.14t /
#                             python3.13t on PATH, then the per-machine cache; else build one from
#                             Debian's source package (./configure --disable-gil) into the cache.
#   tools/python.sh gil       a regular (GIL) CPython >= 3.13: $THRASKS_GIL_PYTHON, python3.14 /
#                             python3.13 on PATH, pyenv's versions; else build one the same way.
#   tools/python.sh ft-tsan   a free-threaded CPython built with ThreadSanitizer:
#                             $THRASKS_TSAN_PYTHON or the cache; else built from the same source
#                             (--disable-gil --with-thread-sanitizer). The build also copies
#                             CPython's Tools/tsan/suppressions_free_threading.txt from that source
#                             tree to <prefix>/share/thrasks/ (tools/dev.sh's pytest-tsan uses it).
#   tools/python.sh ft-debug  a free-threaded debug CPython (Py_DEBUG: C-API assertions,
#                             sys.gettotalrefcount): $THRASKS_DEBUG_PYTHON or the cache; else
#                             built from the same source (--disable-gil --with-pydebug).
#   tools/python.sh 3.14      a GIL CPython 3.14 / 3.15: $THRASKS_PYTHON_3_14 / $THRASKS_PYTHON_3_15,
#   tools/python.sh 3.15      python3.14 / python3.15 on PATH, the cache; else Debian unstable's
#                             *binary* packages, unpacked with dpkg -x (see fetch_debian below).
#                             Exit status 3 when no version of them can be downloaded.
#
# The cache ($THRASKS_CACHE, default ~/.cache/thrasks-dev) lives outside the repository, so every
# interpreter is built or fetched once per machine. The source builds are lean (no PGO, no LTO,
# make -j$(nproc), no ensurepip at install): on 2 cores about 5 minutes (ft), 10 to 15 (ft-tsan),
# 5 to 10 (ft-debug); the time of each phase is written to <build dir>/times.log. Progress goes
# to stderr, the path of the interpreter to stdout.
set -euo pipefail

THRASKS_CACHE="${THRASKS_CACHE:-$HOME/.cache/thrasks-dev}"
export THRASKS_CACHE
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/apt.sh
. "$here/apt.sh"
# shellcheck source=tools/tsan.sh
. "$here/tsan.sh"

KINDS="ft gil ft-tsan ft-debug 3.14 3.15"
EXIT_UNAVAILABLE=3  # a Debian-binary kind that no index serves any more: callers skip, not fail

log() { echo "[python.sh] $*" >&2; }

# is_wanted PYTHON KIND: true when PYTHON runs, has venv, and is what KIND asks for.
is_wanted() {
    local wrap=()
    if [ "$2" = ft-tsan ]; then
        tsan_wrapper || return 1
        wrap=("${TSAN_WRAPPER[@]}")
    fi
    "${wrap[@]}" "$1" - "$2" >/dev/null 2>&1 <<'PY'
import sys, sysconfig
kind = sys.argv[1]
ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
tsan = "--with-thread-sanitizer" in (sysconfig.get_config_var("CONFIG_ARGS") or "")
debug = hasattr(sys, "gettotalrefcount")
v = sys.version_info[:2]
ok = {
    "ft": v >= (3, 13) and ft and not tsan and not debug,
    "gil": v >= (3, 13) and not ft and not tsan and not debug,
    "ft-tsan": v >= (3, 13) and ft and tsan,
    "ft-debug": v >= (3, 13) and ft and debug and not tsan,
    "3.14": v == (3, 14) and not ft and not tsan and not debug,
    "3.15": v == (3, 15) and not ft and not tsan and not debug,
}[kind]
# A base interpreter, never a venv's (tools/dev.sh puts its venvs' bin/ on PATH, and a venv made
# from a venv that is then recreated would lose its own interpreter).
ok = ok and sys.prefix == sys.base_prefix
import venv  # noqa: F401  (every kind makes venvs)
sys.exit(0 if ok else 1)
PY
}

# candidates KIND: paths to try, in order of preference.
candidates() {
    local kind=$1 p
    case "$kind" in
        ft)
            [ -n "${THRASKS_PYTHON:-}" ] && echo "$THRASKS_PYTHON"
            for p in python3.14t python3.13t; do command -v "$p" || true; done
            ;;
        gil)
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
            ;;
        ft-tsan) [ -n "${THRASKS_TSAN_PYTHON:-}" ] && echo "$THRASKS_TSAN_PYTHON" ;;
        ft-debug) [ -n "${THRASKS_DEBUG_PYTHON:-}" ] && echo "$THRASKS_DEBUG_PYTHON" ;;
        3.14|3.15)
            p="THRASKS_PYTHON_${kind/./_}"
            [ -n "${!p:-}" ] && echo "${!p}"
            p=$(command -v "python$kind" || true)
            case "$p" in ""|*/shims/*) ;; *) echo "$p" ;; esac
            # Only a completely unpacked and patched tree (see fetch_debian) counts.
            [ -f "$THRASKS_CACHE/python-$kind/ok" ] && echo "$THRASKS_CACHE/python-$kind/root/usr/bin/python$kind"
            return 0
            ;;
    esac
    ls "$THRASKS_CACHE/python-$kind"/bin/python3.1[3-9]* 2>/dev/null | grep -v -- '-config$' || true
}

find_python() {
    local c
    while IFS= read -r c; do
        [ -n "$c" ] && is_wanted "$c" "$1" && { echo "$c"; return 0; }
    done < <(candidates "$1")
    return 1
}

# apt_install PKG...: install the machine packages among PKG... that are missing.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        # One apt at a time: tools/dev.sh builds interpreters in the background (dpkg's own lock
        # would fail the second one instead of waiting).
        (
            flock 6
            apt-get -q update >&2
            DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "${missing[@]}" >&2
        ) 6>"$THRASKS_CACHE/apt.lock"
    fi
}

ensure_build_deps() {
    apt_install build-essential pkg-config dpkg-dev libssl-dev zlib1g-dev libffi-dev libbz2-dev \
        liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libgdbm-dev libexpat1-dev xz-utils
}

# fetch_source: download CPython's Debian source package (3.14 first, then 3.13), newest version
# whose files are actually served; print the path of the upstream tarball. Every source-built
# kind uses the same tarball, so the TSan and debug interpreters are the same CPython as ft.
fetch_source() {
    local dir="$THRASKS_CACHE/src" pkg v tarball
    mkdir -p "$dir"
    # One download at a time (this runs in a command substitution: the lock ends with it).
    exec 7>"$THRASKS_CACHE/src.lock"
    flock 7
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

# phase NAME LOG CMD...: run one build phase with its output in LOG; its duration goes to
# times.log beside LOG.
phase() {
    local name=$1 log=$2 t0=$SECONDS
    shift 2
    "$@" > "$log" 2>&1 || { log "$name failed; see $log"; return 1; }
    echo "$name $((SECONDS - t0)) s" >> "$(dirname "$log")/times.log"
}

build_python() {
    local kind=$1 tarball src build prefix flags=() t0=$SECONDS
    prefix="$THRASKS_CACHE/python-$kind"
    ensure_build_deps
    tarball=$(fetch_source)
    build="$THRASKS_CACHE/build-$kind"
    rm -rf "$build" "$prefix"
    mkdir -p "$build"
    tar -xf "$tarball" -C "$build"
    src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n1)
    case "$kind" in
        ft) flags=(--disable-gil --with-ensurepip=install) ;;
        gil) flags=(--with-ensurepip=install) ;;
        # The venvs bootstrap pip from the bundled wheel themselves (python -m venv): no
        # ensurepip run under the sanitizer at install time.
        ft-tsan) flags=(--disable-gil --with-thread-sanitizer --with-ensurepip=no) ;;
        ft-debug) flags=(--disable-gil --with-pydebug --with-ensurepip=no) ;;
    esac
    log "building $kind CPython from $(basename "$tarball") into $prefix (${flags[*]}; logs in $build)"
    # The TSan build runs its own interpreter (make, make install): with ASLR off where needed.
    local wrap=() install_vars=()
    if [ "$kind" = ft-tsan ]; then
        tsan_wrapper
        wrap=("${TSAN_WRAPPER[@]}")
    fi
    case "$kind" in
        ft-tsan|ft-debug)
            # Lean: `make install` would byte-compile the whole standard library three times
            # (-O0, -O1, -O2) with the new, instrumented interpreter: over 20 minutes under TSan
            # on 2 busy cores. Its other use of PYTHON_FOR_BUILD (ensurepip) is off too, so
            # `true` skips just that; the modules a run imports are compiled and cached on first
            # import instead (see PYTHONDONTWRITEBYTECODE in main).
            install_vars=(PYTHON_FOR_BUILD=true) ;;
    esac
    (
        cd "$src"
        phase configure "$build/configure.log" ./configure --prefix="$prefix" "${flags[@]}" &&
        phase make "$build/make.log" "${wrap[@]}" make -j"$(nproc)" &&
        phase install "$build/install.log" "${wrap[@]}" make install "${install_vars[@]}"
    ) || { log "build failed; see logs in $build"; return 1; }
    if [ "$kind" = ft-tsan ]; then
        # CPython's own suppressions for its free-threaded build, from this very source tree.
        mkdir -p "$prefix/share/thrasks"
        {
            echo "# Copied by thrasks' tools/python.sh from $(basename "$tarball"):"
            echo "# Tools/tsan/suppressions_free_threading.txt (unchanged below this line)."
            cat "$src/Tools/tsan/suppressions_free_threading.txt"
        } > "$prefix/share/thrasks/suppressions_free_threading.txt"
    fi
    rm -rf "$src"
    log "built $kind in $((SECONDS - t0)) s ($(tr '\n' ',' < "$build/times.log" | sed 's/,$//; s/,/, /g'))"
}

# ---------------------------------------------------------------------------------------------
# 3.14 and 3.15: Debian's binary packages, unpacked (not installed)
# ---------------------------------------------------------------------------------------------
# Debian builds no free-threaded 3.14t/3.15t and its python3.14/3.15 *source* packages are not
# served, so these are GIL builds from the binary packages of Debian unstable. They need a newer
# C library than the machine's, so they are not installed with dpkg: the packages are unpacked with
# dpkg -x into one tree, with that suite's C library and the libraries the interpreter and its
# extension modules link to, and the interpreter binary is pointed at the unpacked loader and
# libraries (patchelf: the ELF interpreter, and DT_RPATH rather than DT_RUNPATH, because DT_RPATH
# also applies to the dependencies of the extension modules it loads).

# The packages of the interpreter itself (all from one source version) and the libraries it runs
# with, as they are named in Debian unstable.
debian_python_pkgs() {
    local v=$1
    echo "python$v python$v-minimal libpython$v libpython$v-minimal libpython$v-stdlib" \
         "libpython$v-dev python$v-dev python$v-venv"
}
DEBIAN_LIB_PKGS="python3-pip-whl libc6 libgcc-s1 libssl3t64 libffi8 libmpdec4 libexpat1 zlib1g
    libbz2-1.0 liblzma5 libzstd1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8t64 libuuid1
    libcrypt1"

# download DIR PKG[=VERSION]...: download the packages into DIR in one apt-get run (each run
# reads the whole index: one per package would take minutes). Output goes to DIR/../apt.log.
download() {
    local dir=$1
    shift
    (cd "$dir" && apt_private apt-get -q download "$@" >> ../apt.log 2>&1)
}

# download_newest DIR PKG: download the newest version of PKG that the index serves into DIR.
download_newest() {
    local dir=$1 pkg=$2 v
    for v in $(apt_versions show "$pkg"); do
        download "$dir" "$pkg=$v" && return 0
        log "could not download $pkg=$v, trying an older version"
    done
    log "no version of $pkg could be downloaded"
    return 1
}

fetch_debian() {
    local ver=$1 dest tmp v pv="" pkg deb python pkgs=()
    dest="$THRASKS_CACHE/python-$ver"
    apt_install patchelf
    apt_private_update
    tmp="$dest.tmp"
    # The interpreter packages: the newest source version of which all of them download.
    for v in $(apt_versions show "python$ver"); do
        rm -rf "$tmp"
        mkdir -p "$tmp/debs"
        log "fetching python$ver=$v and its libraries from Debian $APT_SUITE (binary packages)"
        pkgs=()
        for pkg in $(debian_python_pkgs "$ver"); do pkgs+=("$pkg=$v"); done
        if download "$tmp/debs" "${pkgs[@]}"; then pv=$v; break; fi
        log "python$ver=$v is not completely served, trying an older version (see $tmp/apt.log)"
    done
    if [ -z "$pv" ]; then
        rm -rf "$tmp"
        log "no version of python$ver can be downloaded from Debian $APT_SUITE"
        return "$EXIT_UNAVAILABLE"
    fi
    # The libraries: the index's candidates in one go; one by one (newest version that
    # downloads) only if that fails.
    # shellcheck disable=SC2086
    if ! download "$tmp/debs" $DEBIAN_LIB_PKGS; then
        for pkg in $DEBIAN_LIB_PKGS; do
            compgen -G "$tmp/debs/${pkg}_*.deb" >/dev/null || download_newest "$tmp/debs" "$pkg"
        done
    fi
    for deb in "$tmp"/debs/*.deb; do
        dpkg -x "$deb" "$tmp/root"
    done
    # The tree is final once it has its final path: patch the binary there.
    rm -rf "$dest"
    mv "$tmp" "$dest"
    python="$dest/root/usr/bin/python$ver"
    patchelf --set-interpreter "$dest/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
        --force-rpath --set-rpath "$dest/root/usr/lib/x86_64-linux-gnu" "$python"
    "$python" -c 'import asyncio, ctypes, ssl, sqlite3, venv, sys; print(sys.version)' >&2 \
        || { log "the unpacked python$ver does not run"; return 1; }
    ls "$dest"/root/usr/share/python-wheels/pip-*.whl >/dev/null \
        || { log "python3-pip-whl brought no pip wheel"; return 1; }
    (cd "$dest/debs" && ls) > "$dest/packages.txt"
    rm -rf "$dest/debs"
    echo "python$ver $pv" > "$dest/ok"
    log "python$ver $pv unpacked into $dest/root"
}

main() {
    local kind=${1:-} rc=0
    case " $KINDS " in
        *" $kind "*) ;;
        *) echo "usage: $0 ${KINDS// /|}" >&2; exit 2 ;;
    esac
    mkdir -p "$THRASKS_CACHE"
    case "$kind" in
        # Their standard library is byte-compiled lazily (see build_python): let them write the
        # .pyc files, or every run compiles every module again (15 s for `import venv` under TSan).
        ft-tsan|ft-debug) unset PYTHONDONTWRITEBYTECODE ;;
    esac
    # One build per machine and kind even when two runs start at once.
    exec 9>"$THRASKS_CACHE/python-$kind.lock"
    flock 9
    find_python "$kind" && return 0
    # In a subshell with errexit on: a function called as `f || ...` would run without it.
    set +e
    case "$kind" in
        3.14|3.15) (set -e; fetch_debian "$kind") ;;
        *) (set -e; build_python "$kind") ;;
    esac
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || exit "$rc"
    find_python "$kind" || { log "the $kind interpreter does not pass the checks"; exit 1; }
}

main "$@"
