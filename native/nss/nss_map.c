/* nss_map: see nss_map.h. */
#define _GNU_SOURCE
#include "nss_map.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lk_client.h"
#include "lk_map.h"
#include "lk_peer.h"
#include "lk_records.h"

/* A failed open is not retried for this long: a process that started before the daemon, or a
 * host with no map, pays one open(2) per interval, not one per lookup. */
#define REOPEN_BACKOFF_MS 250
/* Larger files are refused (a 16M-slot table and its records fit well below). */
#define MAX_FILE ((size_t)1 << 31)

struct mapping {
    struct lk_map_view v;
    void *base;
    size_t size;
    uint32_t unseen; /* on the retired list: stripes not yet seen at zero since the swap */
    struct mapping *next;
};

/* Readers never lock, and never write a cache line another thread writes: a lookup marks itself
 * under way in its thread's stripe of `active` (threads spread over LK_STRIPES counters, each on
 * a cache line of its own; one shared counter made two threads slower than one). The current
 * mapping is swapped by one thread at a time (`owner`; a fork child starts with every counter
 * and `owner` cleared, see after_fork_child). A replaced mapping is unmapped once every stripe has
 * been seen at zero after the swap: a lookup that could still be reading it keeps its stripe
 * above zero until it ends. */
#define LK_STRIPES 16
struct stripe {
    _Alignas(64) atomic_uint n;
};
static struct stripe active[LK_STRIPES];
static atomic_uint next_stripe;
static __thread int my_stripe = -1;

static _Atomic(struct mapping *) current;
static atomic_int owner;
static struct mapping *retired; /* under `owner` */
static atomic_int pending;      /* retired != NULL */
static atomic_llong next_try_ms;
static atomic_int disabled = -1;

static int env_on(const char *name)
{
    const char *v = secure_getenv(name);
    return v != NULL && strcmp(v, "1") == 0;
}

static int map_disabled(void)
{
    int d = atomic_load_explicit(&disabled, memory_order_relaxed);
    if (d < 0) {
        d = env_on("LATCHKEY_NSS_NO_MMAP") || env_on("LATCHKEY_NSS_DISABLE");
        atomic_store_explicit(&disabled, d, memory_order_relaxed);
    }
    return d;
}

static int lock(void)
{
    int v = 0;
    return atomic_compare_exchange_strong(&owner, &v, 1);
}

static void unlock(void)
{
    atomic_store(&owner, 0);
}

/* Opens and checks the file: a regular file of the daemon account (lk_peer's rule, the same as
 * for the sockets), writable by nobody else, of a sane size, whose header passes. */
static struct mapping *map_open_once(int *replaced)
{
    char path[sizeof((struct sockaddr_un *)0)->sun_path];
    if (lk_socket_path(path, sizeof path, lk_socket_dir(), LK_MAP_FILE) != 0)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *base = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 022) == 0 &&
        st.st_size >= (off_t)LK_MAP_HEADER_SIZE && (size_t)st.st_size <= MAX_FILE &&
        lk_peer_uid_ok(st.st_uid))
        base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return NULL;
    struct mapping *m = calloc(1, sizeof *m);
    if (m == NULL || lk_map_view_open(&m->v, base, (size_t)st.st_size) != 0 ||
        (*replaced = __atomic_load_n(&m->v.h->retired, __ATOMIC_ACQUIRE) != 0)) {
        munmap(base, (size_t)st.st_size);
        free(m);
        return NULL;
    }
    m->base = base;
    m->size = (size_t)st.st_size;
    return m;
}

/* A file found retired was replaced between open and the check (the daemon rebuilt the map):
 * the path already holds its successor, so it is opened again at once rather than after the
 * failure backoff, a few times at most. */
static struct mapping *map_open(void)
{
    struct mapping *m = NULL;
    int replaced = 1;
    for (int i = 0; i < 3 && m == NULL && replaced; i++) {
        replaced = 0;
        m = map_open_once(&replaced);
    }
    return m;
}

/* Replaces a retired (or missing) current mapping; called with a lookup under way. */
static struct mapping *remap(struct mapping *old)
{
    if (lk_mono_ms() < atomic_load(&next_try_ms) || !lock())
        return NULL;
    struct mapping *m = atomic_load(&current);
    if (m == old) {
        m = map_open();
        if (m == NULL)
            atomic_store(&next_try_ms, lk_mono_ms() + REOPEN_BACKOFF_MS);
        atomic_store(&current, m);
        if (old) {
            old->unseen = (1u << LK_STRIPES) - 1;
            old->next = retired;
            retired = old;
            atomic_store(&pending, 1);
        }
    }
    unlock();
    return m;
}

/* Marks the stripes seen at zero now (after every retired mapping's swap) and unmaps the
 * mappings no lookup can still be reading. */
static void reclaim(void)
{
    if (!lock())
        return;
    uint32_t zero = 0;
    for (unsigned i = 0; i < LK_STRIPES; i++)
        if (atomic_load(&active[i].n) == 0)
            zero |= 1u << i;
    struct mapping **p = &retired;
    while (*p) {
        struct mapping *m = *p;
        m->unseen &= ~zero;
        if (m->unseen == 0) {
            *p = m->next;
            munmap(m->base, m->size);
            free(m);
        } else {
            p = &m->next;
        }
    }
    atomic_store(&pending, retired != NULL);
    unlock();
}

/* Begins a lookup: the current, not retired mapping, or NULL (then ask the socket). Always
 * paired with end(). */
static struct mapping *begin(void)
{
    if (my_stripe < 0)
        my_stripe = (int)(atomic_fetch_add(&next_stripe, 1) % LK_STRIPES);
    atomic_fetch_add(&active[my_stripe].n, 1);
    struct mapping *m = atomic_load(&current);
    if (m == NULL || __atomic_load_n(&m->v.h->retired, __ATOMIC_ACQUIRE) != 0)
        m = remap(m);
    return m;
}

static void end(void)
{
    if (atomic_fetch_sub(&active[my_stripe].n, 1) == 1 && atomic_load(&pending))
        reclaim();
}

enum query {
    BY_NAME,
    BY_UID,
    GROUP
};

/* One question to the current mapping (ASK when the map is off or has none). */
static enum lk_map_result ask_map(enum query q, const char *name, uint32_t id,
                                  uint8_t copy[LK_MAP_MAX_RECORD], struct lk_map_rec *rec)
{
    if (map_disabled())
        return LK_MAP_ASK;
    enum lk_map_result r = LK_MAP_ASK;
    struct mapping *m = begin();
    if (m) {
        int64_t now = lk_map_now_ms();
        r = q == BY_NAME  ? lk_map_find_name(&m->v, name, now, copy, rec)
            : q == BY_UID ? lk_map_find_uid(&m->v, id, now, copy, rec)
                          : lk_map_find_group(&m->v, name, id, now, copy, rec);
    }
    end();
    return r;
}

/* The NSS answer for what the map said; `fill` is the lk_fill_* result of a FOUND record. */
static enum lk_nss_map_answer answered(enum lk_map_result r, int fill, enum nss_status *status,
                                       int *errnop)
{
    if (r == LK_MAP_ASK)
        return LK_NSS_MAP_ASK;
    if (r == LK_MAP_ABSENT) {
        *errnop = ENOENT;
        *status = NSS_STATUS_NOTFOUND;
    } else if (fill != 0) {
        /* glibc rule: a buffer too small is TRYAGAIN + ERANGE; the caller retries bigger. */
        *errnop = ERANGE;
        *status = NSS_STATUS_TRYAGAIN;
    } else {
        *status = NSS_STATUS_SUCCESS;
    }
    return LK_NSS_MAP_DONE;
}

enum lk_nss_map_answer lk_nss_map_passwd(const char *name, uint32_t uid, struct passwd *pw,
                                         char *buf, size_t buflen, enum nss_status *status,
                                         int *errnop)
{
    uint8_t copy[LK_MAP_MAX_RECORD];
    struct lk_map_rec rec;
    enum lk_map_result r = ask_map(name ? BY_NAME : BY_UID, name, uid, copy, &rec);
    int fill = 0;
    if (r == LK_MAP_FOUND) {
        struct lk_passwd_rec pr;
        lk_map_rec_passwd(&rec, &pr);
        fill = lk_fill_passwd(&pr, pw, buf, buflen);
    }
    return answered(r, fill, status, errnop);
}

enum lk_nss_map_answer lk_nss_map_group(const char *name, uint32_t gid, struct group *gr, char *buf,
                                        size_t buflen, enum nss_status *status, int *errnop)
{
    uint8_t copy[LK_MAP_MAX_RECORD];
    struct lk_map_rec rec;
    enum lk_map_result r = ask_map(GROUP, name, gid, copy, &rec);
    int fill = 0;
    if (r == LK_MAP_FOUND) {
        struct lk_group_rec gw;
        lk_map_rec_group(&rec, &gw);
        fill = lk_fill_group(&gw, gr, buf, buflen);
    }
    return answered(r, fill, status, errnop);
}

enum lk_nss_map_answer lk_nss_map_initgroups(enum nss_status *status, int *errnop)
{
    uint8_t copy[LK_MAP_MAX_RECORD];
    struct lk_map_rec rec;
    /* The map's group record carries no member list: an authoritative, fresh one means the
     * daemon's only group has no members, so no user gains a supplementary group from it. */
    enum lk_map_result r = ask_map(GROUP, NULL, 0, copy, &rec);
    return answered(r == LK_MAP_ASK ? r : LK_MAP_ABSENT, 0, status, errnop);
}

void lk_nss_map_reset_for_tests(void)
{
    struct mapping *m = atomic_exchange(&current, NULL);
    if (m) {
        munmap(m->base, m->size);
        free(m);
    }
    while (retired) { /* no lookup is under way (the caller's promise) */
        struct mapping *r = retired;
        retired = r->next;
        munmap(r->base, r->size);
        free(r);
    }
    atomic_store(&pending, 0);
    atomic_store(&next_try_ms, 0);
    atomic_store(&disabled, -1);
}

/* In a fork child only the forking thread exists, and it is not inside a lookup (fork is never
 * called from here): a stripe a parent thread held would otherwise stay above zero for ever and
 * keep every later replaced mapping of the child alive. */
static void after_fork_child(void)
{
    for (unsigned i = 0; i < LK_STRIPES; i++)
        atomic_store(&active[i].n, 0);
    atomic_store(&owner, 0);
}

__attribute__((constructor)) static void lk_nss_map_load(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

__attribute__((destructor)) static void lk_nss_map_unload(void)
{
    /* dlclose, or glibc's __libc_freeres under valgrind: no lookup is under way then. */
    for (unsigned i = 0; i < LK_STRIPES; i++)
        if (atomic_load(&active[i].n) != 0)
            return;
    lk_nss_map_reset_for_tests();
}
