/* lk_records: see lk_records.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lk_records.h"

#include <errno.h>
#include <stdalign.h>
#include <string.h>

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

int lk_passwd_ok(const struct lk_passwd_rec *p)
{
    return name_field_ok(p->name) && p->uid != 0 && p->gid != 0 && p->dir.len > 0 &&
           p->dir.p[0] == '/' && field_ok(p->gecos) && field_ok(p->dir) && field_ok(p->shell);
}

int lk_rd_passwd(struct lk_reader *r, struct lk_passwd_rec *out)
{
    return (lk_msg_passwd_read(r, out) == 0 && lk_passwd_ok(out)) ? 0 : -1;
}

int lk_group_head_ok(const struct lk_group_rec *g)
{
    return name_field_ok(g->name) && g->gid != 0;
}

int lk_rd_group(struct lk_reader *r, struct lk_group_rec *out)
{
    if (lk_msg_group_read(r, out) != 0 || !lk_group_head_ok(out))
        return -1;
    /* Members are joined with ',' in a group line: an empty one or one holding ',' or ':'
     * would change the member list a reader sees. */
    struct lk_reader m = out->members.items;
    for (uint16_t i = 0; i < out->members.count; i++) {
        struct lk_str s = lk_rd_str(&m);
        if (!name_field_ok(s) || memchr(s.p, ',', s.len) != NULL)
            return -1;
    }
    return 0;
}

int lk_page_open(struct lk_reader *payload, int is_group, struct lk_page *out)
{
    struct lk_msg_pw_list_reply pw;
    struct lk_msg_gr_list_reply gr;
    memset(out, 0, sizeof *out);
    int rc = is_group ? lk_msg_gr_list_read_reply(payload, &gr)
                      : lk_msg_pw_list_read_reply(payload, &pw);
    if (rc != 0)
        return -1;
    struct lk_seq entries = is_group ? gr.entries : pw.entries;
    /* Check every entry once: one bad entry rejects the page up front. */
    struct lk_reader walk = entries.items;
    for (uint16_t i = 0; i < entries.count; i++) {
        struct lk_passwd_rec p;
        struct lk_group_rec g;
        if ((is_group ? lk_rd_group(&walk, &g) : lk_rd_passwd(&walk, &p)) != 0)
            return -1;
    }
    out->next = is_group ? gr.next_gid : pw.next_uid;
    out->left = entries.count;
    out->cursor = entries.items;
    return 0;
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
     * src/directory/resolver.ts nameAllowed, src/config/values.ts parseNameRegex): empty, more
     * than MAX_NAME bytes, ':' '/' CR LF, "." and "..". The configured rule itself is the
     * daemon's: a shim applying a default regex here would turn a name a site rule allows
     * (upper case, '@') into a false NOTFOUND, which DESIGN.md forbids. Bytes outside
     * printable ASCII stay refused here: invalid UTF-8 would get BAD_REQUEST, i.e. a false
     * UNAVAIL, and no sane name rule admits spaces or control characters. */
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
    size_t ptrs = ((size_t)rec->members.count + 1u) * sizeof(char *);
    if (!buf || pad > buflen || ptrs > buflen - pad)
        return ERANGE;
    char **mem = (char **)(void *)(buf + pad);
    struct lk_arena a = { buf + pad + ptrs, buflen - pad - ptrs };
    char *name = arena_str(&a, rec->name.p, rec->name.len);
    char *passwd = arena_str(&a, "x", 1);
    if (!name || !passwd)
        return ERANGE;
    struct lk_reader m = rec->members.items;
    for (uint16_t i = 0; i < rec->members.count; i++) {
        struct lk_str s = lk_rd_str(&m);
        mem[i] = arena_str(&a, s.p, s.len);
        if (!mem[i])
            return ERANGE;
    }
    mem[rec->members.count] = NULL;
    gr->gr_name = name;
    gr->gr_passwd = passwd;
    gr->gr_gid = (gid_t)rec->gid;
    gr->gr_mem = mem;
    return 0;
}
