/*
 * lk_priv: the priv.sock requests the PAM module sends (LOGIN_CHECK, AUTH_PASSWORD, ACCT_MGMT,
 * SESSION_OPEN, SESSION_CLOSE), encoded from latchkey_proto.h and carried by the shared client.
 * One call = one connection, one request, one reply; every call is bounded by the client's
 * connect/read timeout. Nothing here logs, and request buffers holding a password are wiped.
 */
#ifndef LK_PRIV_H
#define LK_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey_proto.h"

/* Returned instead of a status when the daemon could not be asked: no socket, refused,
 * timeout, or a reply that breaks the protocol. Callers treat it like UNAVAIL. */
#define LK_PRIV_NO_ANSWER (-1)

struct lk_priv_reply {
    /* human-readable detail of a non-OK status, NUL-terminated, possibly cut short; for
     * LK_PRIV_NO_ANSWER why the daemon could not be asked (lk_io_describe) */
    char detail[256];
    /* LOGIN_CHECK only: the configured password prompt, possibly cut short */
    char prompt[512];
    /* SESSION_OPEN only */
    char session_id[64];
    char home[4096];
    uint32_t umask;
    uint8_t chroot;
};

/* The directory holding priv.sock: `option` when not NULL/empty, else $LATCHKEY_SOCKET_DIR
 * (lk_socket_dir(): secure_getenv, so ignored in set-uid programs), else /run/latchkey. */
const char *lk_priv_socket_dir(const char *option);

/* Each returns an lk_status code, or LK_PRIV_NO_ANSWER. `out` is always initialised.
 * lk_priv_login_check: OK only when latchkey serves `user` with exactly `uid`. */
int lk_priv_login_check(const char *sock_dir, const char *user, uint32_t uid,
                        struct lk_priv_reply *out);
int lk_priv_auth_password(const char *sock_dir, const char *user, const char *password,
                          const char *service, const char *rhost, struct lk_priv_reply *out);
int lk_priv_acct_mgmt(const char *sock_dir, const char *user, const char *service,
                      const char *rhost, struct lk_priv_reply *out);
int lk_priv_session_open(const char *sock_dir, const char *user, const char *service,
                         const char *rhost, const char *tty, uint32_t pid,
                         struct lk_priv_reply *out);
int lk_priv_session_close(const char *sock_dir, const char *user, const char *service,
                          uint32_t pid, struct lk_priv_reply *out);

/* Name of a status code for log lines ("OK", "NOTFOUND", …, "NO_ANSWER"). */
const char *lk_priv_status_name(int status);

#endif /* LK_PRIV_H */
