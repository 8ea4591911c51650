/* Parses pam_latchkey's module arguments. See options.h for the list. */
#include "options.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <security/pam_ext.h>

/* Returns the value when arg is "key=value", else NULL. */
static const char *value_of(const char *arg, const char *key)
{
    size_t n = strlen(key);
    if (strncmp(arg, key, n) == 0 && arg[n] == '=')
        return arg + n + 1;
    return NULL;
}

static int parse_umask(const char *s, mode_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 8);
    if (errno != 0 || end == s || *end != '\0' || v > 0777)
        return -1;
    *out = (mode_t)v;
    return 0;
}

/* Flag words: name and the field they set. */
struct flag_word {
    const char *name;
    size_t offset;
};

static const struct flag_word flag_words[] = {
    { "debug", offsetof(struct lk_pam_opts, debug) },
    { "silent", offsetof(struct lk_pam_opts, silent) },
    { "use_first_pass", offsetof(struct lk_pam_opts, use_first_pass) },
    { "try_first_pass", offsetof(struct lk_pam_opts, try_first_pass) },
    { "echo_pass", offsetof(struct lk_pam_opts, echo_pass) },
};

static int set_flag_word(struct lk_pam_opts *opts, const char *arg)
{
    for (size_t i = 0; i < sizeof flag_words / sizeof flag_words[0]; i++) {
        if (strcmp(arg, flag_words[i].name) == 0) {
            *(int *)((char *)opts + flag_words[i].offset) = 1;
            return 0;
        }
    }
    return -1;
}

void lk_pam_parse_opts(pam_handle_t *pamh, int flags, int argc, const char **argv,
                       struct lk_pam_opts *opts)
{
    const char *v;
    memset(opts, 0, sizeof *opts);
    opts->silent = (flags & PAM_SILENT) != 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (arg == NULL)
            continue;
        if (set_flag_word(opts, arg) == 0)
            continue;
        if ((v = value_of(arg, "prompt")) != NULL) {
            opts->prompt = v;
        } else if ((v = value_of(arg, "socket_dir")) != NULL) {
            if (v[0] == '/')
                opts->socket_dir = v;
            else
                pam_syslog(pamh, LOG_ERR, "socket_dir=%s is not an absolute path; ignored", v);
        } else if ((v = value_of(arg, "local_passwd")) != NULL) {
            if (v[0] == '/')
                opts->local_passwd = v;
            else
                pam_syslog(pamh, LOG_ERR, "local_passwd=%s is not an absolute path; ignored", v);
        } else if ((v = value_of(arg, "umask")) != NULL) {
            if (parse_umask(v, &opts->umask) == 0)
                opts->have_umask = 1;
            else
                pam_syslog(pamh, LOG_ERR, "umask=%s is not an octal mode like 027; ignored", v);
        } else if ((v = value_of(arg, "unknown")) != NULL) {
            if (strcmp(v, "deny") == 0)
                opts->unknown_deny = 1;
            else if (strcmp(v, "ignore") != 0)
                pam_syslog(pamh, LOG_ERR, "unknown=%s: expected deny or ignore; ignored", v);
        } else {
            pam_syslog(pamh, LOG_ERR, "unknown option \"%s\"; ignored", arg);
        }
    }
}
