/*
 * Unit tests of libnss_latchkey against a fake daemon (fake_daemon.c) on a temp socket dir:
 * the NSS entry points are called directly. Run by `make -C native test`, also under valgrind.
 * Part 1 here: lookups, buffer sizes, status mapping, unavailability, timeouts, malformed
 * replies, the guards. Part 2 (test_nss_more.c): threads, fork, restart, enumeration,
 * initgroups_dyn, keys.
 */
#define _GNU_SOURCE
#include "test_nss.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lk_client.h"
#include "lk_wire.h"
#include "nss_call.h"
#include "nss_maps.h"
#include "test_util.h"

int lk_test_failures;
int lk_test_quiet;

int lookup_alice(void)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    enum nss_status st = _nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err);
    return st == NSS_STATUS_SUCCESS && pw.pw_uid == 11001 && strcmp(pw.pw_name, "alice") == 0;
}

static void test_success(struct fixture *fx)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    lk_test_begin("getpwnam_r / getpwuid_r succeed, pw_passwd is x");
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS);
    CHECK(strcmp(pw.pw_name, "alice") == 0 && pw.pw_uid == 11001 && pw.pw_gid == 10000);
    CHECK(strcmp(pw.pw_passwd, "x") == 0 && strcmp(pw.pw_gecos, "Fake User") == 0);
    CHECK(strcmp(pw.pw_dir, "/lega/homes/alice") == 0 && strcmp(pw.pw_shell, "/bin/bash") == 0);
    memset(&pw, 0, sizeof pw);
    CHECK(_nss_latchkey_getpwuid_r(12001, &pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS);
    CHECK(pw.pw_name && strcmp(pw.pw_name, "user01") == 0 && pw.pw_uid == 12001);

    lk_test_begin("the pooled connection is reused");
    unsigned conns = fake_connections(fx->fake);
    for (int i = 0; i < 50; i++)
        CHECK(lookup_alice());
    CHECK(fake_connections(fx->fake) == conns);
}

static void test_erange(void)
{
    struct passwd pw;
    struct group gr;
    static char big[64 * 1024];
    char small[512];
    int err = 0;
    lk_test_begin("small buffer: TRYAGAIN + ERANGE, then SUCCESS with a bigger one");
    CHECK(_nss_latchkey_getpwnam_r("biggecos", &pw, small, sizeof small, &err) ==
          NSS_STATUS_TRYAGAIN);
    CHECK(err == ERANGE);
    err = 0;
    CHECK(_nss_latchkey_getpwnam_r("biggecos", &pw, big, sizeof big, &err) == NSS_STATUS_SUCCESS);
    CHECK(strlen(pw.pw_gecos) == 2000 && pw.pw_uid == 11002);
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, NULL, 0, &err) == NSS_STATUS_TRYAGAIN &&
          err == ERANGE);
    /* 300 members need more than 512 bytes, and the pointer array must be aligned */
    CHECK(_nss_latchkey_getgrnam_r("crowd", &gr, small, sizeof small, &err) == NSS_STATUS_TRYAGAIN);
    CHECK(err == ERANGE);
    CHECK(_nss_latchkey_getgrnam_r("crowd", &gr, big + 1, sizeof big - 1, &err) ==
          NSS_STATUS_SUCCESS);
    int n = 0;
    while (gr.gr_mem[n])
        n++;
    CHECK(n == 300 && strcmp(gr.gr_mem[299], "member299") == 0 && gr.gr_gid == 10001);
}

static void test_groups(void)
{
    struct group gr;
    char buf[2048];
    int err = 0;
    lk_test_begin("getgrnam_r / getgrgid_r with members, gr_passwd is x");
    CHECK(_nss_latchkey_getgrnam_r("lega", &gr, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS);
    CHECK(gr.gr_gid == 10000 && strcmp(gr.gr_passwd, "x") == 0);
    CHECK(gr.gr_mem[0] && strcmp(gr.gr_mem[0], "alice") == 0 && gr.gr_mem[1] &&
          strcmp(gr.gr_mem[1], "biggecos") == 0 && gr.gr_mem[2] == NULL);
    CHECK(_nss_latchkey_getgrgid_r(10000, &gr, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS);
    CHECK(strcmp(gr.gr_name, "lega") == 0);
    CHECK(_nss_latchkey_getgrgid_r(4242, &gr, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    CHECK(_nss_latchkey_getgrnam_r("nogroup", &gr, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
}

static void test_notfound_and_name_rule(struct fixture *fx)
{
    struct passwd pw;
    struct group gr;
    char buf[1024];
    int err = 0;
    lk_test_begin("daemon NOTFOUND -> NOTFOUND/ENOENT; daemon UNAVAIL -> UNAVAIL");
    CHECK(_nss_latchkey_getpwnam_r("mallory", &pw, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    CHECK(err == ENOENT);
    CHECK(_nss_latchkey_getpwuid_r(4242, &pw, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    CHECK(_nss_latchkey_getpwnam_r("flaky", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);

    lk_test_begin("names no name rule admits, uid/gid 0: NOTFOUND without a round trip");
    unsigned before = fake_requests(fx->fake);
    const char *bad[] = { "a b",    "",      "root:x", "al/ce",
                          ".",      "..",    "al\rce", "abcdefghijabcdefghijabcdefghijabc",
                          "al\nce", "ålice", "\xff" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(_nss_latchkey_getpwnam_r(bad[i], &pw, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
        CHECK(_nss_latchkey_getgrnam_r(bad[i], &gr, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    }
    CHECK(_nss_latchkey_getpwnam_r(NULL, &pw, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    CHECK(_nss_latchkey_getpwuid_r(0, &pw, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    CHECK(_nss_latchkey_getgrgid_r(0, &gr, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    CHECK(fake_requests(fx->fake) == before);
    /* the longest valid name (32) does go to the daemon */
    CHECK(_nss_latchkey_getpwnam_r("abcdefghijabcdefghijabcdefghij_.", &pw, buf, sizeof buf,
                                   &err) == NSS_STATUS_NOTFOUND);
    CHECK(fake_requests(fx->fake) == before + 1);

    /* A shim applying a default regex would answer a false NOTFOUND for a name a site
     * name_regex admits (upper case, '@'). Names only the configured rule can judge must
     * reach the daemon (the fake says NOTFOUND). */
    lk_test_begin("names only the daemon's configured rule can judge go to the daemon");
    const char *site[] = { "Alice", "-x", "1abc", "j.doe@ega", "J_Doe" };
    before = fake_requests(fx->fake);
    for (size_t i = 0; i < sizeof site / sizeof site[0]; i++) {
        CHECK(_nss_latchkey_getpwnam_r(site[i], &pw, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
        CHECK(_nss_latchkey_getgrnam_r(site[i], &gr, buf, sizeof buf, &err) == NSS_STATUS_NOTFOUND);
    }
    CHECK(fake_requests(fx->fake) == before + 2 * sizeof site / sizeof site[0]);
}

/* A PW_BY_UID / GR_BY_GID reply body (after the length prefix) naming `name`. */
static size_t by_id_reply(uint8_t *out, size_t cap, int group, const char *name, const char *member)
{
    struct lk_writer w;
    lk_wr_init(&w, out, cap);
    lk_wr_u16(&w, (uint16_t)LK_PROTO_VERSION);
    lk_wr_u16(&w, group ? LK_OP_GR_BY_GID : LK_OP_PW_BY_UID);
    lk_wr_u16(&w, LK_STATUS_OK);
    lk_wr_cstr(&w, name);
    if (group) {
        lk_wr_u32(&w, 10000);
        lk_wr_u16(&w, 1);
        lk_wr_cstr(&w, member);
    } else {
        lk_wr_u32(&w, 11001);
        lk_wr_u32(&w, 10000);
        lk_wr_cstr(&w, "gecos");
        lk_wr_cstr(&w, "/lega/homes/x");
        lk_wr_cstr(&w, "/bin/bash");
    }
    return w.bad ? 0 : w.len;
}

/* Regression: a received name was only checked for ':' and newline, so by uid/gid (where no
 * requested name is compared) a daemon could hand out "../x"; DESIGN.md forbids '/' in names. */
static void test_record_names(void)
{
    uint8_t body[256];
    struct passwd pw;
    struct group gr;
    char buf[1024];
    int err = 0;
    size_t n;
    lk_test_begin("a received user/group/member name holding '/' is a protocol error");
    n = by_id_reply(body, sizeof body, 0, "alice", NULL);
    CHECK(n && lk_nss_passwd_reply(body, n, LK_OP_PW_BY_UID, NULL, 11001, &pw, buf, sizeof buf,
                                   &err) == NSS_STATUS_SUCCESS);
    n = by_id_reply(body, sizeof body, 0, "../x", NULL);
    CHECK(n && lk_nss_passwd_reply(body, n, LK_OP_PW_BY_UID, NULL, 11001, &pw, buf, sizeof buf,
                                   &err) == NSS_STATUS_UNAVAIL);
    n = by_id_reply(body, sizeof body, 1, "lega", "alice");
    CHECK(n && lk_nss_group_reply(body, n, LK_OP_GR_BY_GID, NULL, 10000, &gr, buf, sizeof buf,
                                  &err) == NSS_STATUS_SUCCESS);
    n = by_id_reply(body, sizeof body, 1, "le/ga", "alice");
    CHECK(n && lk_nss_group_reply(body, n, LK_OP_GR_BY_GID, NULL, 10000, &gr, buf, sizeof buf,
                                  &err) == NSS_STATUS_UNAVAIL);
    n = by_id_reply(body, sizeof body, 1, "lega", "a/b");
    CHECK(n && lk_nss_group_reply(body, n, LK_OP_GR_BY_GID, NULL, 10000, &gr, buf, sizeof buf,
                                  &err) == NSS_STATUS_UNAVAIL);
}

static void test_unavailable(struct fixture *fx)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    lk_test_begin("no socket: UNAVAIL at once");
    setenv("LATCHKEY_SOCKET_DIR", fx->empty_dir, 1);
    double t0 = lk_now_ms();
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(err == ENOENT);
    CHECK(_nss_latchkey_getpwuid_r(11001, &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(lk_now_ms() - t0 < 300.0);

    lk_test_begin("socket file but nobody listening (refused: the daemon died): UNAVAIL + EAGAIN "
                  "at once");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.60s/nss.sock", fx->empty_dir);
    const char *path = sa.sun_path;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(s);
    t0 = lk_now_ms();
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(err == EAGAIN);
    CHECK(lk_now_ms() - t0 < 300.0);
    unlink(path);

    lk_test_begin("socket dir path too long: UNAVAIL");
    setenv("LATCHKEY_SOCKET_DIR",
           "/tmp/"
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
           1);
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    setenv("LATCHKEY_SOCKET_DIR", fx->dir, 1);
    CHECK(lookup_alice());
}

static void test_malformed(struct fixture *fx)
{
    /* which lookups each misbehaviour breaks: by-name/uid passwd, group, passwd list */
    static const struct {
        enum fake_mode mode;
        const char *name;
        int pw, gr, list;
    } modes[] = {
        { FAKE_TRUNCATED, "truncated", 1, 1, 1 },
        { FAKE_OVERSIZED, "length > MAX_NSS_REPLY", 1, 1, 1 },
        { FAKE_HUGE_LENGTH, "length 2^32-1", 1, 1, 1 },
        { FAKE_WRONG_OPCODE, "wrong opcode", 1, 1, 1 },
        { FAKE_WRONG_VERSION, "wrong version", 1, 1, 1 },
        { FAKE_COUNT_OVERFLOW, "count overflow", 0, 1, 1 },
        { FAKE_TRAILING, "trailing bytes", 1, 1, 1 },
        { FAKE_WRONG_ENTRY, "another user than asked", 1, 0, 0 },
        { FAKE_ROOT, "uid 0", 1, 0, 0 },
        { FAKE_HANGUP, "hang up", 1, 1, 1 },
    };
    struct passwd pw;
    struct group gr;
    char buf[4096];
    int err = 0;
    lk_test_begin("malformed replies -> UNAVAIL, never a crash; the next lookup works");
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        fake_set_mode(fx->fake, modes[i].mode);
        enum nss_status a = _nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err);
        enum nss_status b = _nss_latchkey_getpwuid_r(12001, &pw, buf, sizeof buf, &err);
        enum nss_status c = _nss_latchkey_getgrnam_r("lega", &gr, buf, sizeof buf, &err);
        _nss_latchkey_setpwent(0);
        enum nss_status d = _nss_latchkey_getpwent_r(&pw, buf, sizeof buf, &err);
        _nss_latchkey_endpwent();
        enum nss_status broken = NSS_STATUS_UNAVAIL, fine = NSS_STATUS_SUCCESS;
        int ok = a == (modes[i].pw ? broken : fine) && b == (modes[i].pw ? broken : fine) &&
                 c == (modes[i].gr ? broken : fine) && d == (modes[i].list ? broken : fine);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "    mode %s: %d %d %d %d\n", modes[i].name, a, b, c, d);
        fake_set_mode(fx->fake, FAKE_NORMAL);
        CHECK(lookup_alice());
    }
}

static void test_guards(struct fixture *fx)
{
    struct passwd pw;
    char buf[1024];
    int err = 0;
    lk_test_begin("LATCHKEY_NSS_DISABLE=1 and the recursion guard: UNAVAIL, no request");
    unsigned before = fake_requests(fx->fake);
    setenv("LATCHKEY_NSS_DISABLE", "1", 1);
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    _nss_latchkey_setpwent(0);
    CHECK(_nss_latchkey_getpwent_r(&pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    _nss_latchkey_endpwent();
    unsetenv("LATCHKEY_NSS_DISABLE");
    CHECK(lk_nss_enter() == 0); /* as if a lookup were in progress on this thread */
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(_nss_latchkey_getgrgid_r(10000, (struct group *)(void *)&pw, buf, sizeof buf, &err) ==
          NSS_STATUS_UNAVAIL);
    lk_nss_leave();
    CHECK(fake_requests(fx->fake) == before);
    CHECK(lookup_alice());
}

static void test_initgroups_unavail(struct fixture *fx)
{
    const gid_t none = 4242, have[] = { 77, 78 };
    gid_t *g;
    long n, cap;
    int err = 0;
    unsigned reqs;
    lk_test_begin("initgroups_dyn: daemon down, bad reply, guards -> UNAVAIL, array untouched");
    setenv("LATCHKEY_SOCKET_DIR", fx->empty_dir, 1);
    CHECK(call_initgroups("alice", none, have, 2, 2, 0, &g, &n, &cap, &err) == NSS_STATUS_UNAVAIL);
    CHECK(n == 2 && err == ENOENT);
    free(g);
    setenv("LATCHKEY_SOCKET_DIR", fx->dir, 1);
    fake_set_mode(fx->fake, FAKE_TRAILING);
    CHECK(call_initgroups("alice", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_UNAVAIL);
    CHECK(n == 0);
    free(g);
    fake_set_mode(fx->fake, FAKE_NORMAL);
    reqs = fake_requests(fx->fake);
    setenv("LATCHKEY_NSS_DISABLE", "1", 1);
    CHECK(call_initgroups("alice", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_UNAVAIL);
    free(g);
    unsetenv("LATCHKEY_NSS_DISABLE");
    CHECK(lk_nss_enter() == 0); /* as if a lookup were in progress on this thread */
    CHECK(call_initgroups("alice", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_UNAVAIL);
    CHECK(n == 0);
    free(g);
    lk_nss_leave();
    CHECK(fake_requests(fx->fake) == reqs);

    lk_test_begin(
        "initgroups_dyn: a local account (root) is answered NOTFOUND without asking the daemon");
    setenv("LATCHKEY_SOCKET_DIR", fx->empty_dir, 1);
    CHECK(call_initgroups("root", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_NOTFOUND);
    CHECK(n == 0 && err == ENOENT);
    free(g);
    setenv("LATCHKEY_SOCKET_DIR", fx->dir, 1);
    CHECK(call_initgroups("root", none, NULL, 0, 1, 0, &g, &n, &cap, &err) == NSS_STATUS_NOTFOUND);
    free(g);
    CHECK(fake_requests(fx->fake) == reqs);
}

int main(int argc, char **argv)
{
    struct fixture fx;
    memset(&fx, 0, sizeof fx);
    lk_test_quiet = argc > 1 && strcmp(argv[1], "--quiet") == 0;
    if (geteuid() != 0) { /* the shims trust only a daemon running as root, fakes included */
        fprintf(stderr, "test_nss: must run as root\n");
        return 1;
    }
    const char *iter = getenv("LK_TEST_ITER");
    fx.iterations = iter ? atoi(iter) : 1000;
    snprintf(fx.dir, sizeof fx.dir, "/tmp/lk-test-XXXXXX");
    snprintf(fx.empty_dir, sizeof fx.empty_dir, "/tmp/lk-empty-XXXXXX");
    if (!mkdtemp(fx.dir) || !mkdtemp(fx.empty_dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("LATCHKEY_SOCKET_DIR", fx.dir, 1);
    unsetenv("LATCHKEY_NSS_TIMEOUT_MS");
    unsetenv("LATCHKEY_CLIENT_TIMEOUT_MS");
    unsetenv("LATCHKEY_NSS_DISABLE");
    fx.fake = fake_start(fx.dir);
    if (!fx.fake)
        return 1;
    fprintf(stderr, "test_nss: fake daemon on %s\n", fx.dir);

    test_success(&fx);
    test_erange();
    test_groups();
    test_notfound_and_name_rule(&fx);
    test_record_names();
    test_unavailable(&fx);
    test_timeout(&fx);
    test_malformed(&fx);
    test_guards(&fx);
    test_enumeration(&fx);
    test_initgroups(&fx);
    test_initgroups_unavail(&fx);
    test_threads(&fx);
    test_thread_exit_destructors();
    test_pool_bound(&fx);
    test_idle(&fx);
    test_breaker(&fx);
    test_dropped(&fx);
    test_fork_busy_pool(&fx);
    test_fork(&fx);
    test_reconnect_once(&fx);
    test_authorized_keys(&fx);
    test_impostor(&fx);
    test_daemon_user_env(&fx);
    test_daemon_user_passwd();
    test_restart(&fx); /* last: stops the fake for good */

    rmdir(fx.dir);
    rmdir(fx.empty_dir);
    fprintf(stderr, "test_nss: %s (%d failure%s)\n", lk_test_failures ? "FAILED" : "ok",
            lk_test_failures, lk_test_failures == 1 ? "" : "s");
    return lk_test_failures ? 1 : 0;
}
