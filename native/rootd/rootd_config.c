/* The policy rootd enforces, read from latchkey.conf by rootd itself: a compromised daemon must
 * not be able to widen it, so rootd reads the root-owned file (never a copy from the daemon) and
 * only the keys it needs. The names, LocalEGA aliases and defaults are those of
 * src/config/keys.ts and load.ts. The reader is strict where it matters: every line must be a
 * comment, a [section] or key = value; each of rootd's keys is given at most once (under its name
 * or its LocalEGA alias) and must hold a value rootd understands; anything else stops rootd with
 * FILE:LINE, the key and the fix. Keys rootd does not use are left to latchkeyd's own loader. */
#define _GNU_SOURCE
#include "rootd.h"
#include "safedir.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1024 * 1024)

enum target {
    T_BASE,
    T_LAYOUT,
    T_MODE,
    T_UPLOAD,
    T_GID,
    T_SHIFT,
    T_MIN,
    T_MAX,
    T_LMIN, /* T_SHIFT..T_LMAX: the uid keys, kept together for apply() */
    T_LMAX,
    T_DENY,
    T_PASSWD,
    T_COUNT
};

static const struct key {
    const char *section;
    const char *key;
    const char *legacy, *older; /* LocalEGA auth.conf name (top level), an older EGA-auth one */
} KEYS[T_COUNT] = {
    [T_BASE] = { "homes", "base", "ega_dir", "homedir_prefix" }, /* as src/config/keys.ts */
    [T_LAYOUT] = { "homes", "layout", NULL },
    [T_MODE] = { "homes", "mode", "ega_dir_attrs" },
    [T_UPLOAD] = { "homes", "upload_dir", NULL },
    [T_GID] = { "users", "gid", "ega_gid", "gid" },
    [T_SHIFT] = { "users", "uid_shift", "ega_uid_shift" },
    [T_MIN] = { "users", "min_uid", NULL },
    [T_MAX] = { "users", "max_uid", NULL },
    [T_LMIN] = { "local", "min_uid", NULL },
    [T_LMAX] = { "local", "max_uid", NULL },
    [T_DENY] = { "users", "deny_names", NULL },
    [T_PASSWD] = { "users", "local_passwd", NULL },
};

struct ctx {
    const char *file;
    char *err;
    size_t err_len;
    int set_at[T_COUNT]; /* line where each key was given, 0 = default */
};

__attribute__((format(printf, 4, 5))) static int fail(struct ctx *c, int line, const char *key,
                                                      const char *fmt, ...)
{
    char problem[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    char at[32] = "";
    if (line > 0)
        snprintf(at, sizeof at, ":%d", line);
    snprintf(c->err, c->err_len, "%s%s: %s%s%s", c->file, at, key, key[0] ? ": " : "", problem);
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* The value as the `ini` package would read it, for the plain values rootd's keys take: a whole
 * value in matching quotes, or text up to a ' #' / ' ;' comment. Escapes are refused rather than
 * guessed at. Returns NULL with the problem in *why. */
static char *decode_value(char *raw, const char **why)
{
    char *v = trim(raw);
    size_t n = strlen(v);
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        v++;
        if (strchr(v, '\\') || strchr(v, '"') || strchr(v, '\'')) {
            *why = "holds a quote or backslash inside quotes; write the plain value";
            return NULL;
        }
        return v;
    }
    for (size_t i = 0; v[i] != '\0'; i++) {
        if (v[i] == '\\' || v[i] == '"' || v[i] == '\'') {
            *why = "holds a quote or backslash; write the plain value";
            return NULL;
        }
        if (v[i] == '#' || v[i] == ';') {
            if (i > 0 && v[i - 1] != ' ' && v[i - 1] != '\t') {
                *why = "has # or ; right after other text, which cuts the value there";
                return NULL;
            }
            v[i] = '\0';
            break;
        }
    }
    return trim(v);
}

static int parse_uint(const char *v, unsigned long long min, unsigned long long max, unsigned base,
                      unsigned long long *out)
{
    const char *digits = base == 8 ? "01234567" : "0123456789";
    if (base == 8 && (strncmp(v, "0o", 2) == 0 || strncmp(v, "0O", 2) == 0))
        v += 2;
    if (v[0] == '\0' || strspn(v, digits) != strlen(v) || strlen(v) > 10)
        return -1;
    *out = strtoull(v, NULL, (int)base);
    return *out >= min && *out <= max ? 0 : -1;
}

static int apply(struct ctx *c, enum target t, const char *name, int line, const char *v,
                 struct rootd_policy *p)
{
    unsigned long long n;
    switch (t) {
    case T_BASE:
    case T_PASSWD: {
        size_t len = strlen(v);
        if (v[0] != '/')
            return fail(c, line, name, "\"%s\" must be an absolute path (starting with /)", v);
        if (len >= PATH_MAX - 64)
            return fail(c, line, name, "is longer than %d bytes", PATH_MAX - 64);
        char *dst = t == T_BASE ? p->base : p->local_passwd;
        memcpy(dst, v, len + 1);
        while (t == T_BASE && len > 1 && dst[len - 1] == '/')
            dst[--len] = '\0';
        if (t == T_BASE && strcmp(dst, "/") == 0)
            return fail(c, line, name, "must not be /; expected a directory such as /ega/inbox");
        return 0;
    }
    case T_LAYOUT:
        if (strcasecmp(v, "chroot") == 0)
            p->layout = HOME_LAYOUT_CHROOT;
        else if (strcasecmp(v, "plain") == 0)
            p->layout = HOME_LAYOUT_PLAIN;
        else
            return fail(c, line, name, "\"%s\" is not one of chroot, plain", v);
        return 0;
    case T_MODE:
        if (parse_uint(v, 0, 07777, 8, &n) != 0)
            return fail(c, line, name, "\"%s\" is not an octal mode up to 07777, e.g. 2750", v);
        if (n & 002)
            return fail(c, line, name, "\"%s\" is world-writable; expected e.g. 2750 or 0750", v);
        if ((n & 0700) != 0700)
            return fail(c, line, name, "\"%s\" must give the owner rwx, e.g. 2750", v);
        p->mode = (mode_t)n;
        return 0;
    case T_UPLOAD:
        if (strlen(v) > 64 ||
            strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789._-") != strlen(v) ||
            !home_name_is_valid(v))
            return fail(c, line, name,
                        "\"%s\" must be one directory name (letters, digits, "
                        ". _ -), not a path, e.g. inbox",
                        v);
        snprintf(p->upload_dir, sizeof p->upload_dir, "%s", v);
        return 0;
    case T_GID:
        if (parse_uint(v, 1, 2147483647, 10, &n) != 0)
            return fail(c, line, name, "\"%s\" is not a number from 1 to 2147483647", v);
        if (n == 65534 || n == 65535)
            return fail(c, line, name,
                        "\"%s\" is reserved (65534, 65535 are nobody/invalid); "
                        "choose another gid",
                        v);
        p->gid = (gid_t)n;
        return 0;
    case T_SHIFT:
    case T_MIN:
    case T_MAX:
    case T_LMIN:
    case T_LMAX: {
        unsigned long long lo = t == T_SHIFT ? 0 : t == T_MIN || t == T_MAX ? 1 : 1000;
        unsigned long long hi = t == T_MIN || t == T_MAX ? 4294967294ULL : 2147483647ULL;
        if (parse_uint(v, lo, hi, 10, &n) != 0)
            return fail(c, line, name, "\"%s\" is not a number from %llu to %llu", v, lo, hi);
        uint32_t *dst[] = { &p->uid_shift, &p->min_uid, &p->max_uid, &p->local_min_uid,
                            &p->local_max_uid };
        *dst[t - T_SHIFT] = (uint32_t)n;
        return 0;
    }
    case T_DENY:
        if (strlen(v) >= sizeof p->deny_names || !rootd_deny_list_ok(v))
            return fail(c, line, name,
                        "\"%s\" is not a list of user names; expected names "
                        "separated by commas, e.g. root, admin",
                        v);
        snprintf(p->deny_names, sizeof p->deny_names, "%s", v);
        return 0;
    case T_COUNT:
        break;
    }
    return fail(c, line, name, "internal error: unknown key");
}

static int parse_line(struct ctx *c, char *line, int no, char *section, size_t section_len,
                      struct rootd_policy *p)
{
    char *s = trim(line);
    if (s[0] == '\0' || s[0] == '#' || s[0] == ';')
        return 0;
    if (line[0] == '[') {
        char *close = strchr(line, ']');
        if (close == NULL || trim(close + 1)[0] != '\0')
            return fail(c, no, "",
                        "malformed section header; write it alone on its line, e.g. "
                        "[homes]");
        *close = '\0';
        snprintf(section, section_len, "%s", trim(line + 1));
        return 0;
    }
    if (s[0] == '[')
        return fail(c, no, "",
                    "malformed section header; write it alone on its line, starting "
                    "in column 1, e.g. [homes]");
    char *eq = strchr(line, '=');
    if (eq == NULL)
        return fail(c, no, trim(line), "has no \"=\"; expected key = value");
    *eq = '\0';
    char *key = trim(line);
    if (key[0] == '\0')
        return fail(c, no, "", "missing key name before \"=\"; expected key = value");
    for (int t = 0; t < T_COUNT; t++) {
        const struct key *k = &KEYS[t];
        int native =
            section[0] != '\0' && strcmp(section, k->section) == 0 && strcmp(key, k->key) == 0;
        int legacy = section[0] == '\0' && ((k->legacy != NULL && strcmp(key, k->legacy) == 0) ||
                                            (k->older != NULL && strcmp(key, k->older) == 0));
        if (!native && !legacy)
            continue;
        char name[64];
        snprintf(name, sizeof name, "%s%s%s", native ? k->section : "", native ? "." : "", key);
        if (c->set_at[t] != 0)
            return fail(c, no, name, "sets the same thing as line %d; keep only one of the two",
                        c->set_at[t]);
        c->set_at[t] = no;
        const char *why = NULL;
        char *v = decode_value(eq + 1, &why);
        if (v == NULL)
            return fail(c, no, name, "%s", why);
        return apply(c, (enum target)t, name, no, v, p);
    }
    return 0;
}

/* [local] min_uid..max_uid, by load.ts finishLocal's rules: a local uid inside the upstream's
 * shifted range could be answered for by an upstream record, so such a range set by the admin
 * stops rootd; the default gives way (no local uids) so a small LocalEGA uid_shift still starts. */
static int check_local_range(struct ctx *c, struct rootd_policy *p)
{
    uint32_t lo = p->local_min_uid, hi = p->local_max_uid;
    int min_at = c->set_at[T_LMIN], max_at = c->set_at[T_LMAX];
    if (lo > hi)
        return fail(c, min_at ? min_at : max_at, "local.min_uid", "is above max_uid (%u)", hi);
    unsigned r = lo <= 65534 ? 65534 : 65535;
    if (lo <= 65535 && hi >= 65534)
        return fail(c, max_at, "local.max_uid",
                    "makes the range %u .. %u include %u (nobody/(uint16)-1); end it below %u", lo,
                    hi, r, r);
    uint32_t up_lo = p->min_uid > p->uid_shift ? p->min_uid : p->uid_shift;
    if (lo > p->max_uid || hi < up_lo)
        return 0;
    if (min_at != 0 || max_at != 0)
        return fail(c, min_at ? min_at : max_at, min_at ? "local.min_uid" : "local.max_uid",
                    "makes the local users' range %u .. %u overlap the upstream's shifted range "
                    "%u .. %u ([users] uid_shift, min_uid, max_uid); choose a local range "
                    "outside it, e.g. below uid_shift",
                    lo, hi, up_lo, p->max_uid);
    p->local_min_uid = p->local_max_uid = 0;
    return 0;
}

/* Opens the config without following a symlink anywhere on its path and checks what was opened:
 * whoever could change this file could point rootd's chown at any directory. */
static int open_trusted(struct ctx *c)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(c->file, '/');
    if (c->file[0] != '/' || slash == NULL || slash[1] == '\0' || strlen(c->file) >= sizeof dir)
        return fail(c, 0, "", "the config must be given as an absolute path to a file");
    size_t dlen = slash == c->file ? 1 : (size_t)(slash - c->file);
    memcpy(dir, c->file, dlen);
    dir[dlen] = '\0';
    struct safe_dir_request req = { .path = dir,
                                    .trusted_uid = (uid_t)-1,
                                    .create = 0,
                                    .mode = 0755,
                                    .what = "config directory",
                                    .parent_of = "config directory" };
    char why[1024];
    int missing = 0;
    int dfd = safe_dir_open(&req, why, sizeof why, &missing);
    if (dfd < 0)
        return fail(c, 0, "", "%s", why);
    int fd = openat(dfd, slash + 1, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int e = errno;
    close(dfd);
    if (fd < 0)
        return fail(c, 0, "", "cannot be read (%s)%s", strerror(e),
                    e == ELOOP ? "; it is a symbolic link, give the real file" : "");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        close(fd);
        return fail(c, 0, "",
                    "must be a regular file owned by root and not writable by group "
                    "or others; fix: chown root %s && chmod go-w %s",
                    c->file, c->file);
    }
    return fd;
}

int rootd_config_load(const char *file, struct rootd_policy *out, char *err, size_t err_len)
{
    struct ctx c = { .file = file, .err = err, .err_len = err_len, .set_at = { 0 } };
    struct rootd_policy p = { .layout = HOME_LAYOUT_CHROOT,
                              .mode = 02750,
                              .gid = 10000,
                              .uid_shift = 10000,
                              .min_uid = 1000,
                              .max_uid = 2147483647u,
                              .local_min_uid = 9000,
                              .local_max_uid = 9999 };
    snprintf(p.base, sizeof p.base, "/ega/inbox");
    snprintf(p.upload_dir, sizeof p.upload_dir, "inbox");
    snprintf(p.deny_names, sizeof p.deny_names, "root");
    snprintf(p.local_passwd, sizeof p.local_passwd, "/etc/passwd");

    int fd = open_trusted(&c);
    if (fd < 0)
        return -1;
    char *text = malloc(CONFIG_MAX_BYTES + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (text != NULL && len < CONFIG_MAX_BYTES &&
           (n = read(fd, text + len, CONFIG_MAX_BYTES - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (text == NULL || n < 0) {
        free(text);
        return fail(&c, 0, "", "cannot be read (%s)", strerror(text ? errno : ENOMEM));
    }
    if (len == CONFIG_MAX_BYTES) {
        free(text);
        return fail(&c, 0, "", "is larger than %d bytes", CONFIG_MAX_BYTES);
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return fail(&c, 0, "", "contains a NUL byte");
    }
    char section[64] = "";
    int no = 0, rc = 0;
    char *save = NULL;
    /* strtok_r would skip empty lines and so miscount; walk the lines by hand. */
    for (char *line = text; rc == 0 && line != NULL; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        rc = parse_line(&c, line, ++no, section, sizeof section, &p);
    }
    free(text);
    if (rc != 0)
        return -1;
    if (p.min_uid > p.max_uid)
        return fail(&c, c.set_at[T_MIN], "users.min_uid", "is above max_uid (%u)", p.max_uid);
    if (p.uid_shift > p.max_uid)
        return fail(&c, c.set_at[T_SHIFT], "users.uid_shift",
                    "is above max_uid (%u), so every user would be refused", p.max_uid);
    if (check_local_range(&c, &p) != 0)
        return -1;
    *out = p;
    return 0;
}
