/* Helpers shared by the auth/account part (pam_latchkey.c) and the session part (session.c). */
#ifndef LK_PAM_MODULE_H
#define LK_PAM_MODULE_H

#include <security/pam_modules.h>
#include "options.h"
#include "lk_priv.h"

/* A string PAM item, or "" when unset. */
const char *lk_pam_item(pam_handle_t *pamh, int item);
/* PAM_USER (asking for it if unset); PAM_USER_UNKNOWN for an empty or absurdly long name. */
int lk_pam_user(pam_handle_t *pamh, const char **user);
/* An error message to the user unless silent. */
void lk_pam_tell(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *text);
/* Logs an answer the phase cannot use: `phase` names it ("account", "session"). Every line
 * names the priv.sock path and the cause (no daemon, timeout, protocol error, system error) or
 * the daemon's status and detail (lk_priv_describe), the same in every phase's log. */
void lk_pam_log_failure(pam_handle_t *pamh, const char *phase, const char *user, int status,
                        const struct lk_priv_reply *reply);

enum lk_pam_owner {
    LK_PAM_MINE,        /* latchkey serves this user with the uid NSS resolved */
    LK_PAM_NOT_MINE,    /* local account, unknown to NSS, or not served with that uid */
    LK_PAM_CANNOT_TELL, /* passwd file unreadable, NSS or latchkeyd unavailable: fail closed */
};
/* identity.c: 1 when the local passwd file lists user (logged with `debug`), 0 when not, -1
 * when it cannot be read (logged). */
int lk_pam_is_local(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *phase,
                    const char *user);
/* identity.c: local passwd file, then NSS, then LOGIN_CHECK (see there). For LK_PAM_MINE
 * reply->prompt holds the daemon's password prompt. Logs every answer but MINE. */
enum lk_pam_owner lk_pam_identify(pam_handle_t *pamh, const struct lk_pam_opts *opts,
                                  const char *phase, const char *user, struct lk_priv_reply *reply);

#endif /* LK_PAM_MODULE_H */
