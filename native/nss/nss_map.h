/*
 * nss_map: the NSS module's reader of the shared-memory map (<socket_dir>/nss.map, spec.json
 * "map"; the rules in native/common/lk_map.h). Each lookup tries the map first and asks nss.sock
 * only when the map has no fresh answer, so refresh, stale grace and single flight stay the
 * daemon's. `LATCHKEY_NSS_NO_MMAP=1` (or LATCHKEY_NSS_DISABLE=1) in a process's environment
 * turns the map off for that process. Hidden visibility.
 */
#ifndef LK_NSS_MAP_H
#define LK_NSS_MAP_H

#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>

enum lk_nss_map_answer {
    LK_NSS_MAP_ASK = 0, /* ask nss.sock */
    LK_NSS_MAP_DONE,    /* *status (and *errnop) hold the answer */
};

/* getpwnam (name) / getpwuid (name NULL). */
enum lk_nss_map_answer lk_nss_map_passwd(const char *name, uint32_t uid, struct passwd *pw,
                                         char *buf, size_t buflen, enum nss_status *status,
                                         int *errnop);
/* getgrnam (name) / getgrgid (name NULL). */
enum lk_nss_map_answer lk_nss_map_group(const char *name, uint32_t gid, struct group *gr, char *buf,
                                        size_t buflen, enum nss_status *status, int *errnop);
/* initgroups: DONE (NOTFOUND) when the map says the daemon's only group lists no members. */
enum lk_nss_map_answer lk_nss_map_initgroups(enum nss_status *status, int *errnop);

/* For the tests: forget the current mapping and the "disabled" decision (not thread-safe). */
void lk_nss_map_reset_for_tests(void);

#endif /* LK_NSS_MAP_H */
