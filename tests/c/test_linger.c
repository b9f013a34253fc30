/* test_linger.c - tests of csrc/linger.h: how an idle worker's linger window learns from the gaps
 * between messages (grow on a gap the maximum window would have caught, shrink on a longer one,
 * always within [LINGER_BASE_NS, LINGER_MAX_NS]). */
#include "linger.h"
#include "test_support.h"

#include <stdint.h>

/* A stream of messages `gap` ns apart, each after a linger that gave up: the window it settles on. */
static long long settle(long long window, long long gap, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        if (gap > window) { /* the linger gave up before the message came */
            window = linger_window_after_miss(window, gap);
        }
    }
    return window;
}

int main(int argc, char **argv)
{
    if (test_setup(argc, argv)) {
        return 0;
    }
    const long long base = LINGER_BASE_NS, max = LINGER_MAX_NS;
    CHECK(base > 0 && max >= base);
    /* a gap the maximum window catches doubles the window, capped at the maximum */
    CHECK(linger_window_after_miss(base, base + 1) == (2 * base < max ? 2 * base : max));
    CHECK(linger_window_after_miss(max, max) == max);
    CHECK(linger_window_after_miss(max / 2 + 1, max) == max);
    /* a longer gap halves it, never below the base */
    CHECK(linger_window_after_miss(max, max + 1) == (max / 2 > base ? max / 2 : base));
    CHECK(linger_window_after_miss(base, INT64_MAX / 2) == base);
    /* a steady stream of gaps under the maximum is caught after a few misses ... */
    for (long long gap = base + 1; gap <= max; gap += (max - base) / 7 + 1) {
        long long w = settle(base, gap, 8);
        CHECK(w >= gap && w <= max);
    }
    /* ... and one of longer gaps brings the window back to the base: an idle pool costs nothing */
    CHECK(settle(max, 10 * max, 8) == base);
    /* every sequence of gaps keeps the window within its bounds */
    unsigned s = 12345;
    long long w = base;
    for (size_t i = 0; i < scaled(100000); i++) {
        s = s * 1103515245u + 12345u;
        long long gap = (long long)(s >> 8) % (3 * max);
        w = linger_window_after_miss(w, gap);
        CHECK(w >= base && w <= max);
    }
    printf("linger: ok\n");
    return 0;
}
