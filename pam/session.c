/*
 * Session phase of pam_latchkey.so.
 *
 * open:  after the identity check (identity.c), SESSION_OPEN makes latchkeyd create the home (first login) and record the session under
 *        the pid of the calling process: for sshd that is the per-connection privileged process,
 *        which lives as long as the login, so `latchkeyctl sessions kill` can SIGTERM it. The
 *        module then sets the umask (umask= option, else the daemon's ega_dir_umask) and, when
 *        the daemon says chroot=1 (chroot_sessions), confines the calling process: chroot(home)
 *        then chdir("/").
 *
 *        Which confinement to use: for sshd/SFTP, sshd's own "ChrootDirectory %h" is the normal
 *        way and chroot_sessions stays off; sshd opens the PAM session in its privileged process
 *        and chroots the user's child itself later, after reading /etc and /dev it still needs.
 *        chroot_sessions is for services whose process that opens the session then runs the
 *        user's program in that same process tree without chrooting (e.g. a custom SFTP server);
 *        a chroot must be followed by chdir or the cwd still points outside (chroot(2)).
 *
 * close: local accounts are ignored at once (no socket I/O); otherwise SESSION_CLOSE by pid
 *        without the NSS and LOGIN_CHECK steps: the daemon closes only a session it recorded for
 *        this pid (NOTFOUND otherwise). A failure is logged but never fails the
 *        logout: the daemon drops sessions whose process is gone anyway.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "options.h"
#include "lk_priv.h"
#include "lk_procstat.h"
#include "module.h"

static int confine(pam_handle_t *pamh, const char *user, const char *home)
{
    if (chroot(home) != 0) {
        pam_syslog(pamh, LOG_ERR, "session %s: chroot(%s): %m", user, home);
        return PAM_SESSION_ERR;
    }
    if (chdir("/") != 0) {
        pam_syslog(pamh, LOG_ERR, "session %s: chdir(/) in %s: %m", user, home);
        return PAM_SESSION_ERR;
    }
    return PAM_SUCCESS;
}

/* Offers the session id to the application's environment (sshd passes it to the session). */
static void export_session_id(pam_handle_t *pamh, const char *id)
{
    char env[96];
    int n = snprintf(env, sizeof env, "LATCHKEY_SESSION_ID=%s", id);
    if (n > 0 && (size_t)n < sizeof env)
        (void)pam_putenv(pamh, env);
}

static int opened(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *user,
                  const struct lk_priv_reply *reply)
{
    mode_t mask = opts->have_umask ? opts->umask : (mode_t)(reply->umask & 0777u);
    umask(mask);
    export_session_id(pamh, reply->session_id);
    pam_syslog(pamh, LOG_INFO, "session %s opened for %s, home %s, umask %03o%s", reply->session_id,
               user, reply->home, (unsigned)mask, reply->chroot ? ", chroot" : "");
    if (reply->chroot)
        return confine(pamh, user, reply->home);
    return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct lk_pam_opts opts;
    struct lk_priv_reply reply;
    const char *user = NULL;
    lk_pam_parse_opts(pamh, flags, argc, argv, &opts);
    int rc = lk_pam_user(pamh, &user);
    if (rc != PAM_SUCCESS)
        return rc;
    switch (lk_pam_identify(pamh, &opts, "session", user, &reply)) {
    case LK_PAM_MINE:
        break;
    case LK_PAM_NOT_MINE:
        return opts.unknown_deny ? PAM_USER_UNKNOWN : PAM_IGNORE;
    default: /* pam_sm_open_session(3) has no "unavailable": a session error */
        return PAM_SESSION_ERR;
    }
    /* Our own start time: latchkeyd (unprivileged) may not see our /proc entry (hidepid), and
     * without it the session could be recorded but never ended. "" when unreadable. */
    char start[32];
    lk_self_starttime(start, sizeof start);
    int status =
        lk_priv_session_open(lk_priv_socket_dir(opts.socket_dir), user,
                             lk_pam_item(pamh, PAM_SERVICE), lk_pam_item(pamh, PAM_RHOST),
                             lk_pam_item(pamh, PAM_TTY), (uint32_t)getpid(), start, &reply);
    if (opts.debug)
        pam_syslog(pamh, LOG_DEBUG, "SESSION_OPEN user=%s pid=%ld: %s %s", user, (long)getpid(),
                   lk_priv_status_name(status), reply.detail);
    switch (status) {
    case LK_STATUS_OK:
        return opened(pamh, &opts, user, &reply);
    case LK_STATUS_NOTFOUND:
        return opts.unknown_deny ? PAM_USER_UNKNOWN : PAM_IGNORE;
    case LK_STATUS_LIMIT:
        pam_syslog(pamh, LOG_NOTICE, "session for %s refused: %s", user, reply.detail);
        lk_pam_tell(pamh, &opts, "Too many open sessions.");
        return PAM_PERM_DENIED;
    default: /* UNAVAIL, no answer, or a status this phase cannot use */
        lk_pam_log_failure(pamh, "session", user, status, &reply);
        return PAM_SESSION_ERR;
    }
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct lk_pam_opts opts;
    struct lk_priv_reply reply;
    const char *user = NULL;
    lk_pam_parse_opts(pamh, flags, argc, argv, &opts);
    if (lk_pam_user(pamh, &user) != PAM_SUCCESS)
        return PAM_SUCCESS;
    if (lk_pam_is_local(pamh, &opts, "session close", user) == 1)
        return PAM_IGNORE; /* a local account's logout never waits on latchkeyd */
    int status = lk_priv_session_close(lk_priv_socket_dir(opts.socket_dir), user,
                                       lk_pam_item(pamh, PAM_SERVICE), (uint32_t)getpid(), &reply);
    if (status == LK_STATUS_NOTFOUND)
        return PAM_IGNORE;
    if (status != LK_STATUS_OK) {
        char why[512];
        lk_priv_describe(status, &reply, why, sizeof why);
        pam_syslog(pamh, LOG_WARNING, "session close for %s: %s", user, why);
    } else if (opts.debug)
        pam_syslog(pamh, LOG_DEBUG, "SESSION_CLOSE user=%s pid=%ld: OK", user, (long)getpid());
    return PAM_SUCCESS;
}
