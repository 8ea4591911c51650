/* latchkey-rootd: see rootd.h for the parts and rootd_proto.h for the wire format.
 *
 *   latchkey-rootd --config FILE --daemon-user NAME|UID [--socket PATH] [--exit-with-parent]
 *
 * Without --socket it takes the one listening socket systemd passes (sd_listen_fds(3): fd 3,
 * LISTEN_PID/LISTEN_FDS). --exit-with-parent is for a rootd started by latchkeyd itself (started
 * as root, without systemd): latchkeyd drops to its user after that and could no longer signal
 * rootd, so rootd ends when latchkeyd does. PR_SET_PDEATHSIG alone is not enough: the kernel
 * sends the death signal with the exiting parent's credentials (check_kill_permission), and a
 * parent that dropped to _latchkey may not signal root, so the signal is silently lost. rootd
 * therefore also polls a pidfd of its parent (pidfd_open(2): readable once the parent exits,
 * close-on-exec), which needs no permission at all. It serves one connection at a time: the only client is latchkeyd, the
 * work is a handful of syscalls, and every wait on the peer is bounded by ROOTD_IO_TIMEOUT_MS, so
 * a stuck peer delays the next one by at most that. SIGHUP re-reads the config (a bad one keeps
 * the old policy; so does a RELOAD request, since a dropped daemon cannot signal rootd), SIGTERM/
 * SIGINT end it. Signals arrive through a signalfd polled with the
 * sockets and are handled only between two requests, so no request sees half a policy. */
#define _GNU_SOURCE
#include "rootd.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EX_USAGE 64
#define EX_CONFIG 78

static struct rootd_policy policy;
static struct rootd_identity ident;
static const char *config_file;
static int signal_fd = -1;
static int parent_fd = -1; /* --exit-with-parent: pidfd of the parent, else -1 (poll skips it) */

static const char *status_name(unsigned s)
{
    static const char *names[] = { "OK",   "MALFORMED", "REFUSED", "UNSAFE",
                                   "GONE", "FAILED",    "BAD_PEER" };
    return s < sizeof names / sizeof names[0] ? names[s] : "?";
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* SIGHUP and RELOAD: the whole new policy or, when the config is bad, the old one (rep, for a
 * RELOAD request, says which and why; NULL for SIGHUP). */
static void reload(struct rootd_reply *rep)
{
    struct rootd_policy fresh;
    char err[1024];
    if (rootd_config_load(config_file, &fresh, err, sizeof err) != 0) {
        rootd_log(ROOTD_LOG_ERR, "event=reload.failed reason=\"%s\" (the old policy stays)", err);
        if (rep != NULL)
            rootd_reply_set(rep, ROOTD_FAILED, "%s (the old policy stays)", err);
        return;
    }
    policy = fresh;
    /* A RELOAD request shares the rate limit (a peer could send thousands); SIGHUP does not. */
    (rep != NULL ? rootd_log_event : rootd_log)(
        ROOTD_LOG_INFO, "event=reload.done base=%s min_uid=%u max_uid=%u gid=%u", policy.base,
        (unsigned)policy.min_uid, (unsigned)policy.max_uid, (unsigned)policy.gid);
    if (rep != NULL)
        rootd_reply_set(rep, ROOTD_OK, "reloaded %s", config_file);
}

static int stopping;

/* The parent's pidfd became readable: it exited. Stop as SIGTERM would. */
static void parent_gone(void)
{
    if (!stopping)
        rootd_log(ROOTD_LOG_INFO, "event=parent.gone pid=%d (--exit-with-parent)",
                  (int)ident.parent);
    stopping = 1;
}

/* Handles what the signalfd holds: SIGHUP reloads at once (rootd is between two requests when
 * this runs), SIGTERM/SIGINT set `stopping`. */
static void take_signal(void)
{
    struct signalfd_siginfo si;
    if (read(signal_fd, &si, sizeof si) != (ssize_t)sizeof si)
        return;
    if (si.ssi_signo == SIGHUP)
        reload(NULL);
    else
        stopping = 1;
}

enum frame_result {
    FRAME_FULL,
    FRAME_EOF,
    FRAME_SHORT,
    FRAME_TIMEOUT,
    FRAME_SIGNAL,
    FRAME_ERROR
};

/* Reads exactly ROOTD_REQ_SIZE bytes within ROOTD_IO_TIMEOUT_MS. Signals are taken only before
 * the first byte of a request: SIGHUP reloads there, SIGTERM ends the connection, so a busy peer
 * holds up a stop by one request at most. */
static enum frame_result read_frame(int fd, unsigned char *buf, size_t *got, long long until)
{
    long long deadline = now_ms() + ROOTD_IO_TIMEOUT_MS;
    if (deadline > until)
        deadline = until;
    *got = 0;
    while (*got < ROOTD_REQ_SIZE) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return FRAME_TIMEOUT;
        struct pollfd p[3] = { { .fd = fd, .events = POLLIN },
                               { .fd = signal_fd, .events = POLLIN },
                               { .fd = parent_fd, .events = POLLIN } };
        int n = poll(p, *got == 0 ? 3 : 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return FRAME_ERROR;
        if (*got == 0 && ((p[1].revents | p[2].revents) & POLLIN)) {
            if (p[1].revents & POLLIN)
                take_signal();
            if (p[2].revents & POLLIN)
                parent_gone();
            if (stopping)
                return FRAME_SIGNAL;
            continue;
        }
        if (n == 0 || !(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t r = recv(fd, buf + *got, ROOTD_REQ_SIZE - *got, MSG_DONTWAIT);
        if (r == 0)
            return *got == 0 ? FRAME_EOF : FRAME_SHORT;
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r < 0)
            return FRAME_ERROR;
        *got += (size_t)r;
    }
    return FRAME_FULL;
}

static void send_reply(int fd, const struct rootd_reply *rep)
{
    unsigned char out[ROOTD_REPLY_SIZE];
    rootd_encode(rep, out);
    /* SO_SNDTIMEO bounds this; a reply the peer does not take is its loss. */
    if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out)
        rootd_log_event(ROOTD_LOG_WARNING, "event=reply.unsent error=\"%s\"", strerror(errno));
}

/* Closing a Unix socket with unread data makes the peer's next read fail with ECONNRESET
 * (unix_release_sock), and the reply explaining the refusal would be lost with it. So the last
 * reply is followed by EOF and whatever the peer still sends is read and dropped, within a bound
 * (time and bytes) so a peer cannot keep rootd here. */
static void close_after_reply(int fd)
{
    char sink[4096];
    size_t total = 0;
    long long deadline = now_ms() + 1000;
    shutdown(fd, SHUT_WR);
    while (total < 64 * 1024) {
        long long left = deadline - now_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
            break;
        total += r > 0 ? (size_t)r : 0;
    }
}

static void log_outcome(const struct rootd_request *req, const struct rootd_reply *rep,
                        pid_t peer_pid)
{
    char name[4 * ROOTD_NAME_SIZE + 1], msg[4 * ROOTD_MSG_SIZE + 1];
    rootd_log_quote(name, sizeof name, req->name, strlen(req->name));
    rootd_log_quote(msg, sizeof msg, rep->msg, strlen(rep->msg));
    int prio = rep->status == ROOTD_OK || rep->status == ROOTD_GONE ? ROOTD_LOG_INFO
               : rep->status == ROOTD_FAILED                        ? ROOTD_LOG_ERR
                                                                    : ROOTD_LOG_WARNING;
    const char *op = req->opcode == ROOTD_OP_CREATE_HOME   ? "CREATE_HOME"
                     : req->opcode == ROOTD_OP_END_SESSION ? "END_SESSION"
                     : req->opcode == ROOTD_OP_RELOAD      ? "RELOAD"
                                                           : "?";
    const char *event = rep->status == ROOTD_OK ? "request.done" : "request.refused";
    if (rep->status == ROOTD_GONE || rep->status == ROOTD_FAILED)
        event = rep->status == ROOTD_GONE ? "request.gone" : "request.failed";
    /* What changed something on the host (a home made or repaired, a process ended) is always
     * logged; only refusals and no-ops share the rate limit, so a flood of bad frames cannot
     * hide the request that did something. */
    void (*emit)(int, const char *, ...) =
        rep->status == ROOTD_OK && req->opcode != ROOTD_OP_RELOAD &&
                (req->opcode == ROOTD_OP_END_SESSION || rep->flags != 0)
            ? rootd_log
            : rootd_log_event;
    emit(prio,
         "event=%s op=%s status=%s peer_pid=%d name=\"%s\" uid=%u gid=%u "
         "pid=%u flags=%u detail=\"%s\"",
         event, op, status_name(rep->status), (int)peer_pid, name, (unsigned)req->uid,
         (unsigned)req->gid, (unsigned)req->pid, rep->flags, msg);
}

static void handle(const unsigned char *frame, size_t len, pid_t peer_pid, struct rootd_reply *rep)
{
    struct rootd_request req;
    memset(rep, 0, sizeof *rep);
    if (rootd_decode(frame, len, &req, rep) == 0) {
        if (req.opcode == ROOTD_OP_CREATE_HOME) {
            if (rootd_check_create(&req, &policy, &ident, rep) == 0)
                rootd_create_home(&req, &policy, rep);
        } else if (req.opcode == ROOTD_OP_RELOAD) {
            reload(rep);
        } else if (rootd_check_end(&req, &policy, &ident, peer_pid, rep) == 0) {
            rootd_end_session(&req, &ident, rep);
        }
    }
    log_outcome(&req, rep, peer_pid);
}

static void serve(int fd)
{
    struct ucred cred;
    socklen_t cl = sizeof cred;
    struct timeval tv = { .tv_sec = ROOTD_IO_TIMEOUT_MS / 1000,
                          .tv_usec = (ROOTD_IO_TIMEOUT_MS % 1000) * 1000 };
    struct rootd_reply rep = { 0 };
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        rootd_log_event(ROOTD_LOG_ERR, "event=conn.failed error=\"%s\"", strerror(errno));
        return;
    }
    if (cred.uid != ident.daemon_uid) {
        rootd_reply_set(&rep, ROOTD_BAD_PEER, "uid %u is not the daemon user", (unsigned)cred.uid);
        rootd_log_event(ROOTD_LOG_WARNING,
                        "event=peer.refused peer_uid=%u peer_pid=%d "
                        "expected_uid=%u",
                        (unsigned)cred.uid, (int)cred.pid, (unsigned)ident.daemon_uid);
        send_reply(fd, &rep);
        close_after_reply(fd);
        return;
    }
    /* rootd serves one connection at a time: however many requests it carries, a connection
     * ends ROOTD_IO_TIMEOUT_MS after it was accepted, so nobody holds the only slot for long. */
    long long until = now_ms() + ROOTD_IO_TIMEOUT_MS;
    for (;;) {
        unsigned char frame[ROOTD_REQ_SIZE];
        size_t got = 0;
        enum frame_result r = read_frame(fd, frame, &got, until);
        if (r == FRAME_EOF || r == FRAME_SIGNAL)
            return;
        if (r == FRAME_TIMEOUT || r == FRAME_ERROR) {
            if (got > 0 || r == FRAME_ERROR)
                rootd_log_event(ROOTD_LOG_WARNING,
                                "event=conn.dropped peer_pid=%d reason=%s "
                                "bytes=%zu",
                                (int)cred.pid, r == FRAME_TIMEOUT ? "timeout" : "error", got);
            return;
        }
        handle(frame, got, cred.pid, &rep);
        send_reply(fd, &rep);
        if (rep.status == ROOTD_MALFORMED) {
            close_after_reply(fd);
            return;
        }
    }
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL, *user = NULL;
    int bad = 0, with_parent = 0;
    for (int i = 1; !bad && i < argc; i++) {
        const char **value = strcmp(argv[i], "--config") == 0        ? &config_file
                             : strcmp(argv[i], "--daemon-user") == 0 ? &user
                             : strcmp(argv[i], "--socket") == 0      ? &socket_path
                                                                     : NULL;
        if (value != NULL && i + 1 < argc)
            *value = argv[++i];
        else if (strcmp(argv[i], "--exit-with-parent") == 0)
            with_parent = 1;
        else
            bad = 1;
    }
    if (bad || config_file == NULL || user == NULL) {
        fprintf(stderr, "usage: latchkey-rootd --config FILE --daemon-user NAME|UID "
                        "[--socket PATH] [--exit-with-parent]\n");
        return EX_USAGE;
    }
    ident.self = getpid();
    ident.parent = getppid();
    /* SIGTERM when the parent ends, if the kernel may deliver it (handled like any SIGTERM once
     * the signalfd is set up, the default action before), and the parent's pidfd, which always
     * works (see the top). A parent that ended before either took effect left us reparented:
     * then there is nobody to serve. */
    if (with_parent && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 ||
                        (parent_fd = (int)syscall(SYS_pidfd_open, ident.parent, 0)) < 0 ||
                        getppid() != ident.parent)) {
        rootd_log(ROOTD_LOG_ERR,
                  "event=start.failed reason=\"--exit-with-parent: the parent "
                  "(pid %d) is gone\"",
                  (int)ident.parent);
        return 1;
    }
    if (geteuid() != 0 || rootd_parse_user(user, &ident.daemon_uid) != 0) {
        rootd_log(ROOTD_LOG_ERR, "event=start.failed reason=\"%s\"",
                  geteuid() != 0
                      ? "must run as root (it creates homes and signals session processes)"
                      : "--daemon-user: not a user name or uid, or root; expected e.g. _latchkey");
        return EX_USAGE;
    }
    char err[1024];
    if (rootd_config_load(config_file, &policy, err, sizeof err) != 0) {
        rootd_log(ROOTD_LOG_ERR, "event=start.failed reason=\"%s\"", err);
        return EX_CONFIG;
    }
    umask(077);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    /* Blocked before the socket exists, so a SIGTERM from here on (the parent's death included)
     * waits in the signalfd and the socket is removed on the way out. */
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
        return 1;
    int listen_fd = rootd_activated_socket();
    if (listen_fd >= 0)
        socket_path = NULL; /* systemd's: it made the file and removes it */
    else if (listen_fd == -1 && socket_path != NULL)
        listen_fd = rootd_bind_socket(socket_path, ident.daemon_uid);
    else if (listen_fd == -1)
        rootd_log(ROOTD_LOG_ERR, "event=start.failed reason=\"no socket: give --socket PATH or "
                                 "start it from a systemd .socket unit\"");
    if (listen_fd < 0 || (signal_fd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        if (listen_fd >= 0 && socket_path != NULL)
            unlink(socket_path);
        return 1;
    }
    rootd_log(ROOTD_LOG_INFO,
              "event=start config=%s socket=%s daemon_uid=%u base=%s layout=%s "
              "min_uid=%u max_uid=%u gid=%u",
              config_file, socket_path ? socket_path : "(systemd)", (unsigned)ident.daemon_uid,
              policy.base, policy.layout == HOME_LAYOUT_CHROOT ? "chroot" : "plain",
              (unsigned)policy.min_uid, (unsigned)policy.max_uid, (unsigned)policy.gid);
    for (;;) {
        struct pollfd p[3] = { { .fd = signal_fd, .events = POLLIN },
                               { .fd = listen_fd, .events = POLLIN },
                               { .fd = parent_fd, .events = POLLIN } };
        if (poll(p, 3, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN)
            take_signal();
        if (p[2].revents & POLLIN)
            parent_gone();
        if (stopping)
            break;
        if (!(p[1].revents & POLLIN))
            continue;
        int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0)
            continue;
        serve(conn);
        close(conn);
        if (stopping)
            break;
    }
    rootd_log_flush();
    if (socket_path != NULL)
        unlink(socket_path);
    rootd_log(ROOTD_LOG_INFO, "event=stop");
    return 0;
}
