/*
 * getpwnam_r latency in a warm process: bench_getpwnam USER [N]
 * Calls getpwnam_r(USER) N times (default 20000) after 200 warm-up calls and prints the median,
 * p99 and mean in microseconds. Which module answers is up to /etc/nsswitch.conf, so run it in
 * a mount namespace with a private nsswitch.conf to compare `passwd: files` with
 * `passwd: latchkey` (cache hits: the warm-up fills the daemon's cache), e.g.
 *   unshare -m sh -c 'mount --bind my-nsswitch.conf /etc/nsswitch.conf; \
 *       LD_LIBRARY_PATH=native/nss LATCHKEY_SOCKET_DIR=... native/build/bench_getpwnam alice'
 */
#define _GNU_SOURCE
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_getpwnam USER [N]\n");
        return 2;
    }
    const char *user = argv[1];
    long n = argc == 3 ? strtol(argv[2], NULL, 10) : 20000;
    if (n < 1 || n > 10000000)
        return 2;
    static char buf[16384];
    struct passwd pw, *res = NULL;
    for (int i = 0; i < 200; i++) {
        if (getpwnam_r(user, &pw, buf, sizeof buf, &res) != 0 || !res) {
            fprintf(stderr, "bench_getpwnam: %s not found\n", user);
            return 1;
        }
    }
    double *t = malloc((size_t)n * sizeof *t);
    if (!t)
        return 1;
    double sum = 0;
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        int rc = getpwnam_r(user, &pw, buf, sizeof buf, &res);
        t[i] = now_us() - t0;
        sum += t[i];
        if (rc != 0 || !res) {
            fprintf(stderr, "bench_getpwnam: lookup %ld failed\n", i);
            free(t);
            return 1;
        }
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    printf("{\"user\":\"%s\",\"n\":%ld,\"median_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,\"max_us\":%.1f}\n",
           user, n, t[n / 2], t[(size_t)((double)n * 0.99)], sum / (double)n, t[n - 1]);
    free(t);
    return 0;
}
