/* fake_daemon: see fake_daemon.h. Replies are built with the shared writer (lk_wire); the
 * golden vectors check that writer's format against the TypeScript codec independently. */
#define _GNU_SOURCE
#include "fake_daemon.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "latchkey_proto.h"
#include "lk_wire.h"

#define MAX_CONNS 256

struct conn {
    struct fake_daemon *f;
    int fd;
    pid_t peer;
    pthread_t thread;
    uint8_t *out; /* reply buffer; kept here so a fork child's leak check sees it reachable */
};

struct fake_daemon {
    char path[108];
    int listen_fd;
    pthread_t acceptor;
    pthread_mutex_t lock;
    enum fake_mode mode;
    unsigned nconns, nrequests;
    struct conn conns[MAX_CONNS];
    unsigned per_conn_requests[MAX_CONNS];
};

static char big_gecos[2001];

static void put_passwd(struct lk_writer *w, const char *name, unsigned uid, const char *gecos)
{
    char dir[128];
    snprintf(dir, sizeof dir, "/lega/homes/%s", name);
    lk_wr_cstr(w, name);
    lk_wr_u32(w, uid);
    lk_wr_u32(w, 10000);
    lk_wr_cstr(w, gecos);
    lk_wr_cstr(w, dir);
    lk_wr_cstr(w, "/bin/bash");
}

/* The enumeration order of the fake's users: index -> name/uid. */
static void user_at(unsigned i, char *name, size_t cap, unsigned *uid)
{
    if (i == 0)
        snprintf(name, cap, "alice");
    else if (i == 1)
        snprintf(name, cap, "biggecos");
    else
        snprintf(name, cap, "user%02u", i - 2);
    *uid = i == 0 ? 11001 : i == 1 ? 11002 : 12000 + (i - 2);
}

static int find_user(const struct lk_str *name, unsigned uid, unsigned *idx)
{
    for (unsigned i = 0; i < FAKE_USERS; i++) {
        char n[32];
        unsigned u;
        user_at(i, n, sizeof n, &u);
        if (name ? lk_str_eq(*name, n) : u == uid) {
            *idx = i;
            return 1;
        }
    }
    return 0;
}

static void put_user(struct lk_writer *w, unsigned i)
{
    char n[32];
    unsigned u;
    user_at(i, n, sizeof n, &u);
    put_passwd(w, n, u, i == 1 ? big_gecos : "Fake User");
}

static void put_group(struct lk_writer *w, int crowd)
{
    lk_wr_cstr(w, crowd ? "crowd" : "lega");
    lk_wr_u32(w, crowd ? 10001 : 10000);
    lk_wr_u16(w, crowd ? 300 : 2);
    for (unsigned i = 0; i < (crowd ? 300u : 2u); i++) {
        char m[32];
        if (crowd && i == 150)
            snprintf(m, sizeof m, "alice"); /* alice is in both groups (initgroups tests) */
        else
            snprintf(m, sizeof m, crowd ? "member%03u" : (i ? "biggecos" : "alice"), i);
        lk_wr_cstr(w, m);
    }
}

static void reply_head(struct lk_writer *w, unsigned version, unsigned op, unsigned status)
{
    lk_wr_u32(w, 0);
    lk_wr_u16(w, (uint16_t)version);
    lk_wr_u16(w, (uint16_t)op);
    lk_wr_u16(w, (uint16_t)status);
}

static void status_only(struct lk_writer *w, unsigned op, unsigned status, const char *detail)
{
    w->len = 0;
    reply_head(w, LK_PROTO_VERSION, op, status);
    lk_wr_cstr(w, detail);
}

/* Builds the normal answer to one request into w (length patched by the caller). */
static void answer(struct lk_writer *w, unsigned op, struct lk_reader *req, enum fake_mode mode)
{
    unsigned idx = 0;
    unsigned version = mode == FAKE_WRONG_VERSION ? 2 : LK_PROTO_VERSION;
    unsigned rop = mode == FAKE_WRONG_OPCODE ? (op == LK_OP_PING ? LK_OP_PW_BY_NAME : LK_OP_PING) : op;
    reply_head(w, version, rop, LK_STATUS_OK);
    if (op == LK_OP_PW_BY_NAME || op == LK_OP_PW_BY_UID || op == LK_OP_KEYS_BY_NAME) {
        struct lk_str name = { "", 0 };
        unsigned uid = 0;
        if (op == LK_OP_PW_BY_UID)
            uid = lk_rd_u32(req);
        else
            name = lk_rd_str(req);
        if (op != LK_OP_PW_BY_UID && lk_str_eq(name, "flaky")) {
            status_only(w, op, LK_STATUS_UNAVAIL, "user service unavailable");
        } else if (!find_user(op == LK_OP_PW_BY_UID ? NULL : &name, uid, &idx)) {
            status_only(w, op, LK_STATUS_NOTFOUND, "no such user");
        } else if (op == LK_OP_KEYS_BY_NAME) {
            lk_wr_u16(w, mode == FAKE_COUNT_OVERFLOW ? 60000 : 4);
            lk_wr_cstr(w, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C alice@demo");
            lk_wr_cstr(w, "command=\"/bin/sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C");
            lk_wr_cstr(w, "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C type-mismatch");
            lk_wr_cstr(w, "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBKYG/pcrNaQCzfFMwfnVcM1HLnWhwh/guMXPUQNdOmamDQbS9NAQOf1muMRMYg1R4/yOf08cW6yd2VY1KH+ZM0= heidi");
        } else {
            char n[32];
            unsigned u;
            if (mode == FAKE_WRONG_ENTRY)
                idx = idx == 0 ? 2 : 0;
            user_at(idx, n, sizeof n, &u);
            put_passwd(w, n, mode == FAKE_ROOT ? 0 : u, idx == 1 ? big_gecos : "Fake User");
        }
    } else if (op == LK_OP_PW_LIST) {
        unsigned start = lk_rd_u32(req), first = FAKE_USERS, count = 0, next = start;
        for (unsigned i = 0; i < FAKE_USERS && first == FAKE_USERS; i++) {
            char n[32];
            unsigned u;
            user_at(i, n, sizeof n, &u);
            if (u >= start)
                first = i;
        }
        count = FAKE_USERS - first < FAKE_PAGE ? FAKE_USERS - first : FAKE_PAGE;
        if (count) {
            char n[32];
            user_at(first + count - 1, n, sizeof n, &next);
            next++;
        }
        lk_wr_u32(w, next);
        lk_wr_u16(w, mode == FAKE_COUNT_OVERFLOW ? 65535 : (uint16_t)count);
        for (unsigned i = 0; i < count; i++)
            put_user(w, first + i);
    } else if (op == LK_OP_GR_BY_NAME || op == LK_OP_GR_BY_GID) {
        struct lk_str name = { "", 0 };
        unsigned gid = 0;
        if (op == LK_OP_GR_BY_GID)
            gid = lk_rd_u32(req);
        else
            name = lk_rd_str(req);
        int lega = op == LK_OP_GR_BY_GID ? gid == 10000 : lk_str_eq(name, "lega");
        int crowd = op == LK_OP_GR_BY_GID ? gid == 10001 : lk_str_eq(name, "crowd");
        if (!lega && !crowd)
            status_only(w, op, LK_STATUS_NOTFOUND, "");
        else if (mode == FAKE_COUNT_OVERFLOW) {
            lk_wr_cstr(w, "lega");
            lk_wr_u32(w, 10000);
            lk_wr_u16(w, 9999);
        } else
            put_group(w, crowd);
    } else if (op == LK_OP_GR_LIST) {
        unsigned start = lk_rd_u32(req);
        lk_wr_u32(w, start <= 10000 ? 10001 : start <= 10001 ? 10002 : 0);
        lk_wr_u16(w, start <= 10001 ? 1 : 0);
        if (start <= 10001)
            put_group(w, start > 10000);
    } else if (op == LK_OP_PING) {
        lk_wr_cstr(w, "fake");
    } else {
        status_only(w, op, LK_STATUS_UNKNOWN_OPCODE, "");
    }
}

static int read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static void send_full(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void put_len(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void *serve(void *arg)
{
    struct conn *c = arg;
    struct fake_daemon *f = c->f;
    uint8_t head[4], body[LK_MAX_REQUEST];
    uint8_t *out = c->out = malloc(LK_MAX_NSS_REPLY);
    while (out) {
        if (read_full(c->fd, head, 4) != 0)
            break;
        uint32_t len = ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
        if (len < 4 || len > sizeof body || read_full(c->fd, body, len) != 0)
            break;
        pthread_mutex_lock(&f->lock);
        enum fake_mode mode = f->mode;
        f->nrequests++;
        unsigned seen = ++f->per_conn_requests[c - f->conns];
        pthread_mutex_unlock(&f->lock);
        struct lk_reader req;
        lk_rd_init(&req, body, len);
        (void)lk_rd_u16(&req);
        unsigned op = lk_rd_u16(&req);
        if (mode == FAKE_SILENT)
            continue;
        if (mode == FAKE_HANGUP || (mode == FAKE_DROP_OLD && seen > 1))
            break;
        struct lk_writer w;
        lk_wr_init(&w, out, LK_MAX_NSS_REPLY);
        answer(&w, op, &req, mode);
        if (mode == FAKE_TRAILING)
            lk_wr_u16(&w, 0);
        size_t n = w.len;
        uint32_t prefix = (uint32_t)(n - 4);
        if (mode == FAKE_TRUNCATED)
            prefix += 100;
        if (mode == FAKE_OVERSIZED)
            prefix = LK_MAX_NSS_REPLY + 1;
        if (mode == FAKE_HUGE_LENGTH)
            prefix = 0xffffffffu;
        put_len(out, prefix);
        send_full(c->fd, out, n);
        if (mode == FAKE_TRUNCATED)
            break;
    }
    c->out = NULL;
    free(out);
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void *accept_loop(void *arg)
{
    struct fake_daemon *f = arg;
    for (;;) {
        int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* shutdown() by fake_stop */
        }
        struct ucred cred;
        socklen_t cl = sizeof cred;
        memset(&cred, 0, sizeof cred);
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
        pthread_mutex_lock(&f->lock);
        if (f->nconns >= MAX_CONNS) {
            pthread_mutex_unlock(&f->lock);
            close(fd);
            continue;
        }
        struct conn *c = &f->conns[f->nconns++];
        c->f = f;
        c->fd = fd;
        c->peer = cred.pid;
        if (pthread_create(&c->thread, NULL, serve, c) != 0) {
            close(fd);
            c->fd = -1;
        }
        pthread_mutex_unlock(&f->lock);
    }
    return NULL;
}

struct fake_daemon *fake_start(const char *dir)
{
    struct fake_daemon *f = calloc(1, sizeof *f);
    struct sockaddr_un sa;
    if (!f)
        return NULL;
    memset(big_gecos, 'g', sizeof big_gecos - 1);
    pthread_mutex_init(&f->lock, NULL);
    snprintf(f->path, sizeof f->path, "%s/nss.sock", dir);
    unlink(f->path);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->path);
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(f->listen_fd, 64) != 0 || pthread_create(&f->acceptor, NULL, accept_loop, f) != 0) {
        perror("fake_start");
        if (f->listen_fd >= 0)
            close(f->listen_fd);
        free(f);
        return NULL;
    }
    return f;
}

void fake_stop(struct fake_daemon *f)
{
    if (!f)
        return;
    shutdown(f->listen_fd, SHUT_RDWR);
    pthread_join(f->acceptor, NULL);
    close(f->listen_fd);
    unlink(f->path);
    for (unsigned i = 0; i < f->nconns; i++) {
        if (f->conns[i].fd < 0)
            continue;
        shutdown(f->conns[i].fd, SHUT_RDWR);
        pthread_join(f->conns[i].thread, NULL);
        close(f->conns[i].fd);
    }
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void fake_set_mode(struct fake_daemon *f, enum fake_mode mode)
{
    pthread_mutex_lock(&f->lock);
    f->mode = mode;
    pthread_mutex_unlock(&f->lock);
}

unsigned fake_connections(struct fake_daemon *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->nconns;
    pthread_mutex_unlock(&f->lock);
    return n;
}

unsigned fake_requests(struct fake_daemon *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->nrequests;
    pthread_mutex_unlock(&f->lock);
    return n;
}

unsigned fake_requests_from(struct fake_daemon *f, pid_t pid)
{
    unsigned n = 0;
    pthread_mutex_lock(&f->lock);
    for (unsigned i = 0; i < f->nconns; i++)
        if (f->conns[i].peer == pid)
            n += f->per_conn_requests[i];
    pthread_mutex_unlock(&f->lock);
    return n;
}
