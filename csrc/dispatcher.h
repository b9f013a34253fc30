/* dispatcher.h - how a task reaches a worker, and how a sleeping consumer is woken exactly when needed.
 *
 * No Python inside. Three small pieces:
 *
 * 1. Round robin (disp_rr_*): task k of a group goes to worker (offset + k mod n) mod pool_size.
 *    Each group draws its own offset from a pool-wide counter, so concurrent groups start on
 *    different workers instead of all piling onto worker 0.
 *
 * 2. Inbox with batched wake-ups (disp_inbox_*): an MPMC queue plus a `wake_pending` flag, for a
 *    consumer that sleeps in a selector (a worker's event loop, or a caller's loop receiving
 *    completions). At most one wake is sent per batch:
 *        producer:  mpmc_push(item); if exchange(wake_pending, 1) was 0 -> wake the consumer
 *        consumer:  exchange(wake_pending, 0) (disp_inbox_begin_drain), then pop until empty
 *    No lost wake-up: the flag is only ever changed by RMW operations, so they are totally
 *    ordered. If a producer's exchange comes after the consumer's clear, it reads 0 and wakes; if
 *    it comes before, the consumer's clear (acquire) reads from that exchange's release sequence
 *    (producer side: release), so the item pushed before it is visible to the pops that follow.
 *
 * 3. Shared queue with parking (disp_shared_*), for QUEUE mode: one MPMC queue served by n
 *    consumer slots. Each slot is ACTIVE (its consumer is running and will look at the queue again
 *    before it stops) or PARKED (its consumer has stopped looking and must be notified).
 *        producer:  (draw a start slot;) mpmc_push(job); fence(seq_cst); from the start slot,
 *                   find one PARKED slot and CAS it to ACTIVE;
 *                   if it won the CAS, it must notify that slot's consumer (disp_shared_push
 *                   returns the slot index; -1 means no notification is needed).
 *        consumer:  job = pop(); if job: run it, stay ACTIVE.
 *                   else: store(slot, PARKED); fence(seq_cst); job = pop()   (the re-check)
 *                         if no job: stop serving (DISP_PARKED); a producer will notify.
 *                         if a job: CAS(slot, PARKED -> ACTIVE) to keep serving; if that CAS
 *                         fails a producer has already claimed the slot and a notification is
 *                         on its way: still run the job and keep serving (the notification is
 *                         then spurious and harmless: the consumer is already serving).
 *    No lost wake-up: the two seq_cst fences order "push; look at slots" against
 *    "park; look at queue", so at least one side sees the other (a Dekker pair): either the
 *    producer sees PARKED and notifies, or the consumer's re-check finds the job.
 *    Slot state machine:
 *        ACTIVE --(consumer finds queue empty)--> PARKED --(re-check finds a job, CAS)--> ACTIVE
 *        PARKED --(producer CAS after push; producer notifies)--> ACTIVE
 *    Initially every slot is PARKED (no consumer is serving before the first push).
 *
 * 4. Intrusive stack (disp_stack_*), for hand-offs that must never fail: an MPSC Treiber stack of
 *    nodes embedded in the items themselves (a job's start or cancel request, a QUEUE serve token,
 *    a finished job on its way back to the caller). Push never allocates, so posting a message or
 *    a completion cannot run out of memory. The consumer takes the whole stack at once
 *    (exchange with NULL: no ABA problem) and gets it oldest first. Batched wake-ups come for
 *    free: push reports whether the stack was empty, and only that producer wakes the consumer.
 *        producer:  n->next = top; CAS(top, n) (release); if the old top was NULL -> wake
 *        consumer:  (woken) list = exchange(top, NULL) (acquire); reverse it; handle each node
 *    No lost wake-up: every push and take is an RMW on `top`, so they are totally ordered; a push
 *    after a take sees NULL and wakes; a push before it is in the list the take returns. The
 *    consumer must consume its wake signal (e.g. read its eventfd) BEFORE taking, or a wake that
 *    belongs to the next batch is eaten.
 *
 * Concurrency contract: every function may be called from any thread, except that a given slot
 * of a disp_shared is driven by one consumer at a time (the one the notification went to), and a
 * disp_inbox has one consumer at a time. init/destroy must not race with anything.
 */
#ifndef THRASKS_DISPATCHER_H
#define THRASKS_DISPATCHER_H

#include <stdatomic.h>
#include <stddef.h>
#include "mpmc_queue.h"

/* ---- 1. round robin ---- */

typedef struct disp_rr {
    _Atomic size_t next;   /* index of the group's next task */
    size_t offset;         /* the group's first worker, drawn by disp_rr_init */
    size_t n;              /* workers the group spreads over (num_threads) */
} disp_rr;

/* Draw the group's starting offset from `pool_counter` (shared by all groups of a pool). */
void disp_rr_init(disp_rr *rr, _Atomic size_t *pool_counter, size_t n);

/* Slot (0..n-1) of the next task; worker index is disp_rr_worker(rr, slot, pool_size). */
size_t disp_rr_next_slot(disp_rr *rr);
size_t disp_rr_worker(const disp_rr *rr, size_t slot, size_t pool_size);

/* ---- 2. inbox with batched wake-ups ---- */

typedef struct disp_inbox {
    mpmc_queue q;
    _Alignas(MPMC_CACHELINE) atomic_int wake_pending;
} disp_inbox;

int disp_inbox_init(disp_inbox *in, size_t capacity);   /* 0, or -1 (ENOMEM) */
void disp_inbox_destroy(disp_inbox *in);

/* Push `item`. Returns 1 if the caller must now wake the consumer, 0 if a wake is already
 * pending, -1 if memory ran out (item not queued). */
int disp_inbox_push(disp_inbox *in, void *item);

/* Consumer: call once before popping a batch (clears wake_pending), then disp_inbox_pop until NULL. */
void disp_inbox_begin_drain(disp_inbox *in);
void *disp_inbox_pop(disp_inbox *in);

/* ---- 3. shared queue with parking consumer slots ---- */

enum { DISP_SLOT_ACTIVE = 0, DISP_SLOT_PARKED = 1 };
enum { DISP_PARKED = 0, DISP_ITEM = 1 };

typedef struct disp_slot {
    _Alignas(MPMC_CACHELINE) atomic_int state;
} disp_slot;

typedef struct disp_shared {
    mpmc_queue q;
    size_t n;                        /* number of slots */
    _Atomic size_t notify_cursor;    /* where the next producer starts looking for a parked slot */
    disp_slot *slots;                /* n slots, each on its own cache line */
} disp_shared;

int disp_shared_init(disp_shared *s, size_t n, size_t capacity);   /* 0, or -1 (ENOMEM) */
void disp_shared_destroy(disp_shared *s);

/* Push `item`. Returns the index of a slot whose consumer the caller must notify, -1 if none
 * needs it, or -2 if memory ran out (item not queued). */
long disp_shared_push(disp_shared *s, void *item);

/* Consumer of `slot`: DISP_ITEM with *item set (keep serving), or DISP_PARKED (stop serving until
 * notified). */
int disp_shared_pop(disp_shared *s, size_t slot, void **item);

/* The consumer of `slot` gives up serving for good (its worker stopped or died): park the slot,
 * so the next push notifies again, with the same fence as disp_shared_pop; the caller then pops
 * and resolves whatever is left in the queue (a concurrent push either sees PARKED and notifies,
 * or its item is among those popped). */
void disp_shared_park(disp_shared *s, size_t slot);

/* DISP_SLOT_ACTIVE or DISP_SLOT_PARKED, as last seen (relaxed: a hint for balance decisions). */
int disp_shared_slot_state(disp_shared *s, size_t slot);

/* ---- 4. intrusive MPSC stack ---- */

typedef struct disp_node {
    struct disp_node *next;
} disp_node;

typedef struct disp_stack {
    _Atomic(disp_node *) top;
} disp_stack;

void disp_stack_init(disp_stack *s);

/* Push `n`, which must not be on any stack. Returns 1 if the stack was empty (the caller must now
 * wake the consumer), else 0. Never fails. Any thread. */
int disp_stack_push(disp_stack *s, disp_node *n);

/* Consumer: take every node, oldest first (a NULL-terminated list through `next`), or NULL. */
disp_node *disp_stack_take_all(disp_stack *s);

/* Approximate emptiness (diagnostics and fast paths that re-check after a wake-up). */
int disp_stack_empty_approx(disp_stack *s);

/* Container of an embedded node, as in the Linux kernel. */
#define disp_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
