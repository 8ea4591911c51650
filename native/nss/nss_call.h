/*
 * nss_call: what passwd.c and group.c share: the recursion guard, the process's small pool of
 * nss.sock connections, the mapping of daemon statuses to nss_status, and enumeration pages.
 * Everything here has hidden visibility; the version script exports only _nss_latchkey_*.
 */
#ifndef LK_NSS_CALL_H
#define LK_NSS_CALL_H

#include <nss.h>
#include <stddef.h>
#include <stdint.h>

#include "lk_records.h"

/* Enter the module: 0 when this thread may ask the daemon, -1 when it must answer UNAVAIL at
 * once (already inside the module on this thread, or LATCHKEY_NSS_DISABLE=1). Every 0 is
 * paired with lk_nss_leave(). */
int lk_nss_enter(void);
void lk_nss_leave(void);

/* Kept nss.sock connections per process, whatever its number of threads (nss_call.c). Threads
 * beyond it pay a connect per lookup: with 4, eight busy threads got half the lookups/s of one
 * connection each; with 8 they lose nothing, and the daemon's per-uid share (64 at least) still
 * fits several busy processes of one user. */
#define LK_NSS_POOL 8

/* One request/reply on a pooled nss.sock connection (or a one-shot one when every pooled
 * connection is in use). SUCCESS with a malloc'ed body the caller frees, or UNAVAIL with
 * *errnop ENOENT (no daemon socket) or EAGAIN (the daemon failed, timed out, dropped the
 * connection unanswered, or the breaker holds calls back: "try again", never "not found"). */
enum nss_status lk_nss_ask(const uint8_t *req, size_t req_len, uint8_t **body, size_t *body_len,
                           int *errnop);

/* nss_status for a reply whose status is not OK (NOTFOUND stays NOTFOUND, all else UNAVAIL). */
enum nss_status lk_nss_from_status(uint16_t status, int *errnop);
/* UNAVAIL for a reply that breaks the protocol. */
enum nss_status lk_nss_protocol_error(int *errnop);

/* Enumeration state of one map (passwd or group): the current page and the cursor. The
 * owner (passwd.c / group.c) protects it with its mutex. */
struct lk_nss_ent {
    uint8_t *body;       /* the reply holding `page`, malloc'ed */
    struct lk_page page; /* entries still to hand out */
    uint32_t cursor;     /* start_uid / start_gid of the next request */
    int done;            /* an empty page (or a cursor that stopped moving) ended the list */
};

void lk_nss_ent_reset(struct lk_nss_ent *e);
/* Takes ownership of a PW_LIST / GR_LIST reply body and makes it the current page. Pure (no
 * I/O): the fuzzer calls it. SUCCESS, NOTFOUND (end of list) or UNAVAIL. */
enum nss_status lk_nss_ent_accept(struct lk_nss_ent *e, uint8_t *body, size_t len, uint16_t opcode,
                                  int *errnop);
/* Makes sure the current page has an entry, asking the daemon for the next page when needed. */
enum nss_status lk_nss_ent_ensure(struct lk_nss_ent *e, uint16_t opcode, int *errnop);

#endif /* LK_NSS_CALL_H */
