/* Shared by the C drivers of `make bench` (lkbench) and `make soak` / the flood tests (lkload):
 * a monotonic clock, percentiles, and the file of names or uids a run looks up. */
#ifndef LK_BENCH_UTIL_H
#define LK_BENCH_UTIL_H

#include <stddef.h>

/* CLOCK_MONOTONIC in microseconds. */
double now_us(void);
/* qsort comparator for doubles. */
int cmp_double(const void *a, const void *b);
/* The p-quantile (0..1) of t[0..n), which must be sorted; 0 for an empty array. */
double pct(const double *t, size_t n, double p);

struct keys {
    char **v;
    size_t n;
};
/* One key per non-empty line of `path`; -1 (after a message naming `prog`) when none. */
int read_keys(const char *path, struct keys *k, const char *prog);

#endif
