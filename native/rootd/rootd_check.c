/* Decoding a request frame and deciding whether the policy allows it. Nothing here changes
 * anything: a request is checked completely before rootd_ops.c acts on it, so a refused request
 * leaves the disk and every process as they were. The daemon checked the same things already;
 * rootd checks them again because the daemon is the party it does not trust. Here too: the
 * --daemon-user argument, read from the host's passwd file like the local accounts below. */
#define _GNU_SOURCE
#include "rootd.h"
#include "lk_local.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rootd_reply_set(struct rootd_reply *rep, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rep->status = status;
    vsnprintf(rep->msg, sizeof rep->msg, fmt, ap);
    va_end(ap);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned get_u16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void put_u16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return 0;
    }
    return 1;
}

/* Returns 0 with req filled, or -1 with rep set to ROOTD_MALFORMED. */
int rootd_decode(const unsigned char *f, size_t len, struct rootd_request *req,
                 struct rootd_reply *rep)
{
    memset(req, 0, sizeof *req);
    if (len != ROOTD_REQ_SIZE) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "short frame: %zu of %u bytes", len, ROOTD_REQ_SIZE);
        return -1;
    }
    req->version = get_u16(f + ROOTD_REQ_VERSION);
    req->opcode = get_u16(f + ROOTD_REQ_OPCODE);
    req->uid = get_u32(f + ROOTD_REQ_UID);
    req->gid = get_u32(f + ROOTD_REQ_GID);
    req->pid = get_u32(f + ROOTD_REQ_PID);
    req->pid_start =
        (uint64_t)get_u32(f + ROOTD_REQ_PID_START) << 32 | get_u32(f + ROOTD_REQ_PID_START + 4);
    unsigned name_len = f[ROOTD_REQ_NAME_LEN];
    if (req->version != ROOTD_PROTO_VERSION) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "version %u, expected %u", req->version,
                        ROOTD_PROTO_VERSION);
        return -1;
    }
    if (req->opcode != ROOTD_OP_CREATE_HOME && req->opcode != ROOTD_OP_END_SESSION &&
        req->opcode != ROOTD_OP_RELOAD) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "unknown opcode %u", req->opcode);
        return -1;
    }
    if (!all_zero(f + ROOTD_REQ_RESERVED, ROOTD_REQ_NAME - ROOTD_REQ_RESERVED)) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "reserved bytes are not zero");
        return -1;
    }
    if (name_len > ROOTD_NAME_SIZE ||
        !all_zero(f + ROOTD_REQ_NAME + name_len, ROOTD_NAME_SIZE - name_len)) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "name_len %u does not match the name bytes",
                        name_len);
        return -1;
    }
    if (memchr(f + ROOTD_REQ_NAME, '\0', name_len) != NULL) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "name contains NUL");
        return -1;
    }
    memcpy(req->name, f + ROOTD_REQ_NAME, name_len);
    req->name[name_len] = '\0';
    /* The fields an opcode does not use (rootd_proto.h) must be 0. */
    const char *extra = NULL;
    if (req->opcode == ROOTD_OP_CREATE_HOME && (req->pid != 0 || req->pid_start != 0))
        extra = "CREATE_HOME with a non-zero pid or pid_start";
    else if (req->opcode == ROOTD_OP_END_SESSION && req->gid != 0)
        extra = "END_SESSION with a non-zero gid";
    else if (req->opcode == ROOTD_OP_RELOAD && (req->uid != 0 || req->gid != 0 || req->pid != 0 ||
                                                req->pid_start != 0 || name_len != 0))
        extra = "RELOAD with a non-zero uid, gid, pid, pid_start or name";
    if (extra != NULL) {
        rootd_reply_set(rep, ROOTD_MALFORMED, "%s", extra);
        return -1;
    }
    return 0;
}

void rootd_encode(const struct rootd_reply *rep, unsigned char out[ROOTD_REPLY_SIZE])
{
    memset(out, 0, ROOTD_REPLY_SIZE);
    size_t n = strnlen(rep->msg, ROOTD_MSG_SIZE);
    put_u16(out + ROOTD_REPLY_VERSION, ROOTD_PROTO_VERSION);
    put_u16(out + ROOTD_REPLY_STATUS, rep->status);
    put_u16(out + ROOTD_REPLY_FLAGS, rep->flags);
    put_u16(out + ROOTD_REPLY_MSG_LEN, (unsigned)n);
    memcpy(out + ROOTD_REPLY_MSG, rep->msg, n);
}

/* POSIX portable user name characters (the portable filename set, not starting with '-' or
 * '.'): no '/', ':', space, control character or non-ASCII byte can reach a path or a log line,
 * and no hidden directory of the base (an admin's .quarantine) can be claimed as a home. */
int rootd_name_is_portable(const char *name)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    size_t n = strlen(name);
    return n > 0 && name[0] != '-' && name[0] != '.' && strspn(name, ok) == n;
}

/* `root, admin backup`: the deny list syntax of keys.ts parseNameList. */
int rootd_deny_list_ok(const char *v)
{
    char copy[sizeof((struct rootd_policy *)0)->deny_names];
    snprintf(copy, sizeof copy, "%s", v);
    char *save = NULL;
    for (char *n = strtok_r(copy, ", \t", &save); n; n = strtok_r(NULL, ", \t", &save)) {
        size_t len = strlen(n);
        if (n[len - 1] == '$')
            n[--len] = '\0';
        if (len == 0 || len > 32 || n[0] == '-' || !rootd_name_is_portable(n))
            return 0;
    }
    return 1;
}

static int in_deny_list(const char *name, const char *list)
{
    char copy[sizeof((struct rootd_policy *)0)->deny_names];
    snprintf(copy, sizeof copy, "%s", list);
    char *save = NULL;
    for (char *n = strtok_r(copy, ", \t", &save); n; n = strtok_r(NULL, ", \t", &save)) {
        if (strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

/* Looks the name and uid up in the host's passwd file (read directly, not through NSS, which
 * would ask latchkey itself). Returns 0 when neither is there, 1 with the reason in rep when one
 * is, -1 when the file cannot be read (then nothing is allowed: fail closed). */
static int local_account(const char *file, const char *name, uint32_t uid, struct rootd_reply *rep)
{
    FILE *f = fopen(file, "re");
    if (f == NULL) {
        rootd_reply_set(rep, ROOTD_FAILED, "cannot read %s: %s", file, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    while (!found && getline(&line, &cap, f) > 0) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        char *uid_field = strchr(colon + 1, ':');
        if (name[0] != '\0' && strcmp(line, name) == 0) {
            rootd_reply_set(rep, ROOTD_REFUSED, "%s is a local account in %s", name, file);
            found = 1;
        } else if (uid_field != NULL && uid_field[1] >= '0' && uid_field[1] <= '9') {
            char *end = NULL;
            errno = 0;
            unsigned long v = strtoul(uid_field + 1, &end, 10);
            if (errno == 0 && *end == ':' && v == uid) {
                rootd_reply_set(rep, ROOTD_REFUSED, "uid %u belongs to the local account %s",
                                (unsigned)uid, line);
                found = 1;
            }
        }
    }
    int bad = ferror(f);
    free(line);
    fclose(f);
    if (bad && !found) {
        rootd_reply_set(rep, ROOTD_FAILED, "cannot read %s", file);
        return -1;
    }
    return found;
}

/* --daemon-user: a uid, or a name in the local passwd file. */
int rootd_parse_user(const char *arg, uid_t *out)
{
    if (arg[0] != '\0' && strspn(arg, "0123456789") == strlen(arg) && strlen(arg) <= 10) {
        unsigned long v = strtoul(arg, NULL, 10);
        *out = (uid_t)v;
        return v > 0 && v < 4294967295UL ? 0 : -1;
    }
    /* From the passwd file, never through NSS: latchkey's own module must not be asked. */
    uid_t uid;
    if (lk_local_uid(NULL, arg, &uid) != 1 || uid == 0)
        return -1;
    *out = uid;
    return 0;
}

static int check_name(const char *name, const struct rootd_policy *pol, struct rootd_reply *rep)
{
    if (strlen(name) == 0 || !rootd_name_is_portable(name) || !home_name_is_valid(name) ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        rootd_reply_set(rep, ROOTD_REFUSED,
                        "the name is not a portable user name "
                        "(letters, digits, . _ -, not starting with -, not . or ..)");
        return -1;
    }
    if (in_deny_list(name, pol->deny_names)) {
        rootd_reply_set(rep, ROOTD_REFUSED, "%s is in [users] deny_names", name);
        return -1;
    }
    return 0;
}

static int check_uid(uint32_t uid, const struct rootd_policy *pol, const struct rootd_identity *id,
                     struct rootd_reply *rep)
{
    /* The daemon's rules (src/users/rules.ts): an upstream uid is at least the shift (upstream
     * uids are not negative) and inside [users] min_uid..max_uid; a local store user's is inside
     * [local] min_uid..max_uid (disjoint from the first, rootd_config.c); never root,
     * nobody/(uint16_t)-1 or the daemon. */
    uint32_t up_lo = pol->min_uid > pol->uid_shift ? pol->min_uid : pol->uid_shift;
    int upstream = uid >= up_lo && uid <= pol->max_uid;
    int local = pol->local_min_uid != 0 && uid >= pol->local_min_uid && uid <= pol->local_max_uid;
    if (uid == 0 || !(upstream || local) || uid == 65534 || uid == 65535 || uid == id->daemon_uid) {
        char lr[48] = "none";
        if (pol->local_min_uid != 0)
            snprintf(lr, sizeof lr, "%u..%u", (unsigned)pol->local_min_uid,
                     (unsigned)pol->local_max_uid);
        rootd_reply_set(rep, ROOTD_REFUSED,
                        "uid %u is outside the served ranges (upstream %u..%u, local %s; "
                        "never 0, 65534, 65535 or the daemon's)",
                        (unsigned)uid, (unsigned)up_lo, (unsigned)pol->max_uid, lr);
        return -1;
    }
    return 0;
}

/* Returns 0 when the request is inside the policy, else -1 with rep set. */
int rootd_check_create(const struct rootd_request *req, const struct rootd_policy *pol,
                       const struct rootd_identity *id, struct rootd_reply *rep)
{
    if (check_name(req->name, pol, rep) != 0 || check_uid(req->uid, pol, id, rep) != 0)
        return -1;
    if (req->gid != pol->gid) {
        rootd_reply_set(rep, ROOTD_REFUSED, "gid %u is not the configured [users] gid %u",
                        (unsigned)req->gid, (unsigned)pol->gid);
        return -1;
    }
    return local_account(pol->local_passwd, req->name, req->uid, rep) == 0 ? 0 : -1;
}

/* The checks that need no /proc: the rest (owner, start time, loginuid) is in rootd_ops.c, done
 * through the pidfd so they are about the process that would be signalled. The uid is the session
 * user's and passes the same policy as a home's: a compromised daemon can end the logins of users
 * latchkey serves and nobody else's (a local admin's session has a local loginuid). */
int rootd_check_end(const struct rootd_request *req, const struct rootd_policy *pol,
                    const struct rootd_identity *id, pid_t peer_pid, struct rootd_reply *rep)
{
    if ((req->name[0] != '\0' && check_name(req->name, pol, rep) != 0) ||
        check_uid(req->uid, pol, id, rep) != 0 ||
        local_account(pol->local_passwd, req->name, req->uid, rep) != 0)
        return -1;
    pid_t pid = (pid_t)req->pid;
    const char *who = NULL;
    if (req->pid <= 1 || req->pid > 0x3fffffff) /* PID_MAX_LIMIT is 2^22; 1 is init */
        who = "not a session process";
    else if (pid == id->self)
        who = "latchkey-rootd itself";
    else if (pid == id->parent)
        who = "latchkey-rootd's parent";
    else if (pid == peer_pid)
        who = "the daemon itself";
    else if (req->pid_start == 0)
        who = "a process without a recorded start time";
    if (who == NULL)
        return 0;
    rootd_reply_set(rep, ROOTD_REFUSED, "pid %u is %s; not signalled", (unsigned)req->pid, who);
    return -1;
}
