/*
 * Whose user is this? Asked first in every phase but session close, before any other request:
 *
 *   1. the local passwd file (local_passwd=PATH, default /etc/passwd) lists the name: the host's
 *      own account (root, an admin, a service user). Not latchkey's, decided without any socket
 *      I/O, so a local login never waits on, nor depends on, latchkeyd;
 *   2. getpwnam_r through NSS, the identity the application (sshd, login) will use: unknown
 *      means not latchkey's; a source that could not answer means we cannot tell;
 *   3. LOGIN_CHECK {user, uid} on priv.sock: OK only when latchkey serves that name with exactly
 *      that uid. Another NSS source answering first with its own uid (a directory, a later
 *      local account) therefore never gets latchkey's password check or home.
 * "Cannot tell" fails closed in the caller; every answer but "mine" is logged with its reason
 * (the local and NSS-unknown cases only with `debug`: they are the normal path for every other
 * account on the host).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "lk_client.h"
#include "lk_local.h"
#include "lk_priv.h"
#include "module.h"

int lk_pam_is_local(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *phase,
                    const char *user)
{
    const char *local = opts->local_passwd ? opts->local_passwd : LK_LOCAL_PASSWD;
    int listed = lk_local_listed(local, user);
    if (listed < 0)
        pam_syslog(pamh, LOG_ERR, "%s for %s: cannot read %s: %s", phase, user, local,
                   strerror(errno));
    else if (listed && opts->debug)
        pam_syslog(pamh, LOG_DEBUG, "%s: %s is a local account (%s); not latchkey's", phase, user,
                   local);
    return listed;
}

enum lk_pam_owner lk_pam_identify(pam_handle_t *pamh, const struct lk_pam_opts *opts,
                                  const char *phase, const char *user, struct lk_priv_reply *reply)
{
    uid_t uid = 0;
    memset(reply, 0, sizeof *reply);

    int listed = lk_pam_is_local(pamh, opts, phase, user);
    if (listed != 0)
        return listed < 0 ? LK_PAM_CANNOT_TELL : LK_PAM_NOT_MINE;

    int found = lk_local_nss_uid(user, &uid);
    if (found < 0) {
        pam_syslog(pamh, LOG_ERR,
                   "%s for %s: NSS could not say whether the user exists (getpwnam_r: %s); "
                   "is latchkeyd answering on %s/nss.sock?",
                   phase, user, strerror(errno), lk_socket_dir());
        return LK_PAM_CANNOT_TELL;
    }
    if (!found) {
        if (opts->debug)
            pam_syslog(pamh, LOG_DEBUG, "%s: %s is unknown to NSS; not latchkey's", phase, user);
        return LK_PAM_NOT_MINE;
    }

    int status =
        lk_priv_login_check(lk_priv_socket_dir(opts->socket_dir), user, (uint32_t)uid, reply);
    if (opts->debug)
        pam_syslog(pamh, LOG_DEBUG, "LOGIN_CHECK user=%s uid=%lu: %s %s", user, (unsigned long)uid,
                   lk_priv_status_name(status), reply->detail);
    switch (status) {
    case LK_STATUS_OK:
        return LK_PAM_MINE;
    case LK_STATUS_NOTFOUND: {
        char why[160];
        snprintf(why, sizeof why, "latchkey does not serve %s with uid %lu", user,
                 (unsigned long)uid);
        /* the daemon's detail only when it adds something (it usually says the same) */
        int same = reply->detail[0] == '\0' || strcmp(reply->detail, why) == 0;
        pam_syslog(pamh, LOG_NOTICE, "%s: %s%s%s%s", phase, why,
                   same ? "" : " (latchkeyd: ", same ? "" : reply->detail, same ? "" : ")");
        return LK_PAM_NOT_MINE;
    }
    default: /* UNAVAIL, no answer, or a daemon that does not know LOGIN_CHECK */
        lk_pam_log_failure(pamh, phase, user, status, reply);
        return LK_PAM_CANNOT_TELL;
    }
}
