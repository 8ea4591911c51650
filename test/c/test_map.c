/*
 * The shared-memory map: lk_map_write.c (the daemon's writer) against lk_map.c and
 * native/nss/nss_map.c (the NSS module's reader), through real files and mappings. Run by
 * `make -C native test` (and under valgrind). `--write-corpus DIR` writes map files for the fuzzer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <grp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lk_map.h"
#include "lk_map_write.h"
#include "nss_map.h"
#include "test_util.h"

int lk_test_failures;
int lk_test_quiet;

static char dir[64];
static char path[128];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The file at `path`, mapped read-only, checked. */
struct ro {
    void *base;
    size_t size;
    struct lk_map_view v;
};

static int ro_open(struct ro *r)
{
    memset(r, 0, sizeof *r);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return -1;
    r->size = (size_t)st.st_size;
    r->base = mmap(NULL, r->size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (r->base == MAP_FAILED)
        return -1;
    return lk_map_view_open(&r->v, r->base, r->size);
}

static void ro_close(struct ro *r)
{
    if (r->base && r->base != MAP_FAILED)
        munmap(r->base, r->size);
}

static struct lkw_user user(const char *name, uint32_t uid, const char *gecos, uint64_t exp)
{
    static char home[64];
    snprintf(home, sizeof home, "/ega/inbox/%s", name);
    struct lkw_user u = { name, gecos, home, "/bin/bash", uid, 10000, exp };
    return u;
}

static enum lk_map_result by_name(struct ro *r, const char *name, struct lk_map_rec *rec)
{
    static uint8_t buf[LK_MAP_MAX_RECORD];
    return lk_map_find_name(&r->v, name, (int64_t)now_ms(), buf, rec);
}

static enum lk_map_result by_uid(struct ro *r, uint32_t uid, struct lk_map_rec *rec)
{
    static uint8_t buf[LK_MAP_MAX_RECORD];
    return lk_map_find_uid(&r->v, uid, (int64_t)now_ms(), buf, rec);
}

static void test_basics(void)
{
    lk_test_begin("map: users, negative entries, renames, removal, expiry, the group");
    struct lk_map_writer *w;
    CHECK(lkw_open(&w, path, 4) == 0);
    uint64_t exp = now_ms() + 600000;
    struct lkw_user a = user("alice", 20001, "Alice A", exp);
    CHECK(lkw_put_user(w, &a) == 0);
    CHECK(lkw_put_neg_name(w, "ghost", exp) == 0);
    CHECK(lkw_put_neg_uid(w, 30000, exp) == 0);
    CHECK(lkw_set_group(w, "lega", 10000, exp) == 0);
    struct ro r;
    struct lk_map_rec rec;
    CHECK(ro_open(&r) == 0);
    CHECK(by_name(&r, "alice", &rec) == LK_MAP_FOUND && rec.uid == 20001 &&
          strcmp(rec.gecos.p, "Alice A") == 0 && strcmp(rec.dir.p, "/ega/inbox/alice") == 0);
    CHECK(by_uid(&r, 20001, &rec) == LK_MAP_FOUND && strcmp(rec.name.p, "alice") == 0);
    CHECK(by_name(&r, "ghost", &rec) == LK_MAP_ABSENT);
    CHECK(by_uid(&r, 30000, &rec) == LK_MAP_ABSENT);
    CHECK(by_name(&r, "bob", &rec) == LK_MAP_ASK);
    CHECK(by_uid(&r, 20002, &rec) == LK_MAP_ASK);
    uint8_t buf[LK_MAP_MAX_RECORD];
    CHECK(lk_map_find_group(&r.v, "lega", 0, (int64_t)now_ms(), buf, &rec) == LK_MAP_FOUND);
    CHECK(lk_map_find_group(&r.v, NULL, 10000, (int64_t)now_ms(), buf, &rec) == LK_MAP_FOUND);
    CHECK(lk_map_find_group(&r.v, "wheel", 0, (int64_t)now_ms(), buf, &rec) == LK_MAP_ABSENT);
    /* The same group again (every reload says it): its expiry moves, no new file. */
    struct lkw_stats g0, g1;
    lkw_get_stats(w, &g0);
    CHECK(lkw_set_group(w, "lega", 10000, exp + 5) == 0);
    lkw_get_stats(w, &g1);
    CHECK(g1.rebuilds == g0.rebuilds && __atomic_load_n(&r.v.h->retired, __ATOMIC_ACQUIRE) == 0);
    CHECK(lk_map_find_group(&r.v, "lega", 0, (int64_t)now_ms(), buf, &rec) == LK_MAP_FOUND &&
          rec.expires_ms == exp + 5);

    /* A negative entry removed on its own (a stored local user was added): the map then has no
     * answer, and a user of the same name stays where removing a negative is asked. */
    CHECK(lkw_put_neg_name(w, "later", exp) == 0 && lkw_put_neg_uid(w, 9000, exp) == 0);
    CHECK(by_name(&r, "later", &rec) == LK_MAP_ABSENT && by_uid(&r, 9000, &rec) == LK_MAP_ABSENT);
    CHECK(lkw_remove_neg_name(w, "later") == 0 && lkw_remove_neg_uid(w, 9000) == 0);
    CHECK(by_name(&r, "later", &rec) == LK_MAP_ASK && by_uid(&r, 9000, &rec) == LK_MAP_ASK);
    CHECK(lkw_remove_neg_name(w, "alice") == 0 && lkw_remove_neg_uid(w, 20001) == 0);
    CHECK(by_name(&r, "alice", &rec) == LK_MAP_FOUND && by_uid(&r, 20001, &rec) == LK_MAP_FOUND);

    /* A refresh with the same data moves the expiry in place (no new record). */
    struct lkw_stats s0, s1;
    lkw_get_stats(w, &s0);
    a.expires_ms = exp + 1000;
    CHECK(lkw_put_user(w, &a) == 0);
    lkw_get_stats(w, &s1);
    CHECK(s1.data_used == s0.data_used);
    CHECK(by_name(&r, "alice", &rec) == LK_MAP_FOUND && rec.expires_ms == exp + 1000);

    /* alice gets a new uid: the old uid no longer answers. */
    a = user("alice", 20005, "Alice A", exp);
    CHECK(lkw_put_user(w, &a) == 0);
    CHECK(by_uid(&r, 20001, &rec) == LK_MAP_ASK);
    CHECK(by_uid(&r, 20005, &rec) == LK_MAP_FOUND && strcmp(rec.name.p, "alice") == 0);
    /* bob takes alice's uid: alice's name no longer answers. */
    struct lkw_user b = user("bob", 20005, "Bob", exp);
    CHECK(lkw_put_user(w, &b) == 0);
    CHECK(by_name(&r, "alice", &rec) == LK_MAP_ASK);
    CHECK(by_uid(&r, 20005, &rec) == LK_MAP_FOUND && strcmp(rec.name.p, "bob") == 0);
    /* a negative entry for a user's name removes the user under both keys */
    CHECK(lkw_put_neg_name(w, "bob", exp) == 0);
    CHECK(by_name(&r, "bob", &rec) == LK_MAP_ABSENT);
    CHECK(by_uid(&r, 20005, &rec) == LK_MAP_ASK);
    /* a user replaces the negative entry for its name */
    CHECK(lkw_put_user(w, &b) == 0);
    CHECK(by_name(&r, "bob", &rec) == LK_MAP_FOUND);
    CHECK(lkw_remove_uid(w, 20005) == 0);
    CHECK(by_name(&r, "bob", &rec) == LK_MAP_ASK);
    /* expired records send the lookup to the socket */
    struct lkw_user old = user("carol", 20010, "Carol", now_ms() - 1);
    CHECK(lkw_put_user(w, &old) == 0);
    CHECK(by_name(&r, "carol", &rec) == LK_MAP_ASK);
    CHECK(lkw_put_neg_uid(w, 30001, now_ms() - 1) == 0);
    CHECK(by_uid(&r, 30001, &rec) == LK_MAP_ASK);
    /* a record the map cannot hold is not published, and what was there goes */
    char big[3000];
    memset(big, 'g', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct lkw_user huge = user("dave", 20011, "Dave", exp);
    CHECK(lkw_put_user(w, &huge) == 0);
    huge.gecos = big;
    CHECK(lkw_put_user(w, &huge) == 1);
    CHECK(by_name(&r, "dave", &rec) == LK_MAP_ASK && by_uid(&r, 20011, &rec) == LK_MAP_ASK);
    /* ':' in a field is refused by the reader, as in a socket reply */
    struct lkw_user colon = user("erin", 20012, "Erin:0:0", exp);
    CHECK(lkw_put_user(w, &colon) == 0);
    CHECK(by_name(&r, "erin", &rec) == LK_MAP_ASK);
    /* a reset keeps only what it is told to, in a new file; the old one is retired */
    CHECK(lkw_put_user(w, &a) == 0);
    CHECK(lkw_reset(w, 0, 1) == 0);
    CHECK(__atomic_load_n(&r.v.h->retired, __ATOMIC_ACQUIRE) == 1);
    ro_close(&r);
    CHECK(ro_open(&r) == 0);
    CHECK(by_name(&r, "alice", &rec) == LK_MAP_ASK);
    CHECK(by_name(&r, "ghost", &rec) == LK_MAP_ABSENT);
    CHECK(lk_map_find_group(&r.v, "lega", 0, (int64_t)now_ms(), buf, &rec) == LK_MAP_FOUND);
    ro_close(&r);
    lkw_close(w, 1);
    CHECK(access(path, F_OK) != 0);
}

static void test_growth(void)
{
    lk_test_begin("map: 20000 users grow the map through rebuilds; every one answers");
    struct lk_map_writer *w;
    CHECK(lkw_open(&w, path, 0) == 0);
    uint64_t exp = now_ms() + 600000;
    char name[32], gecos[32];
    for (uint32_t i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "u%05u", i);
        snprintf(gecos, sizeof gecos, "User %u", i);
        struct lkw_user u = user(name, 100000 + i, gecos, exp);
        if (lkw_put_user(w, &u) != 0) {
            CHECK(!"put_user");
            break;
        }
        if (i % 3 == 0) {
            snprintf(name, sizeof name, "n%05u", i);
            CHECK(lkw_put_neg_name(w, name, exp) >= 0);
        }
    }
    struct lkw_stats s;
    lkw_get_stats(w, &s);
    CHECK(s.users == 20000 && s.rebuilds > 1);
    struct ro r;
    CHECK(ro_open(&r) == 0);
    int bad = 0;
    struct lk_map_rec rec;
    for (uint32_t i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "u%05u", i);
        if (by_name(&r, name, &rec) != LK_MAP_FOUND || rec.uid != 100000 + i ||
            by_uid(&r, 100000 + i, &rec) != LK_MAP_FOUND || strcmp(rec.name.p, name) != 0)
            bad++;
    }
    CHECK(bad == 0);
    /* negative names are capped at max(1024, users) */
    CHECK(s.neg_names > 0 && s.neg_names <= 20000);
    ro_close(&r);
    lkw_close(w, 1);
}

/* ---- the NSS reader under a writer that keeps changing the map ------------------------------ */

static atomic_int stop;
static atomic_long seen_found, seen_bad, lookups;

static void expect_consistent(const struct passwd *pw)
{
    unsigned i;
    char want[32];
    if (sscanf(pw->pw_name, "c%u", &i) != 1 || pw->pw_uid != 60000 + i) {
        atomic_fetch_add(&seen_bad, 1);
        return;
    }
    snprintf(want, sizeof want, "Churn %u", i);
    if (strcmp(pw->pw_gecos, want) != 0)
        atomic_fetch_add(&seen_bad, 1);
    atomic_fetch_add(&seen_found, 1);
}

static void *reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char name[32], buf[1024];
    struct passwd pw;
    while (!atomic_load(&stop)) {
        atomic_fetch_add(&lookups, 1);
        unsigned i = (unsigned)rand_r(&seed) % 600;
        enum nss_status st;
        int err;
        snprintf(name, sizeof name, "c%u", i);
        if (lk_nss_map_passwd(name, 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_DONE &&
            st == NSS_STATUS_SUCCESS)
            expect_consistent(&pw);
        if (lk_nss_map_passwd(NULL, 60000 + i, &pw, buf, sizeof buf, &st, &err) ==
                LK_NSS_MAP_DONE &&
            st == NSS_STATUS_SUCCESS)
            expect_consistent(&pw);
    }
    return NULL;
}

static void churn(struct lk_map_writer *w, unsigned rounds)
{
    char name[32], gecos[32];
    uint64_t exp = now_ms() + 600000;
    for (unsigned k = 0; k < rounds; k++) {
        unsigned i = k % 600;
        snprintf(name, sizeof name, "c%u", i);
        snprintf(gecos, sizeof gecos, "Churn %u", i);
        struct lkw_user u = user(name, 60000 + i, gecos, exp + k);
        CHECK(lkw_put_user(w, &u) == 0);
        if (k % 7 == 0)
            CHECK(lkw_remove_name(w, name) == 0);
        if (k % 11 == 0)
            CHECK(lkw_put_neg_uid(w, 60000 + ((i + 300) % 600), exp) >= 0);
        if (k % 5000 == 4999)
            CHECK(lkw_reset(w, 1, 1) == 0); /* a new file under the readers */
    }
}

static void test_concurrent(int iterations)
{
    lk_test_begin("map: 4 reader threads (NSS reader, remapping) against a churning writer");
    struct lk_map_writer *w;
    CHECK(lkw_open(&w, path, 0) == 0);
    lk_nss_map_reset_for_tests();
    pthread_t t[4];
    atomic_store(&stop, 0);
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, reader, (void *)(i + 1));
    /* At least this many rounds, and on until the readers really ran beside the writer: on a
     * loaded machine the churn can be over before a thread is first scheduled. */
    double until = lk_now_ms() + 10000;
    churn(w, (unsigned)iterations * 40);
    while (atomic_load(&lookups) < 4000 && lk_now_ms() < until)
        churn(w, 1000);
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&seen_bad) == 0);
    CHECK(atomic_load(&seen_found) > 0);

    lk_test_begin("map: a fork child keeps reading, and remaps after a reset");
    pid_t pid = fork();
    if (pid == 0) {
        char buf[1024];
        struct passwd pw;
        enum nss_status st;
        int err;
        for (int k = 0; k < 200; k++) {
            if (lk_nss_map_passwd("c1", 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_DONE &&
                st == NSS_STATUS_SUCCESS && pw.pw_uid == 60001)
                _exit(0);
            usleep(5000);
        }
        _exit(1);
    }
    uint64_t exp = now_ms() + 600000;
    struct lkw_user u = user("c1", 60001, "Churn 1", exp);
    CHECK(lkw_put_user(w, &u) == 0);
    CHECK(lkw_reset(w, 1, 1) == 0);
    int status = -1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    lk_test_begin("map: a retired map with no successor sends lookups to the socket");
    lkw_close(w, 1);
    char buf[1024];
    struct passwd pw;
    enum nss_status st;
    int err;
    CHECK(lk_nss_map_passwd("c1", 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_ASK);
    lk_nss_map_reset_for_tests();
}

static void test_refused_files(void)
{
    lk_test_begin("map: the reader refuses a group-writable file and LATCHKEY_NSS_NO_MMAP=1");
    struct lk_map_writer *w;
    CHECK(lkw_open(&w, path, 0) == 0);
    struct lkw_user u = user("frank", 20020, "Frank", now_ms() + 600000);
    CHECK(lkw_put_user(w, &u) == 0);
    char buf[1024];
    struct passwd pw;
    enum nss_status st;
    int err;
    lk_nss_map_reset_for_tests();
    CHECK(lk_nss_map_passwd("frank", 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_DONE);
    setenv("LATCHKEY_NSS_NO_MMAP", "1", 1);
    lk_nss_map_reset_for_tests();
    CHECK(lk_nss_map_passwd("frank", 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_ASK);
    unsetenv("LATCHKEY_NSS_NO_MMAP");
    chmod(path, 0664);
    lk_nss_map_reset_for_tests();
    CHECK(lk_nss_map_passwd("frank", 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_ASK);
    chmod(path, 0644);
    /* another owner than root or the daemon account */
    CHECK(chown(path, 12345, 12345) == 0);
    lk_nss_map_reset_for_tests();
    CHECK(lk_nss_map_passwd("frank", 0, &pw, buf, sizeof buf, &st, &err) == LK_NSS_MAP_ASK);
    CHECK(chown(path, 0, 0) == 0);
    lk_nss_map_reset_for_tests();
    CHECK(lk_nss_map_passwd("frank", 0, &pw, buf, 8, &st, &err) == LK_NSS_MAP_DONE &&
          st == NSS_STATUS_TRYAGAIN && err == ERANGE);
    lk_nss_map_reset_for_tests();
    lkw_close(w, 1);
}

static void test_collisions(void)
{
    lk_test_begin("map: names chosen to collide (the key is readable) never force a rebuild, nor "
                  "keep a user out");
    struct lk_map_writer *w;
    CHECK(lkw_open(&w, path, 0) == 0);
    struct ro r;
    CHECK(ro_open(&r) == 0);
    uint64_t exp = now_ms() + 600000;
    /* What any local user can do: read the key from the 0644 file and pick names that share one
     * home slot, more of them than a probe may pass. */
    uint32_t mask = r.v.slots - 1, home = (uint32_t)lk_map_hash_name(&r.v, "alice", 5) & mask;
    char name[32];
    unsigned n = 0;
    struct lkw_stats before, after;
    lkw_get_stats(w, &before);
    int unpublished = 0;
    for (unsigned i = 0; n < LK_MAP_MAX_PROBE + 8 && i < 10000000; i++) {
        snprintf(name, sizeof name, "x%u", i);
        if (((uint32_t)lk_map_hash_name(&r.v, name, strlen(name)) & mask) != home)
            continue;
        n++;
        int rc = lkw_put_neg_name(w, name, exp);
        CHECK(rc == 0 || rc == 1);
        unpublished += rc == 1;
    }
    lkw_get_stats(w, &after);
    CHECK(n == LK_MAP_MAX_PROBE + 8);
    CHECK(unpublished > 0);
    CHECK(after.rebuilds == before.rebuilds);
    CHECK(__atomic_load_n(&r.v.h->retired, __ATOMIC_ACQUIRE) == 0);
    /* a user whose probe window they fill takes a negative entry's place: no rebuild either */
    struct lkw_user a = user("alice", 20001, "Alice", exp);
    CHECK(lkw_put_user(w, &a) == 0);
    lkw_get_stats(w, &after);
    CHECK(after.rebuilds == before.rebuilds);
    struct lk_map_rec rec;
    CHECK(by_name(&r, "alice", &rec) == LK_MAP_FOUND);
    ro_close(&r);
    lkw_close(w, 1);
}

static void test_restart_without_room(void)
{
    lk_test_begin("map: a writer that cannot create its map retires and removes the previous one");
    struct lk_map_writer *w;
    CHECK(lkw_open(&w, path, 0) == 0);
    struct lkw_user a = user("alice", 20001, "Alice", now_ms() + 600000);
    CHECK(lkw_put_user(w, &a) == 0);
    struct ro r;
    CHECK(ro_open(&r) == 0);
    /* A crashed daemon: its writer is gone without close(). */
    pid_t pid = fork();
    if (pid == 0) {
        /* The next daemon finds no room: files cannot grow past 4 KiB here. */
        struct rlimit lim = { 4096, 4096 };
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        struct lk_map_writer *w2;
        int rc = lkw_open(&w2, path, 0);
        int ok = rc < 0 && strstr(lkw_error(w2), "sizing") != NULL;
        lkw_close(w2, 0);
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(__atomic_load_n(&r.v.h->retired, __ATOMIC_ACQUIRE) == 1);
    CHECK(access(path, F_OK) != 0);
    ro_close(&r);
    lkw_close(w, 0);
}

/* Map files for the fuzzer's corpus: a small one and one with every kind of record. */
static int write_corpus(const char *out)
{
    struct lk_map_writer *w;
    if (lkw_open(&w, path, 0) != 0)
        return 1;
    uint64_t exp = UINT64_MAX / 2;
    struct lkw_user a = user("alice", 20001, "Alice", exp);
    struct lkw_user b = user("bob", 20002, "Bob", exp);
    lkw_put_user(w, &a);
    lkw_put_user(w, &b);
    lkw_put_neg_name(w, "ghost", exp);
    lkw_put_neg_uid(w, 30000, exp);
    lkw_set_group(w, "lega", 10000, exp);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp %s %s/map-small", path, out);
    int rc = system(cmd);
    lkw_close(w, 1);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    lk_test_quiet = argc > 1 && strcmp(argv[1], "--quiet") == 0;
    snprintf(dir, sizeof dir, "/tmp/lk-map-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/nss.map", dir);
    setenv("LATCHKEY_SOCKET_DIR", dir, 1);
    unsetenv("LATCHKEY_NSS_NO_MMAP");
    unsetenv("LATCHKEY_NSS_DISABLE");
    if (argc > 2 && strcmp(argv[1], "--write-corpus") == 0) {
        int rc = write_corpus(argv[2]);
        rmdir(dir);
        return rc;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "test_map: must run as root (the reader trusts root-owned maps)\n");
        return 1;
    }
    const char *iter = getenv("LK_TEST_ITER");
    test_basics();
    test_growth();
    test_concurrent(iter ? atoi(iter) : 1000);
    test_refused_files();
    test_collisions();
    test_restart_without_room();
    rmdir(dir);
    fprintf(stderr, "test_map: %s (%d failure%s)\n", lk_test_failures ? "FAILED" : "ok",
            lk_test_failures, lk_test_failures == 1 ? "" : "s");
    return lk_test_failures ? 1 : 0;
}
