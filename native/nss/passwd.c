/*
 * passwd map of libnss_latchkey.so.2: getpwnam_r, getpwuid_r and getpwent_r, answered by
 * latchkeyd over nss.sock (PW_BY_NAME, PW_BY_UID, PW_LIST). Enabled by `passwd: files latchkey`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "lk_records.h"
#include "nss_call.h"
#include "nss_map.h"
#include "nss_maps.h"

#define LK_EXPORT __attribute__((visibility("default")))

enum nss_status lk_nss_passwd_reply(const uint8_t *body, size_t len, uint16_t opcode,
                                    const char *want_name, uint32_t want_uid, struct passwd *pw,
                                    char *buf, size_t buflen, int *errnop)
{
    struct lk_reply rep;
    struct lk_passwd_rec rec;
    if (lk_reply_open(body, len, opcode, &rep) != 0)
        return lk_nss_protocol_error(errnop);
    if (rep.status != LK_STATUS_OK)
        return lk_nss_from_status(rep.status, errnop);
    if (lk_rd_passwd(&rep.payload, &rec) != 0 || lk_rd_done(&rep.payload) != 0)
        return lk_nss_protocol_error(errnop);
    /* The answer must be the entry that was asked for (nss-pam-ldapd checks this too): a
     * daemon bug must not make getpwnam("alice") return bob. */
    if (want_name ? !lk_str_eq(rec.name, want_name) : rec.uid != want_uid)
        return lk_nss_protocol_error(errnop);
    /* glibc rule: a buffer too small is TRYAGAIN with *errnop = ERANGE; getpwnam_r hands
     * ERANGE to its caller, which retries the same call with a bigger buffer. */
    if (lk_fill_passwd(&rec, pw, buf, buflen) != 0) {
        *errnop = ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    return NSS_STATUS_SUCCESS;
}

/* Sends a by-name or by-uid request and decodes the reply; the caller entered the module. */
static enum nss_status lookup(uint16_t opcode, const char *name, uint32_t uid, struct passwd *pw,
                              char *buf, size_t buflen, int *errnop)
{
    uint8_t req[LK_REQ_HEADER + 2u + LK_MAX_NAME];
    uint8_t *body;
    size_t len;
    size_t n = name ? lk_msg_pw_by_name_request(req, sizeof req, name)
                    : lk_msg_pw_by_uid_request(req, sizeof req, uid);
    if (n == 0)
        return lk_nss_protocol_error(errnop);
    enum nss_status st = lk_nss_ask(req, n, &body, &len, errnop);
    if (st == NSS_STATUS_SUCCESS) {
        st = lk_nss_passwd_reply(body, len, opcode, name, uid, pw, buf, buflen, errnop);
        free(body);
    }
    return st;
}

LK_EXPORT enum nss_status _nss_latchkey_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                                   size_t buflen, int *errnop)
{
    /* Names the daemon would refuse anyway are answered here, without a round trip. */
    if (!lk_name_ok(name)) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    enum nss_status st;
    if (lk_nss_map_passwd(name, 0, pw, buf, buflen, &st, errnop) == LK_NSS_MAP_DONE)
        return st;
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    st = lookup(LK_OP_PW_BY_NAME, name, 0, pw, buf, buflen, errnop);
    lk_nss_leave();
    return st;
}

LK_EXPORT enum nss_status _nss_latchkey_getpwuid_r(uid_t uid, struct passwd *pw, char *buf,
                                                   size_t buflen, int *errnop)
{
    /* uid 0 is never handed out by latchkey (DESIGN.md): root stays with `files`. */
    if (uid == 0) {
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    }
    enum nss_status st;
    if (lk_nss_map_passwd(NULL, (uint32_t)uid, pw, buf, buflen, &st, errnop) == LK_NSS_MAP_DONE)
        return st;
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    st = lookup(LK_OP_PW_BY_UID, NULL, (uint32_t)uid, pw, buf, buflen, errnop);
    lk_nss_leave();
    return st;
}

/* Enumeration state is per process (glibc serialises setpwent/getpwent/endpwent per database
 * with its own lock, but a program may also call the _nss_ functions directly): a mutex. */
static pthread_mutex_t pwent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lk_nss_ent pwent;

enum nss_status lk_nss_passwd_next(struct lk_nss_ent *e, struct passwd *pw, char *buf,
                                   size_t buflen, int *errnop)
{
    struct lk_passwd_rec rec;
    if (lk_page_peek_passwd(&e->page, &rec) != 0)
        return lk_nss_protocol_error(errnop);
    /* glibc rule for getXXent_r: after ERANGE the same entry must come back on the retry
     * with a bigger buffer, so the page is only consumed once the copy succeeded. */
    if (lk_fill_passwd(&rec, pw, buf, buflen) != 0) {
        *errnop = ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    lk_page_consume(&e->page, 0);
    return NSS_STATUS_SUCCESS;
}

LK_EXPORT enum nss_status _nss_latchkey_setpwent(int stayopen)
{
    (void)stayopen;
    pthread_mutex_lock(&pwent_lock);
    lk_nss_ent_reset(&pwent);
    pthread_mutex_unlock(&pwent_lock);
    return NSS_STATUS_SUCCESS;
}

LK_EXPORT enum nss_status _nss_latchkey_getpwent_r(struct passwd *pw, char *buf, size_t buflen,
                                                   int *errnop)
{
    if (lk_nss_enter() != 0) {
        *errnop = EAGAIN;
        return NSS_STATUS_UNAVAIL;
    }
    pthread_mutex_lock(&pwent_lock);
    enum nss_status st = lk_nss_ent_ensure(&pwent, LK_OP_PW_LIST, errnop);
    if (st == NSS_STATUS_SUCCESS)
        st = lk_nss_passwd_next(&pwent, pw, buf, buflen, errnop);
    pthread_mutex_unlock(&pwent_lock);
    lk_nss_leave();
    return st;
}

LK_EXPORT enum nss_status _nss_latchkey_endpwent(void)
{
    pthread_mutex_lock(&pwent_lock);
    lk_nss_ent_reset(&pwent);
    pthread_mutex_unlock(&pwent_lock);
    return NSS_STATUS_SUCCESS;
}
