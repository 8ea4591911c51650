/* Helpers shared by the auth/account part (pam_latchkey.c) and the session part (session.c). */
#ifndef LK_PAM_MODULE_H
#define LK_PAM_MODULE_H

#include <security/pam_modules.h>
#include "options.h"

/* A string PAM item, or "" when unset. */
const char *lk_pam_item(pam_handle_t *pamh, int item);
/* PAM_USER (asking for it if unset); PAM_USER_UNKNOWN for an empty or absurdly long name. */
int lk_pam_user(pam_handle_t *pamh, const char **user);
/* An error message to the user unless silent. */
void lk_pam_tell(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *text);
/* Logs an answer the phase cannot use: `phase` names it ("account", "session"). Unreachable
 * daemon or user service and unexpected statuses read the same in every phase's log. */
void lk_pam_log_failure(pam_handle_t *pamh, const char *phase, const char *user, int status,
                        const char *detail);

#endif /* LK_PAM_MODULE_H */
