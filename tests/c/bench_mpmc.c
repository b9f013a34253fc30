/* bench_mpmc.c - micro-benchmark of csrc/mpmc_queue.c against a mutex-protected ring.
 *
 * Not a test (tools/c_tests.sh bench builds it in release mode and runs it). Prints markdown tables:
 *   1. throughput: P producer + P consumer threads (P = 1..N pairs) moving items through one
 *      queue; items/s = items pushed and popped per second (each item is one push and one pop);
 *   2. latency: one thread doing push+pop (uncontended), and a cross-thread hand-off round trip
 *      (push on one thread, pop on the other, answer back on a second queue).
 * Both queues start with the same capacity and both grow instead of refusing an item (the mutex
 * ring doubles its array under its lock), so they do the same job; producers keep the backlog under
 * half the capacity (checked every 64 pushes), so the throughput rows measure the steady state,
 * not the growth paths. Runs are interleaved (A B A B) and the median of the repetitions is
 * reported with the min-max spread.
 *
 * Usage: bench_mpmc [max_pairs=4] [items_per_producer=4000000] [capacity=1024] [repeat=5]
 */
#define _POSIX_C_SOURCE 200809L
#include "mpmc_queue.h"
#include "test_support.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Back-off for a thread that cannot make progress (queue empty, or backlog over the limit): a few
 * spins, then yield, then sleep, so oversubscribed runs (more threads than cores) measure the queues
 * rather than the scheduler's treatment of spinning threads. Same policy for both queues. */
static void backoff(unsigned *n)
{
    if (++*n < 1024) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    else if (*n < 1040) {
        sched_yield();
    }
    else {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
}

/* ---- the baseline: a ring behind one pthread mutex, growing when full ---- */

typedef struct mutex_ring {
    pthread_mutex_t lock;
    void **buf;
    size_t mask, head, count;
} mutex_ring;

static int mring_init(mutex_ring *r, size_t capacity)
{
    size_t cap = 2;
    while (cap < capacity) {
        cap <<= 1;
    }
    r->buf = malloc(cap * sizeof *r->buf);
    r->mask = cap - 1;
    r->head = r->count = 0;
    pthread_mutex_init(&r->lock, NULL);
    return r->buf ? 0 : -1;
}

static void mring_destroy(mutex_ring *r)
{
    pthread_mutex_destroy(&r->lock);
    free(r->buf);
}

static int mring_push(mutex_ring *r, void *item)
{
    pthread_mutex_lock(&r->lock);
    if (r->count == r->mask + 1) {
        size_t cap = 2 * (r->mask + 1);
        void **nb = malloc(cap * sizeof *nb);
        if (nb == NULL) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
        for (size_t i = 0; i < r->count; i++) {
            nb[i] = r->buf[(r->head + i) & r->mask];
        }
        free(r->buf);
        r->buf = nb;
        r->mask = cap - 1;
        r->head = 0;
    }
    r->buf[(r->head + r->count) & r->mask] = item;
    r->count++;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static void *mring_pop(mutex_ring *r)
{
    void *item = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->count > 0) {
        item = r->buf[r->head];
        r->head = (r->head + 1) & r->mask;
        r->count--;
    }
    pthread_mutex_unlock(&r->lock);
    return item;
}

/* ---- one interface over both ---- */

typedef struct queue {
    int lockfree;
    mpmc_queue lf;
    mutex_ring mx;
} queue;

static int q_init(queue *q, int lockfree, size_t capacity)
{
    q->lockfree = lockfree;
    return lockfree ? mpmc_init(&q->lf, capacity) : mring_init(&q->mx, capacity);
}

static void q_destroy(queue *q)
{
    if (q->lockfree) {
        mpmc_destroy(&q->lf);
    }
    else {
        mring_destroy(&q->mx);
    }
}

static size_t mring_size(mutex_ring *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static size_t q_size(queue *q) { return q->lockfree ? mpmc_size_approx(&q->lf) : mring_size(&q->mx); }
static int q_push(queue *q, void *item) { return q->lockfree ? mpmc_push(&q->lf, item) : mring_push(&q->mx, item); }
static void *q_pop(queue *q) { return q->lockfree ? mpmc_pop(&q->lf) : mring_pop(&q->mx); }

/* ---- throughput ---- */

typedef struct run {
    queue *q;
    size_t per_producer, total, capacity;
    atomic_int start;
    _Atomic size_t popped;
} run;

static void *producer(void *p)
{
    run *r = p;
    while (!atomic_load_explicit(&r->start, memory_order_acquire)) {
        sched_yield();
    }
    for (size_t i = 1; i <= r->per_producer; i++) {
        /* flow control, as a real submitter has: keep the backlog under half the first capacity,
         * so both queues run in steady state instead of measuring their growth paths */
        if ((i & 63) == 0) {
            unsigned n = 0;
            while (q_size(r->q) > r->capacity / 2) {
                backoff(&n);
            }
        }
        if (q_push(r->q, (void *)(uintptr_t)i) < 0) {
            abort();
        }
    }
    return NULL;
}

static void *consumer(void *p)
{
    run *r = p;
    while (!atomic_load_explicit(&r->start, memory_order_acquire)) {
        sched_yield();
    }
    size_t mine = 0;
    unsigned n = 0;
    for (;;) {
        if (q_pop(r->q) != NULL) {
            n = 0;
            mine++;
            if ((mine & 63) == 0) {
                atomic_fetch_add_explicit(&r->popped, 64, memory_order_relaxed);
                mine = 0;
            }
            continue;
        }
        if (mine) {
            atomic_fetch_add_explicit(&r->popped, mine, memory_order_relaxed);
            mine = 0;
        }
        if (atomic_load_explicit(&r->popped, memory_order_relaxed) >= r->total) {
            return NULL;
        }
        backoff(&n);
    }
}

/* items per second for `pairs` producers and `pairs` consumers */
static double throughput(int lockfree, size_t pairs, size_t per_producer, size_t capacity)
{
    queue q;
    if (q_init(&q, lockfree, capacity) < 0) {
        abort();
    }
    run r = {.q = &q, .per_producer = per_producer, .total = pairs * per_producer, .capacity = capacity};
    atomic_init(&r.start, 0);
    atomic_init(&r.popped, 0);
    pthread_t th[64];
    for (size_t i = 0; i < pairs; i++) {
        pthread_create(&th[2 * i], NULL, consumer, &r);
        pthread_create(&th[2 * i + 1], NULL, producer, &r);
    }
    double t0 = now_s();
    atomic_store_explicit(&r.start, 1, memory_order_release);
    for (size_t i = 0; i < 2 * pairs; i++) {
        pthread_join(th[i], NULL);
    }
    double dt = now_s() - t0;
    q_destroy(&q);
    return (double)r.total / dt;
}

/* ---- latency ---- */

/* ns per push+pop on one thread, queue never empty nor full */
static double single_thread_ns(int lockfree, size_t capacity, size_t n)
{
    queue q;
    if (q_init(&q, lockfree, capacity) < 0) {
        abort();
    }
    for (size_t i = 1; i <= capacity / 2; i++) {
        q_push(&q, (void *)(uintptr_t)i);
    }
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        void *x = q_pop(&q);
        q_push(&q, x);
    }
    double dt = now_s() - t0;
    q_destroy(&q);
    return dt * 1e9 / (double)n;
}

typedef struct pingpong {
    queue there, back;
    size_t n;
} pingpong;

static void *echo(void *p)
{
    pingpong *pp = p;
    for (size_t i = 0; i < pp->n; i++) {
        void *x;
        while ((x = q_pop(&pp->there)) == NULL) {
        }
        q_push(&pp->back, x);
    }
    return NULL;
}

/* ns per round trip: push to the other thread, which pops and pushes back; both spin */
static double round_trip_ns(int lockfree, size_t capacity, size_t n)
{
    pingpong pp;
    pp.n = n;
    if (q_init(&pp.there, lockfree, capacity) < 0 || q_init(&pp.back, lockfree, capacity) < 0) {
        abort();
    }
    pthread_t th;
    pthread_create(&th, NULL, echo, &pp);
    double t0 = now_s();
    for (size_t i = 1; i <= n; i++) {
        q_push(&pp.there, (void *)(uintptr_t)i);
        while (q_pop(&pp.back) == NULL) {
        }
    }
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    q_destroy(&pp.there);
    q_destroy(&pp.back);
    return dt * 1e9 / (double)n;
}

/* ---- reporting ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    double med, min, max;
} stats;

static stats summarize(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return (stats){v[n / 2], v[0], v[n - 1]};
}

int main(int argc, char **argv)
{
    size_t max_pairs = argc > 1 ? strtoul(argv[1], NULL, 10) : 4;
    size_t per_producer = argc > 2 ? strtoul(argv[2], NULL, 10) : 4000000;
    size_t capacity = argc > 3 ? strtoul(argv[3], NULL, 10) : 1024;
    size_t repeat = argc > 4 ? strtoul(argv[4], NULL, 10) : 5;
    if (max_pairs < 1 || max_pairs > 32 || repeat < 1 || repeat > 64 || per_producer < 1) {
        fprintf(stderr, "usage: bench_mpmc [max_pairs<=32] [items_per_producer] [capacity] [repeat<=64]\n");
        return 2;
    }
    double lf[64], mx[64];

    printf("bench_mpmc: %ld online CPUs, first capacity %zu, %zu items per producer, median of %zu "
           "interleaved runs (min-max)\n\n",
           sysconf(_SC_NPROCESSORS_ONLN), capacity, per_producer, repeat);
    printf("| producer+consumer pairs | threads | lock-free MPMC (M items/s) | mutex ring (M items/s) | "
           "lock-free / mutex |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (size_t pairs = 1; pairs <= max_pairs; pairs++) {
        for (size_t k = 0; k < repeat; k++) {
            lf[k] = throughput(1, pairs, per_producer, capacity) / 1e6;
            mx[k] = throughput(0, pairs, per_producer, capacity) / 1e6;
        }
        stats a = summarize(lf, repeat), b = summarize(mx, repeat);
        printf("| %zu | %zu | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2fx |\n", pairs, 2 * pairs, a.med,
               a.min, a.max, b.med, b.min, b.max, a.med / b.med);
        fflush(stdout);
    }

    printf("\n| latency | lock-free MPMC (ns) | mutex ring (ns) |\n|---|---:|---:|\n");
    for (size_t k = 0; k < repeat; k++) {
        lf[k] = single_thread_ns(1, capacity, 2000000);
        mx[k] = single_thread_ns(0, capacity, 2000000);
    }
    stats a = summarize(lf, repeat), b = summarize(mx, repeat);
    printf("| push+pop, one thread | %.1f (%.1f-%.1f) | %.1f (%.1f-%.1f) |\n", a.med, a.min, a.max, b.med,
           b.min, b.max);
    for (size_t k = 0; k < repeat; k++) {
        lf[k] = round_trip_ns(1, capacity, 200000);
        mx[k] = round_trip_ns(0, capacity, 200000);
    }
    a = summarize(lf, repeat);
    b = summarize(mx, repeat);
    printf("| hand-off round trip, 2 threads spinning | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) |\n", a.med,
           a.min, a.max, b.med, b.min, b.max);
    return 0;
}
