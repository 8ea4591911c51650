/* lk_io: the shared client's outcomes (enum lk_io, lk_client.h) in words, for the shims' log
 * lines and stderr. */
#define _GNU_SOURCE
#include "lk_client.h"

#include <stdio.h>

#include "lk_peer.h"

const char *lk_io_text(int rc)
{
    switch (rc) {
    case LK_IO_OK:
        return "ok";
    case LK_IO_NO_DAEMON:
        return "daemon not running (socket missing)";
    case LK_IO_REFUSED:
        return "daemon socket refuses connections (latchkeyd died or is restarting)";
    case LK_IO_TIMEOUT:
        return "daemon did not answer in time";
    case LK_IO_PROTOCOL:
        return "daemon reply breaks the protocol";
    case LK_IO_SYSTEM:
        return "system error talking to the daemon";
    case LK_IO_PEER:
        return "daemon socket is not owned by root or the daemon user";
    case LK_IO_DROPPED:
        return "daemon closed the connection without answering (busy or restarting)";
    case LK_IO_BACKOFF:
        return "daemon did not answer a recent request in time; not asked again yet";
    default:
        return "unknown error";
    }
}

const char *lk_io_cause(int rc)
{
    switch (rc) {
    case LK_IO_OK:
        return "ok";
    case LK_IO_NO_DAEMON:
    case LK_IO_REFUSED:
        return "no daemon";
    case LK_IO_TIMEOUT:
    case LK_IO_BACKOFF:
        return "timeout";
    case LK_IO_PROTOCOL:
    case LK_IO_PEER:
        return "protocol error";
    case LK_IO_DROPPED:
        return "busy";
    default:
        return "system error";
    }
}

void lk_io_describe(int rc, uid_t peer_uid, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    if (rc == LK_IO_PEER) {
        char expected[768];
        lk_peer_expected_now(expected, sizeof expected);
        snprintf(buf, cap, "%s (peer uid %lu; expected %s)", lk_io_text(rc),
                 (unsigned long)peer_uid, expected);
    } else
        snprintf(buf, cap, "%s", lk_io_text(rc));
}
