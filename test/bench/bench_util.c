/* See bench_util.h. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double pct(const double *t, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)((double)n * p);
    return t[i >= n ? n - 1 : i];
}

int read_keys(const char *path, struct keys *k, const char *prog)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1024;
    k->v = malloc(cap * sizeof *k->v);
    k->n = 0;
    char line[512];
    while (k->v && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (k->n == cap) {
            cap *= 2;
            char **nv = realloc(k->v, cap * sizeof *k->v);
            if (!nv)
                break;
            k->v = nv;
        }
        k->v[k->n++] = strdup(line);
    }
    fclose(f);
    if (!k->v || k->n == 0) {
        fprintf(stderr, "%s: %s: no keys\n", prog, path);
        return -1;
    }
    return 0;
}
