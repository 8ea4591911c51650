/* nss_call: see nss_call.h. */
#define _GNU_SOURCE
#include "nss_call.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "lk_client.h"

/* Recursion guard. The daemon resolves users itself (and so may any code we call while
 * connecting); a lookup arriving here while this thread is already inside the module must not
 * ask the daemon again: it would wait on itself until the timeout. */
static __thread int tls_depth;

/* The pool: at most LK_NSS_POOL kept nss.sock connections per process, however many threads it
 * runs (one per thread let a program with 300 threads hold 300 daemon connections for as long
 * as its threads slept). A thread claims a slot, uses its connection alone (replies can never
 * interleave), and releases it; when every slot is in use it makes a one-shot connection and
 * closes it. Whoever claims slots also closes their connections idle longer than
 * LK_CLIENT_IDLE_MS (lk_conn_expire), so a process that went quiet holds at most LK_NSS_POOL
 * connections, and none once it looks a name up after the idle time.
 *
 * A slot's owner is the pid of the process whose thread claimed it, 0 when free, changed only
 * by compare-and-swap: no lock a fork() could leave held. A fork child sees the slots its
 * parent's other threads had claimed marked with the parent's pid; no thread of the child can
 * be using them (fork copies only the calling thread, which is not inside this module), so a
 * claim by another pid counts as free, and lk_conn_call replaces the parent's connection. */

struct slot {
    atomic_int owner; /* pid of the claiming process, 0 = free */
    struct lk_conn conn;
};

static struct slot pool[LK_NSS_POOL] = {
    [0 ... LK_NSS_POOL - 1] = { 0, LK_CONN_INIT },
};
static __thread unsigned tls_hint; /* the slot this thread used last: try it first */

static int slot_claim(struct slot *s, int me)
{
    int v = atomic_load(&s->owner);
    return v != me && atomic_compare_exchange_strong(&s->owner, &v, me);
}

static void slot_release(struct slot *s)
{
    atomic_store(&s->owner, 0);
}

/* Claims the best free slot: one with a live connection, else an empty one; NULL when all are
 * in use. Every slot it manages to claim on the way has its expired connection closed. */
static struct slot *pool_claim(void)
{
    int me = (int)getpid();
    int64_t now = lk_mono_ms();
    struct slot *best = NULL;
    for (unsigned i = 0; i < LK_NSS_POOL; i++) {
        unsigned k = (tls_hint + i) % LK_NSS_POOL;
        struct slot *s = &pool[k];
        if (!slot_claim(s, me))
            continue;
        lk_conn_expire(&s->conn, now);
        if (!best || (best->conn.fd < 0 && s->conn.fd >= 0)) {
            if (best)
                slot_release(best);
            best = s;
            tls_hint = k;
        } else {
            slot_release(s);
        }
    }
    return best;
}

/* At unload (dlclose, or glibc's __libc_freeres under valgrind): close the free slots'
 * connections; a slot in use belongs to a thread that is still working with it. */
__attribute__((destructor)) static void lk_nss_unload(void)
{
    int me = (int)getpid();
    for (unsigned i = 0; i < LK_NSS_POOL; i++) {
        if (slot_claim(&pool[i], me)) {
            lk_conn_close(&pool[i].conn);
            slot_release(&pool[i]);
        }
    }
}

int lk_nss_enter(void)
{
    if (tls_depth > 0)
        return -1;
    /* The daemon sets LATCHKEY_NSS_DISABLE=1 for itself so it never asks itself. Read with
     * secure_getenv so a user cannot hide latchkey users/groups from a set-uid program. */
    const char *off = secure_getenv("LATCHKEY_NSS_DISABLE");
    if (off && strcmp(off, "1") == 0)
        return -1;
    tls_depth++;
    return 0;
}

void lk_nss_leave(void)
{
    tls_depth--;
}

enum nss_status lk_nss_ask(const uint8_t *req, size_t req_len, uint8_t **body, size_t *body_len,
                           int *errnop)
{
    char path[sizeof((struct sockaddr_un *)0)->sun_path];
    *body = NULL;
    *body_len = 0;
    if (lk_socket_path(path, sizeof path, lk_socket_dir(), "nss.sock") != 0) {
        *errnop = ENOENT;
        return NSS_STATUS_UNAVAIL;
    }
    /* getpwnam(3) may be a cancellation point, and poll() is one: a thread cancelled while it
     * holds a slot would take the slot with it. The call is bounded by the timeout anyway. */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    struct slot *s = pool_claim();
    struct lk_conn one_shot = LK_CONN_INIT;
    int rc = lk_conn_call(s ? &s->conn : &one_shot, path, req, req_len, LK_MAX_NSS_REPLY,
                          lk_timeout_ms(), body, body_len);
    if (s)
        slot_release(s);
    else
        lk_conn_close(&one_shot);
    pthread_setcancelstate(cancel_state, NULL);
    if (rc == LK_IO_OK)
        return NSS_STATUS_SUCCESS;
    /* glibc manual, "NSS Modules Interface": UNAVAIL+ENOENT when a necessary input (here the
     * socket) is missing. For a daemon that is there but failed, timed out, closed the
     * connection unanswered (its connection budget), that the breaker does not ask now, or
     * whose socket refuses connections (it died and systemd is restarting it: a clean stop
     * removes the socket), EAGAIN: getpwnam(3) lists ENOENT among the "not found" errnos, and
     * a busy or restarting daemon must never read as "no such user". */
    *errnop = rc == LK_IO_NO_DAEMON ? ENOENT : EAGAIN;
    return NSS_STATUS_UNAVAIL;
}

enum nss_status lk_nss_from_status(uint16_t status, int *errnop)
{
    if (status == LK_STATUS_NOTFOUND) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    /* UNAVAIL, and every status a public lookup should never get (DENIED, BAD_REQUEST,
     * INTERNAL, ...): never a false NOTFOUND. */
    *errnop = EAGAIN;
    return NSS_STATUS_UNAVAIL;
}

enum nss_status lk_nss_protocol_error(int *errnop)
{
    *errnop = EAGAIN;
    return NSS_STATUS_UNAVAIL;
}

void lk_nss_ent_reset(struct lk_nss_ent *e)
{
    free(e->body);
    memset(e, 0, sizeof *e);
}

enum nss_status lk_nss_ent_accept(struct lk_nss_ent *e, uint8_t *body, size_t len, uint16_t opcode,
                                  int *errnop)
{
    struct lk_reply rep;
    struct lk_page page;
    int is_group = opcode == LK_OP_GR_LIST;
    free(e->body);
    e->body = NULL;
    memset(&e->page, 0, sizeof e->page);
    if (lk_reply_open(body, len, opcode, &rep) != 0) {
        free(body);
        return lk_nss_protocol_error(errnop);
    }
    if (rep.status != LK_STATUS_OK) {
        free(body);
        return lk_nss_from_status(rep.status, errnop);
    }
    if (lk_page_open(&rep.payload, is_group, &page) != 0) {
        free(body);
        return lk_nss_protocol_error(errnop);
    }
    if (page.left == 0) {
        /* spec: an empty list ends the enumeration */
        free(body);
        e->done = 1;
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    /* The cursor must move forward, or a confused daemon would make getpwent loop forever:
     * hand out this page and stop. */
    if (page.next <= e->cursor)
        e->done = 1;
    e->cursor = page.next;
    e->body = body;
    e->page = page;
    return NSS_STATUS_SUCCESS;
}

enum nss_status lk_nss_ent_ensure(struct lk_nss_ent *e, uint16_t opcode, int *errnop)
{
    uint8_t req[LK_REQ_HEADER + 4u];
    uint8_t *body;
    size_t len;
    if (e->page.left > 0)
        return NSS_STATUS_SUCCESS;
    if (e->done) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    size_t n = opcode == LK_OP_GR_LIST ? lk_msg_gr_list_request(req, sizeof req, e->cursor)
                                       : lk_msg_pw_list_request(req, sizeof req, e->cursor);
    if (n == 0)
        return lk_nss_protocol_error(errnop);
    enum nss_status st = lk_nss_ask(req, n, &body, &len, errnop);
    if (st != NSS_STATUS_SUCCESS)
        return st;
    return lk_nss_ent_accept(e, body, len, opcode, errnop);
}
