/*
 * lk_records: what the NSS module and the keys helper require of the records a reply carries
 * (the layout is read by the generated lk_msgs.c; the rules here are policy: no uid/gid 0, no
 * ':' or newline in a field, names without '/', absolute homes), the name rule a shim checks
 * before any round trip, and the copy of a record into the caller's struct passwd / struct
 * group + buffer (the glibc getpwnam_r contract). No I/O, no allocation: the fuzzer
 * (test/c/fuzz_reply.c) calls these directly.
 *
 * Typical use, after lk_conn_call / lk_client_call returned a reply body:
 *     struct lk_reply rep;
 *     if (lk_reply_open(body, len, LK_OP_PW_BY_NAME, &rep) != 0) -> protocol error
 *     if (rep.status != LK_STATUS_OK) -> rep.detail says why
 *     struct lk_passwd_rec rec;
 *     if (lk_rd_passwd(&rep.payload, &rec) != 0 || lk_rd_done(&rep.payload) != 0) -> protocol error
 */
#ifndef LK_RECORDS_H
#define LK_RECORDS_H

#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>

#include "latchkey_proto.h"
#include "lk_msgs.h"
#include "lk_wire.h"

/* The checks lk_rd_passwd applies to a decoded passwd record, and lk_rd_group to a group's name
 * and gid: 1 when sane. The shared-memory map (lk_map.c) holds its records to the same rules. */
int lk_passwd_ok(const struct lk_passwd_rec *p);
int lk_group_head_ok(const struct lk_group_rec *g);

/* Decode one record and check it is sane (see lk_records.c); 0 or -1. */
int lk_rd_passwd(struct lk_reader *r, struct lk_passwd_rec *out);
int lk_rd_group(struct lk_reader *r, struct lk_group_rec *out);

/* A PW_LIST / GR_LIST page. lk_page_open validates every entry and the absence of trailing
 * bytes before the first one is handed out, so a page is used whole or not at all. */
struct lk_page {
    uint32_t next;           /* next_uid / next_gid: the cursor for the following request */
    uint16_t left;           /* entries not yet consumed */
    struct lk_reader cursor; /* at the next entry */
};
int lk_page_open(struct lk_reader *payload, int is_group, struct lk_page *out);
/* Decode the next entry into rec WITHOUT consuming it (glibc calls getpwent_r again with a
 * bigger buffer after ERANGE and expects the same entry); lk_page_consume moves on. 0, or -1
 * when the page is exhausted. */
int lk_page_peek_passwd(const struct lk_page *pg, struct lk_passwd_rec *rec);
int lk_page_peek_group(const struct lk_page *pg, struct lk_group_rec *rec);
void lk_page_consume(struct lk_page *pg, int is_group);

/* The part of the name rule that holds whatever the daemon's configured name_regex is (not
 * empty, not "." or "..", at most MAX_NAME bytes, printable ASCII without ':' or '/'), checked
 * before any round trip; the configured rule itself is the daemon's (a shim has no config). */
int lk_name_ok(const char *name);

/* Copy a record into the caller's struct and buffer. 0, or ERANGE when buf is too small
 * (glibc rule: the caller retries the same call with a bigger buffer). pw_passwd/gr_passwd
 * are always "x": hashes never leave the daemon. */
int lk_fill_passwd(const struct lk_passwd_rec *rec, struct passwd *pw, char *buf, size_t buflen);
int lk_fill_group(const struct lk_group_rec *rec, struct group *gr, char *buf, size_t buflen);

#endif /* LK_RECORDS_H */
