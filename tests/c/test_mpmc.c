/* test_mpmc.c - unit and stress tests of csrc/mpmc_queue.{h,c}.
 *
 * Usage: test_mpmc [scale]   (or THRASKS_STRESS_SCALE=scale). Sizes are multiplied by scale;
 * sanitizer builds start from a smaller default so every test stays well under a minute on 2 cores.
 *
 * The stress consumers synchronise with the producers only through the queue itself (relaxed test
 * counters, no locks, no semaphores), so ThreadSanitizer sees a data race on the cell's item field
 * as soon as a release/acquire pair of the queue is weakened.
 */
#define _POSIX_C_SOURCE 200809L
#include "mpmc_queue.h"
#include "test_support.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t g_chaos_signals;

/* Items are tagged integers, never dereferenced: producer in the high bits, sequence (1-based) low. */
#define SEQ_BITS 40
static void *tag(size_t producer, size_t seq) { return (void *)(uintptr_t)(((uintptr_t)producer << SEQ_BITS) | (seq + 1)); }
static size_t tag_producer(void *item) { return (size_t)((uintptr_t)item >> SEQ_BITS); }
static size_t tag_seq(void *item) { return (size_t)(((uintptr_t)item & (((uintptr_t)1 << SEQ_BITS) - 1)) - 1); }

/* ---------------------------------------------------------------------------------------------- */

static void test_init_rounds_capacity(void)
{
    mpmc_queue q;
    CHECK(mpmc_init(&q, 0) == 0);
    CHECK(q.first_capacity == 2);
    mpmc_destroy(&q);
    CHECK(mpmc_init(&q, 3) == 0);
    CHECK(q.first_capacity == 4);
    mpmc_destroy(&q);
    CHECK(mpmc_init(&q, 64) == 0);
    CHECK(q.first_capacity == 64);
    mpmc_destroy(&q);
    CHECK(mpmc_init(&q, 65) == 0);
    CHECK(q.first_capacity == 128);
    mpmc_destroy(&q);
}

static void test_fifo_single_thread(void)
{
    mpmc_queue q;
    CHECK(mpmc_init(&q, 8) == 0);
    CHECK(mpmc_pop(&q) == NULL);
    CHECK(mpmc_empty_approx(&q));
    CHECK(mpmc_size_approx(&q) == 0);
    for (size_t i = 0; i < 5; i++) {
        CHECK(mpmc_push(&q, tag(0, i)) == 0);
        CHECK(mpmc_size_approx(&q) == i + 1);
        CHECK(!mpmc_empty_approx(&q));
    }
    for (size_t i = 0; i < 5; i++) {
        CHECK(mpmc_pop(&q) == tag(0, i));
    }
    CHECK(mpmc_pop(&q) == NULL);
    CHECK(mpmc_pop(&q) == NULL);
    CHECK(mpmc_empty_approx(&q));
    CHECK(mpmc_size_approx(&q) == 0);
    /* exactly full, without growing */
    for (size_t i = 0; i < 8; i++) {
        CHECK(mpmc_push(&q, tag(1, i)) == 0);
    }
    CHECK(atomic_load(&q.tail) == atomic_load(&q.head));
    CHECK(q.all == atomic_load(&q.head));
    CHECK(mpmc_size_approx(&q) == 8);
    for (size_t i = 0; i < 8; i++) {
        CHECK(mpmc_pop(&q) == tag(1, i));
    }
    CHECK(mpmc_pop(&q) == NULL);
    mpmc_destroy(&q);
}

/* Full first ring: push keeps succeeding (the ring chain grows), nothing is dropped, and order is
 * kept across rings, including when the head ring was partly consumed before it closed. */
static void test_growth_keeps_order(void)
{
    mpmc_queue q;
    CHECK(mpmc_init(&q, 4) == 0);
    mpmc_ring *first = atomic_load(&q.head);
    size_t next_in = 0, next_out = 0;
    /* partly consume the first ring so its head is not at position 0 when it closes */
    for (; next_in < 3; next_in++) {
        CHECK(mpmc_push(&q, tag(0, next_in)) == 0);
    }
    for (; next_out < 2; next_out++) {
        CHECK(mpmc_pop(&q) == tag(0, next_out));
    }
    /* overflow it many times over: rings of 4, 8, 16, ... */
    for (; next_in < 1000; next_in++) {
        CHECK(mpmc_push(&q, tag(0, next_in)) == 0);
        CHECK(mpmc_size_approx(&q) == next_in + 1 - next_out);
    }
    CHECK(atomic_load(&q.tail) != first);
    CHECK(atomic_load(&q.head) == first);
    /* interleave pops and pushes while the consumer walks the chain */
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < 70; k++, next_out++) {
            void *it = mpmc_pop(&q);
            CHECK(it == tag(0, next_out));
        }
        for (int k = 0; k < 30; k++, next_in++) {
            CHECK(mpmc_push(&q, tag(0, next_in)) == 0);
        }
        CHECK(mpmc_size_approx(&q) == next_in - next_out);
        CHECK(!mpmc_empty_approx(&q));
    }
    void *it;
    while ((it = mpmc_pop(&q)) != NULL) {
        CHECK(it == tag(0, next_out));
        next_out++;
    }
    CHECK(next_out == next_in);
    CHECK(mpmc_empty_approx(&q));
    CHECK(mpmc_size_approx(&q) == 0);
    /* the consumer has moved to the last ring: it is the only live one */
    CHECK(atomic_load(&q.head) == atomic_load(&q.tail));
    /* the last ring is large enough for the peak, so a second fill does not grow again */
    mpmc_ring *last = atomic_load(&q.tail);
    for (size_t i = 0; i < 900; i++) {
        CHECK(mpmc_push(&q, tag(1, i)) == 0);
    }
    CHECK(atomic_load(&q.tail) == last);
    for (size_t i = 0; i < 900; i++) {
        CHECK(mpmc_pop(&q) == tag(1, i));
    }
    CHECK(mpmc_pop(&q) == NULL);
    mpmc_destroy(&q);
}

/* Millions of operations on a tiny ring: positions wrap around the cells many times over. */
static void test_wraparound(void)
{
    size_t ops = scaled(4000000);
    mpmc_queue q;
    CHECK(mpmc_init(&q, 2) == 0);
    mpmc_ring *ring = atomic_load(&q.head);
    size_t in = 0, out = 0;
    unsigned rnd = 12345;
    while (in < ops) {
        rnd = rnd * 1103515245u + 12345u;
        size_t burst = 1 + ((rnd >> 16) & 1); /* 1 or 2 items: never more than the capacity */
        for (size_t k = 0; k < burst; k++, in++) {
            CHECK(mpmc_push(&q, tag(0, in & 0xffffffffu)) == 0);
        }
        CHECK(mpmc_size_approx(&q) == burst);
        for (size_t k = 0; k < burst; k++, out++) {
            CHECK(mpmc_pop(&q) == tag(0, out & 0xffffffffu));
        }
        CHECK(mpmc_pop(&q) == NULL);
    }
    CHECK(atomic_load(&q.head) == ring && atomic_load(&q.tail) == ring); /* never grew */
    mpmc_destroy(&q);

    /* the same on a ring of 8 with random fill levels, up to exactly full, never beyond */
    CHECK(mpmc_init(&q, 8) == 0);
    ring = atomic_load(&q.head);
    in = out = 0;
    while (in < ops) {
        rnd = rnd * 1103515245u + 12345u;
        size_t room = 8 - (in - out);
        size_t fill = room ? 1 + ((rnd >> 16) % room) : 0;
        for (size_t k = 0; k < fill; k++, in++) {
            CHECK(mpmc_push(&q, tag(1, in & 0xffffffffu)) == 0);
        }
        CHECK(mpmc_size_approx(&q) == in - out);
        rnd = rnd * 1103515245u + 12345u;
        size_t drain = 1 + ((rnd >> 16) % (in - out));
        for (size_t k = 0; k < drain; k++, out++) {
            CHECK(mpmc_pop(&q) == tag(1, out & 0xffffffffu));
        }
    }
    CHECK(atomic_load(&q.head) == ring && atomic_load(&q.tail) == ring);
    mpmc_destroy(&q);
}

/* ---------------------------------------------------------------------------------------------- */
/* multi-threaded stress */

typedef struct stress {
    mpmc_queue q;
    size_t producers, consumers, per_producer;
    _Atomic size_t popped;      /* relaxed: a stop condition only, creates no happens-before */
    _Atomic unsigned char *seen; /* producers * per_producer counters */
    atomic_int start;
    atomic_int failed;
    _Atomic size_t max_size_seen;
} stress;

typedef struct worker_arg {
    stress *s;
    size_t id;
} worker_arg;

static void wait_start(stress *s)
{
    while (!atomic_load_explicit(&s->start, memory_order_relaxed)) {
        sched_yield();
    }
}

static void *producer_main(void *p)
{
    worker_arg *a = p;
    stress *s = a->s;
    wait_start(s);
    for (size_t i = 0; i < s->per_producer; i++) {
        CHECK(mpmc_push(&s->q, tag(a->id, i)) == 0);
        if ((i & 255) == 0) {
            sched_yield(); /* let the queue run empty and full at times on 2 cores */
        }
    }
    return NULL;
}

static void *consumer_main(void *p)
{
    worker_arg *a = p;
    stress *s = a->s;
    size_t total = s->producers * s->per_producer;
    size_t *last = calloc(s->producers, sizeof *last); /* last seq + 1 seen from each producer */
    CHECK(last != NULL);
    wait_start(s);
    size_t misses = 0;
    for (;;) {
        void *it = mpmc_pop(&s->q);
        if (it == NULL) {
            if (atomic_load_explicit(&s->popped, memory_order_relaxed) == total) {
                break;
            }
            if (++misses % 64 == 0) {
                sched_yield();
            }
            continue;
        }
        size_t prod = tag_producer(it), seq = tag_seq(it);
        if (prod >= s->producers || seq >= s->per_producer) {
            fprintf(stderr, "consumer %zu: garbage item %p\n", a->id, it);
            atomic_store(&s->failed, 1);
            break;
        }
        if (seq + 1 <= last[prod]) {
            fprintf(stderr, "consumer %zu: producer %zu order broken: %zu after %zu\n", a->id, prod,
                    seq, last[prod] - 1);
            atomic_store(&s->failed, 1);
        }
        last[prod] = seq + 1;
        if (atomic_fetch_add_explicit(&s->seen[prod * s->per_producer + seq], 1,
                                      memory_order_relaxed) != 0) {
            fprintf(stderr, "consumer %zu: item %zu/%zu popped twice\n", a->id, prod, seq);
            atomic_store(&s->failed, 1);
        }
        atomic_fetch_add_explicit(&s->popped, 1, memory_order_relaxed);
    }
    free(last);
    return NULL;
}

/* Polls the approximate size while the stress runs: it may lag, but never exceeds what was pushed.
 * Also the watchdog: if nothing is popped for STALL_SECONDS, items were lost (or a pop is stuck). */
#define STALL_SECONDS 5.0
static void *observer_main(void *p)
{
    stress *s = p;
    size_t total = s->producers * s->per_producer;
    wait_start(s);
    size_t last = 0;
    double since = now_s();
    size_t popped;
    while ((popped = atomic_load_explicit(&s->popped, memory_order_relaxed)) < total) {
        size_t n = mpmc_size_approx(&s->q);
        if (n > total) {
            fprintf(stderr, "size_approx %zu > %zu items ever pushed\n", n, total);
            atomic_store(&s->failed, 1);
        }
        if (n > atomic_load_explicit(&s->max_size_seen, memory_order_relaxed)) {
            atomic_store_explicit(&s->max_size_seen, n, memory_order_relaxed);
        }
        (void)mpmc_empty_approx(&s->q);
        if (popped != last) {
            last = popped;
            since = now_s();
        }
        else if (now_s() - since > STALL_SECONDS) {
            fprintf(stderr, "STALLED: %zu of %zu items popped, nothing for %.0f s; size_approx %zu, "
                    "empty_approx %d\n", popped, total, STALL_SECONDS, n, mpmc_empty_approx(&s->q));
            abort();
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Preemption injection ("chaos"): a thread sends SIGUSR1 to random producers and consumers at
 * random intervals; the handler sleeps for a random few microseconds to a few hundred. A thread
 * caught between claiming a cell and publishing (or freeing) it stays there while the others run
 * on: exactly the Vyukov window, and the ring closes and grows around it. On 2 cores real
 * preemption does this too, but rarely at the right instruction. */
static _Thread_local unsigned chaos_rng;

static void chaos_handler(int sig)
{
    (void)sig;
    chaos_rng = chaos_rng * 1103515245u + 12345u + (unsigned)(uintptr_t)&chaos_rng;
    struct timespec ts = {0, (long)(1000 + ((chaos_rng >> 8) % 100000))}; /* 1..101 us */
    nanosleep(&ts, NULL); /* async-signal-safe */
}

typedef struct chaos {
    stress *s;
    pthread_t *targets;
    size_t n;
    size_t signals;
} chaos;

static void *chaos_main(void *p)
{
    chaos *c = p;
    stress *s = c->s;
    size_t total = s->producers * s->per_producer;
    unsigned rng = 424242;
    wait_start(s);
    while (atomic_load_explicit(&s->popped, memory_order_relaxed) < total) {
        rng = rng * 1103515245u + 12345u;
        struct timespec ts = {0, (long)(2000 + ((rng >> 8) % 50000))}; /* 2..52 us */
        nanosleep(&ts, NULL);
        rng = rng * 1103515245u + 12345u;
        /* the targets are joined only after this thread has been: their ids stay valid */
        pthread_kill(c->targets[(rng >> 8) % c->n], SIGUSR1);
        c->signals++;
    }
    return NULL;
}

static void install_chaos_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = chaos_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
}

static void run_stress(size_t producers, size_t consumers, size_t per_producer, size_t capacity,
                       int with_chaos, int quiet)
{
    double t0 = now_s();
    stress s;
    memset(&s, 0, sizeof s);
    CHECK(mpmc_init(&s.q, capacity) == 0);
    s.producers = producers;
    s.consumers = consumers;
    s.per_producer = per_producer;
    atomic_init(&s.popped, 0);
    atomic_init(&s.start, 0);
    atomic_init(&s.failed, 0);
    atomic_init(&s.max_size_seen, 0);
    s.seen = calloc(producers * per_producer, sizeof *s.seen);
    CHECK(s.seen != NULL);

    pthread_t *th = calloc(producers + consumers, sizeof *th);
    worker_arg *args = calloc(producers + consumers, sizeof *args);
    pthread_t obs;
    CHECK(th && args);
    for (size_t i = 0; i < consumers; i++) {
        args[i] = (worker_arg){&s, i};
        CHECK(pthread_create(&th[i], NULL, consumer_main, &args[i]) == 0);
    }
    for (size_t i = 0; i < producers; i++) {
        args[consumers + i] = (worker_arg){&s, i};
        CHECK(pthread_create(&th[consumers + i], NULL, producer_main, &args[consumers + i]) == 0);
    }
    CHECK(pthread_create(&obs, NULL, observer_main, &s) == 0);
    chaos ch = {&s, th, producers + consumers, 0};
    pthread_t chaos_th;
    if (with_chaos) {
        CHECK(pthread_create(&chaos_th, NULL, chaos_main, &ch) == 0);
    }
    atomic_store(&s.start, 1);
    if (with_chaos) {
        CHECK(pthread_join(chaos_th, NULL) == 0); /* first: it signals the threads joined below */
    }
    for (size_t i = 0; i < producers + consumers; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    CHECK(pthread_join(obs, NULL) == 0);

    CHECK(!atomic_load(&s.failed));
    CHECK(atomic_load(&s.popped) == producers * per_producer);
    for (size_t i = 0; i < producers * per_producer; i++) {
        if (atomic_load_explicit(&s.seen[i], memory_order_relaxed) != 1) {
            fprintf(stderr, "item %zu/%zu popped %d times\n", i / per_producer, i % per_producer,
                    (int)s.seen[i]);
            abort();
        }
    }
    CHECK(mpmc_pop(&s.q) == NULL);
    CHECK(mpmc_empty_approx(&s.q));
    CHECK(mpmc_size_approx(&s.q) == 0);
    CHECK(atomic_load(&s.q.head) == atomic_load(&s.q.tail)); /* consumers reached the last ring */
    if (!quiet) {
        printf("  stress %zux%zu: %zu items, first capacity %zu, max size seen %zu, %s%.2f s\n",
               producers, consumers, producers * per_producer, capacity, atomic_load(&s.max_size_seen),
               with_chaos ? "with preemption injection, " : "", now_s() - t0);
    }
    g_chaos_signals += ch.signals;
    mpmc_destroy(&s.q);
    free(s.seen);
    free(th);
    free(args);
}

int main(int argc, char **argv)
{
    if (test_setup(argc, argv)) {
        return 0;
    }
    double t0 = now_s();
    test_init_rounds_capacity();
    printf("ok init rounds capacity\n");
    test_fifo_single_thread();
    printf("ok fifo single thread\n");
    test_growth_keeps_order();
    printf("ok growth keeps order\n");
    test_wraparound();
    printf("ok wrap-around (%zu ops x2)\n", scaled(4000000));

    static const size_t shapes[][2] = {{1, 1}, {4, 4}, {8, 2}, {2, 8}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t p = shapes[k][0], c = shapes[k][1];
        size_t total = scaled(2000000);
        /* a tiny first ring (the chain grows under contention) and a roomy one */
        run_stress(p, c, total / p, 2, 0, 0);
        run_stress(p, c, total / p, 1024, 0, 0);
    }
    printf("ok stress\n");

    /* Many short-lived queues from a tiny first ring: every run crosses several ring boundaries
     * (close, grow, consumers move on) while threads are frozen at random points. */
    install_chaos_handler();
    double tc = now_s();
    size_t runs = scaled(200);
    for (size_t k = 0; k < runs; k++) {
        size_t p = shapes[k % 4][0], c = shapes[k % 4][1];
        run_stress(p, c, 20000 / p, 2, 1, 1);
    }
    printf("ok stress with preemption injection: %zu runs x 20000 items, %zu signals, %.1f s\n", runs,
           g_chaos_signals, now_s() - tc);
    run_stress(4, 4, scaled(400000), 16, 1, 0);
    printf("all mpmc tests passed in %.1f s (scale %.2f)\n", now_s() - t0, g_scale);
    return 0;
}
