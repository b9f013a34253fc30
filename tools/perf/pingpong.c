/* pingpong.c - the floor for one thrasks round trip: two threads, each sleeping in epoll_wait on
 * its own eventfd, passing a token back and forth (caller -> worker -> caller), as thrasks' two
 * hand-offs do, without Python.
 *
 *   cc -O2 -pthread tools/perf/pingpong.c -o build/pingpong && build/pingpong [rounds] [spin_us]
 *
 * spin_us > 0: before sleeping in epoll_wait, each side polls its eventfd (non-blocking read)
 * for up to spin_us microseconds: what a bounded spin before parking would buy at best.
 * Prints the median, p10 and p90 of the per-round-trip time (CLOCK_MONOTONIC), in microseconds.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int efd[2], ep[2];
static long rounds = 20000;
static double spin_us = 0;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void wait_on(int side)
{
    uint64_t v;
    if (spin_us > 0) {
        double end = now_us() + spin_us;
        do {
            if (read(efd[side], &v, sizeof v) == sizeof v) {
                return;
            }
        } while (now_us() < end);
    }
    struct epoll_event ev;
    while (epoll_wait(ep[side], &ev, 1, -1) != 1) {
    }
    while (read(efd[side], &v, sizeof v) != sizeof v) {
    }
}

static void signal_side(int side)
{
    uint64_t one = 1;
    if (write(efd[side], &one, sizeof one) != sizeof one) {
        abort();
    }
}

static void *worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        wait_on(1);
        signal_side(0);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc > 1) rounds = atol(argv[1]);
    if (argc > 2) spin_us = atof(argv[2]);
    for (int i = 0; i < 2; i++) {
        efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ep[i] = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = efd[i]};
        epoll_ctl(ep[i], EPOLL_CTL_ADD, efd[i], &ev);
    }
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    double *rt = malloc(rounds * sizeof *rt);
    for (long i = 0; i < rounds; i++) {
        double t0 = now_us();
        signal_side(1);
        wait_on(0);
        rt[i] = now_us() - t0;
    }
    pthread_join(t, NULL);
    qsort(rt, rounds, sizeof *rt, cmp);
    printf("eventfd+epoll ping-pong, %ld round trips, spin %.0f us: median %.2f us, p10 %.2f, p90 %.2f\n",
           rounds, spin_us, rt[rounds / 2], rt[rounds / 10], rt[rounds * 9 / 10]);
    return 0;
}
