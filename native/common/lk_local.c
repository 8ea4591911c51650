/* lk_local: see lk_local.h. */
#define _GNU_SOURCE
#include "lk_local.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Does this passwd line name `name`? Its first field, up to ':', after an optional compat
 * "+"/"-" (a "+@netgroup" or bare "+" line names nobody in particular and never matches). */
static int line_names(const char *line, size_t len, const char *name, size_t name_len)
{
    if (len > 0 && (line[0] == '+' || line[0] == '-')) {
        line++;
        len--;
    }
    return len > name_len && line[name_len] == ':' && memcmp(line, name, name_len) == 0;
}

/* Calls `match` on each line of the passwd file until it returns non-zero. Returns what `match`
 * returned (0 when no line matched), or -1 with errno set when the file cannot be read. */
static int scan_passwd(const char *path, int (*match)(const char *line, size_t len, void *ctx),
                       void *ctx)
{
    /* "e": O_CLOEXEC, the file must not leak into a program the host process runs later. */
    FILE *f = fopen(path ? path : LK_LOCAL_PASSWD, "re");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int found = 0;
    while (!found && (n = getline(&line, &cap, f)) >= 0)
        found = match(line, (size_t)n, ctx);
    int failed = !found && ferror(f);
    int saved = errno;
    free(line);
    fclose(f);
    if (failed) {
        errno = saved ? saved : EIO;
        return -1;
    }
    return found;
}

struct name_query {
    const char *name;
    size_t len;
    uid_t uid;
};

static int match_listed(const char *line, size_t len, void *ctx)
{
    const struct name_query *q = ctx;
    return line_names(line, len, q->name, q->len);
}

int lk_local_listed(const char *path, const char *name)
{
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || strchr(name, ':') != NULL || strchr(name, '\n') != NULL)
        return 0; /* no passwd line can name it */
    struct name_query q = { name, name_len, 0 };
    return scan_passwd(path, match_listed, &q);
}

/* The first line with the name is the one NSS files would use: it ends the scan either way
 * (1 with its uid, 2 when its uid field is unusable). */
static int match_uid(const char *line, size_t len, void *ctx)
{
    struct name_query *q = ctx;
    if (len <= q->len || line[q->len] != ':' || memcmp(line, q->name, q->len) != 0)
        return 0;
    /* name:password:uid:... */
    const char *field = strchr(line + q->len + 1, ':');
    char *end = NULL;
    if (field == NULL || field[1] < '0' || field[1] > '9')
        return 2;
    errno = 0;
    unsigned long v = strtoul(field + 1, &end, 10);
    if (errno != 0 || *end != ':' || v >= 4294967295UL)
        return 2;
    q->uid = (uid_t)v;
    return 1;
}

int lk_local_uid(const char *path, const char *name, uid_t *uid)
{
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || name[0] == '+' || name[0] == '-' || strchr(name, ':') != NULL ||
        strchr(name, '\n') != NULL)
        return 0;
    struct name_query q = { name, name_len, 0 };
    int r = scan_passwd(path, match_uid, &q);
    if (r == 1)
        *uid = q.uid;
    return r < 0 ? -1 : r == 1;
}

/* A passwd record larger than this is refused rather than grown into forever. */
#define LK_LOCAL_MAX_PWBUF (1u << 20)

int lk_local_nss_uid(const char *name, uid_t *uid)
{
    struct passwd pw, *res = NULL;
    size_t cap = 4096;
    char *buf = NULL;
    int rc;
    for (;;) {
        char *grown = realloc(buf, cap);
        if (grown == NULL) {
            free(buf);
            errno = ENOMEM;
            return -1;
        }
        buf = grown;
        res = NULL;
        rc = getpwnam_r(name, &pw, buf, cap, &res);
        if (rc != ERANGE || cap >= LK_LOCAL_MAX_PWBUF)
            break;
        cap *= 2;
    }
    int found = rc == 0 && res != NULL;
    if (found)
        *uid = pw.pw_uid;
    free(buf);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return found;
}
