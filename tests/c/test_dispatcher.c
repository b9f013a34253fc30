/* test_dispatcher.c - tests of csrc/dispatcher.{h,c}: round robin, inbox batching, park/notify.
 *
 * Usage: test_dispatcher [scale]   (or THRASKS_STRESS_SCALE=scale); sanitizer builds start from a
 * smaller default. THRASKS_TEST_ONLY=rr|inbox|shared|stack|litmus runs one group.
 *
 * Two ways to see a lost wake-up:
 *   - stress tests (inbox, shared): it shows up as a stall. When nothing has been consumed for
 *     STALL_SECONDS while items remain, the test prints the state (queue length, slot states,
 *     pending notifications) and fails;
 *   - litmus tests: one race at a time, thousands of times, with the outcome checked directly;
 *     they catch the nanosecond windows a missing fence opens (see the comment above run_litmus
 *     and docs/scheduler.md).
 */
#define _POSIX_C_SOURCE 200809L
#include "dispatcher.h"
#include "test_support.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STALL_SECONDS 5.0

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* tiny per-thread PRNG */
static unsigned rnd_next(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void spin(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        cpu_relax();
    }
}

static void *item_of(size_t i) { return (void *)(uintptr_t)(i + 1); }
static size_t index_of(void *item) { return (size_t)(uintptr_t)item - 1; }

/* Wait until *counter reaches target. Fails the test if it stops moving for STALL_SECONDS;
 * `diagnose` prints what the stalled state looks like (and says whether it is a lost wake-up). */
static void wait_for_count(_Atomic size_t *counter, size_t target, void (*diagnose)(void *), void *ctx,
                           const char *what)
{
    size_t last = atomic_load_explicit(counter, memory_order_relaxed);
    double since = now_s();
    unsigned spins = 0;
    for (;;) {
        size_t v = atomic_load_explicit(counter, memory_order_relaxed);
        if (v >= target) {
            return;
        }
        if (v != last) {
            last = v;
            since = now_s();
            spins = 0;
        }
        else if (now_s() - since > STALL_SECONDS) {
            fprintf(stderr, "%s: STALLED at %zu/%zu for %.0f s\n", what, v, target, STALL_SECONDS);
            if (diagnose) {
                diagnose(ctx);
            }
            abort();
        }
        if (++spins < 200) {
            sched_yield();
        }
        else {
            pause_us(20);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* 1. round robin */

static void test_rr_sequence_and_offsets(void)
{
    _Atomic size_t pool_counter;
    atomic_init(&pool_counter, 0);
    disp_rr g[3];
    for (int i = 0; i < 3; i++) {
        disp_rr_init(&g[i], &pool_counter, 4);
    }
    /* three groups start on three different workers */
    CHECK(disp_rr_worker(&g[0], 0, 4) != disp_rr_worker(&g[1], 0, 4));
    CHECK(disp_rr_worker(&g[1], 0, 4) != disp_rr_worker(&g[2], 0, 4));
    CHECK(disp_rr_worker(&g[0], 0, 4) != disp_rr_worker(&g[2], 0, 4));
    /* task k of a group goes to slot k mod n, and slots map onto distinct workers */
    for (int i = 0; i < 3; i++) {
        int hits[4] = {0};
        for (size_t k = 0; k < 40; k++) {
            size_t slot = disp_rr_next_slot(&g[i]);
            CHECK(slot == k % 4);
            size_t w = disp_rr_worker(&g[i], slot, 4);
            CHECK(w < 4);
            CHECK(w == (g[i].offset + k) % 4);
            hits[w]++;
        }
        for (int w = 0; w < 4; w++) {
            CHECK(hits[w] == 10);
        }
    }
    /* many one-task groups on a pool as large as the group: spread evenly, not all on worker 0 */
    int first[8] = {0};
    for (int i = 0; i < 800; i++) {
        disp_rr one;
        disp_rr_init(&one, &pool_counter, 8);
        first[disp_rr_worker(&one, disp_rr_next_slot(&one), 8)]++;
    }
    for (int w = 0; w < 8; w++) {
        CHECK(first[w] == 100);
    }
    /* a group smaller than the pool stays within n consecutive workers (mod pool size) */
    disp_rr small;
    disp_rr_init(&small, &pool_counter, 2);
    size_t w0 = disp_rr_worker(&small, disp_rr_next_slot(&small), 6);
    size_t w1 = disp_rr_worker(&small, disp_rr_next_slot(&small), 6);
    size_t w2 = disp_rr_worker(&small, disp_rr_next_slot(&small), 6);
    CHECK(w1 == (w0 + 1) % 6 && w2 == w0);
    /* degenerate sizes do not divide by zero */
    disp_rr z;
    disp_rr_init(&z, &pool_counter, 0);
    CHECK(disp_rr_next_slot(&z) == 0 && disp_rr_next_slot(&z) == 0);
    CHECK(disp_rr_worker(&z, 0, 0) == 0);
    /* offsets far along the counter (wrapped size_t) still map into the pool */
    atomic_store(&pool_counter, SIZE_MAX - 1);
    disp_rr wrap;
    disp_rr_init(&wrap, &pool_counter, 3);
    for (int k = 0; k < 10; k++) {
        CHECK(disp_rr_worker(&wrap, disp_rr_next_slot(&wrap), 5) < 5);
    }
}

typedef struct rr_ctx {
    disp_rr rr;
    size_t per_thread;
    _Atomic size_t hits[7];
} rr_ctx;

static void *rr_thread(void *p)
{
    rr_ctx *c = p;
    for (size_t i = 0; i < c->per_thread; i++) {
        atomic_fetch_add_explicit(&c->hits[disp_rr_next_slot(&c->rr)], 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_rr_concurrent_even(void)
{
    _Atomic size_t pool_counter;
    atomic_init(&pool_counter, 0);
    rr_ctx c;
    memset(&c, 0, sizeof c);
    disp_rr_init(&c.rr, &pool_counter, 7);
    c.per_thread = 7 * scaled(20000);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_create(&th[i], NULL, rr_thread, &c) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    for (int s = 0; s < 7; s++) {
        CHECK(atomic_load(&c.hits[s]) == 4 * c.per_thread / 7); /* exactly even: one counter */
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* 2. inbox with batched wake-ups */

static void test_inbox_batching_single_thread(void)
{
    disp_inbox in;
    CHECK(disp_inbox_init(&in, 4) == 0);
    CHECK(disp_inbox_push(&in, item_of(0)) == 1); /* first push of a batch: wake */
    for (size_t i = 1; i < 20; i++) {
        CHECK(disp_inbox_push(&in, item_of(i)) == 0); /* wake already pending (and ring grows) */
    }
    disp_inbox_begin_drain(&in);
    for (size_t i = 0; i < 10; i++) {
        CHECK(disp_inbox_pop(&in) == item_of(i));
    }
    /* pushed during the drain, after the clear: a new wake (the consumer may be about to sleep) */
    CHECK(disp_inbox_push(&in, item_of(20)) == 1);
    CHECK(disp_inbox_push(&in, item_of(21)) == 0);
    for (size_t i = 10; i < 22; i++) {
        CHECK(disp_inbox_pop(&in) == item_of(i));
    }
    CHECK(disp_inbox_pop(&in) == NULL);
    /* no clear yet: the wake sent for item 20 is still pending */
    CHECK(disp_inbox_push(&in, item_of(22)) == 0);
    disp_inbox_begin_drain(&in);
    CHECK(disp_inbox_pop(&in) == item_of(22));
    CHECK(disp_inbox_pop(&in) == NULL);
    CHECK(disp_inbox_push(&in, item_of(23)) == 1);
    disp_inbox_destroy(&in);
}

typedef struct inbox_ctx {
    disp_inbox in;
    sem_t wake;                 /* the consumer's "selector": posted once per wake */
    size_t producers, per_producer;
    _Atomic size_t consumed;
    _Atomic size_t wakes;       /* pushes that returned 1 */
    _Atomic size_t drains;      /* begin_drain calls */
    _Atomic size_t pushed;
    _Atomic unsigned char *seen;
    atomic_int stop;
} inbox_ctx;

typedef struct targ {
    void *ctx;
    size_t id;
} targ;

static void *inbox_producer(void *p)
{
    targ *a = p;
    inbox_ctx *c = a->ctx;
    unsigned r = (unsigned)a->id * 7919u + 1;
    for (size_t i = 0; i < c->per_producer; i++) {
        int rc = disp_inbox_push(&c->in, item_of(a->id * c->per_producer + i));
        CHECK(rc >= 0);
        atomic_fetch_add_explicit(&c->pushed, 1, memory_order_relaxed);
        if (rc == 1) {
            atomic_fetch_add_explicit(&c->wakes, 1, memory_order_relaxed);
            CHECK(sem_post(&c->wake) == 0);
        }
        unsigned x = rnd_next(&r) & 63;
        if (x < 2) {
            pause_us(x * 30); /* let the consumer catch up and go to sleep */
        }
        else if (x < 16) {
            spin(x * 20);
        }
    }
    return NULL;
}

static void *inbox_consumer(void *p)
{
    inbox_ctx *c = p;
    for (;;) {
        while (sem_wait(&c->wake) != 0) {
            CHECK(errno == EINTR);
        }
        if (atomic_load_explicit(&c->stop, memory_order_relaxed)) {
            return NULL;
        }
        disp_inbox_begin_drain(&c->in);
        atomic_fetch_add_explicit(&c->drains, 1, memory_order_relaxed);
        void *it;
        while ((it = disp_inbox_pop(&c->in)) != NULL) {
            size_t k = index_of(it);
            CHECK(k < c->producers * c->per_producer);
            CHECK(atomic_fetch_add_explicit(&c->seen[k], 1, memory_order_relaxed) == 0);
            atomic_fetch_add_explicit(&c->consumed, 1, memory_order_relaxed);
        }
    }
}

static void inbox_diagnose(void *p)
{
    inbox_ctx *c = p;
    int semval = -1;
    sem_getvalue(&c->wake, &semval);
    size_t queued = mpmc_size_approx(&c->in.q);
    fprintf(stderr,
            "inbox: pushed %zu, consumed %zu, queued %zu, wake_pending %d, semaphore %d, wakes %zu, "
            "drains %zu\n",
            atomic_load(&c->pushed), atomic_load(&c->consumed), queued, atomic_load(&c->in.wake_pending),
            semval, atomic_load(&c->wakes), atomic_load(&c->drains));
    if (queued > 0 && semval == 0) {
        fprintf(stderr, "LOST WAKE-UP: items queued, consumer asleep, no wake pending\n");
    }
}

static void run_inbox_stress(size_t producers, size_t per_producer)
{
    double t0 = now_s();
    inbox_ctx c;
    memset(&c, 0, sizeof c);
    CHECK(disp_inbox_init(&c.in, 8) == 0);
    CHECK(sem_init(&c.wake, 0, 0) == 0);
    c.producers = producers;
    c.per_producer = per_producer;
    c.seen = calloc(producers * per_producer, sizeof *c.seen);
    CHECK(c.seen != NULL);
    pthread_t cons, prod[8];
    targ args[8];
    CHECK(producers <= 8);
    CHECK(pthread_create(&cons, NULL, inbox_consumer, &c) == 0);
    for (size_t i = 0; i < producers; i++) {
        args[i] = (targ){&c, i};
        CHECK(pthread_create(&prod[i], NULL, inbox_producer, &args[i]) == 0);
    }
    for (size_t i = 0; i < producers; i++) {
        CHECK(pthread_join(prod[i], NULL) == 0);
    }
    /* every item must arrive without any extra wake: a lost wake-up stalls here */
    wait_for_count(&c.consumed, producers * per_producer, inbox_diagnose, &c, "inbox");
    atomic_store(&c.stop, 1);
    CHECK(sem_post(&c.wake) == 0);
    CHECK(pthread_join(cons, NULL) == 0);
    size_t total = producers * per_producer;
    for (size_t i = 0; i < total; i++) {
        CHECK(atomic_load_explicit(&c.seen[i], memory_order_relaxed) == 1);
    }
    /* one wake per batch: a wake is sent only on the 0 -> 1 transition, which needs a clear */
    size_t wakes = atomic_load(&c.wakes), drains = atomic_load(&c.drains);
    CHECK(wakes <= drains + 1);
    CHECK(disp_inbox_pop(&c.in) == NULL);
    printf("  inbox %zu producers: %zu items, %zu wakes, %zu drains (%.1f items/wake), %.2f s\n",
           producers, total, wakes, drains, (double)total / (double)(wakes ? wakes : 1), now_s() - t0);
    disp_inbox_destroy(&c.in);
    sem_destroy(&c.wake);
    free(c.seen);
}

/* ---------------------------------------------------------------------------------------------- */
/* 3. shared queue with parking consumers */

static void test_shared_single_thread(void)
{
    disp_shared s;
    CHECK(disp_shared_init(&s, 3, 4) == 0);
    for (size_t i = 0; i < 3; i++) {
        CHECK(atomic_load(&s.slots[i].state) == DISP_SLOT_PARKED); /* nobody serves yet */
        CHECK(((uintptr_t)&s.slots[i] % MPMC_CACHELINE) == 0);
    }
    /* each push while slots are parked claims (and asks to notify) a different one */
    long a = disp_shared_push(&s, item_of(0));
    long b = disp_shared_push(&s, item_of(1));
    long c = disp_shared_push(&s, item_of(2));
    CHECK(a >= 0 && b >= 0 && c >= 0 && a != b && b != c && a != c);
    CHECK(disp_shared_push(&s, item_of(3)) == -1); /* everybody is active: no notification */
    void *it;
    CHECK(disp_shared_pop(&s, (size_t)a, &it) == DISP_ITEM && it == item_of(0));
    CHECK(disp_shared_pop(&s, (size_t)a, &it) == DISP_ITEM && it == item_of(1));
    CHECK(disp_shared_pop(&s, (size_t)b, &it) == DISP_ITEM && it == item_of(2));
    CHECK(disp_shared_pop(&s, (size_t)c, &it) == DISP_ITEM && it == item_of(3));
    CHECK(disp_shared_pop(&s, (size_t)c, &it) == DISP_PARKED);
    CHECK(atomic_load(&s.slots[c].state) == DISP_SLOT_PARKED);
    CHECK(disp_shared_push(&s, item_of(4)) == c); /* the only parked slot */
    CHECK(disp_shared_pop(&s, (size_t)c, &it) == DISP_ITEM && it == item_of(4));
    CHECK(atomic_load(&s.slots[c].state) == DISP_SLOT_ACTIVE);
    disp_shared_destroy(&s);

    /* zero consumers: items are still queued, nobody to notify */
    CHECK(disp_shared_init(&s, 0, 2) == 0);
    CHECK(disp_shared_push(&s, item_of(0)) == -1);
    CHECK(mpmc_pop(&s.q) == item_of(0));
    disp_shared_destroy(&s);
}

#define MAX_SLOTS 8

typedef struct shared_ctx {
    disp_shared s;
    sem_t notify[MAX_SLOTS];
    size_t consumers, producers;
    size_t total;
    _Atomic size_t next_item;   /* producers draw item numbers from here */
    _Atomic size_t consumed;
    _Atomic size_t notifications;
    _Atomic size_t parks;
    _Atomic unsigned char *seen;
    atomic_int stop;
    /* round mode: producers push `burst` items per round between barriers */
    pthread_barrier_t round_start, round_end;
    size_t rounds;
    /* ping-pong mode (if > 0): one producer pushes the next item right after the previous one was
     * consumed, after a random delay of 0..ping_pong-1 pause instructions */
    int ping_pong;
    int work;                   /* consumers spin 0..work-1 pauses per item */
} shared_ctx;

static void shared_diagnose(void *p);

/* Count the item, then "run" it for a random few pause instructions: the next pop, and the park
 * that follows it, happen at a random offset from the moment the producers see the count move. */
static void shared_consume(shared_ctx *c, void *it, size_t slot, unsigned *rng)
{
    size_t k = index_of(it);
    if (k >= c->total || atomic_fetch_add_explicit(&c->seen[k], 1, memory_order_relaxed) != 0) {
        fprintf(stderr, "slot %zu: item %zu out of range or consumed twice\n", slot, k);
        abort();
    }
    atomic_fetch_add_explicit(&c->consumed, 1, memory_order_relaxed);
    if (c->work > 0) {
        spin(rnd_next(rng) % c->work);
    }
}

static void *shared_consumer(void *p)
{
    targ *a = p;
    shared_ctx *c = a->ctx;
    size_t slot = a->id;
    unsigned rng = (unsigned)slot * 2654435761u + 3;
    for (;;) {
        while (sem_wait(&c->notify[slot]) != 0) { /* parked: sleep until notified */
            CHECK(errno == EINTR);
        }
        if (atomic_load_explicit(&c->stop, memory_order_relaxed)) {
            return NULL;
        }
        void *it;
        while (disp_shared_pop(&c->s, slot, &it) == DISP_ITEM) {
            shared_consume(c, it, slot, &rng);
        }
        atomic_fetch_add_explicit(&c->parks, 1, memory_order_relaxed);
    }
}

static void shared_push_notify(shared_ctx *c, size_t k)
{
    long slot = disp_shared_push(&c->s, item_of(k));
    CHECK(slot >= -1 && slot < (long)c->consumers);
    if (slot >= 0) {
        atomic_fetch_add_explicit(&c->notifications, 1, memory_order_relaxed);
        CHECK(sem_post(&c->notify[slot]) == 0);
    }
}

static void *shared_producer(void *p)
{
    targ *a = p;
    shared_ctx *c = a->ctx;
    unsigned r = (unsigned)a->id * 104729u + 17;
    if (c->ping_pong) {
        for (size_t k = 0; k < c->total; k++) {
            /* Wait (spinning: the reaction must take nanoseconds, not a syscall) until the previous
             * item was consumed: the consumer is now popping again, finding the queue empty and
             * parking, which is exactly when a push must not be missed. The random delay sweeps
             * the push across that window. */
            unsigned n = 0;
            while (atomic_load_explicit(&c->consumed, memory_order_relaxed) < k) {
                if (++n > 20000) { /* the consumer is asleep or descheduled: stop burning the core */
                    wait_for_count(&c->consumed, k, shared_diagnose, c, "ping-pong");
                    break;
                }
                cpu_relax();
            }
            spin(rnd_next(&r) % c->ping_pong);
            shared_push_notify(c, k);
        }
        return NULL;
    }
    for (size_t round = 0; round < c->rounds; round++) {
        pthread_barrier_wait(&c->round_start);
        size_t burst = 1 + rnd_next(&r) % 3;
        for (size_t i = 0; i < burst; i++) {
            size_t k = atomic_fetch_add_explicit(&c->next_item, 1, memory_order_relaxed);
            if (k >= c->total) {
                break;
            }
            shared_push_notify(c, k);
            spin(rnd_next(&r) % 64);
        }
        pthread_barrier_wait(&c->round_end);
    }
    return NULL;
}

static void shared_diagnose(void *p)
{
    shared_ctx *c = p;
    size_t queued = mpmc_size_approx(&c->s.q);
    int all_parked = 1, none_pending = 1;
    fprintf(stderr, "shared: consumed %zu, queued %zu, notifications %zu, parks %zu; slots:",
            atomic_load(&c->consumed), queued, atomic_load(&c->notifications), atomic_load(&c->parks));
    for (size_t i = 0; i < c->consumers; i++) {
        int st = atomic_load(&c->s.slots[i].state), v = -1;
        sem_getvalue(&c->notify[i], &v);
        fprintf(stderr, " [%zu %s sem=%d]", i, st == DISP_SLOT_PARKED ? "PARKED" : "ACTIVE", v);
        all_parked &= st == DISP_SLOT_PARKED;
        none_pending &= v == 0;
    }
    fprintf(stderr, "\n");
    if (queued > 0 && all_parked && none_pending) {
        fprintf(stderr, "LOST WAKE-UP: items queued, every consumer parked, no notification pending\n");
    }
}

static void run_shared(size_t consumers, size_t producers, size_t total, size_t rounds, int ping_pong,
                       int work)
{
    double t0 = now_s();
    shared_ctx c;
    memset(&c, 0, sizeof c);
    CHECK(consumers <= MAX_SLOTS);
    CHECK(disp_shared_init(&c.s, consumers, 4) == 0);
    c.consumers = consumers;
    c.producers = producers;
    c.total = total;
    c.rounds = rounds;
    c.ping_pong = ping_pong;
    c.work = work;
    c.seen = calloc(total, sizeof *c.seen);
    CHECK(c.seen != NULL);
    for (size_t i = 0; i < consumers; i++) {
        CHECK(sem_init(&c.notify[i], 0, 0) == 0);
    }
    if (!ping_pong) {
        CHECK(pthread_barrier_init(&c.round_start, NULL, (unsigned)producers + 1) == 0);
        CHECK(pthread_barrier_init(&c.round_end, NULL, (unsigned)producers + 1) == 0);
    }
    pthread_t cth[MAX_SLOTS], pth[MAX_SLOTS];
    targ cargs[MAX_SLOTS], pargs[MAX_SLOTS];
    for (size_t i = 0; i < consumers; i++) {
        cargs[i] = (targ){&c, i};
        CHECK(pthread_create(&cth[i], NULL, shared_consumer, &cargs[i]) == 0);
    }
    for (size_t i = 0; i < producers; i++) {
        pargs[i] = (targ){&c, i};
        CHECK(pthread_create(&pth[i], NULL, shared_producer, &pargs[i]) == 0);
    }
    if (!ping_pong) {
        /* After each round, everything pushed must get consumed with no further push: this is the
         * moment a lost wake-up would leave items behind with every consumer parked. */
        for (size_t round = 0; round < rounds; round++) {
            pthread_barrier_wait(&c.round_start);
            pthread_barrier_wait(&c.round_end);
            size_t pushed = atomic_load_explicit(&c.next_item, memory_order_relaxed);
            wait_for_count(&c.consumed, pushed < total ? pushed : total, shared_diagnose, &c, "shared");
        }
    }
    for (size_t i = 0; i < producers; i++) {
        CHECK(pthread_join(pth[i], NULL) == 0);
    }
    size_t expect = ping_pong ? total : atomic_load(&c.next_item);
    if (expect > total) {
        expect = total;
    }
    wait_for_count(&c.consumed, expect, shared_diagnose, &c, "shared");
    atomic_store(&c.stop, 1);
    for (size_t i = 0; i < consumers; i++) {
        CHECK(sem_post(&c.notify[i]) == 0);
    }
    for (size_t i = 0; i < consumers; i++) {
        CHECK(pthread_join(cth[i], NULL) == 0);
    }
    for (size_t i = 0; i < expect; i++) {
        CHECK(atomic_load_explicit(&c.seen[i], memory_order_relaxed) == 1);
    }
    CHECK(mpmc_pop(&c.s.q) == NULL);
    printf("  shared %s %zu consumers x %zu producers: %zu items, %zu notifications, %zu parks, %.2f s\n",
           ping_pong ? "ping-pong" : "rounds", consumers, producers, expect,
           atomic_load(&c.notifications), atomic_load(&c.parks), now_s() - t0);
    if (!ping_pong) {
        pthread_barrier_destroy(&c.round_start);
        pthread_barrier_destroy(&c.round_end);
    }
    for (size_t i = 0; i < consumers; i++) {
        sem_destroy(&c.notify[i]);
    }
    disp_shared_destroy(&c.s);
    free(c.seen);
}

/* ---------------------------------------------------------------------------------------------- */
/* 4. litmus tests: the two racing halves of a protocol, started together many times
 *
 * The stress tests above find a lost wake-up as a stall; these look at one race at a time and check
 * its outcome directly, so a window of a few nanoseconds (a store still in the store buffer while
 * the next load executes) is hit often enough to be seen. Each trial starts from the state just
 * before the race, releases both threads at once (a spin hand-off), with a random delay on each
 * side to sweep their relative timing, and classifies the outcome:
 *   park/notify: the consumer is ACTIVE and the queue empty; it calls disp_shared_pop, while the
 *                producer calls disp_shared_push. Lost wake-up = consumer PARKED and producer told
 *                no one to notify (the item stays queued with nobody serving).
 *   inbox:       a wake is pending (the consumer was woken); it calls begin_drain and pops once,
 *                while the producer pushes. Lost wake-up = the pop missed the item and the push
 *                returned 0 (no wake).
 */

typedef struct litmus {
    atomic_uint go;             /* trial number (LITMUS_STOP: no more), released by the consumer side */
    atomic_uint done;           /* trial number, released by the producer side when finished */
    unsigned cdelay, pdelay;    /* random delays in pause instructions: 0..delay-1 */
    int inbox;                  /* 0: park/notify, 1: inbox */
    int stuff;                  /* fill the store buffers before the racing operations */
    _Alignas(64) atomic_uint noise_c; /* written by the consumer side, read by the producer side */
    _Alignas(64) atomic_uint noise_p; /* written by the producer side, read by the consumer side */
    _Alignas(64) disp_shared s;
    disp_inbox in;
    long prod_rc;               /* producer's result, published by the release store of done */
} litmus;

#define LITMUS_STOP 0xffffffffu

/* Spin until *v != last (acquire: pairs with the other side's release store of it); returns it. */
static unsigned litmus_wait(atomic_uint *v, unsigned last)
{
    unsigned n = 0, x;
    while ((x = atomic_load_explicit(v, memory_order_acquire)) == last) {
        if (++n % 256 == 0) {
            sched_yield(); /* the other side may be descheduled: 2 cores, other work */
        }
        cpu_relax();
    }
    return x;
}

static void *litmus_producer(void *p)
{
    litmus *L = p;
    unsigned r = 99991, t = 0;
    while ((t = litmus_wait(&L->go, t)) != LITMUS_STOP) {
        /* relaxed (both): timing only. Reading noise_c leaves its line shared in our cache, so the
         * consumer's next store to it misses and waits in its store buffer; our own store to
         * noise_p does the same to us. */
        (void)atomic_load_explicit(&L->noise_c, memory_order_relaxed);
        spin(rnd_next(&r) % L->pdelay);
        if (L->stuff) {
            atomic_store_explicit(&L->noise_p, t, memory_order_relaxed);
        }
        L->prod_rc = L->inbox ? disp_inbox_push(&L->in, item_of(t)) : disp_shared_push(&L->s, item_of(t));
        atomic_store_explicit(&L->done, t, memory_order_release); /* pairs with litmus_wait */
    }
    return NULL;
}

/* Up to `trials` trials, or fewer if `seconds` run out first (a loaded machine). */
/* Returns the number of trials in which both sides saw each other (the race window was hit). */
static size_t run_litmus(int inbox, unsigned trials, double seconds, unsigned cdelay, unsigned pdelay,
                         int stuff)
{
    double t0 = now_s();
    litmus L;
    memset(&L, 0, sizeof L);
    L.cdelay = cdelay;
    L.pdelay = pdelay;
    L.inbox = inbox;
    L.stuff = stuff;
    CHECK(inbox ? disp_inbox_init(&L.in, 4) == 0 : disp_shared_init(&L.s, 1, 4) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, litmus_producer, &L) == 0);
    unsigned r = 7, t;
    size_t outcome[2][2] = {{0, 0}, {0, 0}}; /* [consumer got the item][producer asked for a wake] */
    for (t = 1; t <= trials; t++) {
        if (t % 1024 == 0 && now_s() - t0 > seconds) {
            break;
        }
        /* the state just before the race */
        if (inbox) {
            atomic_store_explicit(&L.in.wake_pending, 1, memory_order_relaxed); /* released by go */
        }
        else {
            atomic_store_explicit(&L.s.slots[0].state, DISP_SLOT_ACTIVE, memory_order_relaxed);
        }
        atomic_store_explicit(&L.go, t, memory_order_release); /* pairs with litmus_wait */
        (void)atomic_load_explicit(&L.noise_p, memory_order_relaxed); /* relaxed: timing only */
        spin(rnd_next(&r) % cdelay);
        if (stuff) {
            /* relaxed: timing only. A store that misses in the cache: the stores that follow it
             * (the PARKED store) wait behind it in the store buffer while later loads go ahead. */
            atomic_store_explicit(&L.noise_c, t, memory_order_relaxed);
        }
        void *it = NULL;
        int got;
        if (inbox) {
            disp_inbox_begin_drain(&L.in);
            it = disp_inbox_pop(&L.in);
            got = it != NULL;
        }
        else {
            got = disp_shared_pop(&L.s, 0, &it) == DISP_ITEM;
        }
        (void)litmus_wait(&L.done, t - 1);
        int woke = inbox ? L.prod_rc == 1 : L.prod_rc == 0;
        CHECK(inbox ? (L.prod_rc == 0 || L.prod_rc == 1) : (L.prod_rc == 0 || L.prod_rc == -1));
        if (!got && !woke) {
            fprintf(stderr,
                    "LOST WAKE-UP (%s litmus, trial %u): the consumer %s, the producer sent no wake\n",
                    inbox ? "inbox" : "park/notify", t,
                    inbox ? "drained without seeing the item" : "parked without seeing the item");
            abort();
        }
        if (got) {
            CHECK(it == item_of(t));
        }
        else {
            CHECK((inbox ? disp_inbox_pop(&L.in) : mpmc_pop(&L.s.q)) == item_of(t));
        }
        CHECK((inbox ? disp_inbox_pop(&L.in) : mpmc_pop(&L.s.q)) == NULL);
        outcome[got][woke]++;
    }
    atomic_store_explicit(&L.go, LITMUS_STOP, memory_order_release);
    CHECK(pthread_join(th, NULL) == 0);
    /* got && woke: both sides saw each other, i.e. the trial landed inside the race window */
    printf("  litmus %-11s %s delays %3u/%-3u: %7u trials: item seen only %6zu, wake only %6zu, "
           "both %6zu, %.2f s\n",
           inbox ? "inbox" : "park/notify", stuff ? "stuffed" : "plain  ", cdelay, pdelay, t - 1,
           outcome[1][0], outcome[0][1], outcome[1][1], now_s() - t0);
    if (inbox) {
        disp_inbox_destroy(&L.in);
    }
    else {
        disp_shared_destroy(&L.s);
    }
    return outcome[1][1];
}

/* THRASKS_TEST_ONLY=rr|inbox|shared|litmus runs one group (for debugging and mutation runs). */
/* ---------------------------------------------------------------------------------------------- */
/* 4. intrusive MPSC stack (mailboxes, finished jobs) */

typedef struct snode {
    disp_node node;
    size_t id;
} snode;

static void test_stack_single_thread(void)
{
    disp_stack s;
    snode n[5];
    disp_stack_init(&s);
    CHECK(disp_stack_empty_approx(&s));
    CHECK(disp_stack_take_all(&s) == NULL);
    for (size_t i = 0; i < 5; i++) {
        n[i].id = i;
        CHECK(disp_stack_push(&s, &n[i].node) == (i == 0)); /* only the first push wakes */
    }
    size_t k = 0;
    for (disp_node *x = disp_stack_take_all(&s); x != NULL; x = x->next) {
        CHECK(disp_container_of(x, snode, node)->id == k++); /* oldest first */
    }
    CHECK(k == 5);
    CHECK(disp_stack_push(&s, &n[0].node) == 1); /* empty again: the next push wakes again */
    CHECK(disp_stack_take_all(&s) == &n[0].node);
}

typedef struct stack_ctx {
    disp_stack s;
    sem_t wake;                 /* the consumer's "selector": posted when a push found it empty */
    size_t producers, per_producer;
    snode *nodes;
    size_t *last_seen;          /* per producer: the last sequence number taken (order check) */
    _Atomic size_t consumed, wakes, takes;
    atomic_int stop;
} stack_ctx;

static void *stack_producer(void *p)
{
    targ *a = p;
    stack_ctx *c = a->ctx;
    unsigned r = (unsigned)a->id * 104729u + 3;
    for (size_t i = 0; i < c->per_producer; i++) {
        snode *n = &c->nodes[a->id * c->per_producer + i];
        if (disp_stack_push(&c->s, &n->node)) {
            atomic_fetch_add_explicit(&c->wakes, 1, memory_order_relaxed);
            CHECK(sem_post(&c->wake) == 0);
        }
        unsigned x = rnd_next(&r) & 63;
        if (x < 2) {
            pause_us(x * 30);
        }
        else if (x < 16) {
            spin(x * 20);
        }
    }
    return NULL;
}

static void *stack_consumer(void *p)
{
    stack_ctx *c = p;
    for (;;) {
        while (sem_wait(&c->wake) != 0) { /* "read the eventfd" first ... */
            CHECK(errno == EINTR);
        }
        if (atomic_load_explicit(&c->stop, memory_order_relaxed)) {
            return NULL;
        }
        atomic_fetch_add_explicit(&c->takes, 1, memory_order_relaxed);
        for (disp_node *x = disp_stack_take_all(&c->s); x != NULL;) { /* ... then take */
            snode *n = disp_container_of(x, snode, node);
            x = x->next; /* read before the node could be reused */
            size_t prod = n->id / c->per_producer, seq = n->id % c->per_producer + 1;
            CHECK(seq == c->last_seen[prod] + 1); /* each producer's nodes arrive in push order */
            c->last_seen[prod] = seq;
            atomic_fetch_add_explicit(&c->consumed, 1, memory_order_relaxed);
        }
    }
}

static void stack_diagnose(void *p)
{
    stack_ctx *c = p;
    int semval = -1;
    sem_getvalue(&c->wake, &semval);
    fprintf(stderr, "stack: consumed %zu, empty %d, semaphore %d, wakes %zu, takes %zu\n",
            atomic_load(&c->consumed), disp_stack_empty_approx(&c->s), semval, atomic_load(&c->wakes),
            atomic_load(&c->takes));
    if (!disp_stack_empty_approx(&c->s) && semval == 0) {
        fprintf(stderr, "LOST WAKE-UP: nodes stacked, consumer asleep, no wake pending\n");
    }
}

static void run_stack_stress(size_t producers, size_t per_producer)
{
    double t0 = now_s();
    stack_ctx c;
    memset(&c, 0, sizeof c);
    disp_stack_init(&c.s);
    CHECK(sem_init(&c.wake, 0, 0) == 0);
    c.producers = producers;
    c.per_producer = per_producer;
    c.nodes = calloc(producers * per_producer, sizeof *c.nodes);
    c.last_seen = calloc(producers, sizeof *c.last_seen);
    CHECK(c.nodes != NULL && c.last_seen != NULL);
    for (size_t i = 0; i < producers * per_producer; i++) {
        c.nodes[i].id = i;
    }
    pthread_t cons, prod[8];
    targ args[8];
    CHECK(producers <= 8);
    CHECK(pthread_create(&cons, NULL, stack_consumer, &c) == 0);
    for (size_t i = 0; i < producers; i++) {
        args[i] = (targ){&c, i};
        CHECK(pthread_create(&prod[i], NULL, stack_producer, &args[i]) == 0);
    }
    for (size_t i = 0; i < producers; i++) {
        CHECK(pthread_join(prod[i], NULL) == 0);
    }
    wait_for_count(&c.consumed, producers * per_producer, stack_diagnose, &c, "stack");
    atomic_store(&c.stop, 1);
    CHECK(sem_post(&c.wake) == 0);
    CHECK(pthread_join(cons, NULL) == 0);
    for (size_t i = 0; i < producers; i++) {
        CHECK(c.last_seen[i] == per_producer);
    }
    CHECK(disp_stack_take_all(&c.s) == NULL);
    size_t wakes = atomic_load(&c.wakes), takes = atomic_load(&c.takes);
    CHECK(wakes == takes); /* every wake is one take, and no take happens without a wake */
    printf("  stack %zu producers: %zu nodes, %zu wakes (%.1f nodes/wake), %.2f s\n", producers,
           producers * per_producer, wakes, (double)(producers * per_producer) / (double)(wakes ? wakes : 1),
           now_s() - t0);
    sem_destroy(&c.wake);
    free(c.nodes);
    free(c.last_seen);
}

/* The hub pattern (csrc/loop_hub.c): a node N is posted on stack H only when its owner's stack S
 * goes from empty to non-empty, and S is emptied by the consumer AFTER it took N from H (and
 * relinked it). The push of N must happen after that relinking: under ThreadSanitizer this test
 * reports a data race on N.next unless push and take order it (acq_rel on both). */
typedef struct reuse_ctx {
    disp_stack hub, owned;         /* H and S */
    snode n;                       /* the owner's node */
    snode items[64];
    _Atomic size_t produced, consumed;
    size_t total;
} reuse_ctx;

static void *reuse_producer(void *p)
{
    reuse_ctx *c = p;
    for (size_t i = 0; i < c->total; i++) {
        snode *it = &c->items[i % 64];
        while (atomic_load_explicit(&c->consumed, memory_order_acquire) + 64 <= i) {
            cpu_relax(); /* items are recycled: wait until item i - 64 was consumed */
        }
        if (disp_stack_push(&c->owned, &it->node)) {
            disp_stack_push(&c->hub, &c->n.node); /* S became non-empty: post N */
        }
        atomic_fetch_add_explicit(&c->produced, 1, memory_order_release);
    }
    return NULL;
}

static void test_stack_node_reuse_is_ordered(size_t total)
{
    reuse_ctx *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    disp_stack_init(&c->hub);
    disp_stack_init(&c->owned);
    c->total = total;
    pthread_t prod;
    CHECK(pthread_create(&prod, NULL, reuse_producer, c) == 0);
    double since = now_s();
    while (atomic_load_explicit(&c->consumed, memory_order_relaxed) < total) {
        disp_node *posted = disp_stack_take_all(&c->hub); /* relinks N (writes N.next) */
        for (disp_node *x = posted; x != NULL;) {
            disp_node *next = x->next;
            CHECK(x == &c->n.node);
            size_t got = 0;
            for (disp_node *it = disp_stack_take_all(&c->owned); it != NULL; it = it->next) {
                got++;
            }
            atomic_fetch_add_explicit(&c->consumed, got, memory_order_release);
            x = next;
        }
        if (posted == NULL) {
            /* a push to S found it non-empty after our last take of H only while N is posted */
            CHECK(now_s() - since < STALL_SECONDS);
            cpu_relax();
        }
        else {
            since = now_s();
        }
    }
    CHECK(pthread_join(prod, NULL) == 0);
    CHECK(disp_stack_take_all(&c->owned) == NULL);
    free(c);
}

static int want(const char *group)
{
    const char *only = getenv("THRASKS_TEST_ONLY");
    return only == NULL || *only == '\0' || strcmp(only, group) == 0;
}

int main(int argc, char **argv)
{
    if (test_setup(argc, argv)) {
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t0 = now_s();
    if (want("rr")) {
        test_rr_sequence_and_offsets();
        printf("ok rr sequence and offsets\n");
        test_rr_concurrent_even();
        printf("ok rr concurrent distribution\n");
    }
    if (want("inbox")) {
        test_inbox_batching_single_thread();
        printf("ok inbox batching (single thread)\n");
        run_inbox_stress(1, scaled(300000));
        run_inbox_stress(4, scaled(100000));
        printf("ok inbox stress\n");
    }
    if (want("shared")) {
        test_shared_single_thread();
        printf("ok shared park/notify (single thread)\n");
        /* ping-pong: the producer's delay and the consumer's work sweep the push across the park */
        run_shared(1, 1, scaled(60000), 0, 4, 4);
        run_shared(1, 1, scaled(60000), 0, 64, 4);
        run_shared(1, 1, scaled(60000), 0, 4, 64);
        run_shared(1, 1, scaled(60000), 0, 32, 32);
        run_shared(2, 1, scaled(60000), 0, 16, 16);
        /* rounds: bursts from several producers, then quiescence with everything consumed */
        size_t rounds = scaled(20000);
        run_shared(1, 1, 4 * rounds, rounds, 0, 32);
        run_shared(2, 2, 8 * rounds, rounds, 0, 32);
        run_shared(4, 2, 8 * rounds, rounds, 0, 32);
        run_shared(2, 4, 16 * rounds, rounds, 0, 32);
        printf("ok shared park/notify stress\n");
    }
    if (want("stack")) {
        test_stack_single_thread();
        printf("ok stack (single thread)\n");
        run_stack_stress(1, scaled(300000));
        run_stack_stress(4, scaled(100000));
        printf("ok stack stress\n");
        test_stack_node_reuse_is_ordered(scaled(200000));
        printf("ok stack node reuse (the hub pattern)\n");
    }
    if (want("litmus")) {
        /* consumer/producer delays (pause instructions): fine steps where the two sides overlap */
        static const unsigned delays[][2] = {{8, 1},  {12, 1}, {16, 1},  {20, 1},  {24, 1},
                                             {16, 4}, {24, 4}, {32, 8}, {48, 16}, {128, 32}};
        for (int inbox = 0; inbox < 2; inbox++) {
            /* bounded by time rather than by count: on a quiet machine a trial takes ~1 us */
            unsigned trials = (unsigned)scaled(1000000);
            double seconds = (inbox ? 0.4 : 0.6) * (g_scale < 1.0 ? 1.0 : g_scale);
            size_t overlaps = 0;
            for (int stuff = 0; stuff < 2; stuff++) {
                for (size_t k = 0; k < sizeof delays / sizeof delays[0]; k++) {
                    overlaps += run_litmus(inbox, trials, seconds, delays[k][0], delays[k][1], stuff);
                }
            }
            printf("  litmus %s: %zu trials landed inside the race window\n",
                   inbox ? "inbox" : "park/notify", overlaps);
            if (overlaps < 1000) {
                /* not a failure of the code under test: the machine could not run both threads */
                printf("  WARNING: few overlapping trials (machine busy?): a missing fence could go "
                       "unnoticed in this run\n");
            }
        }
        printf("ok litmus\n");
    }
    printf("all dispatcher tests passed in %.1f s (scale %.2f)\n", now_s() - t0, g_scale);
    return 0;
}
