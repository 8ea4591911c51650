/* fake_daemon: see fake_daemon.h. The sockets and threads; the replies are in fake_replies.c. */
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

/* Connections open at once. A slot is reused once its client hung up and its thread was joined:
 * the NSS module's one-shot connections (a busy pool) come and go by the thousand. */
#define MAX_CONNS 256
#define MAX_PIDS 64

enum conn_state {
    CONN_FREE,
    CONN_OPEN,
    CONN_DONE /* thread ended, join pending */
};

struct conn {
    struct fake_daemon *f;
    int fd;
    pid_t peer;
    enum conn_state state;
    unsigned requests; /* on this connection (FAKE_DROP_OLD) */
    pthread_t thread;
    uint8_t *out; /* reply buffer; kept here so a fork child's leak check sees it reachable */
};

struct fake_daemon {
    char path[108];
    int listen_fd;
    pthread_t acceptor;
    pthread_mutex_t lock;
    enum fake_mode mode;
    unsigned naccepted, nrequests;
    struct conn conns[MAX_CONNS];
    struct {
        pid_t pid;
        unsigned requests;
    } by_pid[MAX_PIDS]; /* requests per client process (SO_PEERCRED), for fake_requests_from */
};

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

/* Counts one request of connection c; returns the mode to answer it in and its number on c. */
static enum fake_mode count_request(struct conn *c, unsigned *seen)
{
    struct fake_daemon *f = c->f;
    pthread_mutex_lock(&f->lock);
    enum fake_mode mode = f->mode;
    f->nrequests++;
    *seen = ++c->requests;
    for (unsigned i = 0; i < MAX_PIDS; i++) {
        if (f->by_pid[i].pid == c->peer || f->by_pid[i].pid == 0) {
            f->by_pid[i].pid = c->peer;
            f->by_pid[i].requests++;
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return mode;
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
        uint32_t len = ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) |
                       ((uint32_t)head[2] << 8) | head[3];
        if (len < 4 || len > sizeof body || read_full(c->fd, body, len) != 0)
            break;
        unsigned seen;
        enum fake_mode mode = count_request(c, &seen);
        struct lk_reader req;
        lk_rd_init(&req, body, len);
        (void)lk_rd_u16(&req);
        unsigned op = lk_rd_u16(&req);
        if (mode == FAKE_SILENT)
            continue;
        if (mode == FAKE_HANGUP || (mode == FAKE_DROP_OLD && seen > 1))
            break;
        if (mode == FAKE_SLOW)
            usleep(FAKE_SLOW_MS * 1000);
        struct lk_writer w;
        lk_wr_init(&w, out, LK_MAX_NSS_REPLY);
        fake_answer(&w, op, &req, mode);
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
    shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_lock(&f->lock);
    c->out = NULL;
    c->state = CONN_DONE;
    pthread_mutex_unlock(&f->lock);
    free(out);
    return NULL;
}

/* Joins a finished connection's thread and frees its slot. Called with f->lock held: the
 * thread set CONN_DONE as the last thing it did under the lock, so the join cannot wait on it. */
static void reap(struct conn *c)
{
    pthread_join(c->thread, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = CONN_FREE;
}

/* A free slot (reaping finished ones as needed), or NULL; f->lock held. */
static struct conn *free_slot(struct fake_daemon *f)
{
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &f->conns[i];
        if (c->state == CONN_DONE)
            reap(c);
        if (c->state == CONN_FREE)
            return c;
    }
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
        f->naccepted++;
        struct conn *c = f->mode == FAKE_REFUSE ? NULL : free_slot(f);
        if (!c) {
            pthread_mutex_unlock(&f->lock);
            close(fd);
            continue;
        }
        *c = (struct conn){ .f = f, .fd = fd, .peer = cred.pid, .state = CONN_OPEN };
        if (pthread_create(&c->thread, NULL, serve, c) != 0) {
            close(fd);
            c->fd = -1;
            c->state = CONN_FREE;
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
    fake_replies_init();
    pthread_mutex_init(&f->lock, NULL);
    for (unsigned i = 0; i < MAX_CONNS; i++)
        f->conns[i].fd = -1;
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
    fake_drop_all(f);
    pthread_mutex_lock(&f->lock);
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &f->conns[i];
        while (c->state == CONN_OPEN) { /* its thread is on its way out (fake_drop_all) */
            pthread_mutex_unlock(&f->lock);
            usleep(1000);
            pthread_mutex_lock(&f->lock);
        }
        if (c->state == CONN_DONE)
            reap(c);
    }
    pthread_mutex_unlock(&f->lock);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void fake_drop_all(struct fake_daemon *f)
{
    pthread_mutex_lock(&f->lock);
    for (unsigned i = 0; i < MAX_CONNS; i++)
        if (f->conns[i].state == CONN_OPEN)
            shutdown(f->conns[i].fd, SHUT_RDWR);
    pthread_mutex_unlock(&f->lock);
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
    unsigned n = f->naccepted;
    pthread_mutex_unlock(&f->lock);
    return n;
}

unsigned fake_open_connections(struct fake_daemon *f)
{
    unsigned n = 0;
    pthread_mutex_lock(&f->lock);
    for (unsigned i = 0; i < MAX_CONNS; i++)
        n += f->conns[i].state == CONN_OPEN;
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
    for (unsigned i = 0; i < MAX_PIDS; i++)
        if (f->by_pid[i].pid == pid)
            n += f->by_pid[i].requests;
    pthread_mutex_unlock(&f->lock);
    return n;
}
