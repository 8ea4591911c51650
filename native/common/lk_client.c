/* lk_client: see lk_client.h. */
#define _GNU_SOURCE
#include "lk_client.h"
#include "lk_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof((struct lk_conn *)0)->path == sizeof((struct sockaddr_un *)0)->sun_path,
               "lk_conn.path holds exactly a sun_path");

/* Internal only: the kept connection turned out dead before any reply byte arrived. */
#define LK_IO_STALE (-100)

const char *lk_socket_dir(void)
{
    const char *env = secure_getenv("LATCHKEY_SOCKET_DIR");
    return env && env[0] == '/' ? env : LK_DEFAULT_SOCKET_DIR;
}

int lk_timeout_ms(void)
{
    /* LATCHKEY_NSS_TIMEOUT_MS is the older name, from when only the NSS module read it. */
    const char *env = secure_getenv("LATCHKEY_CLIENT_TIMEOUT_MS");
    if (!env || !env[0])
        env = secure_getenv("LATCHKEY_NSS_TIMEOUT_MS");
    if (env && env[0]) {
        char *end = NULL;
        errno = 0;
        long v = strtol(env, &end, 10);
        /* Only ever longer than the daemon's answer deadline: see lk_client.h. */
        if (errno == 0 && end && *end == '\0' && v >= 1 && v <= 600000)
            return v < (long)LK_TIMEOUT_FLOOR_MS ? (int)LK_TIMEOUT_FLOOR_MS : (int)v;
    }
    return (int)LK_CLIENT_TIMEOUT_MS;
}

int lk_socket_path(char *out, size_t cap, const char *dir, const char *name)
{
    struct sockaddr_un sun;
    if (!dir || !name || cap == 0)
        return -1;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof sun.sun_path)
        return -1;
    return 0;
}

int lk_reply_len_ok(uint32_t len, uint32_t max_reply)
{
    return len >= LK_REPLY_HEADER - 4u && len <= max_reply;
}

int64_t lk_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before the deadline, 0 when it passed. */
static int left_ms(int64_t deadline)
{
    int64_t d = deadline - lk_mono_ms();
    return d > 0 ? (int)d : 0;
}

/* Waits until fd is ready for `events`; LK_IO_OK or LK_IO_TIMEOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int ms = left_ms(deadline);
        if (ms == 0)
            return LK_IO_TIMEOUT;
        struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
        int n = poll(&p, 1, ms);
        if (n > 0)
            return LK_IO_OK; /* readable, writable, or HUP/ERR: the next call reports which */
        if (n == 0)
            return LK_IO_TIMEOUT;
        if (errno != EINTR)
            return LK_IO_SYSTEM;
    }
}

static int send_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc != LK_IO_OK)
                return rc;
            continue;
        }
        return (w < 0 && (errno == EPIPE || errno == ECONNRESET)) ? LK_IO_STALE : LK_IO_NO_DAEMON;
    }
    return LK_IO_OK;
}

/* Reads exactly n bytes. EOF or reset before the first reply byte (`first`) means the peer
 * went away between requests (daemon restart): LK_IO_STALE. Later, the reply was cut short. */
static int recv_all(int fd, uint8_t *p, size_t n, int first, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLIN, deadline);
            if (rc != LK_IO_OK)
                return rc;
            continue;
        }
        if (r == 0 || errno == ECONNRESET)
            return (first && got == 0) ? LK_IO_STALE : LK_IO_PROTOCOL;
        return LK_IO_SYSTEM;
    }
    return LK_IO_OK;
}

static int conn_open(struct lk_conn *c, const char *path, int64_t deadline)
{
    struct sockaddr_un sa;
    struct stat st;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (!path || strlen(path) >= sizeof sa.sun_path)
        return LK_IO_SYSTEM;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return LK_IO_SYSTEM;
    /* A blocking AF_UNIX connect waits while the listener's backlog is full (daemon stopped or
     * overloaded); SO_SNDTIMEO bounds that wait (unix_stream_connect honours it). */
    int ms = left_ms(deadline);
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    int rc = LK_IO_OK;
    if (ms == 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        rc = ms == 0 ? LK_IO_TIMEOUT : LK_IO_SYSTEM;
    while (rc == LK_IO_OK && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno == EINTR && left_ms(deadline) > 0)
            continue;
        if (errno == EAGAIN || errno == EINPROGRESS || errno == ETIMEDOUT || errno == EINTR)
            rc = LK_IO_TIMEOUT;
        else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
            rc = LK_IO_SYSTEM;
        else if (errno == ECONNREFUSED)
            rc = LK_IO_REFUSED;
        else
            rc = LK_IO_NO_DAEMON; /* ENOENT, EACCES, ENOTDIR, ... */
    }
    /* Who listens? Checked before the first byte is sent (see lk_client.h). */
    if (rc == LK_IO_OK) {
        struct ucred cred;
        socklen_t cl = sizeof cred;
        memset(&cred, 0, sizeof cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof cred) {
            rc = LK_IO_SYSTEM;
        } else {
            c->peer_uid = cred.uid;
            if (!lk_peer_uid_ok(cred.uid))
                rc = LK_IO_PEER;
        }
    }
    /* Whoever made the path we connected through must be the listener: the daemon owns its
     * socket dir, so without this a compromised daemon could point root's lookups at another
     * root service's socket (peer uid 0, trusted) with a symlink of its own. lstat, so a symlink
     * counts as its maker's; after connect, so a swap in between shows as an owner mismatch. */
    if (rc == LK_IO_OK && (lstat(path, &st) != 0 || st.st_uid != c->peer_uid))
        rc = LK_IO_PEER;
    /* From here on every read and write is non-blocking and waits in poll() on the deadline. */
    if (rc == LK_IO_OK) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fstat(fd, &st) != 0)
            rc = LK_IO_SYSTEM;
    }
    if (rc != LK_IO_OK) {
        close(fd);
        return rc;
    }
    c->fd = fd;
    memcpy(c->path, sa.sun_path, sizeof c->path); /* NUL-terminated: length checked above */
    c->pid = getpid();
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->used = lk_mono_ms();
    return LK_IO_OK;
}

/* Is c->fd still the socket this process opened? */
static int conn_is_ours(const struct lk_conn *c)
{
    struct stat st;
    if (c->fd < 0 || c->pid != getpid())
        return 0;
    return fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->dev &&
           st.st_ino == c->ino;
}

void lk_conn_close(struct lk_conn *c)
{
    struct stat st;
    /* In a fork child the fd is a copy of the parent's: closing the copy is harmless and
     * avoids a leak, but only if the number still names that socket (the child may have
     * closed it and reused the number). Never touch an fd that is no longer ours. */
    if (c->fd >= 0 && fstat(c->fd, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        close(c->fd);
    c->fd = -1;
    c->pid = 0;
}

void lk_conn_expire(struct lk_conn *c, int64_t now)
{
    if (c->fd >= 0 && (c->pid != getpid() || now - c->used > LK_CLIENT_IDLE_MS))
        lk_conn_close(c);
}

/* A kept connection is reusable when it is ours, recently used, and nothing is waiting on it:
 * an idle connection with something readable means the daemon closed it (EOF: idle timeout,
 * evicted by its connection budget, restart) or sent junk. */
static int conn_reusable(const struct lk_conn *c, const char *path)
{
    if (!conn_is_ours(c) || !path || strcmp(c->path, path) != 0 ||
        lk_mono_ms() - c->used > LK_CLIENT_IDLE_MS)
        return 0;
    struct pollfd p = { .fd = c->fd, .events = POLLIN, .revents = 0 };
    return poll(&p, 1, 0) == 0;
}

/* ---- the breaker (see lk_client.h) ---------------------------------------------------------
 * breaker_until: 0 while closed; else the lk_mono_ms() before which calls fail fast. Past it,
 * the one caller whose compare-and-swap moves it forward by its own timeout is the probe: the
 * others keep failing fast meanwhile, and if the probe's thread never reports (cancelled in
 * poll(), or gone across fork()), the lease runs out and the next caller probes. 64-bit
 * monotonic milliseconds never wrap. */
static atomic_llong breaker_until;

enum {
    ADMIT_CALL,
    ADMIT_PROBE,
    ADMIT_REFUSED
};

static int breaker_admit(int timeout_ms)
{
    long long until = atomic_load(&breaker_until);
    if (until == 0)
        return ADMIT_CALL;
    int64_t now = lk_mono_ms();
    return now >= until && atomic_compare_exchange_strong(&breaker_until, &until,
                                                          (long long)(now + timeout_ms + 1))
               ? ADMIT_PROBE
               : ADMIT_REFUSED;
}

/* Only a timeout opens the breaker: the other failures are quick (no daemon, refused, a bad
 * reply) and cost the caller nothing to repeat. Any of them answers a probe, though: the daemon
 * reacted within the deadline, so it is not stuck. */
static void breaker_report(int admitted, int rc)
{
    if (rc == LK_IO_TIMEOUT)
        atomic_store(&breaker_until, (long long)(lk_mono_ms() + LK_BREAKER_MS));
    else if (admitted == ADMIT_PROBE)
        atomic_store(&breaker_until, 0);
}

static int exchange(int fd, const uint8_t *req, size_t req_len, uint32_t max_reply,
                    int64_t deadline, uint8_t **body, size_t *body_len)
{
    uint8_t head[4];
    int rc = send_all(fd, req, req_len, deadline);
    if (rc == LK_IO_OK)
        rc = recv_all(fd, head, sizeof head, 1, deadline);
    if (rc != LK_IO_OK)
        return rc;
    uint32_t len =
        ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
    /* Refuse before allocating: the length comes from the socket. */
    if (!lk_reply_len_ok(len, max_reply))
        return LK_IO_PROTOCOL;
    uint8_t *buf = malloc(len);
    if (!buf)
        return LK_IO_SYSTEM;
    rc = recv_all(fd, buf, len, 0, deadline);
    if (rc != LK_IO_OK) {
        free(buf);
        return rc;
    }
    *body = buf;
    *body_len = len;
    return LK_IO_OK;
}

/* One request/reply without the breaker: reuse or open, exchange, reconnect once if stale. */
static int conn_call(struct lk_conn *c, const char *sock_path, const uint8_t *req, size_t req_len,
                     uint32_t max_reply, int64_t deadline, uint8_t **body, size_t *body_len)
{
    int reused = conn_reusable(c, sock_path);
    if (!reused) {
        lk_conn_close(c);
        int rc = conn_open(c, sock_path, deadline);
        if (rc != LK_IO_OK)
            return rc;
    }
    int rc = exchange(c->fd, req, req_len, max_reply, deadline, body, body_len);
    if (rc == LK_IO_STALE && reused) {
        /* The daemon restarted or evicted this connection since our last request (after the
         * check above): reconnect once and retry; lookups are idempotent. */
        lk_conn_close(c);
        rc = conn_open(c, sock_path, deadline);
        if (rc == LK_IO_OK)
            rc = exchange(c->fd, req, req_len, max_reply, deadline, body, body_len);
    }
    /* A fresh connection closed before any reply: the daemon is there but would not serve it
     * (connection budget full, or shutting down). Busy, so the caller must say "try again". */
    if (rc == LK_IO_STALE)
        rc = LK_IO_DROPPED;
    if (rc == LK_IO_OK)
        c->used = lk_mono_ms();
    return rc;
}

int lk_conn_call(struct lk_conn *c, const char *sock_path, const uint8_t *req, size_t req_len,
                 uint32_t max_reply, int timeout_ms, uint8_t **body, size_t *body_len)
{
    if (timeout_ms <= 0)
        timeout_ms = (int)LK_CLIENT_TIMEOUT_MS;
    *body = NULL;
    *body_len = 0;
    if (!req || req_len == 0)
        return LK_IO_SYSTEM;
    int admitted = breaker_admit(timeout_ms);
    if (admitted == ADMIT_REFUSED)
        return LK_IO_BACKOFF;
    int rc =
        conn_call(c, sock_path, req, req_len, max_reply, lk_mono_ms() + timeout_ms, body, body_len);
    breaker_report(admitted, rc);
    if (rc != LK_IO_OK)
        lk_conn_close(c);
    return rc;
}

int lk_client_call(const char *sock_dir, const char *sock_name, const uint8_t *req, size_t req_len,
                   uint32_t max_reply, uint8_t **body, size_t *body_len, char *why, size_t why_cap)
{
    char path[sizeof((struct sockaddr_un *)0)->sun_path];
    struct lk_conn c = LK_CONN_INIT;
    int rc = LK_IO_SYSTEM;
    *body = NULL;
    *body_len = 0;
    if (lk_socket_path(path, sizeof path, sock_dir ? sock_dir : lk_socket_dir(), sock_name) == 0)
        rc = lk_conn_call(&c, path, req, req_len, max_reply, lk_timeout_ms(), body, body_len);
    lk_conn_close(&c);
    if (rc != LK_IO_OK && why)
        lk_io_describe(rc, c.peer_uid, why, why_cap);
    return rc;
}
