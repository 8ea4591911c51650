/* Unit tests of libnss_latchkey, part 2: threads, fork, daemon restart, enumeration over
 * pages, initgroups_dyn, and the latchkey-authorized-keys program. See test_nss.c. */
#define _GNU_SOURCE
#include "test_nss.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nss_call.h"
#include "test_util.h"

struct thread_arg {
    int iterations;
    int index;
    atomic_int *bad;
};

static void *hammer(void *p)
{
    struct thread_arg *a = p;
    char buf[1024];
    for (int i = 0; i < a->iterations; i++) {
        struct passwd pw;
        struct group gr;
        int err = 0;
        unsigned uid = 12000u + (unsigned)((i + a->index) % 25);
        int ok;
        switch (i % 3) {
        case 0:
            ok = _nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) ==
                     NSS_STATUS_SUCCESS &&
                 pw.pw_uid == 11001;
            break;
        case 1:
            ok = _nss_latchkey_getpwuid_r(uid, &pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS &&
                 pw.pw_uid == uid;
            break;
        default:
            ok =
                _nss_latchkey_getgrgid_r(10000, &gr, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS &&
                strcmp(gr.gr_name, "lega") == 0;
        }
        if (!ok)
            atomic_fetch_add(a->bad, 1);
    }
    return NULL;
}

/* Their peer has a path (the fake daemon's accepted ends, in this process too, have an unnamed
 * peer). */
int count_client_sockets(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct sockaddr_un sa;
        socklen_t len = sizeof sa;
        memset(&sa, 0, sizeof sa);
        if (e->d_name[0] != '.' &&
            getpeername(atoi(e->d_name), (struct sockaddr *)&sa, &len) == 0 &&
            sa.sun_family == AF_UNIX && sa.sun_path[0] != '\0')
            n++;
    }
    closedir(d);
    return n;
}

/* A lookup from another library's thread-specific-data destructor, after the module's own
 * destructor already closed this thread's connection. */
static pthread_key_t late_key;
static atomic_int late_ok;

static void late_lookup(void *p)
{
    (void)p;
    atomic_fetch_add(&late_ok, lookup_alice());
}

static void *late_thread(void *p)
{
    (void)p;
    pthread_setspecific(late_key, (void *)1);
    (void)lookup_alice(); /* registers the module's destructor after late_key's */
    return NULL;
}

/* Regression: when the module kept one connection per thread, its key destructor closed the
 * connection but left the thread marked registered, so a lookup from a later destructor round
 * reopened a connection nobody closed. Threads now share the pool; nothing may pile up. */
void test_thread_exit_destructors(void)
{
    enum {
        THREADS = 2 * LK_NSS_POOL
    };
    lk_test_begin("lookups from late thread-exit destructors leave no connection behind");
    CHECK(pthread_key_create(&late_key, late_lookup) == 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, late_thread, NULL) == 0);
        pthread_join(t, NULL);
    }
    CHECK(atomic_load(&late_ok) == THREADS);
    CHECK(count_client_sockets() <= LK_NSS_POOL);
    pthread_key_delete(late_key);
}

void test_threads(struct fixture *fx)
{
    enum {
        THREADS = 16
    };
    pthread_t t[THREADS];
    struct thread_arg args[THREADS];
    atomic_int bad = 0;
    lk_test_begin(
        "16 threads x LK_TEST_ITER lookups at once over the pool (and one-shot connections)");
    double t0 = lk_now_ms();
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct thread_arg){ fx->iterations, i, &bad };
        CHECK(pthread_create(&t[i], NULL, hammer, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&bad) == 0);
    if (!lk_test_quiet)
        fprintf(stderr, "    %d lookups in %.0f ms, %u connections\n", THREADS * fx->iterations,
                lk_now_ms() - t0, fake_connections(fx->fake));
    /* what stays open is the pool, whatever the number of threads */
    CHECK(count_client_sockets() <= LK_NSS_POOL);
}

void test_fork(struct fixture *fx)
{
    lk_test_begin("fork: the child opens its own connection, the parent's keeps working");
    CHECK(lookup_alice());
    pid_t me = getpid();
    unsigned parent_before = fake_requests_from(fx->fake, me);
    unsigned conns_before = fake_connections(fx->fake);
    pid_t child = fork();
    if (child == 0) {
        int ok = 1;
        for (int i = 0; i < 10; i++)
            ok = ok && lookup_alice();
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(fake_requests_from(fx->fake, child) == 10);
    CHECK(fake_requests_from(fx->fake, me) == parent_before);
    CHECK(lookup_alice());
    CHECK(fake_requests_from(fx->fake, me) == parent_before + 1);
    CHECK(fake_connections(fx->fake) == conns_before + 1);
}

void test_reconnect_once(struct fixture *fx)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    lk_test_begin("kept connection dropped by the daemon: one reconnect, then success");
    CHECK(lookup_alice());
    unsigned conns = fake_connections(fx->fake);
    fake_set_mode(fx->fake, FAKE_DROP_OLD);
    CHECK(lookup_alice());
    CHECK(fake_connections(fx->fake) == conns + 1);

    lk_test_begin("daemon hangs up every time: exactly one reconnect, then UNAVAIL + EAGAIN");
    conns = fake_connections(fx->fake);
    unsigned reqs = fake_requests(fx->fake);
    fake_set_mode(fx->fake, FAKE_HANGUP);
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(err == EAGAIN); /* busy, not "no such user" */
    CHECK(fake_connections(fx->fake) == conns + 1);
    CHECK(fake_requests(fx->fake) == reqs + 2);
    fake_set_mode(fx->fake, FAKE_NORMAL);
    CHECK(lookup_alice());
}

void test_restart(struct fixture *fx)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    lk_test_begin("daemon restart: the next lookup reconnects");
    CHECK(lookup_alice());
    fake_stop(fx->fake);
    fx->fake = fake_start(fx->dir);
    CHECK(fx->fake != NULL);
    CHECK(lookup_alice());
    CHECK(fake_connections(fx->fake) == 1);

    lk_test_begin("daemon stopped: UNAVAIL at once");
    fake_stop(fx->fake);
    fx->fake = NULL;
    double t0 = lk_now_ms();
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(lk_now_ms() - t0 < 300.0);
}

static void expected_user(int i, char *name, size_t cap)
{
    if (i == 0)
        snprintf(name, cap, "alice");
    else if (i == 1)
        snprintf(name, cap, "biggecos");
    else
        snprintf(name, cap, "user%02d", i - 2);
}

void test_enumeration(struct fixture *fx)
{
    static char big[8192];
    char tiny[40];
    struct passwd pw;
    struct group gr;
    int err = 0, n = 0, in_order = 1;
    enum nss_status st;
    lk_test_begin("getpwent_r over pages; ERANGE returns the same entry on the retry");
    unsigned reqs = fake_requests(fx->fake);
    _nss_latchkey_setpwent(0);
    for (;;) {
        st = _nss_latchkey_getpwent_r(&pw, tiny, sizeof tiny, &err);
        if (st != NSS_STATUS_TRYAGAIN || err != ERANGE)
            break;
        st = _nss_latchkey_getpwent_r(&pw, big, sizeof big, &err);
        if (st != NSS_STATUS_SUCCESS)
            break;
        char want[32];
        expected_user(n, want, sizeof want);
        in_order = in_order && strcmp(pw.pw_name, want) == 0;
        n++;
    }
    CHECK(st == NSS_STATUS_NOTFOUND);
    CHECK(n == FAKE_USERS && in_order);
    /* 27 users in pages of 4: 7 pages and the empty one that ends the list, no refetches */
    CHECK(fake_requests(fx->fake) == reqs + (FAKE_USERS + FAKE_PAGE - 1) / FAKE_PAGE + 1);
    CHECK(_nss_latchkey_getpwent_r(&pw, big, sizeof big, &err) == NSS_STATUS_NOTFOUND);
    _nss_latchkey_setpwent(0); /* rewinds */
    CHECK(_nss_latchkey_getpwent_r(&pw, big, sizeof big, &err) == NSS_STATUS_SUCCESS &&
          strcmp(pw.pw_name, "alice") == 0);
    _nss_latchkey_endpwent();

    lk_test_begin("getgrent_r over pages");
    _nss_latchkey_setgrent(0);
    CHECK(_nss_latchkey_getgrent_r(&gr, big, sizeof big, &err) == NSS_STATUS_SUCCESS &&
          strcmp(gr.gr_name, "lega") == 0);
    CHECK(_nss_latchkey_getgrent_r(&gr, tiny, sizeof tiny, &err) == NSS_STATUS_TRYAGAIN &&
          err == ERANGE);
    CHECK(_nss_latchkey_getgrent_r(&gr, big, sizeof big, &err) == NSS_STATUS_SUCCESS &&
          strcmp(gr.gr_name, "crowd") == 0);
    CHECK(_nss_latchkey_getgrent_r(&gr, big, sizeof big, &err) == NSS_STATUS_NOTFOUND);
    _nss_latchkey_endgrent();
}

enum nss_status call_initgroups(const char *user, gid_t group, const gid_t *have, long start,
                                long size, long limit, gid_t **groups, long *n, long *cap, int *err)
{
    *groups = calloc((size_t)size, sizeof(gid_t));
    for (long i = 0; i < start; i++)
        (*groups)[i] = have[i];
    *n = start;
    *cap = size;
    return _nss_latchkey_initgroups_dyn(user, group, n, cap, groups, limit, err);
}

void test_initgroups(struct fixture *fx)
{
    static char big[8192];
    const gid_t lega = 10000, crowd = 10001, none = 4242;
    struct group gr;
    gid_t *g;
    long n, cap;
    int err = 0;
    unsigned reqs;
    lk_test_begin("initgroups_dyn: member groups appended, the array grows by doubling");
    reqs = fake_requests(fx->fake);
    CHECK(call_initgroups("alice", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_SUCCESS);
    CHECK(n == 2 && cap == 2 && g[0] == lega && g[1] == crowd);
    CHECK(fake_requests(fx->fake) == reqs + 3); /* lega, crowd, the empty page */
    free(g);
    CHECK(call_initgroups("member007", none, NULL, 0, 4, 0, &g, &n, &cap, &err) ==
          NSS_STATUS_SUCCESS);
    CHECK(n == 1 && cap == 4 && g[0] == crowd);
    free(g);

    lk_test_begin("initgroups_dyn: not a member -> nothing appended, NOTFOUND");
    const gid_t have[] = { 77, 78 };
    CHECK(call_initgroups("mallory", none, have, 2, 2, 0, &g, &n, &cap, &err) ==
          NSS_STATUS_NOTFOUND);
    CHECK(n == 2 && cap == 2 && g[0] == 77 && g[1] == 78 && err == ENOENT);
    free(g);
    reqs = fake_requests(fx->fake);
    CHECK(call_initgroups("bad:name", none, NULL, 0, 1, 0, &g, &n, &cap, &err) ==
          NSS_STATUS_NOTFOUND);
    CHECK(n == 0 && fake_requests(fx->fake) == reqs);
    free(g);

    lk_test_begin("initgroups_dyn: `group` and gids already listed are not added again");
    CHECK(call_initgroups("alice", lega, &lega, 1, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_SUCCESS);
    CHECK(n == 2 && g[0] == lega && g[1] == crowd);
    free(g);
    const gid_t both[] = { lega, crowd };
    CHECK(call_initgroups("alice", none, both, 2, 2, 0, &g, &n, &cap, &err) == NSS_STATUS_NOTFOUND);
    CHECK(n == 2 && cap == 2);
    free(g);
    CHECK(call_initgroups("biggecos", lega, &lega, 1, 1, 0, &g, &n, &cap, &err) ==
          NSS_STATUS_NOTFOUND);
    CHECK(n == 1 && g[0] == lega);
    free(g);

    lk_test_begin("initgroups_dyn: limit caps the array and ends the walk");
    reqs = fake_requests(fx->fake);
    CHECK(call_initgroups("alice", none, NULL, 0, 1, 1, &g, &n, &cap, &err) == NSS_STATUS_SUCCESS);
    CHECK(n == 1 && cap == 1 && g[0] == lega && fake_requests(fx->fake) == reqs + 1);
    free(g);
    CHECK(call_initgroups("alice", none, have, 2, 2, 3, &g, &n, &cap, &err) == NSS_STATUS_SUCCESS);
    CHECK(n == 3 && cap == 3 && g[2] == lega);
    free(g);

    lk_test_begin("initgroups_dyn: its own cursor, the getgrent state is left alone");
    _nss_latchkey_setgrent(0);
    CHECK(_nss_latchkey_getgrent_r(&gr, big, sizeof big, &err) == NSS_STATUS_SUCCESS &&
          gr.gr_gid == lega);
    CHECK(call_initgroups("alice", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_SUCCESS);
    CHECK(n == 2);
    free(g);
    CHECK(_nss_latchkey_getgrent_r(&gr, big, sizeof big, &err) == NSS_STATUS_SUCCESS &&
          gr.gr_gid == crowd);
    _nss_latchkey_endgrent();
}

/* Runs latchkey-authorized-keys with args; returns the exit code, stdout in out. */
static int run_keys(const char *user, char *out, size_t cap)
{
    const char *bin = getenv("LK_AK_BIN") ? getenv("LK_AK_BIN") : "./latchkey-authorized-keys";
    int p[2];
    out[0] = '\0';
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        if (user)
            execl(bin, bin, user, (char *)NULL);
        else
            execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(p[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The helper acts only for names NSS resolves and the local passwd file does not list; this
 * process's NSS has no latchkey source, so here it must stay silent without asking the daemon.
 * Keys through real NSS: test/integration/keys.test.ts. */
void test_authorized_keys(struct fixture *fx)
{
    char out[4096];
    lk_test_begin(
        "latchkey-authorized-keys: local, unknown-to-NSS and invalid names never reach the daemon");
    unsigned reqs = fake_requests(fx->fake);
    CHECK(run_keys("root", out, sizeof out) == 0 && out[0] == '\0');
    CHECK(run_keys("alice", out, sizeof out) == 0 && out[0] == '\0'); /* not in this NSS */
    CHECK(run_keys("Not A Name", out, sizeof out) == 0 && out[0] == '\0');
    CHECK(fake_requests(fx->fake) == reqs);
    CHECK(run_keys(NULL, out, sizeof out) == 2);
    setenv("LATCHKEY_SOCKET_DIR", fx->empty_dir, 1);
    CHECK(run_keys("root", out, sizeof out) == 0 &&
          out[0] == '\0'); /* daemon down: root unaffected */
    setenv("LATCHKEY_SOCKET_DIR", fx->dir, 1);
}
