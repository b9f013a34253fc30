/* atomics.h - the one seq_cst fence of the C core, spelled so that ThreadSanitizer understands it.
 *
 * No Python inside (the scheduler units include it too).
 *
 * THRASKS_FENCE_SEQ_CST() is the full fence of a Dekker pair: each side stores its own flag,
 * fences, then loads the other side's flag (disp_shared_push / disp_shared_pop in dispatcher.c,
 * post_done / runner_die in loop_runner.c). The fences guarantee that at least one side sees
 * the other's store.
 *
 * Normally it is exactly atomic_thread_fence(memory_order_seq_cst).
 *
 * Under ThreadSanitizer it is a seq_cst read-modify-write of one process-wide atomic word
 * instead, because TSan does not model fences (GCC says so with -Wtsan, an error under -Werror;
 * clang stays silent and TSan would then report false races or miss real ones). Why the
 * replacement is still correct: all RMWs of one object are totally ordered (its modification
 * order), and every RMW reads the value written by the one just before it. Take the two sides
 * A (store X; RMW; load Y) and B (store Y; RMW; load X). If A's RMW comes first, B's RMW reads from
 * A's RMW (release), so A's RMW synchronizes-with B's RMW (acquire): A's store of X happens
 * before B's load of X, which therefore sees X (or a later value). Symmetrically if B's RMW comes
 * first. So at least one side sees the other's store: the Dekker guarantee of the fence pair.
 * TSan models RMWs exactly, so it sees that happens-before edge too. The cost (every pair in the
 * process contends on one cache line) only exists in the TSan build.
 *
 * Contract: callable from any thread, any number of times; no state besides the word below.
 */
#ifndef THRASKS_ATOMICS_H
#define THRASKS_ATOMICS_H

#include <stdatomic.h>

#if defined(__SANITIZE_THREAD__)            /* GCC */
#  define THRASKS_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)       /* clang */
#    define THRASKS_TSAN 1
#  endif
#endif

#ifdef THRASKS_TSAN
/* The word every TSan-build fence updates; defined once, in mpmc_queue.c (linked into the
 * extension and into every C test). Its value means nothing. */
extern _Atomic unsigned long thrasks_fence_word;
/* seq_cst RMW: stands for the fence (see above); pairs with the same RMW on the other side. */
#  define THRASKS_FENCE_SEQ_CST() \
      ((void)atomic_fetch_add_explicit(&thrasks_fence_word, 1, memory_order_seq_cst))
#else
#  define THRASKS_FENCE_SEQ_CST() atomic_thread_fence(memory_order_seq_cst)
#endif

#endif
