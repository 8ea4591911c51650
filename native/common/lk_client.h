/*
 * lk_client: the shared socket client of every latchkey shim (NSS module, PAM module,
 * latchkey-authorized-keys). It connects to a daemon socket, sends one request frame and
 * receives one whole reply frame, everything bounded by one deadline:
 *   - SOCK_CLOEXEC (no fd leaks into exec'd programs), MSG_NOSIGNAL (a dead daemon must not
 *     SIGPIPE the host process), connect bounded by SO_SNDTIMEO, every read/write by poll()
 *     on the time left;
 *   - the reply length prefix is checked against the caller's maximum BEFORE anything is
 *     allocated or read, and a reply shorter than its header is refused;
 *   - the daemon is checked before anything is sent: SO_PEERCRED on the connected socket must
 *     name uid 0 or the daemon user (lk_peer.h: _latchkey in the local passwd file, or
 *     $LATCHKEY_DAEMON_USER), else the connection is closed unused (LK_IO_PEER). Whoever
 *     binds the socket path while latchkeyd is down (a stale or writable socket dir) must not
 *     receive a password or feed NSS answers. For a Unix stream socket the peer credentials
 *     are the listener's at the time it called listen(2) (unix(7)), so an impostor cannot
 *     borrow root's by letting root bind and listen for it and dropping privileges later;
 *   - nothing here logs, aborts or exits.
 *
 * Two ways to use it:
 *   lk_client_call()   one connection per call (PAM, authorized-keys);
 *   lk_conn_call()     a connection the caller keeps between calls (the NSS module keeps a small
 *                      pool, nss_call.c). It is never used by another process (a fork child gets
 *                      a new one: the opener's pid is recorded), never used if the fd number now
 *                      names something else (the host may have closed and reused it: dev/ino are
 *                      recorded, as SSSD's client does), never reused after LK_CLIENT_IDLE_MS
 *                      without a request (closed and reopened instead), and when the daemon
 *                      restarted or evicted it (EPIPE, ECONNRESET or EOF before the reply) it
 *                      reconnects once and retries.
 * Both go through one process-local breaker: after a call timed out, every call in this process
 * (this copy of the client: the NSS module and the PAM module each link their own) fails at once
 * with LK_IO_BACKOFF for LK_BREAKER_MS; then one call is let through as a probe, and any answer
 * to it (anything but another timeout) closes the breaker. A stuck daemon (SIGSTOP, a hung
 * event loop) then costs a process one timeout, not one per lookup: `ls -l` over four homes
 * waited 4 x 5 s before. The state is one atomic (no lock: nothing a fork can leave held).
 * Both return LK_IO_OK and a malloc'ed reply body (the bytes after the length prefix: version,
 * opcode, status, payload) that the caller frees, or a negative enum lk_io and *body == NULL.
 */
#ifndef LK_CLIENT_H
#define LK_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "latchkey_proto.h"

enum lk_io {
    LK_IO_OK = 0,
    LK_IO_NO_DAEMON = -1, /* socket missing: latchkeyd is not installed or was stopped cleanly */
    LK_IO_TIMEOUT = -2,   /* no whole reply before the deadline */
    LK_IO_PROTOCOL = -3,  /* reply length above the maximum / below the header, or cut short */
    LK_IO_SYSTEM = -4,    /* out of fds or memory, socket path too long, bad arguments */
    LK_IO_PEER = -5,      /* the socket's listener runs as another uid than the daemon's:
                             closed before sending anything */
    LK_IO_DROPPED = -6,   /* the daemon closed the connection without answering: its connection
                             budget refused or evicted it, or it is restarting. Busy, not absent */
    LK_IO_BACKOFF = -7,   /* not asked: a recent call timed out, the breaker is open */
    LK_IO_REFUSED = -8,   /* the socket is there but nobody accepts: the daemon died and is
                             being restarted (a clean stop removes the socket). Absent for now,
                             so "try again", never "no such user" */
};

#define LK_DEFAULT_SOCKET_DIR "/run/latchkey"

/* The shim waits longer than the daemon's own answer deadline (both from the protocol spec), so
 * a slow upstream reaches the caller as the daemon's UNAVAIL reply rather than as a timeout here
 * (which would also open the breaker). The margin covers writing, scheduling and reading that
 * reply on a loaded host. */
#define LK_DEADLINE_MARGIN_MS 250u
_Static_assert(LK_CLIENT_TIMEOUT_MS >= LK_ANSWER_DEADLINE_MS + LK_DEADLINE_MARGIN_MS,
               "the shim timeout must exceed the daemon's answer deadline");
/* The shortest timeout LATCHKEY_CLIENT_TIMEOUT_MS may set. The C unit tests build lk_client.c with
 * a lower floor (native/Makefile) so that their timeouts cost milliseconds. */
#ifndef LK_TIMEOUT_FLOOR_MS
#define LK_TIMEOUT_FLOOR_MS LK_CLIENT_TIMEOUT_MS
#endif
/* A kept connection unused this long is closed and reopened rather than reused, so a process
 * that looked names up once does not hold daemon connections (the daemon's limit is 30 s). */
#ifndef LK_CLIENT_IDLE_MS
#define LK_CLIENT_IDLE_MS 1500
#endif
/* How long calls fail fast after a timeout before one probe is let through. */
#ifndef LK_BREAKER_MS
#define LK_BREAKER_MS 3000
#endif

/* $LATCHKEY_SOCKET_DIR when set to an absolute path, else /run/latchkey. Read with
 * secure_getenv: a set-uid program ignores it, so a user cannot point it at a fake daemon. */
const char *lk_socket_dir(void);
/* LK_CLIENT_TIMEOUT_MS, or $LATCHKEY_CLIENT_TIMEOUT_MS (secure_getenv, 1..600000; when unset,
 * its older name $LATCHKEY_NSS_TIMEOUT_MS) when that is longer, for every shim alike (NSS, PAM,
 * latchkey-authorized-keys): a shorter value is raised to LK_TIMEOUT_FLOOR_MS, since a shim
 * that gives up before the daemon's answer deadline turns every slow upstream into its own
 * timeout (and an open breaker) instead of the daemon's UNAVAIL. */
int lk_timeout_ms(void);
/* CLOCK_MONOTONIC in milliseconds (the clock of every deadline here). */
int64_t lk_mono_ms(void);
/* "<dir>/<name>" into out; 0, or -1 when it does not fit a sockaddr_un. */
int lk_socket_path(char *out, size_t cap, const char *dir, const char *name);
/* 1 when a reply length prefix is acceptable: at least the reply header, at most max_reply.
 * Checked before anything is allocated or read (the golden test applies it to its vectors). */
int lk_reply_len_ok(uint32_t len, uint32_t max_reply);
/* lk_io.c: short text for an enum lk_io value, for messages. */
const char *lk_io_text(int rc);
/* lk_io.c: the cause an admin acts on, for log lines: "no daemon" (socket missing, connection
 * refused: start latchkeyd, check the socket dir), "timeout" (a hung or overloaded daemon,
 * the breaker included), "protocol error" (a reply that breaks the framing, or a listener that
 * is not the daemon), "busy" (closed unanswered: connection budget, restart), "system error"
 * (fds, memory, a socket path too long). */
const char *lk_io_cause(int rc);
/* One line for a log or stderr: lk_io_text(rc), and for LK_IO_PEER the uid that was refused
 * and who would have been trusted ("daemon socket is not owned by root or the daemon user (peer
 * uid 65534; expected uid 0 or _latchkey (uid 998))", lk_peer.h). Always NUL-terminates
 * (cap > 0). */
void lk_io_describe(int rc, uid_t peer_uid, char *buf, size_t cap);

struct lk_conn {
    int fd;
    pid_t pid; /* process that opened fd */
    dev_t dev; /* identity of the socket, to notice the fd number being reused */
    ino_t ino;
    char path[108]; /* the socket it is connected to: another path gets another connection */
    uid_t peer_uid; /* the listener's uid seen by the last connect (for LK_IO_PEER messages) */
    int64_t used;   /* lk_mono_ms() of the last request (or the connect) */
};
#define LK_CONN_INIT                                                                               \
    {                                                                                              \
        -1, 0, 0, 0, { 0 }, 0, 0                                                                   \
    }

/* One request/reply on a kept connection (opened or re-opened as needed). `sock_path` is the
 * full socket path; `max_reply` bounds the reply body (LK_MAX_NSS_REPLY for nss.sock). After
 * any failure the connection is closed: a late reply must not be read as the next answer. */
int lk_conn_call(struct lk_conn *c, const char *sock_path, const uint8_t *req, size_t req_len,
                 uint32_t max_reply, int timeout_ms, uint8_t **body, size_t *body_len);
/* Closes the connection if this process opened it and the fd is still ours; forgets it always. */
void lk_conn_close(struct lk_conn *c);
/* lk_conn_close() when the connection may not be reused any more: idle longer than
 * LK_CLIENT_IDLE_MS at `now`, or opened by another process (fork). For a pool's housekeeping. */
void lk_conn_expire(struct lk_conn *c, int64_t now);

/* One-shot: connect to <sock_dir>/<sock_name> (sock_dir NULL = lk_socket_dir()), one
 * request/reply with lk_timeout_ms(), close. On failure `why` (when not NULL) gets
 * lk_io_describe()'s line, for the caller's log or stderr. */
int lk_client_call(const char *sock_dir, const char *sock_name, const uint8_t *req, size_t req_len,
                   uint32_t max_reply, uint8_t **body, size_t *body_len, char *why, size_t why_cap);

#endif /* LK_CLIENT_H */
