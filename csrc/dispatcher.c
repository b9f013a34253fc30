/* dispatcher.c - round robin, batched inbox wake-ups and the park/notify protocol.
 * The protocols, and why they lose no wake-up, are described in dispatcher.h. */
#include "dispatcher.h"
#include "atomics.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- 1. round robin ---- */

void disp_rr_init(disp_rr *rr, _Atomic size_t *pool_counter, size_t n)
{
    if (n == 0) {
        n = 1;
    }
    /* relaxed: pairs with the other groups' fetch_add here; only the counter's atomicity matters.
     * Group g of the pool starts on worker g mod pool_size, so groups with few tasks (or a pool
     * as large as the group) do not all start on worker 0. */
    rr->offset = atomic_fetch_add_explicit(pool_counter, 1, memory_order_relaxed);
    rr->n = n;
    atomic_init(&rr->next, 0);
}

size_t disp_rr_next_slot(disp_rr *rr)
{
    /* relaxed: pairs with the other callers' fetch_add; each task gets a distinct index, and what
     * the task carries is published by the queue it travels through, not by this counter. */
    return atomic_fetch_add_explicit(&rr->next, 1, memory_order_relaxed) % rr->n;
}

size_t disp_rr_worker(const disp_rr *rr, size_t slot, size_t pool_size)
{
    if (pool_size == 0) {
        return 0;
    }
    /* (offset + slot) mod pool_size, without overflowing when the pool counter has wrapped */
    return (rr->offset % pool_size + slot % pool_size) % pool_size;
}

/* ---- 2. inbox with batched wake-ups ---- */

int disp_inbox_init(disp_inbox *in, size_t capacity)
{
    if (mpmc_init(&in->q, capacity) < 0) {
        return -1;
    }
    atomic_init(&in->wake_pending, 0);
    return 0;
}

void disp_inbox_destroy(disp_inbox *in)
{
    mpmc_destroy(&in->q);
}

int disp_inbox_push(disp_inbox *in, void *item)
{
    if (mpmc_push(&in->q, item) < 0) {
        return -1;
    }
    /* release: pairs with the acquire exchange in disp_inbox_begin_drain. If this exchange comes
     * first (it reads 0 -> we wake; or 1 -> a wake is pending), the consumer's clear reads from
     * its release sequence, so our push happens-before the consumer's pops that follow it. */
    return atomic_exchange_explicit(&in->wake_pending, 1, memory_order_release) == 0 ? 1 : 0;
}

void disp_inbox_begin_drain(disp_inbox *in)
{
    /* acquire: pairs with the release exchange in disp_inbox_push (see there). */
    (void)atomic_exchange_explicit(&in->wake_pending, 0, memory_order_acquire);
}

void *disp_inbox_pop(disp_inbox *in)
{
    return mpmc_pop(&in->q);
}

/* ---- 3. shared queue with parking consumer slots ---- */

int disp_shared_init(disp_shared *s, size_t n, size_t capacity)
{
    s->slots = NULL;
    if (n > 0) {
        if (n > SIZE_MAX / sizeof(disp_slot)) {
            errno = ENOMEM;
            return -1;
        }
        s->slots = aligned_alloc(MPMC_CACHELINE, n * sizeof(disp_slot)); /* sizeof is a multiple */
        if (s->slots == NULL) {
            errno = ENOMEM;
            return -1;
        }
    }
    if (mpmc_init(&s->q, capacity) < 0) {
        free(s->slots);
        s->slots = NULL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        atomic_init(&s->slots[i].state, DISP_SLOT_PARKED);
    }
    s->n = n;
    atomic_init(&s->notify_cursor, 0);
    return 0;
}

void disp_shared_destroy(disp_shared *s)
{
    mpmc_destroy(&s->q);
    free(s->slots);
    s->slots = NULL;
    s->n = 0;
}

long disp_shared_push(disp_shared *s, void *item)
{
    /* relaxed: pairs with the other producers' fetch_add; it only spreads notifications. Drawn
     * before the push on purpose: this RMW is a full barrier on x86, and after the push it would
     * hide a missing fence below from the tests (tests/c/test_dispatcher.c, litmus). */
    size_t start = atomic_fetch_add_explicit(&s->notify_cursor, 1, memory_order_relaxed);
    if (mpmc_push(&s->q, item) < 0) {
        return -2;
    }
    /* seq_cst: pairs with the seq_cst fence in disp_shared_pop (Dekker: our push vs. its PARKED
     * store; at least one side sees the other's store). */
    THRASKS_FENCE_SEQ_CST();
    for (size_t i = 0; i < s->n; i++) {
        size_t k = (start + i) % s->n;
        atomic_int *st = &s->slots[k].state;
        /* relaxed: ordered after our push by the fence above; pairs with the PARKED store in
         * disp_shared_pop. */
        if (atomic_load_explicit(st, memory_order_relaxed) == DISP_SLOT_PARKED) {
            int expected = DISP_SLOT_PARKED;
            /* acquire: reads the consumer's release store of PARKED, so the consumer's last use of
             * the slot's token happens before we post it again. Exactly one side wins a PARKED
             * slot (pairs with the CAS in disp_shared_pop). */
            if (atomic_compare_exchange_strong_explicit(st, &expected, DISP_SLOT_ACTIVE,
                                                        memory_order_acquire, memory_order_relaxed)) {
                return (long)k;
            }
        }
    }
    return -1;
}

int disp_shared_pop(disp_shared *s, size_t slot, void **item)
{
    void *it = mpmc_pop(&s->q);
    if (it != NULL) {
        *item = it;
        return DISP_ITEM;
    }
    atomic_int *st = &s->slots[slot].state;
    /* release: the consumer's last use of its serve token (relinking it) happens before the
     * producer that claims the slot posts the token again (its CAS acquires). Ordered before the
     * re-check by the fence below; pairs with the load of the slot in disp_shared_push. */
    atomic_store_explicit(st, DISP_SLOT_PARKED, memory_order_release);
    /* seq_cst: pairs with the seq_cst fence in disp_shared_push (see there). */
    THRASKS_FENCE_SEQ_CST();
    it = mpmc_pop(&s->q); /* the re-check */
    if (it == NULL) {
        return DISP_PARKED;
    }
    int expected = DISP_SLOT_PARKED;
    /* relaxed: pairs with the CAS in disp_shared_push. If it fails, a producer already claimed the
     * slot and will notify us: we keep serving and that notification is spurious. */
    (void)atomic_compare_exchange_strong_explicit(st, &expected, DISP_SLOT_ACTIVE,
                                                  memory_order_relaxed, memory_order_relaxed);
    *item = it;
    return DISP_ITEM;
}

void disp_shared_park(disp_shared *s, size_t slot)
{
    /* release: as in disp_shared_pop (the token's reuse); ordered before the caller's pops by the
     * fence below; pairs with the load of the slot in disp_shared_push. */
    atomic_store_explicit(&s->slots[slot].state, DISP_SLOT_PARKED, memory_order_release);
    /* seq_cst: pairs with the seq_cst fence in disp_shared_push (as in disp_shared_pop). */
    THRASKS_FENCE_SEQ_CST();
}

int disp_shared_slot_state(disp_shared *s, size_t slot)
{
    /* relaxed: a hint (see dispatcher.h) */
    return atomic_load_explicit(&s->slots[slot].state, memory_order_relaxed);
}

/* ---- 4. intrusive MPSC stack ---- */

void disp_stack_init(disp_stack *s)
{
    atomic_init(&s->top, NULL);
}

int disp_stack_push(disp_stack *s, disp_node *n)
{
    /* relaxed: only the first guess; the CAS below decides */
    disp_node *top = atomic_load_explicit(&s->top, memory_order_relaxed);
    do {
        n->next = top;
        /* acq_rel. release: publishes n->next and everything the producer wrote to the item before
         * the push to the exchange in disp_stack_take_all (later pushes are RMWs, so they continue
         * this release sequence). acquire: a node is pushed again only after the consumer took it
         * (and, say, emptied the stack that made it postable); reading from that take's release
         * orders the consumer's last writes to n->next before ours (found by ThreadSanitizer: a
         * hub node re-posted while the hub's take had just relinked it). */
    } while (!atomic_compare_exchange_weak_explicit(&s->top, &top, n, memory_order_acq_rel,
                                                    memory_order_relaxed));
    return top == NULL;
}

disp_node *disp_stack_take_all(disp_stack *s)
{
    /* acq_rel. acquire: pairs with the release CAS of every push in the list (one release
     * sequence). release: what this thread wrote before (to nodes it is done with, or to the
     * stack another thread watches) is visible to the next push, whose CAS acquires it. */
    disp_node *n = atomic_exchange_explicit(&s->top, NULL, memory_order_acq_rel);
    disp_node *oldest_first = NULL;
    while (n != NULL) {
        disp_node *next = n->next;
        n->next = oldest_first;
        oldest_first = n;
        n = next;
    }
    return oldest_first;
}

int disp_stack_empty_approx(disp_stack *s)
{
    /* relaxed: a hint; callers re-check with disp_stack_take_all */
    return atomic_load_explicit(&s->top, memory_order_relaxed) == NULL;
}
