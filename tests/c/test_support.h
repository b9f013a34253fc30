/* test_support.h - what the C tests of the scheduler units share: CHECK, sizes scaled per build
 * (sanitizer builds start smaller) and by `test_x [scale]` / THRASKS_STRESS_SCALE, a clock.
 * One test program per translation unit, so the static state here is per program. */
#ifndef THRASKS_TEST_SUPPORT_H
#define THRASKS_TEST_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define DEFAULT_SCALE 0.3
#elif defined(__SANITIZE_ADDRESS__)
#define DEFAULT_SCALE 0.5
#else
#define DEFAULT_SCALE 1.0
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static double g_scale = DEFAULT_SCALE;

static inline size_t scaled(size_t n)
{
    double v = (double)n * g_scale;
    return v < 1.0 ? 1 : (size_t)v;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Start of main(): returns 1 for `--probe` (tools/c_tests.sh: does the binary start at all under
 * TSan's memory layout?), else applies the scale from argv[1] or THRASKS_STRESS_SCALE and 0. */
static inline int test_setup(int argc, char **argv)
{
    const char *env = getenv("THRASKS_STRESS_SCALE");
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) {
        return 1;
    }
    if (argc > 1) {
        g_scale *= atof(argv[1]);
    }
    else if (env != NULL) {
        g_scale *= atof(env);
    }
    return 0;
}

#endif
