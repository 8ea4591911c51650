/*
 * lk_priv: see lk_priv.h. Requests are written by the generated lk_msgs.c, replies read by it;
 * ask() carries one over priv.sock, lk_priv_decode() applies what the module requires of the
 * reply fields.
 */
#define _GNU_SOURCE
#include "lk_priv.h"
#include "lk_client.h"
#include "lk_msgs.h"
#include "lk_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies a received str into dst (size cap > 0), NUL-terminated. 0, or -1 when `must_fit` and
 * the string does not fit (otherwise it is cut short). */
static int copy_str(char *dst, size_t cap, struct lk_str s, int must_fit)
{
    dst[0] = '\0';
    if (must_fit && (size_t)s.len >= cap)
        return -1;
    size_t keep = (size_t)s.len < cap ? s.len : cap - 1;
    memcpy(dst, s.p, keep);
    dst[keep] = '\0';
    return 0;
}

static int protocol_error(struct lk_priv_reply *out, const char *why)
{
    out->io = LK_IO_PROTOCOL;
    snprintf(out->detail, sizeof out->detail, "%s: %s", lk_io_text(LK_IO_PROTOCOL), why);
    return LK_PRIV_NO_ANSWER;
}

/* The OK payload of each reply the module reads; 0, or -1 with out->detail saying why not. */
static int decode_ok(uint16_t opcode, struct lk_reader *payload, struct lk_priv_reply *out)
{
    struct lk_msg_login_check_reply check;
    struct lk_msg_session_open_reply opened;
    switch (opcode) {
    case LK_OP_LOGIN_CHECK:
        if (lk_msg_login_check_read_reply(payload, &check) != 0)
            return -1;
        /* The prompt is the admin's text from latchkey.conf: cut short rather than refused. */
        return copy_str(out->prompt, sizeof out->prompt, check.prompt, 0);
    case LK_OP_SESSION_OPEN:
        if (lk_msg_session_open_read_reply(payload, &opened) != 0 ||
            copy_str(out->session_id, sizeof out->session_id, opened.session_id, 1) != 0 ||
            copy_str(out->home, sizeof out->home, opened.home, 1) != 0)
            return -1;
        out->umask = opened.umask;
        out->chroot = opened.chroot;
        /* The module may chroot into it: only an absolute path will do. */
        return out->home[0] == '/' ? 0 : -1;
    case LK_OP_AUTH_PASSWORD:
        return lk_msg_auth_password_read_reply(payload);
    case LK_OP_ACCT_MGMT:
        return lk_msg_acct_mgmt_read_reply(payload);
    case LK_OP_SESSION_CLOSE:
        return lk_msg_session_close_read_reply(payload);
    default:
        return -1;
    }
}

int lk_priv_decode(uint16_t opcode, const uint8_t *body, size_t len, struct lk_priv_reply *out)
{
    struct lk_reply rep;
    out->detail[0] = '\0';
    out->io = LK_IO_OK;
    if (lk_reply_open(body, len, opcode, &rep) != 0)
        return protocol_error(out, "bad reply header or detail");
    if (rep.status != LK_STATUS_OK) {
        (void)copy_str(out->detail, sizeof out->detail, rep.detail, 0);
        return rep.status;
    }
    if (decode_ok(opcode, &rep.payload, out) != 0)
        return protocol_error(out, "OK payload malformed, or a field the module cannot use");
    return LK_STATUS_OK;
}

/* Sends a request frame (n bytes, 0 when the writer could not build it) and decodes the reply. */
static int ask(const char *sock_dir, uint16_t opcode, const uint8_t *req, size_t n,
               struct lk_priv_reply *out)
{
    uint8_t *body = NULL;
    size_t len = 0;
    char path[sizeof out->socket];
    const char *dir = sock_dir ? sock_dir : lk_socket_dir();
    memset(out, 0, sizeof *out);
    snprintf(out->socket, sizeof out->socket, "%s/priv.sock", dir);
    const char *refused = n == 0 ? "request does not fit in a frame"
                          : lk_socket_path(path, sizeof path, dir, "priv.sock") != 0
                              ? "socket path too long for a Unix socket address"
                              : NULL;
    if (refused) {
        out->io = LK_IO_SYSTEM;
        snprintf(out->detail, sizeof out->detail, "%s", refused);
        return LK_PRIV_NO_ANSWER;
    }
    int rc = lk_client_call(sock_dir, "priv.sock", req, n, LK_MAX_REPLY, &body, &len, out->detail,
                            sizeof out->detail);
    if (rc != LK_IO_OK) {
        out->io = rc;
        return LK_PRIV_NO_ANSWER;
    }
    int status = lk_priv_decode(opcode, body, len, out);
    free(body);
    return status;
}

int lk_priv_auth_password(const char *sock_dir, const char *user, const char *password,
                          const char *service, const char *rhost, struct lk_priv_reply *out)
{
    uint8_t req[LK_MAX_REQUEST + 4u];
    size_t n = lk_msg_auth_password_request(req, sizeof req, user, password, service, rhost);
    int status = ask(sock_dir, LK_OP_AUTH_PASSWORD, req, n, out);
    explicit_bzero(req, sizeof req); /* the frame holds the password */
    return status;
}

int lk_priv_acct_mgmt(const char *sock_dir, const char *user, const char *service,
                      const char *rhost, struct lk_priv_reply *out)
{
    uint8_t req[LK_MAX_REQUEST + 4u];
    size_t n = lk_msg_acct_mgmt_request(req, sizeof req, user, service, rhost);
    return ask(sock_dir, LK_OP_ACCT_MGMT, req, n, out);
}

int lk_priv_session_open(const char *sock_dir, const char *user, const char *service,
                         const char *rhost, const char *tty, uint32_t pid, const char *pid_start,
                         struct lk_priv_reply *out)
{
    uint8_t req[LK_MAX_REQUEST + 4u];
    size_t n =
        lk_msg_session_open_request(req, sizeof req, user, service, rhost, tty, pid, pid_start);
    return ask(sock_dir, LK_OP_SESSION_OPEN, req, n, out);
}

int lk_priv_login_check(const char *sock_dir, const char *user, uint32_t uid,
                        struct lk_priv_reply *out)
{
    uint8_t req[LK_MAX_REQUEST + 4u];
    size_t n = lk_msg_login_check_request(req, sizeof req, user, uid);
    return ask(sock_dir, LK_OP_LOGIN_CHECK, req, n, out);
}

int lk_priv_session_close(const char *sock_dir, const char *user, const char *service, uint32_t pid,
                          struct lk_priv_reply *out)
{
    uint8_t req[LK_MAX_REQUEST + 4u];
    size_t n = lk_msg_session_close_request(req, sizeof req, user, service, pid);
    return ask(sock_dir, LK_OP_SESSION_CLOSE, req, n, out);
}

const char *lk_priv_socket_dir(const char *option)
{
    if (option && option[0])
        return option;
    return lk_socket_dir();
}

const char *lk_priv_status_name(int status)
{
    if (status == LK_PRIV_NO_ANSWER)
        return "NO_ANSWER";
    const char *name = lk_status_name(status);
    return name ? name : "UNKNOWN_STATUS";
}

void lk_priv_describe(int status, const struct lk_priv_reply *r, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    if (status == LK_PRIV_NO_ANSWER)
        snprintf(buf, cap, "no answer from latchkeyd at %s: %s (%s)", r->socket, lk_io_cause(r->io),
                 r->detail[0] ? r->detail : lk_io_text(r->io));
    else
        snprintf(buf, cap, "latchkeyd at %s answered %s%s%s", r->socket,
                 lk_priv_status_name(status), r->detail[0] ? ": " : "", r->detail);
}
