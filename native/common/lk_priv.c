/*
 * lk_priv: encodes the PAM module's priv.sock requests and decodes their replies. The socket
 * work (connect with timeout, whole-frame send and receive) is the shared client's, see
 * lk_priv_exchange() at the bottom.
 */
#define _GNU_SOURCE
#include "lk_priv.h"
#include "lk_wire.h"
#include "lk_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request frame under construction: lk_wire's writer over a fixed buffer. */
struct lk_wbuf {
    uint8_t data[LK_MAX_REQUEST + 4u];
    struct lk_writer w;
    size_t len;
};

static void begin_request(struct lk_wbuf *b, uint16_t opcode)
{
    lk_wr_init(&b->w, b->data, sizeof b->data);
    lk_wr_request(&b->w, opcode);
    b->len = 0;
}

/* Copies a received str into dst (size cap > 0), NUL-terminated. When `must_fit`, a string
 * that does not fit marks the reply bad; otherwise it is cut short. */
static void get_str(struct lk_reader *r, char *dst, size_t cap, int must_fit)
{
    struct lk_str s = lk_rd_str(r);
    dst[0] = '\0';
    if (r->bad)
        return;
    if (must_fit && (size_t)s.len >= cap) {
        r->bad = 1;
        return;
    }
    size_t keep = (size_t)s.len < cap ? s.len : cap - 1;
    memcpy(dst, s.p, keep);
    dst[keep] = '\0';
}

/* ---- transport ------------------------------------------------------------------------- */

/* One request/reply over priv.sock with the shared client; on success *body (malloc'ed, the
 * caller frees) holds the reply after its length prefix. On failure `why` says what went wrong
 * (no socket, timeout, an impostor listening on the socket path, ...). */
static int lk_priv_exchange(const char *sock_dir, const struct lk_wbuf *w, uint8_t **body,
                            size_t *body_len, char *why, size_t why_cap)
{
    return lk_client_call(sock_dir, "priv.sock", w->data, w->len, LK_MAX_REPLY, body, body_len,
                          why, why_cap) == LK_IO_OK
               ? 0
               : -1;
}

/* ---- requests -------------------------------------------------------------------------- */

static void reply_init(struct lk_priv_reply *out)
{
    memset(out, 0, sizeof *out);
}

/* Sends w, checks the reply header, decodes the detail of a non-OK status; for OK leaves the
 * payload in *r. Returns the status or LK_PRIV_NO_ANSWER. */
static int call(const char *sock_dir, struct lk_wbuf *w, uint16_t opcode, struct lk_priv_reply *out,
                uint8_t **body, struct lk_reader *r)
{
    size_t len = 0;
    *body = NULL;
    w->len = lk_wr_finish(&w->w);
    if (w->len == 0)
        return LK_PRIV_NO_ANSWER;
    if (lk_priv_exchange(sock_dir, w, body, &len, out->detail, sizeof out->detail) != 0) {
        *body = NULL;
        return LK_PRIV_NO_ANSWER;
    }
    lk_rd_init(r, *body, len);
    uint16_t version = lk_rd_u16(r);
    uint16_t op = lk_rd_u16(r);
    uint16_t status = lk_rd_u16(r);
    if (r->bad || version != LK_PROTO_VERSION || op != opcode) {
        snprintf(out->detail, sizeof out->detail, "%s", lk_io_text(LK_IO_PROTOCOL));
        return LK_PRIV_NO_ANSWER;
    }
    if (status != LK_STATUS_OK) {
        get_str(r, out->detail, sizeof out->detail, 0);
        if (lk_rd_done(r) != 0) {
            snprintf(out->detail, sizeof out->detail, "%s", lk_io_text(LK_IO_PROTOCOL));
            return LK_PRIV_NO_ANSWER;
        }
    }
    return status;
}

/* For replies with an empty OK payload. */
static int simple_call(const char *sock_dir, struct lk_wbuf *w, uint16_t opcode,
                       struct lk_priv_reply *out)
{
    uint8_t *body;
    struct lk_reader r;
    int status = call(sock_dir, w, opcode, out, &body, &r);
    if (status == LK_STATUS_OK && lk_rd_done(&r) != 0)
        status = LK_PRIV_NO_ANSWER;
    free(body);
    return status;
}

int lk_priv_auth_password(const char *sock_dir, const char *user, const char *password,
                          const char *service, const char *rhost, struct lk_priv_reply *out)
{
    struct lk_wbuf w;
    reply_init(out);
    begin_request(&w, LK_OP_AUTH_PASSWORD);
    lk_wr_cstr(&w.w, user);
    lk_wr_cstr(&w.w, password);
    lk_wr_cstr(&w.w, service);
    lk_wr_cstr(&w.w, rhost);
    int status = simple_call(sock_dir, &w, LK_OP_AUTH_PASSWORD, out);
    explicit_bzero(&w, sizeof w); /* the frame holds the password */
    return status;
}

int lk_priv_acct_mgmt(const char *sock_dir, const char *user, const char *service,
                      const char *rhost, struct lk_priv_reply *out)
{
    struct lk_wbuf w;
    reply_init(out);
    begin_request(&w, LK_OP_ACCT_MGMT);
    lk_wr_cstr(&w.w, user);
    lk_wr_cstr(&w.w, service);
    lk_wr_cstr(&w.w, rhost);
    return simple_call(sock_dir, &w, LK_OP_ACCT_MGMT, out);
}

int lk_priv_session_open(const char *sock_dir, const char *user, const char *service,
                         const char *rhost, const char *tty, uint32_t pid,
                         struct lk_priv_reply *out)
{
    struct lk_wbuf w;
    uint8_t *body;
    struct lk_reader r;
    reply_init(out);
    begin_request(&w, LK_OP_SESSION_OPEN);
    lk_wr_cstr(&w.w, user);
    lk_wr_cstr(&w.w, service);
    lk_wr_cstr(&w.w, rhost);
    lk_wr_cstr(&w.w, tty);
    lk_wr_u32(&w.w, pid);
    int status = call(sock_dir, &w, LK_OP_SESSION_OPEN, out, &body, &r);
    if (status == LK_STATUS_OK) {
        get_str(&r, out->session_id, sizeof out->session_id, 1);
        get_str(&r, out->home, sizeof out->home, 1);
        out->umask = lk_rd_u32(&r);
        out->chroot = lk_rd_u8(&r);
        if (lk_rd_done(&r) != 0 || out->home[0] != '/')
            status = LK_PRIV_NO_ANSWER;
    }
    free(body);
    return status;
}

int lk_priv_login_check(const char *sock_dir, const char *user, uint32_t uid,
                        struct lk_priv_reply *out)
{
    struct lk_wbuf w;
    uint8_t *body;
    struct lk_reader r;
    reply_init(out);
    begin_request(&w, LK_OP_LOGIN_CHECK);
    lk_wr_cstr(&w.w, user);
    lk_wr_u32(&w.w, uid);
    int status = call(sock_dir, &w, LK_OP_LOGIN_CHECK, out, &body, &r);
    if (status == LK_STATUS_OK) {
        /* The prompt is the admin's text from latchkey.conf: cut short rather than refused. */
        get_str(&r, out->prompt, sizeof out->prompt, 0);
        if (lk_rd_done(&r) != 0)
            status = LK_PRIV_NO_ANSWER;
    }
    free(body);
    return status;
}

int lk_priv_session_close(const char *sock_dir, const char *user, const char *service,
                          uint32_t pid, struct lk_priv_reply *out)
{
    struct lk_wbuf w;
    reply_init(out);
    begin_request(&w, LK_OP_SESSION_CLOSE);
    lk_wr_cstr(&w.w, user);
    lk_wr_cstr(&w.w, service);
    lk_wr_u32(&w.w, pid);
    return simple_call(sock_dir, &w, LK_OP_SESSION_CLOSE, out);
}

const char *lk_priv_socket_dir(const char *option)
{
    if (option && option[0])
        return option;
    return lk_socket_dir();
}

const char *lk_priv_status_name(int status)
{
    static const char *const names[] = {
        "OK", "NOTFOUND", "UNAVAIL", "AUTH_FAILED", "THROTTLED", "EXPIRED", "DENIED",
        "BAD_REQUEST", "BAD_VERSION", "UNKNOWN_OPCODE", "INTERNAL", "LIMIT",
    };
    if (status >= 0 && (size_t)status < sizeof names / sizeof names[0])
        return names[status];
    if (status == LK_PRIV_NO_ANSWER)
        return "NO_ANSWER";
    return "UNKNOWN_STATUS";
}
