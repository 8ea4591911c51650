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

int lk_local_listed(const char *path, const char *name)
{
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || strchr(name, ':') != NULL || strchr(name, '\n') != NULL)
        return 0; /* no passwd line can name it */
    /* "e": O_CLOEXEC, the file must not leak into a program the host process runs later. */
    FILE *f = fopen(path ? path : LK_LOCAL_PASSWD, "re");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int found = 0;
    while (!found && (n = getline(&line, &cap, f)) >= 0)
        found = line_names(line, (size_t)n, name, name_len);
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

int lk_local_uid(const char *path, const char *name, uid_t *uid)
{
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || name[0] == '+' || name[0] == '-' || strchr(name, ':') != NULL ||
        strchr(name, '\n') != NULL)
        return 0;
    FILE *f = fopen(path ? path : LK_LOCAL_PASSWD, "re");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int found = 0;
    while (!found && (n = getline(&line, &cap, f)) >= 0) {
        if ((size_t)n <= name_len || line[name_len] != ':' || memcmp(line, name, name_len) != 0)
            continue;
        /* name:password:uid:... */
        const char *field = strchr(line + name_len + 1, ':');
        char *end = NULL;
        if (field == NULL || field[1] < '0' || field[1] > '9')
            break;
        errno = 0;
        unsigned long v = strtoul(field + 1, &end, 10);
        if (errno == 0 && *end == ':' && v < 4294967295UL) {
            *uid = (uid_t)v;
            found = 1;
        }
        break; /* the first line with the name is the one NSS files would use */
    }
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
