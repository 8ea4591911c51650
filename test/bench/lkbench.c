/*
 * lkbench: the C driver of `make bench` (scripts/bench). It calls getpwnam_r/getpwuid_r in one
 * long-lived process, so it measures whatever /etc/nsswitch.conf says: scripts/bench runs it in a
 * mount namespace with a private nsswitch.conf (`passwd: latchkey` or `passwd: files`) and a
 * private /etc/passwd. Every mode prints one JSON object on stdout; times are in microseconds.
 *
 *   lkbench lat name|uid KEY N [SECS] KEY looked up N times (at most SECS seconds, at least 100)
 *                                     after warm-up calls; a hit or a miss
 *   lkbench each FILE [THREADS]       every line of FILE (a name, or #UID) looked up once; with one
 *                                     thread per-lookup stats, with more only the wall time (warm-up)
 *   lkbench fill FILE                 every line of FILE looked up once; one that fails is retried
 *                                     every 20 ms for up to 30 s: the daemon lets each asking uid
 *                                     fetch only so many never-seen names per second, so the bench
 *                                     fills its cache from many processes, each as its own uid
 *   lkbench tput FILE THREADS SECS    lookups/s with THREADS threads, each cycling through FILE
 *   lkbench paced FILE INTERVAL_US    one lookup every INTERVAL_US until stdin reaches EOF, then
 *                                     stats: the latency a client sees while something else runs
 *   lkbench enum                      setpwent/getpwent_r/endpwent: entries and wall time
 *
 * The latency driver of `make bench` (scripts/bench).
 */
#define _GNU_SOURCE
#include <errno.h>
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

/* Sorts t and prints the common statistics fields (no braces). */
static void print_stats(double *t, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += t[i];
    qsort(t, n, sizeof *t, cmp_double);
    printf(
        "\"n\":%zu,\"min_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,"
        "\"mean_us\":%.2f",
        n, n ? t[0] : 0, pct(t, n, 0.5), pct(t, n, 0.9), pct(t, n, 0.99), n ? t[n - 1] : 0,
        n ? sum / (double)n : 0);
}

/* One lookup: a key starting with '#' is a uid. Returns 1 found, 0 not found, -1 error. */
static int lookup(const char *key, char *buf)
{
    struct passwd pw, *res = NULL;
    int rc;
    if (key[0] == '#')
        rc = getpwuid_r((uid_t)strtoul(key + 1, NULL, 10), &pw, buf, BUFSZ, &res);
    else
        rc = getpwnam_r(key, &pw, buf, BUFSZ, &res);
    if (rc != 0)
        return -1;
    return res ? 1 : 0;
}

static int mode_lat(const char *kind, const char *key, long n, double max_secs)
{
    static char buf[BUFSZ];
    char ukey[64];
    if (strcmp(kind, "uid") == 0) {
        snprintf(ukey, sizeof ukey, "#%s", key);
        key = ukey;
    } else if (strcmp(kind, "name") != 0) {
        fprintf(stderr, "lkbench lat: name or uid\n");
        return 2;
    }
    int first = lookup(key, buf);
    int warm = max_secs > 0 ? 20 : 200;
    for (int i = 1; i < warm; i++)
        lookup(key, buf);
    double *t = malloc((size_t)n * sizeof *t);
    long errors = 0, found = 0, done = 0;
    double stop = now_us() + max_secs * 1e6;
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        int r = lookup(key, buf);
        double t1 = now_us();
        t[i] = t1 - t0;
        done++;
        if (r < 0)
            errors++;
        else
            found += r;
        if (max_secs > 0 && i >= 100 && t1 > stop)
            break; /* a slow source (files at 100k users): enough samples */
    }
    n = done;
    printf("{\"mode\":\"lat\",\"key\":\"%s\",\"first_found\":%d,\"found\":%ld,\"errors\":%ld,", key,
           first, found, errors);
    print_stats(t, (size_t)n);
    printf("}\n");
    free(t);
    return 0;
}

struct worker {
    pthread_t th;
    struct keys *k;
    size_t start, step;
    double deadline; /* tput: stop time; each: 0 */
    long ops, found, errors;
};

/* One lookup, counted in the worker's tallies. */
static void counted_lookup(struct worker *w, size_t i, char *buf)
{
    int r = lookup(w->k->v[i], buf);
    w->ops++;
    if (r < 0)
        w->errors++;
    else
        w->found += r;
}

static void *each_worker(void *arg)
{
    struct worker *w = arg;
    char *buf = malloc(BUFSZ);
    for (size_t i = w->start; i < w->k->n; i += w->step)
        counted_lookup(w, i, buf);
    free(buf);
    return NULL;
}

static void *tput_worker(void *arg)
{
    struct worker *w = arg;
    char *buf = malloc(BUFSZ);
    size_t i = w->start % w->k->n;
    for (;;) {
        /* check the clock every 64 lookups: clock_gettime is cheap but not free */
        for (int j = 0; j < 64; j++) {
            counted_lookup(w, i, buf);
            i += w->step;
            if (i >= w->k->n)
                i %= w->k->n;
        }
        if (now_us() >= w->deadline)
            break;
    }
    free(buf);
    return NULL;
}

static int run_workers(struct keys *k, int threads, double secs, int tput)
{
    struct worker *w = calloc((size_t)threads, sizeof *w);
    /* Threads take connections from the shim's per-process pool (up to 8) on their first lookup:
     * for tput, pay that before the clock starts. */
    double t0 = now_us();
    for (int i = 0; i < threads; i++) {
        w[i].k = k;
        /* tput: threads start at spread-out offsets and walk with a stride co-prime to most n */
        w[i].start = tput ? (k->n / (size_t)threads) * (size_t)i : (size_t)i;
        w[i].step = tput ? (k->n % 7919 ? 7919 % k->n : 1) : (size_t)threads;
        if (w[i].step == 0)
            w[i].step = 1;
        w[i].deadline = t0 + secs * 1e6;
        if (pthread_create(&w[i].th, NULL, tput ? tput_worker : each_worker, &w[i]) != 0) {
            fprintf(stderr, "lkbench: pthread_create failed\n");
            return 1;
        }
    }
    long ops = 0, found = 0, errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].th, NULL);
        ops += w[i].ops;
        found += w[i].found;
        errors += w[i].errors;
    }
    double wall = now_us() - t0;
    printf(
        "{\"mode\":\"%s\",\"threads\":%d,\"ops\":%ld,\"found\":%ld,\"errors\":%ld,\"wall_us\":%.0f,"
        "\"ops_per_s\":%.0f}\n",
        tput ? "tput" : "each", threads, ops, found, errors, wall, (double)ops / (wall / 1e6));
    free(w);
    return 0;
}

static int mode_each(const char *file, int threads)
{
    struct keys k;
    if (read_keys(file, &k, "lkbench") != 0)
        return 1;
    if (threads > 1)
        return run_workers(&k, threads, 0, 0);
    static char buf[BUFSZ];
    double *t = malloc(k.n * sizeof *t);
    long found = 0, errors = 0;
    for (size_t i = 0; i < k.n; i++) {
        double t0 = now_us();
        int r = lookup(k.v[i], buf);
        t[i] = now_us() - t0;
        if (r < 0)
            errors++;
        else
            found += r;
    }
    printf("{\"mode\":\"each\",\"threads\":1,\"found\":%ld,\"errors\":%ld,", found, errors);
    print_stats(t, k.n);
    printf("}\n");
    return 0;
}

static int mode_fill(const char *file)
{
    struct keys k;
    if (read_keys(file, &k, "lkbench") != 0)
        return 1;
    static char buf[BUFSZ];
    long found = 0, errors = 0, retries = 0;
    double t0 = now_us();
    for (size_t i = 0; i < k.n; i++) {
        int r = lookup(k.v[i], buf);
        for (int tries = 0; r < 0 && tries < 1500; tries++) {
            struct timespec ts = { 0, 20 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            retries++;
            r = lookup(k.v[i], buf);
        }
        if (r < 0)
            errors++;
        else
            found += r;
    }
    printf("{\"mode\":\"fill\",\"found\":%ld,\"errors\":%ld,\"retries\":%ld,\"wall_us\":%.0f}\n",
           found, errors, retries, now_us() - t0);
    return 0;
}

static int mode_tput(const char *file, int threads, double secs)
{
    struct keys k;
    if (read_keys(file, &k, "lkbench") != 0 || threads < 1 || secs <= 0)
        return 1;
    return run_workers(&k, threads, secs, 1);
}

static atomic_int stop_flag;

static void *stdin_watch(void *arg)
{
    (void)arg;
    char c[64];
    while (read(0, c, sizeof c) > 0)
        ;
    atomic_store(&stop_flag, 1);
    return NULL;
}

static int mode_paced(const char *file, long interval_us)
{
    struct keys k;
    if (read_keys(file, &k, "lkbench") != 0)
        return 1;
    pthread_t th;
    pthread_create(&th, NULL, stdin_watch, NULL);
    static char buf[BUFSZ];
    size_t cap = 1 << 16, n = 0, i = 0;
    double *t = malloc(cap * sizeof *t);
    long found = 0, errors = 0;
    double next = now_us(), start = next;
    printf("{\"mode\":\"paced\",\"ready\":1}\n");
    fflush(stdout);
    while (!atomic_load(&stop_flag)) {
        double t0 = now_us();
        int r = lookup(k.v[i], buf);
        double dt = now_us() - t0;
        if (n == cap) {
            cap *= 2;
            t = realloc(t, cap * sizeof *t);
        }
        t[n++] = dt;
        if (r < 0)
            errors++;
        else
            found += r;
        i = (i + 7919) % k.n;
        next += (double)interval_us;
        double now = now_us();
        if (next > now) {
            double d = next - now;
            struct timespec ts = { (time_t)(d / 1e6),
                                   (long)((d - (double)(long)(d / 1e6) * 1e6) * 1e3) };
            nanosleep(&ts, NULL);
        } else {
            next = now; /* fell behind (a slow lookup): do not burst to catch up */
        }
    }
    pthread_join(th, NULL);
    printf("{\"mode\":\"paced\",\"found\":%ld,\"errors\":%ld,\"wall_us\":%.0f,", found, errors,
           now_us() - start);
    print_stats(t, n);
    printf("}\n");
    return 0;
}

static int mode_enum(void)
{
    static char buf[BUFSZ];
    struct passwd pw, *res;
    long n = 0;
    double t0 = now_us();
    setpwent();
    while (getpwent_r(&pw, buf, sizeof buf, &res) == 0 && res)
        n++;
    endpwent();
    printf("{\"mode\":\"enum\",\"entries\":%ld,\"wall_us\":%.0f}\n", n, now_us() - t0);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 5 && strcmp(argv[1], "lat") == 0)
        return mode_lat(argv[2], argv[3], strtol(argv[4], NULL, 10), argc >= 6 ? atof(argv[5]) : 0);
    if (argc >= 3 && strcmp(argv[1], "each") == 0)
        return mode_each(argv[2], argc >= 4 ? atoi(argv[3]) : 1);
    if (argc >= 3 && strcmp(argv[1], "fill") == 0)
        return mode_fill(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "tput") == 0)
        return mode_tput(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "paced") == 0)
        return mode_paced(argv[2], strtol(argv[3], NULL, 10));
    if (argc >= 2 && strcmp(argv[1], "enum") == 0)
        return mode_enum();
    fprintf(stderr, "usage: lkbench lat name|uid KEY N [SECS] | each FILE [THREADS] | fill FILE"
                    " | tput FILE THREADS SECS"
                    " | paced FILE INTERVAL_US | enum\n");
    return 2;
}
