/* lk_records: see lk_records.h. */
#define _GNU_SOURCE
#include "lk_records.h"

#include <errno.h>
#include <stdalign.h>
#include <string.h>

int lk_reply_open(const uint8_t *body, size_t len, uint16_t opcode, struct lk_reply *out)
{
    struct lk_reader r;
    memset(out, 0, sizeof *out);
    out->detail.p = "";
    lk_rd_init(&r, body, len);
    uint16_t version = lk_rd_u16(&r);
    uint16_t op = lk_rd_u16(&r);
    out->status = lk_rd_u16(&r);
    if (r.bad || version != LK_PROTO_VERSION || op != opcode)
        return -1;
    if (out->status != LK_STATUS_OK) {
        out->detail = lk_rd_str(&r);
        return lk_rd_done(&r);
    }
    out->payload = r;
    return 0;
}

/* A field that ends up in a colon-separated passwd/group line (getent, /etc/passwd-style tools)
 * must not hold ':' or a newline, or it would forge extra fields or lines (DESIGN.md rule). */
static int field_ok(struct lk_str s)
{
    return memchr(s.p, ':', s.len) == NULL && memchr(s.p, '\n', s.len) == NULL;
}

/* Belt and braces behind the daemon's own checks: a buggy or impersonated daemon must never
 * make a process see uid/gid 0, an empty name or a relative home. */
/* A user or group name: DESIGN.md forbids '/' in names whatever the configured rule says (a
 * name ends up in paths: homes, mail spools, `ls -l` output fed to scripts); field_ok alone
 * let a record named "../x" through on the by-uid and enumeration paths, where the answer is
 * not compared with a requested name. */
static int name_field_ok(struct lk_str s)
{
    return s.len > 0 && s.len <= LK_MAX_NAME && field_ok(s) && memchr(s.p, '/', s.len) == NULL;
}

static int passwd_sane(const struct lk_passwd_rec *p)
{
    return name_field_ok(p->name) && p->uid != 0 && p->gid != 0 &&
           p->dir.len > 0 && p->dir.p[0] == '/' && field_ok(p->gecos) &&
           field_ok(p->dir) && field_ok(p->shell);
}

int lk_rd_passwd(struct lk_reader *r, struct lk_passwd_rec *out)
{
    out->name = lk_rd_str(r);
    out->uid = lk_rd_u32(r);
    out->gid = lk_rd_u32(r);
    out->gecos = lk_rd_str(r);
    out->dir = lk_rd_str(r);
    out->shell = lk_rd_str(r);
    return (!r->bad && passwd_sane(out)) ? 0 : -1;
}

int lk_rd_group(struct lk_reader *r, struct lk_group_rec *out)
{
    out->name = lk_rd_str(r);
    out->gid = lk_rd_u32(r);
    struct lk_reader at_count = *r;
    out->nmembers = lk_rd_skip_strlist(r);
    if (r->bad || !name_field_ok(out->name) || out->gid == 0)
        return -1;
    out->members = at_count;
    (void)lk_rd_u16(&out->members);
    /* Members are joined with ',' in a group line: an empty one or one holding ',' or ':'
     * would change the member list a reader sees. */
    struct lk_reader m = out->members;
    for (uint16_t i = 0; i < out->nmembers; i++) {
        struct lk_str s = lk_rd_str(&m);
        if (!name_field_ok(s) || memchr(s.p, ',', s.len) != NULL)
            return -1;
    }
    return 0;
}

int lk_page_open(struct lk_reader *payload, int is_group, struct lk_page *out)
{
    memset(out, 0, sizeof *out);
    out->next = lk_rd_u32(payload);
    out->left = lk_rd_u16(payload);
    out->cursor = *payload;
    /* Walk the whole page once: a bad entry or trailing bytes reject the page up front. */
    for (uint16_t i = 0; i < out->left && !payload->bad; i++) {
        struct lk_passwd_rec p;
        struct lk_group_rec g;
        int rc = is_group ? lk_rd_group(payload, &g) : lk_rd_passwd(payload, &p);
        if (rc != 0)
            payload->bad = 1;
    }
    return lk_rd_done(payload);
}

int lk_page_peek_passwd(const struct lk_page *pg, struct lk_passwd_rec *rec)
{
    struct lk_reader r = pg->cursor;
    if (pg->left == 0)
        return -1;
    return lk_rd_passwd(&r, rec);
}

int lk_page_peek_group(const struct lk_page *pg, struct lk_group_rec *rec)
{
    struct lk_reader r = pg->cursor;
    if (pg->left == 0)
        return -1;
    return lk_rd_group(&r, rec);
}

void lk_page_consume(struct lk_page *pg, int is_group)
{
    struct lk_passwd_rec p;
    struct lk_group_rec g;
    if (pg->left == 0)
        return;
    if (is_group)
        (void)lk_rd_group(&pg->cursor, &g);
    else
        (void)lk_rd_passwd(&pg->cursor, &p);
    pg->left--;
}

int lk_name_ok(const char *name)
{
    /* What the daemon refuses whatever its configured rule ([users] name_regex) says (see
     * src/cache/resolver.ts nameAllowed, src/config/values.ts parseNameRegex): empty, more than
     * MAX_NAME bytes, ':' '/' CR LF, "." and "..". This used to apply the DEFAULT regex here,
     * so with a site rule that allows e.g. upper case or '@', getpwnam("John") was a false
     * NOTFOUND (sshd: "Invalid user") although the daemon serves John by uid and to PAM, and
     * DESIGN.md forbids a false not-found; the configured rule is the daemon's to check.
     * Bytes outside printable ASCII stay refused here: invalid UTF-8 would get BAD_REQUEST,
     * i.e. a false UNAVAIL, and no sane name rule admits spaces or control characters. */
    if (!name)
        return 0;
    size_t n = strnlen(name, LK_MAX_NAME + 1u);
    if (n == 0 || n > LK_MAX_NAME || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || c == ':' || c == '/')
            return 0;
    }
    return 1;
}

/* Bump allocator over the caller's buffer. */
struct lk_arena {
    char *p;
    size_t left;
};

static char *arena_str(struct lk_arena *a, const char *s, size_t n)
{
    if (n + 1u > a->left)
        return NULL;
    char *dst = a->p;
    memcpy(dst, s, n);
    dst[n] = '\0';
    a->p += n + 1u;
    a->left -= n + 1u;
    return dst;
}

int lk_fill_passwd(const struct lk_passwd_rec *rec, struct passwd *pw, char *buf, size_t buflen)
{
    struct lk_arena a = { buf, buf ? buflen : 0 };
    char *name = arena_str(&a, rec->name.p, rec->name.len);
    char *passwd = arena_str(&a, "x", 1);
    char *gecos = arena_str(&a, rec->gecos.p, rec->gecos.len);
    char *dir = arena_str(&a, rec->dir.p, rec->dir.len);
    char *shell = arena_str(&a, rec->shell.p, rec->shell.len);
    if (!name || !passwd || !gecos || !dir || !shell)
        return ERANGE;
    pw->pw_name = name;
    pw->pw_passwd = passwd;
    pw->pw_uid = (uid_t)rec->uid;
    pw->pw_gid = (gid_t)rec->gid;
    pw->pw_gecos = gecos;
    pw->pw_dir = dir;
    pw->pw_shell = shell;
    return 0;
}

int lk_fill_group(const struct lk_group_rec *rec, struct group *gr, char *buf, size_t buflen)
{
    /* gr_mem is a NULL-terminated pointer array that lives in buf: align it first. */
    size_t pad = (alignof(char *) - ((uintptr_t)buf % alignof(char *))) % alignof(char *);
    size_t ptrs = ((size_t)rec->nmembers + 1u) * sizeof(char *);
    if (!buf || pad > buflen || ptrs > buflen - pad)
        return ERANGE;
    char **mem = (char **)(void *)(buf + pad);
    struct lk_arena a = { buf + pad + ptrs, buflen - pad - ptrs };
    char *name = arena_str(&a, rec->name.p, rec->name.len);
    char *passwd = arena_str(&a, "x", 1);
    if (!name || !passwd)
        return ERANGE;
    struct lk_reader m = rec->members;
    for (uint16_t i = 0; i < rec->nmembers; i++) {
        struct lk_str s = lk_rd_str(&m);
        mem[i] = arena_str(&a, s.p, s.len);
        if (!mem[i])
            return ERANGE;
    }
    mem[rec->nmembers] = NULL;
    gr->gr_name = name;
    gr->gr_passwd = passwd;
    gr->gr_gid = (gid_t)rec->gid;
    gr->gr_mem = mem;
    return 0;
}
