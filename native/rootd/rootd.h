/* latchkey-rootd: the root helper that creates homes and ends sessions for latchkeyd, which runs
 * without privileges. Everything rootd does is in these files:
 *   rootd_main.c    arguments, signals, the accept loop, frames in and out
 *   rootd_socket.c  the listening socket: made with --socket, or passed by systemd
 *   rootd_config.c  the policy: the few latchkey.conf keys rootd needs, read strictly
 *   rootd_check.c   decoding a request and checking it against the policy (no side effects);
 *                   also the --daemon-user argument, read from the host passwd file
 *   rootd_ops.c     the operations: home creation (homes.c) and ending a session
 *   rootd_log.c     one line per event on stderr, syslog priority prefix, rate-limited
 * The wire format is rootd_proto.h, generated from src/protocol/spec.json ("rootd") by
 * scripts/gen-protocol.mjs, as is the daemon's encoder's table (src/protocol/rootd.ts). */
#ifndef LATCHKEY_ROOTD_H
#define LATCHKEY_ROOTD_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "homes.h"
#include "rootd_proto.h"

/* What rootd may do, from latchkey.conf (src/config/keys.ts holds the same keys and defaults). */
struct rootd_policy {
    char base[PATH_MAX];         /* [homes] base (ega_dir) */
    enum home_layout layout;     /* [homes] layout */
    mode_t mode;                 /* [homes] mode (ega_dir_attrs) */
    char upload_dir[65];         /* [homes] upload_dir */
    gid_t gid;                   /* [users] gid (ega_gid) */
    uint32_t uid_shift;          /* [users] uid_shift (ega_uid_shift): no served uid is below it */
    uint32_t min_uid;            /* [users] min_uid */
    uint32_t max_uid;            /* [users] max_uid */
    uint32_t local_min_uid;      /* [local] min_uid: the local store's users (0: none) */
    uint32_t local_max_uid;      /* [local] max_uid (0: none) */
    char deny_names[1024];       /* [users] deny_names, as written (validated) */
    char local_passwd[PATH_MAX]; /* [users] local_passwd: the host's own accounts */
};

/* Who rootd serves and who it is; fixed at start. */
struct rootd_identity {
    uid_t daemon_uid; /* --daemon-user */
    pid_t self;
    pid_t parent;
};

struct rootd_request {
    unsigned version;
    unsigned opcode;
    uint32_t uid;
    uint32_t gid;
    uint32_t pid;
    uint64_t pid_start;
    char name[ROOTD_NAME_SIZE + 1]; /* NUL-terminated copy of the name_len bytes */
};

struct rootd_reply {
    unsigned status;
    unsigned flags;
    char msg[ROOTD_MSG_SIZE + 1];
};

/* rootd_config.c: 0 and *out filled, or -1 with "FILE:LINE: key: problem; fix" in err. */
int rootd_config_load(const char *file, struct rootd_policy *out, char *err, size_t err_len);

/* rootd_check.c */
int rootd_decode(const unsigned char *frame, size_t len, struct rootd_request *req,
                 struct rootd_reply *rep);
void rootd_encode(const struct rootd_reply *rep, unsigned char out[ROOTD_REPLY_SIZE]);
int rootd_check_create(const struct rootd_request *req, const struct rootd_policy *pol,
                       const struct rootd_identity *id, struct rootd_reply *rep);
int rootd_check_end(const struct rootd_request *req, const struct rootd_policy *pol,
                    const struct rootd_identity *id, pid_t peer_pid, struct rootd_reply *rep);
int rootd_name_is_portable(const char *name);
/* `root, admin backup`: a [users] deny_names value (keys.ts parseNameList) is well-formed. */
int rootd_deny_list_ok(const char *list);
/* --daemon-user NAME|UID: 0 and *out, or -1 (root, unknown, out of range). */
int rootd_parse_user(const char *arg, uid_t *out);
void rootd_reply_set(struct rootd_reply *rep, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* rootd_ops.c */
void rootd_create_home(const struct rootd_request *req, const struct rootd_policy *pol,
                       struct rootd_reply *rep);
void rootd_end_session(const struct rootd_request *req, const struct rootd_identity *id,
                       struct rootd_reply *rep);

/* rootd_socket.c: a listening fd, or -1 (rootd_activated_socket: -1 = not socket-activated,
 * -2 = activated wrongly); failures are logged. */
int rootd_bind_socket(const char *path, uid_t owner);
int rootd_activated_socket(void);

/* rootd_log.c: priorities as syslog(3) and sd-daemon(3) "<N>" prefixes */
#define ROOTD_LOG_ERR 3
#define ROOTD_LOG_WARNING 4
#define ROOTD_LOG_INFO 6
/* Always written (start, stop, reload, fatal errors). */
void rootd_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Per-request events: at most ROOTD_LOG_BURST lines per ROOTD_LOG_WINDOW_S, then counted and
 * summed up in one line, so a peer cannot flood the journal. */
#define ROOTD_LOG_BURST 100
#define ROOTD_LOG_WINDOW_S 10
void rootd_log_event(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rootd_log_flush(void);
/* Copies text into a log field, escaping quotes, backslashes and non-printable bytes. */
void rootd_log_quote(char *out, size_t out_len, const char *in, size_t in_len);

#endif
