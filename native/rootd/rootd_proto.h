/* latchkey-rootd wire format: the one definition (latchkeyd's client will be generated from the
 * same table once it moves into src/protocol/spec.json).
 *
 * Transport: one Unix stream socket, mode 0600, owned by the daemon user; rootd checks every
 * connection's SO_PEERCRED uid against that user as well. The daemon sends a request frame and
 * reads one reply frame; it may send further requests on the same connection, strictly one after
 * the other. Both frames have a fixed size, so there is no length field to trust: rootd reads
 * exactly ROOTD_REQ_SIZE bytes (or gives up after ROOTD_IO_TIMEOUT_MS) and writes exactly
 * ROOTD_REPLY_SIZE bytes. Every integer is unsigned, big-endian (network order). A malformed frame
 * is answered with ROOTD_MALFORMED and the connection is closed, since framing may be lost.
 *
 * Request, ROOTD_REQ_SIZE = 64 bytes:
 *   off size field       CREATE_HOME                       END_SESSION
 *    0   2   version     ROOTD_PROTO_VERSION               ROOTD_PROTO_VERSION
 *    2   2   opcode      ROOTD_OP_CREATE_HOME (1)          ROOTD_OP_END_SESSION (2)
 *    4   4   uid         the user's uid (served range)     0
 *    8   4   gid         [users] gid                       0
 *   12   4   pid         0                                 the session's recorded pid (> 1)
 *   16   8   pid_start   0                                 its recorded start time: field 22 of
 *                                                          /proc/PID/stat, in clock ticks (> 0)
 *   24   1   name_len    1..32                             0
 *   25   7   reserved    0                                 0
 *   32  32   name        the user name, name_len bytes,    all 0
 *                        no NUL; the rest 0
 * The request carries no path, layout or mode: rootd derives the home from its own reading of
 * latchkey.conf ([homes] base + name, layout, mode, upload_dir), so a daemon can only ever name a
 * user, never a place. Fields an opcode does not use must be 0, so a frame has one meaning.
 *
 * Reply, ROOTD_REPLY_SIZE = 256 bytes:
 *   off size field
 *    0   2   version     ROOTD_PROTO_VERSION
 *    2   2   status      enum rootd_status
 *    4   2   flags       ROOTD_FLAG_* (CREATE_HOME: what was done)
 *    6   2   msg_len     0..ROOTD_MSG_SIZE
 *    8 248   message     msg_len bytes of text for the log (why it was refused, what was
 *                        repaired), no NUL; the rest 0
 */
#ifndef LATCHKEY_ROOTD_PROTO_H
#define LATCHKEY_ROOTD_PROTO_H

#define ROOTD_PROTO_VERSION 1u
#define ROOTD_REQ_SIZE 64u
#define ROOTD_REPLY_SIZE 256u
#define ROOTD_NAME_SIZE 32u
#define ROOTD_MSG_SIZE 248u
/* rootd waits at most this long for a whole request frame (also between two requests) and for
 * its reply to be taken, so a stuck or hostile peer cannot hold the one connection it serves. */
#define ROOTD_IO_TIMEOUT_MS 5000u

/* Request field offsets. */
#define ROOTD_REQ_VERSION 0u
#define ROOTD_REQ_OPCODE 2u
#define ROOTD_REQ_UID 4u
#define ROOTD_REQ_GID 8u
#define ROOTD_REQ_PID 12u
#define ROOTD_REQ_PID_START 16u
#define ROOTD_REQ_NAME_LEN 24u
#define ROOTD_REQ_RESERVED 25u
#define ROOTD_REQ_NAME 32u

/* Reply field offsets. */
#define ROOTD_REPLY_VERSION 0u
#define ROOTD_REPLY_STATUS 2u
#define ROOTD_REPLY_FLAGS 4u
#define ROOTD_REPLY_MSG_LEN 6u
#define ROOTD_REPLY_MSG 8u

enum rootd_opcode {
    /* create the home, or check and repair it (group, mode) if it exists */
    ROOTD_OP_CREATE_HOME = 1,
    /* SIGTERM the recorded session process, if it is still the one that was recorded */
    ROOTD_OP_END_SESSION = 2
};

enum rootd_status {
    ROOTD_OK = 0,        /* done (flags say what CREATE_HOME did) */
    ROOTD_MALFORMED = 1, /* wrong size, version, opcode or a non-zero unused field; conn closed */
    ROOTD_REFUSED = 2,   /* outside the policy: name, uid, gid or pid; nothing was done */
    ROOTD_UNSAFE = 3,    /* the home was not made: unsafe on disk (symlink, owner, a base others
                          * can write) or a failed mkdir; what was found is left as it was */
    ROOTD_GONE = 4,      /* END_SESSION: no such process any more; nothing to do */
    ROOTD_FAILED = 5,    /* a system call failed (I/O, no space, /proc or passwd unreadable) */
    ROOTD_BAD_PEER = 6   /* the connecting uid is not the daemon user; connection closed */
};

/* Reply flags (CREATE_HOME). */
#define ROOTD_FLAG_CREATED 1u  /* the home (chroot layout: or its upload dir) was made now */
#define ROOTD_FLAG_REPAIRED 2u /* an existing home's group or mode was set back to the policy */

#endif
