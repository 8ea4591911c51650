/*
 * lkload: the root-side load generator of `make soak` and the flood tests (test/soak/,
 * test/integration/flood.test.ts). Like lkbench it calls getpwnam_r through whatever
 * /etc/nsswitch.conf says, so it runs in a mount namespace whose nsswitch.conf names latchkey,
 * with LD_LIBRARY_PATH pointing at native/nss. Output is one JSON object per line on stdout;
 * times are in microseconds.
 *
 *   lkload rate FILE RATE THREADS  lookups of the names in FILE (cycled) at RATE per second in all,
 *                                  spread over THREADS threads, each with its own connection (as
 *                                  the module keeps one per thread). The rate is pinned: a thread
 *                                  that falls behind (a slow lookup) does not burst to catch up,
 *                                  so `rate` below RATE means the daemon was slow. Every line read
 *                                  on stdin closes a phase: the stats of the lookups since the
 *                                  previous line, labelled with that line. EOF closes the last
 *                                  phase ("end") and exits.
 *   lkload probe NAME              one call of the module's own _nss_latchkey_getpwnam_r (dlopen):
 *                                  the NSS status and errno it returns, which getent cannot show
 *                                  (it exits 2 for "not found" and for "unavailable" alike), then
 *                                  getpwnam_r through nsswitch.conf: its return value and result.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define BUFSZ 16384

static void sleep_until(double t_us)
{
    double d = t_us - now_us();
    if (d <= 0)
        return;
    struct timespec ts = { (time_t)(d / 1e6), (long)((d - (double)(long)(d / 1e6) * 1e6) * 1e3) };
    nanosleep(&ts, NULL);
}

/* ---- rate mode ---------------------------------------------------------------------------- */

/* The samples of the current phase, shared by every thread (5k appends/s: one mutex is plenty). */
static struct {
    pthread_mutex_t mu;
    double *t;
    size_t n, cap;
    long found, notfound, errors, last_errno;
    /* errors by how long they took: a refusal or a broken reply is fast, a timeout is slow */
    long errors_fast, errors_slow;
    double started;
} phase = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0 };

static atomic_int stopping;

struct worker {
    pthread_t th;
    struct keys *k;
    size_t next_key;
    double interval_us, first_at;
};

static void record(double us, int rc, int found)
{
    pthread_mutex_lock(&phase.mu);
    if (phase.n == phase.cap) {
        size_t cap = phase.cap ? phase.cap * 2 : 1 << 16;
        double *nt = realloc(phase.t, cap * sizeof *nt);
        if (nt) {
            phase.t = nt;
            phase.cap = cap;
        }
    }
    if (phase.n < phase.cap)
        phase.t[phase.n++] = us;
    if (rc != 0) {
        phase.errors++;
        phase.last_errno = rc;
        if (us < 1000)
            phase.errors_fast++;
        else if (us >= 1e6)
            phase.errors_slow++;
    } else if (found) {
        phase.found++;
    } else {
        phase.notfound++;
    }
    pthread_mutex_unlock(&phase.mu);
}

static void *rate_worker(void *arg)
{
    struct worker *w = arg;
    char *buf = malloc(BUFSZ);
    double next = w->first_at;
    while (buf && !atomic_load(&stopping)) {
        sleep_until(next);
        const char *name = w->k->v[w->next_key];
        w->next_key = (w->next_key + 1) % w->k->n;
        struct passwd pw, *res = NULL;
        double t0 = now_us();
        int rc = getpwnam_r(name, &pw, buf, BUFSZ, &res);
        double t1 = now_us();
        record(t1 - t0, rc, res != NULL);
        next += w->interval_us;
        if (next < t1)
            next = t1; /* fell behind: do not burst */
    }
    free(buf);
    return NULL;
}

/* Prints and resets the current phase. */
static void close_phase(const char *label)
{
    pthread_mutex_lock(&phase.mu);
    double wall = now_us() - phase.started;
    size_t n = phase.n;
    qsort(phase.t, n, sizeof *phase.t, cmp_double);
    printf("{\"phase\":\"%s\",\"n\":%zu,\"found\":%ld,\"notfound\":%ld,\"errors\":%ld,\"last_"
           "errno\":%ld,"
           "\"errors_under_1ms\":%ld,\"errors_over_1s\":%ld,\"rate\":%.0f,\"p50_us\":%.1f,\"p90_"
           "us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
           label, n, phase.found, phase.notfound, phase.errors, phase.last_errno, phase.errors_fast,
           phase.errors_slow, wall > 0 ? (double)n / (wall / 1e6) : 0, pct(phase.t, n, 0.5),
           pct(phase.t, n, 0.9), pct(phase.t, n, 0.99), pct(phase.t, n, 0.999),
           n ? phase.t[n - 1] : 0);
    fflush(stdout);
    phase.n = 0;
    phase.found = phase.notfound = phase.errors = phase.last_errno = 0;
    phase.errors_fast = phase.errors_slow = 0;
    phase.started = now_us();
    pthread_mutex_unlock(&phase.mu);
}

static int mode_rate(const char *file, double rate, int threads)
{
    struct keys k;
    if (read_keys(file, &k, "lkload") != 0)
        return 1;
    if (rate <= 0 || threads < 1 || threads > 256) {
        fprintf(stderr, "lkload rate: RATE > 0, 1 <= THREADS <= 256\n");
        return 2;
    }
    /* Warm-up outside any phase: every name once, so the first phase measures the steady state
     * (and the thread that does it does not count its connect). */
    char *buf = malloc(BUFSZ);
    for (size_t i = 0; buf && i < k.n; i++) {
        struct passwd pw, *res = NULL;
        (void)getpwnam_r(k.v[i], &pw, buf, BUFSZ, &res);
    }
    free(buf);
    struct worker *w = calloc((size_t)threads, sizeof *w);
    if (!w)
        return 1;
    double interval = (double)threads * 1e6 / rate;
    double t0 = now_us() + 1000;
    phase.started = t0;
    for (int i = 0; i < threads; i++) {
        w[i].k = &k;
        w[i].next_key = (k.n * (size_t)i) / (size_t)threads;
        w[i].interval_us = interval;
        w[i].first_at = t0 + interval * i / threads; /* staggered: an even stream, not bursts */
        if (pthread_create(&w[i].th, NULL, rate_worker, &w[i]) != 0) {
            fprintf(stderr, "lkload: pthread_create failed\n");
            return 1;
        }
    }
    printf("{\"ready\":1,\"threads\":%d,\"interval_us\":%.1f}\n", threads, interval);
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n\"\\")] = 0;
        close_phase(line[0] ? line : "phase");
    }
    atomic_store(&stopping, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(w[i].th, NULL);
    close_phase("end");
    return 0;
}

/* ---- probe mode --------------------------------------------------------------------------- */

typedef enum nss_status (*getpwnam_fn)(const char *, struct passwd *, char *, size_t, int *);

static const char *status_name(enum nss_status s)
{
    switch (s) {
    case NSS_STATUS_TRYAGAIN:
        return "TRYAGAIN";
    case NSS_STATUS_UNAVAIL:
        return "UNAVAIL";
    case NSS_STATUS_NOTFOUND:
        return "NOTFOUND";
    case NSS_STATUS_SUCCESS:
        return "SUCCESS";
    case NSS_STATUS_RETURN:
        return "RETURN";
    default:
        return "?";
    }
}

static const char *errno_name(int e)
{
    return e == 0        ? ""
           : e == EAGAIN ? "EAGAIN"
           : e == ENOENT ? "ENOENT"
           : e == ERANGE ? "ERANGE"
                         : "other";
}

static int mode_probe(const char *name)
{
    void *h = dlopen("libnss_latchkey.so.2", RTLD_NOW);
    getpwnam_fn fn = h ? (getpwnam_fn)dlsym(h, "_nss_latchkey_getpwnam_r") : NULL;
    if (!fn) {
        fprintf(stderr, "lkload probe: %s\n", dlerror());
        return 1;
    }
    static char buf[BUFSZ];
    struct passwd pw;
    int err = 0;
    double t0 = now_us();
    enum nss_status st = fn(name, &pw, buf, sizeof buf, &err);
    double us = now_us() - t0;
    /* ... and what a program sees through nsswitch.conf: 0 with a result, 0 without one (not
     * found), or an error number (EAGAIN: try again). */
    struct passwd *res = NULL;
    int rc = getpwnam_r(name, &pw, buf, sizeof buf, &res);
    printf("{\"status\":\"%s\",\"errno\":%d,\"errno_name\":\"%s\",\"us\":%.0f,\"getpwnam_r\":%d,"
           "\"found\":%d}\n",
           status_name(st), err, errno_name(err), us, rc, res != NULL);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 5 && strcmp(argv[1], "rate") == 0)
        return mode_rate(argv[2], atof(argv[3]), atoi(argv[4]));
    if (argc >= 3 && strcmp(argv[1], "probe") == 0)
        return mode_probe(argv[2]);
    fprintf(stderr, "usage: lkload rate FILE RATE THREADS | probe NAME\n");
    return 2;
}
