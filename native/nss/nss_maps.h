/*
 * The pure reply-to-struct functions of the passwd and group maps. The NSS entry points use
 * them after a round trip; the fuzzer (test/c/fuzz_reply.c) and the unit tests call them with
 * arbitrary bytes. Hidden visibility: not part of the module's exported interface.
 */
#ifndef LK_NSS_MAPS_H
#define LK_NSS_MAPS_H

#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>

#include "nss_call.h"

/* A PW_BY_NAME (want_name) or PW_BY_UID (want_name NULL, want_uid) reply body. */
enum nss_status lk_nss_passwd_reply(const uint8_t *body, size_t len, uint16_t opcode,
                                    const char *want_name, uint32_t want_uid, struct passwd *pw,
                                    char *buf, size_t buflen, int *errnop);
/* A GR_BY_NAME (want_name) or GR_BY_GID (want_name NULL, want_gid) reply body. */
enum nss_status lk_nss_group_reply(const uint8_t *body, size_t len, uint16_t opcode,
                                   const char *want_name, uint32_t want_gid, struct group *gr,
                                   char *buf, size_t buflen, int *errnop);
/* The next entry of an accepted page (lk_nss_ent_accept), consumed only on SUCCESS. */
enum nss_status lk_nss_passwd_next(struct lk_nss_ent *e, struct passwd *pw, char *buf,
                                   size_t buflen, int *errnop);
enum nss_status lk_nss_group_next(struct lk_nss_ent *e, struct group *gr, char *buf, size_t buflen,
                                  int *errnop);
/* initgroups_dyn over one GR_LIST page (lk_nss_ent_accept): consumes the page, appending the
 * gid of every group listing `user` (gid != skip, not yet in [0, *start)) to *groupsp, grown
 * by glibc's rules. SUCCESS (*full = 1 when `limit` stopped it), TRYAGAIN + ENOMEM, or UNAVAIL. */
enum nss_status lk_nss_initgroups_page(struct lk_page *pg, const char *user, gid_t skip,
                                       long int *start, long int *size, gid_t **groupsp,
                                       long int limit, int *full, int *errnop);

#endif /* LK_NSS_MAPS_H */
