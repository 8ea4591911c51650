/*
 * lk_priv: the priv.sock requests the PAM module sends (LOGIN_CHECK, AUTH_PASSWORD, ACCT_MGMT,
 * SESSION_OPEN, SESSION_CLOSE), written by the generated lk_msgs.c and carried by the shared
 * client (lk_client_call). What is policy stays here: what a reply field may hold and how much
 * of it is kept, and the words a log line uses for an answer or a failure to get one.
 * One call = one connection, one request, one reply; every call is bounded by the client's
 * connect/read timeout. Nothing here logs, and request buffers holding a password are wiped.
 */
#ifndef LK_PRIV_H
#define LK_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey_proto.h"

/* Returned instead of a status when the daemon could not be asked: no socket, refused,
 * timeout, or a reply that breaks the protocol. Callers treat it like UNAVAIL; `io` in the
 * reply says which (lk_io_cause). */
#define LK_PRIV_NO_ANSWER (-1)

struct lk_priv_reply {
    /* human-readable detail of a non-OK status, NUL-terminated, possibly cut short; for
     * LK_PRIV_NO_ANSWER why the daemon could not be asked (lk_io_describe) */
    char detail[256];
    /* LK_PRIV_NO_ANSWER only: the enum lk_io outcome of the call (LK_IO_PROTOCOL for a reply
     * that arrived whole but breaks the protocol) */
    int io;
    /* the priv.sock path asked, for log lines (cut short if absurdly long) */
    char socket[128];
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
                         const char *rhost, const char *tty, uint32_t pid, const char *pid_start,
                         struct lk_priv_reply *out);
int lk_priv_session_close(const char *sock_dir, const char *user, const char *service, uint32_t pid,
                          struct lk_priv_reply *out);

/* Decodes a reply body (after the length prefix) to a request of `opcode` into out, leaving
 * out->socket alone. Pure: the golden test and the fuzzer call it. Returns the status, or
 * LK_PRIV_NO_ANSWER with io LK_IO_PROTOCOL when the reply breaks the protocol (a SESSION_OPEN
 * home that is not absolute or does not fit included). */
int lk_priv_decode(uint16_t opcode, const uint8_t *body, size_t len, struct lk_priv_reply *out);

/* Name of a status code for log lines ("OK", "NOTFOUND", …, "NO_ANSWER"). */
const char *lk_priv_status_name(int status);

/* One line for a log saying who answered what: "latchkeyd at PATH answered UNAVAIL: DETAIL", or
 * for LK_PRIV_NO_ANSWER "no answer from latchkeyd at PATH: CAUSE (DETAIL)" with CAUSE one of
 * lk_io_cause()'s words. Always NUL-terminates (cap > 0). */
void lk_priv_describe(int status, const struct lk_priv_reply *r, char *buf, size_t cap);

#endif /* LK_PRIV_H */
