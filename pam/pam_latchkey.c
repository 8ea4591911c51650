/*
 * pam_latchkey.so: asks latchkeyd (priv.sock) whether a login may proceed. Thin by design: it
 * decides nothing itself, it maps the daemon's status to a PAM code.
 *
 * Every phase but session close first asks whose user this is (identity.c: local passwd file,
 * NSS, LOGIN_CHECK). Not latchkey's: auth USER_UNKNOWN, account/session IGNORE (unknown=deny:
 * USER_UNKNOWN), password IGNORE, so the rest of the stack decides. Cannot tell: auth and
 * account AUTHINFO_UNAVAIL, session SESSION_ERR, password AUTHTOK_ERR. Then:
 *
 *   auth      AUTH_PASSWORD   OK→SUCCESS  AUTH_FAILED→AUTH_ERR  NOTFOUND→USER_UNKNOWN
 *                             THROTTLED→MAXTRIES  UNAVAIL/no answer→AUTHINFO_UNAVAIL
 *   account   ACCT_MGMT       OK→SUCCESS  NOTFOUND→IGNORE (unknown=deny: USER_UNKNOWN)
 *                             EXPIRED→ACCT_EXPIRED  UNAVAIL/no answer→AUTHINFO_UNAVAIL
 *   session   SESSION_OPEN / SESSION_CLOSE (see session.c)
 *   password  latchkey's users: PAM_AUTHTOK_ERR, passwords are changed in the user service.
 *
 * auth always checks a password when it is called: nothing in the PAM environment (sshd's
 * SSH_AUTH_INFO_0 included) stands in for one. With sshd's AuthenticationMethods
 * "publickey,keyboard-interactive" the key and the password are both required; a key-only
 * login never calls the auth stack at all.
 *
 * THROTTLED maps to PAM_MAXTRIES: sshd then stops asking for more passwords on this connection
 * ("too many authentication failures"), which is what throttling is for.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "options.h"
#include "lk_priv.h"
#include "module.h"

/* Passwords longer than this are refused without asking the daemon (the request frame is
 * capped at MAX_REQUEST bytes anyway). */
#define LK_PAM_MAX_PASSWORD 1024u

const char *lk_pam_item(pam_handle_t *pamh, int item)
{
    const void *v = NULL;
    if (pam_get_item(pamh, item, &v) != PAM_SUCCESS || v == NULL)
        return "";
    return (const char *)v;
}

int lk_pam_user(pam_handle_t *pamh, const char **user)
{
    int rc = pam_get_user(pamh, user, NULL);
    if (rc != PAM_SUCCESS)
        return rc;
    if (*user == NULL || (*user)[0] == '\0' || strlen(*user) > 255)
        return PAM_USER_UNKNOWN;
    return PAM_SUCCESS;
}

void lk_pam_tell(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *text)
{
    if (!opts->silent)
        pam_error(pamh, "%s", text);
}

static int map_auth_status(int status)
{
    switch (status) {
    case LK_STATUS_OK:
        return PAM_SUCCESS;
    case LK_STATUS_AUTH_FAILED:
        return PAM_AUTH_ERR;
    case LK_STATUS_NOTFOUND:
        return PAM_USER_UNKNOWN;
    case LK_STATUS_THROTTLED:
        return PAM_MAXTRIES;
    case LK_STATUS_EXPIRED:
        return PAM_ACCT_EXPIRED;
    case LK_STATUS_UNAVAIL:
    case LK_PRIV_NO_ANSWER:
        return PAM_AUTHINFO_UNAVAIL;
    default:
        return PAM_SERVICE_ERR;
    }
}

/* Asks the daemon about one password; returns the lk status, *reply says more. */
static int check_password(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *user,
                          const char *password, struct lk_priv_reply *reply)
{
    if (strlen(password) > LK_PAM_MAX_PASSWORD) {
        memset(reply, 0, sizeof *reply);
        return LK_STATUS_AUTH_FAILED;
    }
    int status =
        lk_priv_auth_password(lk_priv_socket_dir(opts->socket_dir), user, password,
                              lk_pam_item(pamh, PAM_SERVICE), lk_pam_item(pamh, PAM_RHOST), reply);
    if (opts->debug)
        pam_syslog(pamh, LOG_DEBUG, "AUTH_PASSWORD user=%s rhost=%s: %s %s", user,
                   lk_pam_item(pamh, PAM_RHOST), lk_priv_status_name(status), reply->detail);
    return status;
}

/* Asks the user through the application's conversation and stores the answer as PAM_AUTHTOK
 * for the modules after this one. *out is a malloc'ed copy the caller wipes and frees. */
static int ask_password(pam_handle_t *pamh, const struct lk_pam_opts *opts, const char *prompt,
                        char **out)
{
    char *resp = NULL;
    int style = opts->echo_pass ? PAM_PROMPT_ECHO_ON : PAM_PROMPT_ECHO_OFF;
    int rc = pam_prompt(pamh, style, &resp, "%s", prompt);
    if (rc != PAM_SUCCESS) {
        /* libpam hands back whatever a failing conversation function returned (pam_vprompt
         * only warns "unexpected response"): it may hold the typed password, so wipe and free
         * it instead of leaking it unwiped. */
        if (resp != NULL) {
            explicit_bzero(resp, strlen(resp));
            free(resp);
        }
        return rc == PAM_CONV_AGAIN ? PAM_INCOMPLETE : PAM_AUTHINFO_UNAVAIL;
    }
    if (resp == NULL)
        return PAM_CONV_ERR;
    rc = pam_set_item(pamh, PAM_AUTHTOK, resp);
    if (rc != PAM_SUCCESS) {
        explicit_bzero(resp, strlen(resp));
        free(resp);
        return rc;
    }
    *out = resp;
    return PAM_SUCCESS;
}

/* One line per authentication. A password verdict (OK, AUTH_FAILED, NOTFOUND) needs no more;
 * anything else says who answered what, or why nobody did, so the admin knows where to look. */
static void log_result(pam_handle_t *pamh, const char *user, int status,
                       const struct lk_priv_reply *reply)
{
    char why[512] = "";
    int verdict =
        status == LK_STATUS_OK || status == LK_STATUS_AUTH_FAILED || status == LK_STATUS_NOTFOUND;
    if (!verdict) {
        why[0] = ':';
        why[1] = ' ';
        lk_priv_describe(status, reply, why + 2, sizeof why - 2);
    }
    int prio = status == LK_STATUS_OK ? LOG_INFO : verdict ? LOG_NOTICE : LOG_ERR;
    pam_syslog(pamh, prio, "authentication %s for %s from %s%s",
               status == LK_STATUS_OK ? "succeeded" : lk_priv_status_name(status), user,
               lk_pam_item(pamh, PAM_RHOST)[0] ? lk_pam_item(pamh, PAM_RHOST) : "local", why);
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct lk_pam_opts opts;
    struct lk_priv_reply who;
    struct lk_priv_reply reply = { 0 };
    const char *user = NULL;
    lk_pam_parse_opts(pamh, flags, argc, argv, &opts);
    int rc = lk_pam_user(pamh, &user);
    if (rc != PAM_SUCCESS)
        return rc;
    switch (lk_pam_identify(pamh, &opts, "auth", user, &who)) {
    case LK_PAM_MINE:
        break;
    case LK_PAM_NOT_MINE:
        return PAM_USER_UNKNOWN;
    default:
        return PAM_AUTHINFO_UNAVAIL;
    }
    /* The module's prompt= wins over the daemon's configured one. */
    const char *prompt = opts.prompt     ? opts.prompt
                         : who.prompt[0] ? who.prompt
                                         : LK_PAM_DEFAULT_PROMPT;

    int status = LK_PRIV_NO_ANSWER;
    int asked_daemon = 0;
    if (opts.use_first_pass || opts.try_first_pass) {
        const char *stored = NULL;
        const void *item = NULL;
        if (pam_get_item(pamh, PAM_AUTHTOK, &item) == PAM_SUCCESS)
            stored = item;
        if (stored != NULL) {
            status = check_password(pamh, &opts, user, stored, &reply);
            asked_daemon = 1;
        } else if (opts.use_first_pass) {
            pam_syslog(pamh, LOG_NOTICE, "use_first_pass: no password from an earlier module");
            return PAM_AUTH_ERR;
        }
    }
    int retry = !asked_daemon ||
                (opts.try_first_pass && !opts.use_first_pass && status == LK_STATUS_AUTH_FAILED);
    if (retry) {
        char *password = NULL;
        rc = ask_password(pamh, &opts, prompt, &password);
        if (rc != PAM_SUCCESS)
            return rc;
        status = check_password(pamh, &opts, user, password, &reply);
        explicit_bzero(password, strlen(password));
        free(password);
    }
    log_result(pamh, user, status, &reply);
    if (status == LK_STATUS_THROTTLED)
        lk_pam_tell(pamh, &opts, "Too many failed logins; try again later.");
    return map_auth_status(status);
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh;
    (void)flags;
    (void)argc;
    (void)argv;
    return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct lk_pam_opts opts;
    struct lk_priv_reply reply;
    const char *user = NULL;
    lk_pam_parse_opts(pamh, flags, argc, argv, &opts);
    int rc = lk_pam_user(pamh, &user);
    if (rc != PAM_SUCCESS)
        return rc;
    switch (lk_pam_identify(pamh, &opts, "account", user, &reply)) {
    case LK_PAM_MINE:
        break;
    case LK_PAM_NOT_MINE:
        return opts.unknown_deny ? PAM_USER_UNKNOWN : PAM_IGNORE;
    default:
        return PAM_AUTHINFO_UNAVAIL;
    }
    int status =
        lk_priv_acct_mgmt(lk_priv_socket_dir(opts.socket_dir), user, lk_pam_item(pamh, PAM_SERVICE),
                          lk_pam_item(pamh, PAM_RHOST), &reply);
    if (opts.debug)
        pam_syslog(pamh, LOG_DEBUG, "ACCT_MGMT user=%s: %s %s", user, lk_priv_status_name(status),
                   reply.detail);
    switch (status) {
    case LK_STATUS_OK:
        return PAM_SUCCESS;
    case LK_STATUS_NOTFOUND:
        return opts.unknown_deny ? PAM_USER_UNKNOWN : PAM_IGNORE;
    case LK_STATUS_EXPIRED:
        pam_syslog(pamh, LOG_NOTICE, "account %s refused: %s", user, reply.detail);
        lk_pam_tell(pamh, &opts, "Your account is no longer valid.");
        return PAM_ACCT_EXPIRED;
    case LK_STATUS_UNAVAIL:
    case LK_PRIV_NO_ANSWER:
        lk_pam_log_failure(pamh, "account", user, status, &reply);
        return PAM_AUTHINFO_UNAVAIL;
    default:
        lk_pam_log_failure(pamh, "account", user, status, &reply);
        return PAM_PERM_DENIED;
    }
}

void lk_pam_log_failure(pam_handle_t *pamh, const char *phase, const char *user, int status,
                        const struct lk_priv_reply *reply)
{
    char why[512];
    lk_priv_describe(status, reply, why, sizeof why);
    if (status == LK_STATUS_UNAVAIL || status == LK_PRIV_NO_ANSWER)
        pam_syslog(pamh, LOG_ERR, "%s for %s: %s", phase, user, why);
    else
        pam_syslog(pamh, LOG_ERR, "%s for %s refused: %s", phase, user, why);
}

/* Only latchkey's users are refused (their password lives in the user service); everybody
 * else is left to the rest of the password stack (pam_unix for local accounts). */
PAM_EXTERN int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct lk_pam_opts opts;
    struct lk_priv_reply who;
    const char *user = NULL;
    lk_pam_parse_opts(pamh, flags, argc, argv, &opts);
    if (lk_pam_user(pamh, &user) != PAM_SUCCESS)
        return PAM_IGNORE; /* no user, nothing of ours to change */
    enum lk_pam_owner owner = lk_pam_identify(pamh, &opts, "password", user, &who);
    if (owner == LK_PAM_NOT_MINE)
        return PAM_IGNORE;
    /* Refused already in the PAM_PRELIM_CHECK pass: libpam then skips the update pass. */
    if (owner == LK_PAM_MINE)
        lk_pam_tell(pamh, &opts, "Passwords are changed in the user service, not on this host.");
    return PAM_AUTHTOK_ERR;
}
