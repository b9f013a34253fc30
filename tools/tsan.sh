# shellcheck shell=bash
# ThreadSanitizer on this machine: sourced by tools/python.sh (building the TSan interpreter runs
# it) and tools/dev.sh (pytest-tsan).
#
# TSan needs its shadow memory at fixed addresses. On some kernels (a high vm.mmap_rnd_bits) ASLR
# puts mappings there and every instrumented program dies at start with "FATAL: ThreadSanitizer:
# unexpected memory mapping"; running it without address randomisation (setarch -R) avoids that.
# tools/c_tests.sh probes the same way with its own test binary.

# tsan_wrapper: set the array TSAN_WRAPPER to the prefix instrumented programs need here: empty,
# or (setarch ARCH -R). Probed once per shell with a tiny instrumented program.
tsan_wrapper() {
    [ -n "${TSAN_WRAPPER_PROBED:-}" ] && return 0
    TSAN_WRAPPER=()
    TSAN_WRAPPER_PROBED=1
    local dir out
    dir=$(mktemp -d)
    printf 'int main(void) { return 0; }\n' > "$dir/probe.c"
    if ! "${CC:-gcc}" -fsanitize=thread "$dir/probe.c" -o "$dir/probe" 2> "$dir/cc.log"; then
        echo "[tsan.sh] cannot build a -fsanitize=thread program:" >&2
        cat "$dir/cc.log" >&2
        rm -rf "$dir"
        return 1
    fi
    if ! out=$("$dir/probe" 2>&1); then
        if printf '%s' "$out" | grep -q "unexpected memory mapping" && command -v setarch >/dev/null; then
            TSAN_WRAPPER=(setarch "$(uname -m)" -R)
            echo "[tsan.sh] TSan needs ASLR off here: running instrumented programs under ${TSAN_WRAPPER[*]}" >&2
        else
            echo "[tsan.sh] a -fsanitize=thread program does not run here: $out" >&2
            rm -rf "$dir"
            return 1
        fi
    fi
    rm -rf "$dir"
}
