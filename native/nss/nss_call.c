/* nss_call: see nss_call.h. */
#define _GNU_SOURCE
#include "nss_call.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "lk_client.h"

/* Recursion guard. The daemon resolves users itself (and so may any code we call while
 * connecting); a lookup arriving here while this thread is already inside the module must not
 * ask the daemon again: it would wait on itself until the timeout. */
static __thread int tls_depth;

/* One connection per thread: no lock on the hot path, and replies can never be interleaved.
 * A pthread key destructor closes it when the thread exits (SSSD's sss_cli does the same), so
 * programs that start many short threads do not leak descriptors. */
static __thread struct lk_conn tls_conn = LK_CONN_INIT;
static __thread int tls_conn_registered;
static pthread_key_t conn_key;
static pthread_once_t conn_key_once = PTHREAD_ONCE_INIT;
static int conn_key_ok;

static void conn_key_destroy(void *p)
{
    lk_conn_close(p);
    /* Runs in the exiting thread, after its value was cleared: a lookup from a later
     * thread-exit destructor (another library's) reopens tls_conn and must register it
     * again, or that descriptor leaks for the life of the process. */
    tls_conn_registered = 0;
}

static void conn_key_create(void)
{
    conn_key_ok = pthread_key_create(&conn_key, conn_key_destroy) == 0;
}

/* When the module is unloaded (glibc's __libc_freeres under valgrind, or dlclose), the key
 * destructor would point into unmapped code: delete the key first. */
__attribute__((destructor)) static void lk_nss_unload(void)
{
    lk_conn_close(&tls_conn);
    if (conn_key_ok)
        pthread_key_delete(conn_key);
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

static void register_conn(void)
{
    if (tls_conn_registered)
        return;
    pthread_once(&conn_key_once, conn_key_create);
    if (conn_key_ok && pthread_setspecific(conn_key, &tls_conn) == 0)
        tls_conn_registered = 1;
}

size_t lk_nss_request(uint8_t *buf, size_t cap, uint16_t opcode, const char *name, uint32_t id)
{
    struct lk_writer w;
    lk_wr_init(&w, buf, cap);
    lk_wr_request(&w, opcode);
    if (name)
        lk_wr_cstr(&w, name);
    else if (opcode != LK_OP_PING)
        lk_wr_u32(&w, id);
    return lk_wr_finish(&w);
}

enum nss_status lk_nss_ask(const uint8_t *req, size_t req_len, uint8_t **body, size_t *body_len,
                           int *errnop)
{
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];
    *body = NULL;
    *body_len = 0;
    if (lk_socket_path(path, sizeof path, lk_socket_dir(), "nss.sock") != 0) {
        *errnop = ENOENT;
        return NSS_STATUS_UNAVAIL;
    }
    register_conn();
    int rc = lk_conn_call(&tls_conn, path, req, req_len, LK_MAX_NSS_REPLY, lk_timeout_ms(), body,
                          body_len);
    if (rc == LK_IO_OK)
        return NSS_STATUS_SUCCESS;
    /* glibc manual, "NSS Modules Interface": UNAVAIL+ENOENT when a necessary input (here the
     * socket) is missing; for a daemon that is there but failed, EAGAIN tells a caller that
     * sees it (latchkey last in the list) to try later rather than "no such user". */
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

enum nss_status lk_nss_ent_accept(struct lk_nss_ent *e, uint8_t *body, size_t len,
                                  uint16_t opcode, int *errnop)
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
    size_t n = lk_nss_request(req, sizeof req, opcode, NULL, e->cursor);
    if (n == 0)
        return lk_nss_protocol_error(errnop);
    enum nss_status st = lk_nss_ask(req, n, &body, &len, errnop);
    if (st != NSS_STATUS_SUCCESS)
        return st;
    return lk_nss_ent_accept(e, body, len, opcode, errnop);
}
