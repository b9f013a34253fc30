/* atomics.h - the one memory-ordering primitive that needs a helper: a sequentially consistent
 * fence that ThreadSanitizer can see. No Python inside.
 *
 * The Dekker pairs of the scheduler (dispatcher.c: push vs. park; loop_runner.c: post vs. death)
 * need a seq_cst fence on each side. GCC does not instrument atomic_thread_fence under
 * -fsanitize=thread (it warns, and -Werror makes that an error), so in a TSan build the fence is
 * replaced by a seq_cst read-modify-write on one process-wide atomic. That is a correct, strictly
 * stronger implementation of the same pattern: all RMWs on one object are totally ordered, and each
 * one synchronises-with the RMW before it (acq_rel), so for "store A; RMW; load B" against
 * "store B; RMW; load A", whichever RMW comes second sees the other side's store - exactly what
 * the pair of fences guarantees. TSan models RMWs, so it checks the protocol instead of ignoring
 * it. Normal builds keep the plain fence.
 */
#ifndef THRASKS_ATOMICS_H
#define THRASKS_ATOMICS_H

#include <stdatomic.h>

#if defined(__SANITIZE_THREAD__)
#define THRASKS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define THRASKS_TSAN 1
#endif
#endif

#ifdef THRASKS_TSAN
extern _Atomic unsigned long thrasks_tsan_fence_word;
#define THRASKS_FENCE_SEQ_CST()                                                                    \
    ((void)atomic_fetch_add_explicit(&thrasks_tsan_fence_word, 1, memory_order_seq_cst))
#else
#define THRASKS_FENCE_SEQ_CST() atomic_thread_fence(memory_order_seq_cst)
#endif

#endif
