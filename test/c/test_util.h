/* Minimal test helpers for the C suites: CHECK records a failure and carries on (no hidden
 * return), the process exit code reports whether anything failed. */
#ifndef LK_TEST_UTIL_H
#define LK_TEST_UTIL_H

#include <stdio.h>
#include <time.h>

extern int lk_test_failures;
extern int lk_test_quiet;

#define CHECK(cond) lk_check((cond) != 0, __FILE__, __LINE__, #cond)

static inline void lk_check(int ok, const char *file, int line, const char *what)
{
    if (!ok) {
        lk_test_failures++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
    }
}

static inline double lk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static inline void lk_test_begin(const char *name)
{
    if (!lk_test_quiet)
        fprintf(stderr, "  %s\n", name);
}

#endif /* LK_TEST_UTIL_H */
