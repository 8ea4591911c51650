/*
 * A tiny fake latchkeyd for the C unit tests: listens on <dir>/nss.sock in a thread (one more
 * thread per connection, recycled when the client hangs up), serves a fixed user/group table
 * with canned frames (fake_replies.c), and can be told to misbehave (never answer, send
 * truncated / oversized / wrong frames, refuse or drop connections as the real daemon's
 * connection budget does). Unit level only; the integration tests use the real daemon.
 */
#ifndef LK_FAKE_DAEMON_H
#define LK_FAKE_DAEMON_H

#include <sys/types.h>

enum fake_mode {
    FAKE_NORMAL,
    FAKE_SILENT,         /* read requests, never answer */
    FAKE_HANGUP,         /* close the connection instead of answering */
    FAKE_TRUNCATED,      /* length prefix promises more than is sent, then close */
    FAKE_OVERSIZED,      /* length prefix above LK_MAX_NSS_REPLY */
    FAKE_HUGE_LENGTH,    /* length prefix 0xffffffff */
    FAKE_WRONG_OPCODE,   /* a well-formed reply for another opcode */
    FAKE_WRONG_VERSION,  /* protocol version 2 */
    FAKE_COUNT_OVERFLOW, /* list/strlist count far above the data */
    FAKE_TRAILING,       /* a valid reply plus one extra byte */
    FAKE_WRONG_ENTRY,    /* answers with another user than asked */
    FAKE_ROOT,           /* answers with uid 0 */
    FAKE_DROP_OLD,       /* hangs up on a connection's 2nd+ request, answers fresh ones
                            (what a client sees right after a daemon restart) */
    FAKE_REFUSE,         /* closes every new connection at once, unread (the daemon's
                            connection budget refusing a uid that holds its share) */
    FAKE_SLOW,           /* answers normally after FAKE_SLOW_MS */
};
#define FAKE_SLOW_MS 150

/* Users of the fake: alice 11001, biggecos 11002 (2000-byte gecos), user00..user24
 * (12000..12024); "flaky" answers UNAVAIL; others NOTFOUND. Groups: lega 10000 (alice,
 * biggecos), crowd 10001 (300 members: member000..member299, but alice at index 150).
 * PW_LIST pages hold FAKE_PAGE entries; GR_LIST pages hold one group. */
#define FAKE_USERS 27
#define FAKE_PAGE 4

struct fake_daemon;

struct fake_daemon *fake_start(const char *dir);
/* Closes the listener and every connection, joins all threads, removes the socket. */
void fake_stop(struct fake_daemon *f);
void fake_set_mode(struct fake_daemon *f, enum fake_mode mode);
/* Connections accepted since fake_start (refused ones included). */
unsigned fake_connections(struct fake_daemon *f);
/* Connections open now: accepted and not yet closed by the client (or by fake_drop_all). */
unsigned fake_open_connections(struct fake_daemon *f);
/* Closes every open connection from the daemon's side, as the real daemon's budget evicts an
 * idle connection (the client sees EOF). */
void fake_drop_all(struct fake_daemon *f);
unsigned fake_requests(struct fake_daemon *f);
/* Requests that arrived on connections opened by process `pid` (SO_PEERCRED). */
unsigned fake_requests_from(struct fake_daemon *f, pid_t pid);

/* fake_replies.c, for fake_daemon.c: the table's big gecos, then the answer to one request
 * (reply header and payload into w, length prefix left 0 for the caller to patch). */
struct lk_writer;
struct lk_reader;
void fake_replies_init(void);
void fake_answer(struct lk_writer *w, unsigned op, struct lk_reader *req, enum fake_mode mode);

#endif /* LK_FAKE_DAEMON_H */
