#!/usr/bin/env bash
# tools/c_tests.sh - build and run the C unit/stress tests of the scheduler units (no Python).
#
#   tools/c_tests.sh           debug, ASan+UBSan and TSan builds under build/c-*, `meson test` in each
#   tools/c_tests.sh bench     release build under build/c-release, runs bench_mpmc (args passed on)
#
# Environment: MESON / NINJA name the tools (default: `meson` / `ninja` on PATH, else installed
# with `python3 -m pip install --user meson ninja`). THRASKS_STRESS_SCALE scales the stress sizes.
# Idempotent: existing build dirs are reconfigured, not recreated. Exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

find_tools() {
    if [[ -z "${MESON:-}" ]]; then
        if command -v meson >/dev/null 2>&1; then
            MESON=meson
        else
            echo "c_tests: meson not on PATH; installing meson and ninja with pip --user" >&2
            python3 -m pip install --user --quiet meson ninja
            MESON="$(python3 -c 'import site, os; print(os.path.join(site.USER_BASE, "bin", "meson"))')"
            export PATH="$(dirname "$MESON"):$PATH"
        fi
    fi
    if [[ -n "${NINJA:-}" ]]; then
        export NINJA # meson honours $NINJA
    elif ! command -v ninja >/dev/null 2>&1 && ! command -v samu >/dev/null 2>&1; then
        python3 -m pip install --user --quiet ninja
        export PATH="$(python3 -c 'import site, os; print(os.path.join(site.USER_BASE, "bin"))'):$PATH"
    fi
}

# setup DIR OPTIONS...: configure, or reconfigure with the same options if DIR already exists.
setup() {
    local dir="$1"
    shift
    if [[ -f "$dir/meson-private/coredata.dat" ]]; then
        "$MESON" setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 || {
            cat "$dir.setup.log" >&2
            return 1
        }
    else
        mkdir -p "$(dirname "$dir")"
        "$MESON" setup "$dir" "$@" >"$dir.setup.log" 2>&1 || {
            cat "$dir.setup.log" >&2
            return 1
        }
    fi
}

# The option that enables tests/c (c_tests; some revisions of meson.options call it unit_tests).
if grep -q "option('c_tests'" meson.options; then
    tests_option=c_tests
else
    tests_option=unit_tests
fi
common=(-Dextension=false "-D$tests_option=true")

# TSan on some kernels fails with "unexpected memory mapping" when ASLR places mappings where its
# shadow memory must go; running without address randomisation (setarch -R) avoids it.
tsan_wrapper=()
tsan_probe() {
    local exe="$1"
    if [[ -x "$exe" ]] && ! TSAN_OPTIONS=report_bugs=0 "$exe" --probe >/dev/null 2>&1; then
        if TSAN_OPTIONS=report_bugs=0 "$exe" --probe 2>&1 | grep -q "unexpected memory mapping"; then
            if command -v setarch >/dev/null 2>&1; then
                tsan_wrapper=(--wrapper "setarch $(uname -m) -R")
            fi
        fi
    fi
}

run_suite() {
    local name="$1" dir="$2"
    shift 2
    local t0=$SECONDS
    echo "== $name: $dir"
    setup "$dir" "${common[@]}" "$@" || return 1
    "$MESON" compile -C "$dir" >"$dir.compile.log" 2>&1 || {
        cat "$dir.compile.log" >&2
        return 1
    }
    local wrap=()
    if [[ "$name" == tsan ]]; then
        tsan_probe "$dir/tests/c/test_mpmc"
        wrap=("${tsan_wrapper[@]}")
    fi
    # (errexit is off in here: run_suite is called as `run_suite ... || status=1`)
    if ! "$MESON" test -C "$dir" --suite c --print-errorlogs "${wrap[@]}"; then
        echo "== $name: FAILED after $((SECONDS - t0)) s" >&2
        return 1
    fi
    echo "== $name: passed in $((SECONDS - t0)) s"
}

find_tools

if [[ "${1:-}" == bench ]]; then
    shift
    dir=build/c-release
    setup "$dir" "${common[@]}" -Dbuildtype=release -Db_ndebug=true
    "$MESON" compile -C "$dir" >"$dir.compile.log" 2>&1 || {
        cat "$dir.compile.log" >&2
        exit 1
    }
    exec "$dir/tests/c/bench_mpmc" "$@"
fi

status=0
run_suite debug build/c-debug -Dbuildtype=debug -Db_ndebug=false || status=1
run_suite asan build/c-asan -Dbuildtype=debug -Db_ndebug=false \
    -Db_sanitize=address,undefined -Db_lundef=false || status=1
run_suite tsan build/c-tsan -Dbuildtype=debug -Db_ndebug=false -Db_sanitize=thread || status=1
if [[ $status -ne 0 ]]; then
    echo "c_tests: FAILED" >&2
else
    echo "c_tests: all C tests passed"
fi
exit $status
