/*
 * group map of libnss_latchkey.so.2: getgrnam_r, getgrgid_r, getgrent_r and initgroups_dyn,
 * answered by latchkeyd over nss.sock (GR_BY_NAME, GR_BY_GID, GR_LIST). Enabled by
 * `group: files latchkey`.
 * initgroups_dyn (id, getgrouplist, initgroups) walks GR_LIST with a cursor of its own. Without
 * it glibc falls back to setgrent/getgrent_r/endgrent (nss/initgroups.c, compat path), i.e. to
 * the process-wide enumeration state below, which another thread's getgrent loop (or a second
 * initgroups) rewinds or drains under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <nss.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lk_local.h"
#include "lk_records.h"
#include "nss_call.h"
#include "nss_map.h"
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
    size_t n = name ? lk_msg_gr_by_name_request(req, sizeof req, name)
                    : lk_msg_gr_by_gid_request(req, sizeof req, gid);
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
    enum nss_status st;
    if (lk_nss_map_group(name, 0, gr, buf, buflen, &st, errnop) == LK_NSS_MAP_DONE)
        return st;
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    st = lookup(LK_OP_GR_BY_NAME, name, 0, gr, buf, buflen, errnop);
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
    enum nss_status st;
    if (lk_nss_map_group(NULL, (uint32_t)gid, gr, buf, buflen, &st, errnop) == LK_NSS_MAP_DONE)
        return st;
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    st = lookup(LK_OP_GR_BY_GID, NULL, (uint32_t)gid, gr, buf, buflen, errnop);
    lk_nss_leave();
    return st;
}

/* Per-process enumeration state, see passwd.c. */
static pthread_mutex_t grent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lk_nss_ent grent;

enum nss_status lk_nss_group_next(struct lk_nss_ent *e, struct group *gr, char *buf, size_t buflen,
                                  int *errnop)
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

/* Adds gid to an initgroups array by glibc's rules (nss_files' initgroups_dyn): a gid already
 * in [0, *start) is skipped; when the array is full it grows to twice its size, capped at
 * `limit` when limit > 0. 0 (added or already there), 1 (full at `limit`), -1 (no memory). */
static int add_gid(gid_t gid, long int *start, long int *size, gid_t **groupsp, long int limit)
{
    for (long int i = 0; i < *start; i++)
        if ((*groupsp)[i] == gid)
            return 0;
    if (*start >= *size) {
        if (limit > 0 && *size >= limit)
            return 1;
        long int newsize = *size < 1 ? 1 : *size > LONG_MAX / 2 ? LONG_MAX : 2 * *size;
        if (limit > 0 && newsize > limit)
            newsize = limit;
        if (newsize <= *start || (unsigned long)newsize > SIZE_MAX / sizeof(gid_t))
            return -1;
        gid_t *grown = realloc(*groupsp, (size_t)newsize * sizeof(gid_t));
        if (!grown)
            return -1;
        *groupsp = grown;
        *size = newsize;
    }
    (*groupsp)[(*start)++] = gid;
    return 0;
}

enum nss_status lk_nss_initgroups_page(struct lk_page *pg, const char *user, gid_t skip,
                                       long int *start, long int *size, gid_t **groupsp,
                                       long int limit, int *full, int *errnop)
{
    struct lk_group_rec rec;
    *full = 0;
    for (; pg->left > 0; lk_page_consume(pg, 1)) {
        if (lk_page_peek_group(pg, &rec) != 0)
            return lk_nss_protocol_error(errnop);
        if ((gid_t)rec.gid == skip)
            continue;
        struct lk_reader m = rec.members.items;
        int member = 0;
        for (uint16_t i = 0; i < rec.members.count && !member; i++)
            member = lk_str_eq(lk_rd_str(&m), user);
        if (!member)
            continue;
        int rc = add_gid((gid_t)rec.gid, start, size, groupsp, limit);
        if (rc < 0) {
            *errnop = ENOMEM;
            return NSS_STATUS_TRYAGAIN;
        }
        /* full at `limit` (now, or before this gid): nothing more can be added */
        if (rc > 0 || (limit > 0 && *start >= *size && *size >= limit)) {
            *full = 1;
            break;
        }
    }
    return NSS_STATUS_SUCCESS;
}

/* Supplementary groups of `user`: the gid of every group that lists it as a member, except
 * `group` (its primary gid, which the caller adds itself), appended to *groupsp.
 * Stateless: a local cursor over GR_LIST pages (the getgrent request and decoders), so no
 * lock is taken and a concurrent setgrent/getgrent_r/endgrent neither disturbs this walk nor
 * is disturbed by it. Results follow nss_files (glibc >= 2.26), SSSD and nss-pam-ldapd:
 * SUCCESS when at least one gid was appended, NOTFOUND when none was (so a service listed
 * after latchkey with `initgroups: latchkey files` is still asked), UNAVAIL when the daemon
 * cannot answer, TRYAGAIN + ENOMEM when the array cannot grow. On a failure *start is put
 * back: a walk cut short never hands out part of a membership list. */
LK_EXPORT enum nss_status _nss_latchkey_initgroups_dyn(const char *user, gid_t group,
                                                       long int *start, long int *size,
                                                       gid_t **groupsp, long int limit, int *errnop)
{
    /* A member name is a name the daemon hands out: a name no rule admits is in no group, and
     * neither is a local account (the daemon never serves those). Answering them here, before
     * any socket I/O, keeps a local admin's login (initgroups at every sshd/su/login) from
     * waiting on a hung latchkeyd: nss_files answers for that user, latchkey never can. */
    if (!lk_name_ok(user) || lk_local_listed(NULL, user) == 1) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    enum nss_status mapped;
    if (lk_nss_map_initgroups(&mapped, errnop) == LK_NSS_MAP_DONE)
        return mapped;
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    struct lk_nss_ent walk = { 0 };
    const long int first = *start;
    int full = 0;
    enum nss_status st;
    do {
        st = lk_nss_ent_ensure(&walk, LK_OP_GR_LIST, errnop);
        if (st == NSS_STATUS_SUCCESS)
            st = lk_nss_initgroups_page(&walk.page, user, group, start, size, groupsp, limit, &full,
                                        errnop);
    } while (st == NSS_STATUS_SUCCESS && !full);
    lk_nss_ent_reset(&walk);
    lk_nss_leave();
    /* lk_nss_ent_ensure: NOTFOUND is the end of the list (an empty page, or NOTFOUND) */
    if (st != NSS_STATUS_SUCCESS && st != NSS_STATUS_NOTFOUND) {
        *start = first;
        return st;
    }
    if (*start == first) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    return NSS_STATUS_SUCCESS;
}
