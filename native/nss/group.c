/*
 * group map of libnss_latchkey.so.2: getgrnam_r, getgrgid_r and getgrent_r, answered by
 * latchkeyd over nss.sock (GR_BY_NAME, GR_BY_GID, GR_LIST). Enabled by `group: files latchkey`.
 * There is no initgroups_dyn: glibc then finds supplementary groups by walking getgrent_r
 * (nss/initgroups.c, compat path), which is right for the daemon's handful of groups.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lk_records.h"
#include "nss_call.h"
#include "nss_maps.h"

#define LK_EXPORT __attribute__((visibility("default")))

enum nss_status lk_nss_group_reply(const uint8_t *body, size_t len, uint16_t opcode,
                                   const char *want_name, uint32_t want_gid, struct group *gr,
                                   char *buf, size_t buflen, int *errnop)
{
    struct lk_reply rep;
    struct lk_group_rec rec;
    if (lk_reply_open(body, len, opcode, &rep) != 0)
        return lk_nss_protocol_error(errnop);
    if (rep.status != LK_STATUS_OK)
        return lk_nss_from_status(rep.status, errnop);
    if (lk_rd_group(&rep.payload, &rec) != 0 || lk_rd_done(&rep.payload) != 0)
        return lk_nss_protocol_error(errnop);
    /* The answer must be the group that was asked for. */
    if (want_name ? !lk_str_eq(rec.name, want_name) : rec.gid != want_gid)
        return lk_nss_protocol_error(errnop);
    /* glibc rule: buffer too small -> TRYAGAIN + ERANGE, the caller retries bigger. */
    if (lk_fill_group(&rec, gr, buf, buflen) != 0) {
        *errnop = ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    return NSS_STATUS_SUCCESS;
}

static enum nss_status lookup(uint16_t opcode, const char *name, uint32_t gid, struct group *gr,
                              char *buf, size_t buflen, int *errnop)
{
    uint8_t req[LK_REQ_HEADER + 2u + LK_MAX_NAME];
    uint8_t *body;
    size_t len;
    size_t n = lk_nss_request(req, sizeof req, opcode, name, gid);
    if (n == 0)
        return lk_nss_protocol_error(errnop);
    enum nss_status st = lk_nss_ask(req, n, &body, &len, errnop);
    if (st == NSS_STATUS_SUCCESS) {
        st = lk_nss_group_reply(body, len, opcode, name, gid, gr, buf, buflen, errnop);
        free(body);
    }
    return st;
}

LK_EXPORT enum nss_status _nss_latchkey_getgrnam_r(const char *name, struct group *gr, char *buf,
                                                   size_t buflen, int *errnop)
{
    if (!lk_name_ok(name)) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    enum nss_status st = lookup(LK_OP_GR_BY_NAME, name, 0, gr, buf, buflen, errnop);
    lk_nss_leave();
    return st;
}

LK_EXPORT enum nss_status _nss_latchkey_getgrgid_r(gid_t gid, struct group *gr, char *buf,
                                                   size_t buflen, int *errnop)
{
    /* gid 0 is never handed out by latchkey (DESIGN.md). */
    if (gid == 0) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    enum nss_status st = lookup(LK_OP_GR_BY_GID, NULL, (uint32_t)gid, gr, buf, buflen, errnop);
    lk_nss_leave();
    return st;
}

/* Per-process enumeration state, see passwd.c. */
static pthread_mutex_t grent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lk_nss_ent grent;

enum nss_status lk_nss_group_next(struct lk_nss_ent *e, struct group *gr, char *buf,
                                  size_t buflen, int *errnop)
{
    struct lk_group_rec rec;
    if (lk_page_peek_group(&e->page, &rec) != 0)
        return lk_nss_protocol_error(errnop);
    /* Consume only after a successful copy: glibc retries ERANGE on the same entry. */
    if (lk_fill_group(&rec, gr, buf, buflen) != 0) {
        *errnop = ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    lk_page_consume(&e->page, 1);
    return NSS_STATUS_SUCCESS;
}

LK_EXPORT enum nss_status _nss_latchkey_setgrent(int stayopen)
{
    (void)stayopen;
    pthread_mutex_lock(&grent_lock);
    lk_nss_ent_reset(&grent);
    pthread_mutex_unlock(&grent_lock);
    return NSS_STATUS_SUCCESS;
}

LK_EXPORT enum nss_status _nss_latchkey_getgrent_r(struct group *gr, char *buf, size_t buflen,
                                                   int *errnop)
{
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    pthread_mutex_lock(&grent_lock);
    enum nss_status st = lk_nss_ent_ensure(&grent, LK_OP_GR_LIST, errnop);
    if (st == NSS_STATUS_SUCCESS)
        st = lk_nss_group_next(&grent, gr, buf, buflen, errnop);
    pthread_mutex_unlock(&grent_lock);
    lk_nss_leave();
    return st;
}

LK_EXPORT enum nss_status _nss_latchkey_endgrent(void)
{
    pthread_mutex_lock(&grent_lock);
    lk_nss_ent_reset(&grent);
    pthread_mutex_unlock(&grent_lock);
    return NSS_STATUS_SUCCESS;
}
