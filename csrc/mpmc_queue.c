/* mpmc_queue.c - a chain of Vyukov bounded rings; the contract is in mpmc_queue.h.
 *
 * One ring (capacity `cap`, a power of two) holds `cap` cells. Cell i starts with seq == i.
 * Positions are free-running counters (enq for producers, deq for consumers); a position p maps
 * to cell p & mask, and the cell's seq says whose turn it is for that position:
 *     seq == p        free: the producer that claims position p may write it
 *     seq == p + 1    published: the consumer that claims position p may read it
 *     seq == p + cap  consumed: free again for the producer of position p + cap
 * A producer claims p with a CAS on enq, writes the item, then publishes with a release store of
 * seq; a consumer claims p with a CAS on deq, reads the item, then frees the cell with a release
 * store of seq. The item itself is a plain (non-atomic) field: the seq stores and loads order it.
 *
 * Growth: a producer that finds the ring full sets the CLOSED bit in enq (fetch_or), so no CAS on
 * enq can succeed any more, and the ring's last position is final (end = enq & ~CLOSED). It then
 * links a ring of twice the capacity behind it under grow_lock and moves q->tail there.
 * A consumer moves q->head from a closed ring to its successor only when deq == end, i.e. when
 * every item of the old ring has been claimed, so rings are consumed strictly in order.
 */
#include "mpmc_queue.h"
#include "atomics.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef THRASKS_TSAN
_Atomic unsigned long thrasks_fence_word; /* see atomics.h */
#endif

#define MPMC_CLOSED ((size_t)1 << (sizeof(size_t) * 8 - 1))

typedef struct mpmc_cell {
    _Atomic size_t seq;
    void *item;
} mpmc_cell;

struct mpmc_ring {
    _Alignas(MPMC_CACHELINE) _Atomic size_t enq;   /* producers: next position | MPMC_CLOSED */
    _Alignas(MPMC_CACHELINE) _Atomic size_t deq;   /* consumers: next position */
    _Alignas(MPMC_CACHELINE) _Atomic(mpmc_ring *) next; /* successor once closed, set once */
    size_t mask;                                   /* capacity - 1 */
    mpmc_ring *all_next;                           /* the q->all list (grow_lock / init only) */
    _Alignas(MPMC_CACHELINE) mpmc_cell cells[];
};

enum { RING_OK = 0, RING_FULL = 1, RING_CLOSED = 2 };

static mpmc_ring *mpmc_ring_new(size_t capacity)
{
    if (capacity > (SIZE_MAX - sizeof(mpmc_ring)) / sizeof(mpmc_cell) / 2) {
        return NULL;
    }
    size_t bytes = sizeof(mpmc_ring) + capacity * sizeof(mpmc_cell);
    bytes = (bytes + MPMC_CACHELINE - 1) & ~(size_t)(MPMC_CACHELINE - 1); /* aligned_alloc wants a multiple */
    mpmc_ring *r = aligned_alloc(MPMC_CACHELINE, bytes);
    if (r == NULL) {
        return NULL;
    }
    atomic_init(&r->enq, 0);
    atomic_init(&r->deq, 0);
    atomic_init(&r->next, NULL);
    r->mask = capacity - 1;
    r->all_next = NULL;
    for (size_t i = 0; i < capacity; i++) {
        atomic_init(&r->cells[i].seq, i);
        r->cells[i].item = NULL;
    }
    return r;
}

/* Producer side of one ring. */
static int mpmc_ring_push(mpmc_ring *r, void *item)
{
    /* relaxed: only a hint; the cell's seq (acquire below) and the CAS decide. */
    size_t pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
    for (;;) {
        if (pos & MPMC_CLOSED) {
            return RING_CLOSED;
        }
        mpmc_cell *c = &r->cells[pos & r->mask];
        /* acquire: pairs with the release store of seq in mpmc_ring_pop (the consumer of the
         * previous lap has finished reading c->item before we overwrite it). */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - pos);
        if (dif == 0) {
            /* relaxed: the CAS only claims the position; publication is the seq store below.
             * Pairs with the fetch_or in mpmc_close (a closed enq makes this CAS fail). */
            if (atomic_compare_exchange_weak_explicit(&r->enq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                c->item = item;
                /* release: pairs with the acquire load of seq in mpmc_ring_pop (publishes item). */
                atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
                return RING_OK;
            }
            /* pos now holds the current enq */
        }
        else if (dif < 0) {
            return RING_FULL; /* the cell still holds the item of position pos - capacity */
        }
        else {
            /* another producer claimed pos: relaxed reload, as above */
            pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
        }
    }
}

/* Consumer side of one ring. Returns the item, or NULL with *stop = the position whose cell was
 * not published (the ring's current deq when we looked). */
static void *mpmc_ring_pop(mpmc_ring *r, size_t *stop)
{
    /* relaxed: only a hint; the cell's seq (acquire below) and the CAS decide. */
    size_t pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
    for (;;) {
        mpmc_cell *c = &r->cells[pos & r->mask];
        /* acquire: pairs with the release store of seq in mpmc_ring_push (item is visible). */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - (pos + 1));
        if (dif == 0) {
            /* relaxed: claims the position only; the acquire load above already ordered item. */
            if (atomic_compare_exchange_weak_explicit(&r->deq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                void *item = c->item;
                /* release: pairs with the acquire load of seq in mpmc_ring_push (our read of
                 * item is done before the next lap's producer overwrites it). */
                atomic_store_explicit(&c->seq, pos + r->mask + 1, memory_order_release);
                return item;
            }
        }
        else if (dif < 0) {
            *stop = pos; /* empty, or the producer of pos has claimed but not yet published */
            return NULL;
        }
        else {
            /* another consumer took pos: relaxed reload, as above */
            pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
        }
    }
}

int mpmc_init(mpmc_queue *q, size_t capacity)
{
    size_t cap = 2;
    while (cap < capacity) {
        if (cap > SIZE_MAX / 4) {
            errno = ENOMEM;
            return -1;
        }
        cap <<= 1;
    }
    mpmc_ring *r = mpmc_ring_new(cap);
    if (r == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (pthread_mutex_init(&q->grow_lock, NULL) != 0) {
        free(r);
        errno = ENOMEM;
        return -1;
    }
    atomic_init(&q->head, r);
    atomic_init(&q->tail, r);
    q->all = r;
    q->first_capacity = cap;
    return 0;
}

void mpmc_destroy(mpmc_queue *q)
{
    mpmc_ring *r = q->all;
    while (r != NULL) {
        mpmc_ring *next = r->all_next;
        free(r);
        r = next;
    }
    q->all = NULL;
    atomic_store_explicit(&q->head, NULL, memory_order_relaxed); /* relaxed: no concurrent user */
    atomic_store_explicit(&q->tail, NULL, memory_order_relaxed); /* relaxed: no concurrent user */
    pthread_mutex_destroy(&q->grow_lock);
}

/* Make sure `full` (closed) is no longer the tail: link a ring twice as large behind it unless
 * another producer already did. 0, or -1 (ENOMEM). */
static int mpmc_grow(mpmc_queue *q, mpmc_ring *full)
{
    int rc = 0;
    pthread_mutex_lock(&q->grow_lock);
    /* relaxed: tail is only written under grow_lock, which we hold. */
    if (atomic_load_explicit(&q->tail, memory_order_relaxed) == full) {
        size_t cap = full->mask + 1;
        mpmc_ring *r = cap <= SIZE_MAX / 4 ? mpmc_ring_new(cap * 2) : NULL;
        if (r == NULL) {
            errno = ENOMEM;
            rc = -1;
        }
        else {
            r->all_next = q->all;
            q->all = r;
            /* release: pairs with the acquire load of next in mpmc_pop (r's cells initialised). */
            atomic_store_explicit(&full->next, r, memory_order_release);
            /* release: pairs with the acquire load of tail in mpmc_push (r's cells initialised). */
            atomic_store_explicit(&q->tail, r, memory_order_release);
        }
    }
    pthread_mutex_unlock(&q->grow_lock);
    return rc;
}

int mpmc_push(mpmc_queue *q, void *item)
{
    for (;;) {
        /* acquire: pairs with the release store of tail in mpmc_grow (ring initialised). */
        mpmc_ring *r = atomic_load_explicit(&q->tail, memory_order_acquire);
        int rc = mpmc_ring_push(r, item);
        if (rc == RING_OK) {
            return 0;
        }
        if (rc == RING_FULL) {
            /* relaxed: pairs with the CAS on enq in mpmc_ring_push (it fails from now on) and with
             * the load of enq in mpmc_pop; no other data is published through the bit. */
            atomic_fetch_or_explicit(&r->enq, MPMC_CLOSED, memory_order_relaxed);
        }
        if (mpmc_grow(q, r) < 0) {
            return -1;
        }
    }
}

void *mpmc_pop(mpmc_queue *q)
{
    /* acquire: pairs with the release CAS of head below (the next ring's cells initialised). */
    mpmc_ring *r = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        size_t stop = 0;
        void *item = mpmc_ring_pop(r, &stop);
        if (item != NULL) {
            return item;
        }
        /* relaxed: pairs with the fetch_or in mpmc_push; only the bit and the final end are read. */
        size_t enq = atomic_load_explicit(&r->enq, memory_order_relaxed);
        if (!(enq & MPMC_CLOSED) || (enq & ~MPMC_CLOSED) != stop) {
            /* open ring and the cell at stop is unpublished: empty (or a producer is between its
             * claim and its publish, and the items behind it are not visible yet). Or: closed, but
             * position stop < end was claimed by a producer that has not published yet. */
            return NULL;
        }
        /* closed and every position claimed by consumers: move on to the successor */
        /* acquire: pairs with the release store of next in mpmc_grow (ring initialised). */
        mpmc_ring *next = atomic_load_explicit(&r->next, memory_order_acquire);
        if (next == NULL) {
            return NULL; /* the closing producer has not linked it yet; its item is not queued */
        }
        mpmc_ring *expected = r;
        /* release: pairs with the acquire load of head above (passes on next's initialisation);
         * failure relaxed: another consumer advanced head, we reload it with acquire. */
        if (atomic_compare_exchange_strong_explicit(&q->head, &expected, next, memory_order_release,
                                                    memory_order_relaxed)) {
            r = next;
        }
        else {
            /* acquire: pairs with the release CAS of head (another consumer's). */
            r = atomic_load_explicit(&q->head, memory_order_acquire);
        }
    }
}

size_t mpmc_size_approx(mpmc_queue *q)
{
    size_t total = 0;
    /* acquire: pairs with the release CAS of head in mpmc_pop. */
    mpmc_ring *r = atomic_load_explicit(&q->head, memory_order_acquire);
    while (r != NULL) {
        /* relaxed (both): a snapshot; pairs with the CASes on deq/enq in the ring functions. */
        size_t d = atomic_load_explicit(&r->deq, memory_order_relaxed);
        size_t e = atomic_load_explicit(&r->enq, memory_order_relaxed) & ~MPMC_CLOSED;
        if (e > d) {
            total += e - d;
        }
        /* acquire: pairs with the release store of next in mpmc_grow. */
        r = atomic_load_explicit(&r->next, memory_order_acquire);
    }
    return total;
}

int mpmc_empty_approx(mpmc_queue *q)
{
    /* acquire: pairs with the release CAS of head in mpmc_pop. */
    mpmc_ring *r = atomic_load_explicit(&q->head, memory_order_acquire);
    while (r != NULL) {
        /* relaxed (both): a snapshot; pairs with the CASes on deq/enq in the ring functions.
         * deq is read first: it never passes enq, so equal values mean empty at the first read. */
        size_t d = atomic_load_explicit(&r->deq, memory_order_relaxed);
        size_t e = atomic_load_explicit(&r->enq, memory_order_relaxed);
        if ((e & ~MPMC_CLOSED) != d) {
            return 0;
        }
        if (!(e & MPMC_CLOSED)) {
            return 1;
        }
        /* acquire: pairs with the release store of next in mpmc_grow. */
        r = atomic_load_explicit(&r->next, memory_order_acquire);
    }
    return 1;
}
