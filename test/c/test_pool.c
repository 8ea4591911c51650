/*
 * Unit tests of libnss_latchkey, part 3: what one process costs the daemon and what a sick
 * daemon costs one process (issue 12). The pool bounds the connections a process holds however
 * many threads it runs; kept connections expire after LK_CLIENT_IDLE_MS; after a timeout the
 * breaker answers "unavailable" at once for LK_BREAKER_MS, then lets one probe through; a
 * connection the daemon closes unanswered (its budget) is "try again", never "not found".
 * Timings are the test build's (native/Makefile TEST_TIMING): 400 ms idle and breaker period.
 */
#define _GNU_SOURCE
#include "test_nss.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lk_client.h"
#include "lk_wire.h"
#include "nss_call.h"
#include "test_util.h"

static enum nss_status alice(int *err)
{
    struct passwd pw;
    char buf[1024];
    *err = 0;
    return _nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, err);
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000u);
}

/* The fake notices a client's close asynchronously: waits (up to 2 s) for its count to be `want`. */
static unsigned settle_open(struct fake_daemon *f, unsigned want)
{
    unsigned n = fake_open_connections(f);
    for (int i = 0; i < 200 && n != want; i++) {
        sleep_ms(10);
        n = fake_open_connections(f);
    }
    return n;
}

/* Threads that each do one lookup together, then sleep until released (an ordinary program
 * with many threads, as in the issue: 300 threads, one getpwnam each, then asleep). */
struct crowd {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go, release, done, ok;
};

static void *crowd_member(void *p)
{
    struct crowd *c = p;
    int err;
    pthread_mutex_lock(&c->mu);
    while (!c->go)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    int ok = alice(&err) == NSS_STATUS_SUCCESS;
    pthread_mutex_lock(&c->mu);
    c->done++;
    c->ok += ok;
    pthread_cond_broadcast(&c->cv);
    while (!c->release)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Starts n crowd members, lets them look up at once, and waits until all have; returns the
 * number that succeeded. crowd_end() releases and joins them. */
static int crowd_start(struct crowd *c, pthread_t *t, int n)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, crowd_member, c) == 0);
    pthread_mutex_lock(&c->mu);
    c->go = 1;
    pthread_cond_broadcast(&c->cv);
    while (c->done < n)
        pthread_cond_wait(&c->cv, &c->mu);
    int ok = c->ok;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void crowd_end(struct crowd *c, pthread_t *t, int n)
{
    pthread_mutex_lock(&c->mu);
    c->release = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

void test_pool_bound(struct fixture *fx)
{
    enum {
        THREADS = 64
    };
    pthread_t t[THREADS];
    struct crowd c;
    lk_test_begin("64 threads, one lookup each, then asleep: the process holds at most LK_NSS_POOL "
                  "connections");
    CHECK(crowd_start(&c, t, THREADS) == THREADS);
    int mine = count_client_sockets();
    unsigned theirs = settle_open(fx->fake, LK_NSS_POOL);
    CHECK(mine <= LK_NSS_POOL);
    CHECK(theirs <= LK_NSS_POOL);
    if (mine > LK_NSS_POOL || theirs > LK_NSS_POOL)
        fprintf(stderr, "    held: %d client sockets, %u at the daemon\n", mine, theirs);
    crowd_end(&c, t, THREADS);
}

void test_idle(struct fixture *fx)
{
    enum {
        THREADS = 2 * LK_NSS_POOL
    };
    pthread_t t[THREADS];
    struct crowd c;
    int err;
    lk_test_begin("a kept connection idle longer than LK_CLIENT_IDLE_MS is closed and replaced");
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    unsigned conns = fake_connections(fx->fake);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    CHECK(fake_connections(fx->fake) == conns); /* within the idle time: reused */
    sleep_ms(LK_CLIENT_IDLE_MS + 100);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    CHECK(fake_connections(fx->fake) == conns + 1);
    CHECK(settle_open(fx->fake, 1) == 1); /* the idle one was closed by the client */

    lk_test_begin("after the idle time, one lookup closes the connections sleeping threads left");
    CHECK(crowd_start(&c, t, THREADS) == THREADS);
    sleep_ms(LK_CLIENT_IDLE_MS + 100);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    CHECK(count_client_sockets() == 1);
    CHECK(settle_open(fx->fake, 1) == 1);
    crowd_end(&c, t, THREADS);
}

static void *slow_probe(void *p)
{
    int err;
    *(enum nss_status *)p = alice(&err);
    return NULL;
}

/* A one-shot call (the PAM module's and the keys helper's path) on nss.sock: PING. */
static int one_shot_ping(struct fixture *fx)
{
    uint8_t req[16], *body = NULL;
    size_t len = 0;
    struct lk_writer w;
    lk_wr_init(&w, req, sizeof req);
    lk_wr_request(&w, LK_OP_PING);
    int rc = lk_client_call(fx->dir, "nss.sock", req, lk_wr_finish(&w), LK_MAX_NSS_REPLY, &body,
                            &len, NULL, 0);
    free(body);
    return rc;
}

void test_timeout(struct fixture *fx)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    lk_test_begin("daemon never answers: UNAVAIL after LATCHKEY_CLIENT_TIMEOUT_MS, recovers after "
                  "the breaker");
    CHECK(lookup_alice()); /* a kept connection exists */
    setenv("LATCHKEY_CLIENT_TIMEOUT_MS", "300", 1);
    fake_set_mode(fx->fake, FAKE_SILENT);
    double t0 = lk_now_ms();
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    double took = lk_now_ms() - t0;
    CHECK(took >= 290.0 && took < 1500.0);
    CHECK(err == EAGAIN);
    fake_set_mode(fx->fake, FAKE_NORMAL);
    unsetenv("LATCHKEY_CLIENT_TIMEOUT_MS");
    usleep((LK_BREAKER_MS + 50) * 1000); /* the timeout opened the breaker (test_pool.c) */
    /* the timed-out connection was dropped, so no late reply can be taken for this answer:
     * the silent fake never answers late, so only a new connection shows the drop */
    unsigned conns = fake_connections(fx->fake);
    CHECK(lookup_alice());
    CHECK(fake_connections(fx->fake) == conns + 1);
    CHECK(_nss_latchkey_getpwuid_r(12000, &pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS &&
          strcmp(pw.pw_name, "user00") == 0);
}

void test_breaker(struct fixture *fx)
{
    int err;
    lk_test_begin("LATCHKEY_CLIENT_TIMEOUT_MS (or its old name) only lengthens the timeout");
    unsetenv("LATCHKEY_NSS_TIMEOUT_MS");
    unsetenv("LATCHKEY_CLIENT_TIMEOUT_MS");
    CHECK(lk_timeout_ms() == (int)LK_CLIENT_TIMEOUT_MS);
    setenv("LATCHKEY_CLIENT_TIMEOUT_MS", "1", 1);
    CHECK(lk_timeout_ms() ==
          (int)LK_TIMEOUT_FLOOR_MS); /* 50 here; LK_CLIENT_TIMEOUT_MS in a real build */
    setenv("LATCHKEY_CLIENT_TIMEOUT_MS", "20000", 1);
    CHECK(lk_timeout_ms() == 20000);
    setenv("LATCHKEY_NSS_TIMEOUT_MS", "30000", 1); /* the new name wins over the old one */
    CHECK(lk_timeout_ms() == 20000);
    unsetenv("LATCHKEY_CLIENT_TIMEOUT_MS");
    CHECK(lk_timeout_ms() == 30000); /* the old name still works alone */
    setenv("LATCHKEY_NSS_TIMEOUT_MS", "1", 1);
    CHECK(lk_timeout_ms() == (int)LK_TIMEOUT_FLOOR_MS);
    setenv("LATCHKEY_NSS_TIMEOUT_MS", "20000", 1);

    lk_test_begin(
        "breaker: after a timeout, lookups and one-shot calls fail at once without asking");
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    setenv("LATCHKEY_NSS_TIMEOUT_MS", "200", 1);
    fake_set_mode(fx->fake, FAKE_SILENT);
    double t0 = lk_now_ms();
    CHECK(alice(&err) == NSS_STATUS_UNAVAIL && err == EAGAIN);
    CHECK(lk_now_ms() - t0 >= 190.0);
    unsigned reqs = fake_requests(fx->fake);
    t0 = lk_now_ms();
    for (int i = 0; i < 4; i++)
        CHECK(alice(&err) == NSS_STATUS_UNAVAIL && err == EAGAIN);
    CHECK(one_shot_ping(fx) == LK_IO_BACKOFF);
    double fast = lk_now_ms() - t0;
    CHECK(fast < 100.0);
    CHECK(fake_requests(fx->fake) == reqs);
    if (fast >= 100.0)
        fprintf(stderr, "    5 calls with the breaker open took %.0f ms\n", fast);
    fake_set_mode(fx->fake, FAKE_NORMAL); /* the daemon is back, but the period is not over */
    CHECK(alice(&err) == NSS_STATUS_UNAVAIL && fake_requests(fx->fake) == reqs);

    lk_test_begin("breaker: after LK_BREAKER_MS one probe goes through; its answer closes it");
    sleep_ms(LK_BREAKER_MS + 50);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS && one_shot_ping(fx) == LK_IO_OK);

    lk_test_begin("breaker: a probe that times out opens it again; others fail fast meanwhile");
    fake_set_mode(fx->fake, FAKE_SILENT);
    CHECK(alice(&err) == NSS_STATUS_UNAVAIL); /* opens */
    sleep_ms(LK_BREAKER_MS + 50);
    enum nss_status probe = NSS_STATUS_SUCCESS;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slow_probe, &probe) == 0);
    sleep_ms(50); /* the probe is waiting for its answer now */
    t0 = lk_now_ms();
    CHECK(alice(&err) == NSS_STATUS_UNAVAIL);
    CHECK(lk_now_ms() - t0 < 100.0);
    pthread_join(th, NULL);
    CHECK(probe == NSS_STATUS_UNAVAIL);
    fake_set_mode(fx->fake, FAKE_NORMAL);
    reqs = fake_requests(fx->fake);
    CHECK(alice(&err) == NSS_STATUS_UNAVAIL && fake_requests(fx->fake) == reqs); /* open again */
    sleep_ms(LK_BREAKER_MS + 50);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    unsetenv("LATCHKEY_NSS_TIMEOUT_MS");
}

void test_dropped(struct fixture *fx)
{
    struct group gr;
    char buf[1024];
    int err;
    lk_test_begin("connection refused unanswered (daemon budget): UNAVAIL + EAGAIN, no breaker");
    fake_drop_all(fx->fake); /* no kept connection: every lookup needs a new one */
    CHECK(settle_open(fx->fake, 0) == 0);
    fake_set_mode(fx->fake, FAKE_REFUSE);
    double t0 = lk_now_ms();
    for (int i = 0; i < 3; i++) {
        CHECK(alice(&err) == NSS_STATUS_UNAVAIL);
        CHECK(err == EAGAIN); /* ENOENT reads as "no such user" to getpwnam(3) callers */
    }
    CHECK(_nss_latchkey_getgrnam_r("lega", &gr, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(err == EAGAIN);
    CHECK(lk_now_ms() - t0 < 300.0);
    fake_set_mode(fx->fake, FAKE_NORMAL);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS); /* at once: a drop is no timeout */

    lk_test_begin("kept connection evicted by the daemon: reopened, the lookup succeeds");
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    unsigned conns = fake_connections(fx->fake);
    fake_drop_all(fx->fake);
    CHECK(settle_open(fx->fake, 0) == 0);
    CHECK(alice(&err) == NSS_STATUS_SUCCESS);
    CHECK(fake_connections(fx->fake) == conns + 1);
}

static void *slow_lookup(void *p)
{
    int err;
    *(int *)p = alice(&err) == NSS_STATUS_SUCCESS;
    return NULL;
}

/* fork() copies only the calling thread: the slots the parent's other threads were using are
 * marked with the parent's pid, and no thread of the child will ever release them. */
void test_fork_busy_pool(struct fixture *fx)
{
    pthread_t t[LK_NSS_POOL];
    int ok[LK_NSS_POOL];
    lk_test_begin("fork while other threads use every slot: the child pools on its own connection");
    unsigned reqs = fake_requests(fx->fake);
    fake_set_mode(fx->fake, FAKE_SLOW);
    for (int i = 0; i < LK_NSS_POOL; i++)
        CHECK(pthread_create(&t[i], NULL, slow_lookup, &ok[i]) == 0);
    for (int i = 0; i < 100 && fake_requests(fx->fake) < reqs + LK_NSS_POOL; i++)
        sleep_ms(5); /* every slot is claimed once its request arrived */
    unsigned conns = fake_connections(fx->fake);
    pid_t child = fork();
    if (child == 0) {
        int err, good = 1;
        for (int i = 0; i < 3; i++)
            good = good && alice(&err) == NSS_STATUS_SUCCESS;
        _exit(good ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < LK_NSS_POOL; i++) {
        pthread_join(t[i], NULL);
        CHECK(ok[i]);
    }
    fake_set_mode(fx->fake, FAKE_NORMAL);
    CHECK(fake_requests_from(fx->fake, child) == 3);
    CHECK(fake_connections(fx->fake) == conns + 1); /* one-shot connections would be 3 */
    CHECK(lookup_alice());
}
