/* linger.h - how long an idle worker keeps looking at its mailbox before its loop sleeps.
 *
 * A thread that sleeps in epoll_wait on an idle vCPU of these VMs takes 20 to 500 us to wake, more
 * than a whole round trip of a trivial task. So a worker whose loop has nothing to do after a drain
 * keeps looking at its mailbox for a while (loop_runner.c, linger) and a caller that sends the next
 * job soon finds it awake. How long is learnt from the gaps between messages, as KVM's halt polling
 * learns its poll time (virt/kvm/kvm_main.c, grow_halt_poll_ns / shrink_halt_poll_ns):
 *   - the window starts at LINGER_BASE_NS;
 *   - a linger that gave up, followed by a message that a window of LINGER_MAX_NS would have
 *     caught, doubles the window (up to LINGER_MAX_NS): the next gap of that length is caught;
 *   - a message after a longer idle time halves it (down to LINGER_BASE_NS): the stream stopped
 *     or is too sparse to wait for;
 *   - a linger that caught its message keeps the window.
 * The cost is bounded: at most LINGER_MAX_NS of one core per gap between messages, and nothing while
 * the pool is idle (a worker lingers only after a message came).
 *
 * Pure functions of plain numbers, no Python: tested by tests/c/test_linger.c.
 */
#ifndef THRASKS_LINGER_H
#define THRASKS_LINGER_H

#ifndef LINGER_BASE_NS /* -DLINGER_BASE_NS=N: an A/B build (tools/perf/build_variant.sh) */
#define LINGER_BASE_NS (250LL * 1000)
#endif
#ifndef LINGER_MAX_NS
#define LINGER_MAX_NS (1000LL * 1000)
#endif

/* The window after a linger of `window` ns gave up and the next message came `idle` ns after that
 * linger began. */
static inline long long linger_window_after_miss(long long window, long long idle)
{
    if (idle <= LINGER_MAX_NS) {
        return window >= LINGER_MAX_NS / 2 ? LINGER_MAX_NS : window * 2;
    }
    return window / 2 <= LINGER_BASE_NS ? LINGER_BASE_NS : window / 2;
}

#endif
