/* mpmc_queue.h - lock-free multi-producer multi-consumer FIFO of `void *` items.
 *
 * No Python inside: the caller decides what the pointers mean and who owns them (the queue never
 * dereferences an item). Used for worker inboxes, completion queues and the QUEUE-mode shared queue.
 *
 * Design: a chain of Vyukov bounded rings (per-cell sequence numbers). Producers and consumers work
 * on a ring with one CAS each. When the tail ring is full, the producer that notices closes it (a
 * CLOSED bit in its enqueue index, so no later push can land in it) and links a new ring of twice
 * the capacity behind it under a short mutex: the only lock, taken O(log(peak length)) times over
 * the queue's life. Consumers move to the next ring once the closed ring is drained. Rings are
 * never freed before mpmc_destroy (consumers may still be reading a ring another consumer has left),
 * so memory is bounded by the rings' geometric series: less than twice the last ring, i.e. at most
 * about four times the peak length in cells; when the queue empties, the single live ring is the
 * one in use. Design notes, memory orders and measurements: docs/scheduler.md.
 *
 * Contract:
 *   - mpmc_push and mpmc_pop may be called concurrently from any number of threads.
 *   - mpmc_init / mpmc_destroy must not race with anything else on the same queue.
 *   - Items are popped in the order their pushes linearized; in particular the items of one
 *     producer come out in the order it pushed them (ring order within a ring, rings in order).
 *   - Progress: push and pop are lock-free except (a) the growth path (a mutex, rare) and (b) the
 *     Vyukov window: a producer that has claimed a cell but not yet published it makes later items
 *     invisible to consumers until it finishes (pop reports empty; nothing is lost).
 *   - Items must be non-NULL: NULL is how mpmc_pop reports "empty".
 */
#ifndef THRASKS_MPMC_QUEUE_H
#define THRASKS_MPMC_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <pthread.h>

#define MPMC_CACHELINE 64

typedef struct mpmc_ring mpmc_ring;

typedef struct mpmc_queue {
    /* Consumers read head, producers read tail: separate cache lines so they do not false-share. */
    _Alignas(MPMC_CACHELINE) _Atomic(mpmc_ring *) head;
    _Alignas(MPMC_CACHELINE) _Atomic(mpmc_ring *) tail;
    _Alignas(MPMC_CACHELINE) pthread_mutex_t grow_lock; /* guards linking new rings (rare) */
    mpmc_ring *all;                                     /* every ring ever made, for mpmc_destroy */
    size_t first_capacity;
} mpmc_queue;

/* Initialise with a first ring of at least `capacity` items (rounded up to a power of two, >= 2).
 * Returns 0, or -1 if memory could not be allocated (errno is ENOMEM). */
int mpmc_init(mpmc_queue *q, size_t capacity);

/* Free every ring. Items still queued are not touched: drain the queue first if they own memory. */
void mpmc_destroy(mpmc_queue *q);

/* Append `item` (must not be NULL). Returns 0, or -1 only if a new ring could not be allocated
 * (the item was not queued; the caller reports MemoryError). Never drops an item silently. */
int mpmc_push(mpmc_queue *q, void *item);

/* Remove and return the oldest visible item, or NULL if the queue looked empty. */
void *mpmc_pop(mpmc_queue *q);

/* Approximate number of queued items (exact when no operation is in flight). */
size_t mpmc_size_approx(mpmc_queue *q);

/* Approximate emptiness check, cheaper than mpmc_size_approx() == 0 when the queue has one ring. */
int mpmc_empty_approx(mpmc_queue *q);

#endif
