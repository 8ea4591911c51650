/*
 * The stub libpam and the wrapped system calls of build/fuzz_pam (fuzz_pam.c says what the target
 * checks): items as libpam keeps them, a conversation that answers with the fuzzer's bytes, log
 * lines formatted and their arguments checked for the password buffer, and chroot, chdir, umask,
 * the local passwd file and NSS answered from the input instead of touching the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "lk_local.h"
#include "fuzz_pam.h"

int __real_lk_local_listed(const char *path, const char *name);
void __real_free(void *p);

struct fuzz_pam_state fz;

/* ---- the fuzzer's bytes (fuzz_pam.h) ---- */
static const uint8_t *in;
static size_t in_left;

unsigned take_u8(void)
{
    if (in_left == 0)
        return 0;
    in_left--;
    return *in++;
}

unsigned take_u16(void)
{
    return take_u8() | take_u8() << 8;
}

/* Up to 64 KiB of bytes: *n of them at the returned pointer (inside the input). */
const uint8_t *take_bytes(size_t *n)
{
    size_t want = take_u16();
    *n = want < in_left ? want : in_left;
    const uint8_t *p = in;
    in += *n;
    in_left -= *n;
    return p;
}

/* A malloc'ed C string (cut at an embedded NUL, as any C string the module sees would be). */
char *take_str(void)
{
    size_t n;
    const uint8_t *p = take_bytes(&n);
    char *s = strndup((const char *)p, n);
    if (!s)
        abort();
    return s;
}

void fuzz_input(const uint8_t *data, size_t size)
{
    in = data;
    in_left = size;
}

void note_password(const char *p)
{
    if (fz.n_sent_ok < sizeof fz.sent_ok / sizeof fz.sent_ok[0] &&
        (fz.sent_ok[fz.n_sent_ok] = strdup(p)))
        fz.n_sent_ok++;
}

/* The password buffers the module holds: the reply it was given and the stored AUTHTOK. */
static int is_password_buffer(const void *s)
{
    return s != NULL && ((fz.resp && s == fz.resp) || (fz.h && s == fz.h->item[PAM_AUTHTOK]));
}

/* Walks printf arguments: a password buffer among them is a leak. */
static void check_args(const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%')
            continue;
        p++;
        while (*p && strchr("0123456789.-+ #", *p))
            p++;
        if (*p == 's') {
            if (is_password_buffer(va_arg(cp, const char *)))
                abort();
        } else if (*p == 'l' || *p == 'z') {
            (void)va_arg(cp, unsigned long);
            p++;
        } else if (*p && strchr("duoxXc", *p)) {
            (void)va_arg(cp, int);
        } else if (*p != '%' && *p != 'm') {
            abort(); /* a conversion this walker does not know: teach it before trusting it */
        }
    }
    va_end(cp);
}

/* ---- the stub libpam ------------------------------------------------------------------------ */
int pam_get_item(const pam_handle_t *pamh, int type, const void **item)
{
    if (type < 0 || type > PAM_AUTHTOK)
        return PAM_BAD_ITEM;
    *item = pamh->item[type];
    return PAM_SUCCESS;
}

int pam_set_item(pam_handle_t *pamh, int type, const void *item)
{
    if (type < 0 || type > PAM_AUTHTOK)
        return PAM_BAD_ITEM;
    char *copy = item ? strdup(item) : NULL;
    if (pamh->item[type]) {
        explicit_bzero(pamh->item[type], strlen(pamh->item[type]));
        free(pamh->item[type]);
    }
    pamh->item[type] = copy;
    return PAM_SUCCESS;
}

int pam_get_user(pam_handle_t *pamh, const char **user, const char *prompt)
{
    (void)prompt;
    *user = pamh->item[PAM_USER];
    if (pamh->get_user_rc == PAM_SUCCESS && *user == NULL)
        *user = ""; /* libpam asked through the conversation and got an empty name */
    fz.user = *user;
    return pamh->get_user_rc;
}

int pam_putenv(pam_handle_t *pamh, const char *name_value)
{
    (void)pamh;
    const char *eq = strchr(name_value, '=');
    if (eq == NULL || eq == name_value)
        abort(); /* the module only sets NAME=value */
    return PAM_SUCCESS;
}

void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)
{
    (void)pamh;
    (void)priority;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    check_args(fmt, ap);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
}

static const int conv_rcs[] = { PAM_SUCCESS, PAM_CONV_ERR, PAM_CONV_AGAIN, PAM_BUF_ERR, PAM_ABORT };

int pam_prompt(pam_handle_t *pamh, int style, char **response, const char *fmt, ...)
{
    (void)pamh;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    check_args(fmt, ap);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned how = take_u8();
    int rc = conv_rcs[how % (sizeof conv_rcs / sizeof conv_rcs[0])];
    char *reply = (how & 0x80) ? NULL : take_str();
    if (response == NULL || (style != PAM_PROMPT_ECHO_OFF && style != PAM_PROMPT_ECHO_ON)) {
        free(reply);
        if (response)
            *response = NULL;
        return rc;
    }
    /* libpam passes a failing conversation's reply on too (the module must wipe it). */
    *response = reply;
    if (reply) {
        fz.resp = reply;
        fz.resp_len = strlen(reply);
        if (rc == PAM_SUCCESS)
            note_password(reply);
    }
    return rc;
}

/* ---- the wrapped system and client calls ---------------------------------------------------- */
void __wrap_free(void *p)
{
    if (p != NULL && p == fz.resp) {
        for (size_t i = 0; i < fz.resp_len; i++)
            if (fz.resp[i] != 0)
                abort(); /* a password reply freed unwiped */
        fz.resp = NULL;
    }
    __real_free(p);
}

int __wrap_chroot(const char *path)
{
    if (path[0] != '/')
        abort(); /* lk_priv_decode lets only absolute homes through */
    errno = ENOENT;
    return take_u8() & 1 ? 0 : -1;
}

int __wrap_chdir(const char *path)
{
    (void)path;
    errno = ENOENT;
    return take_u8() & 1 ? 0 : -1;
}

mode_t __wrap_umask(mode_t mask)
{
    if (mask & ~0777u)
        abort();
    return 022;
}

char fuzz_pam_fixture[64];

int __wrap_lk_local_listed(const char *path, const char *name)
{
    (void)path;
    switch (take_u8() % 4) {
    case 0:
        return fz.listed = 0;
    case 1:
        return fz.listed = 1;
    case 2:
        errno = EACCES;
        return fz.listed = -1;
    default:
        return fz.listed = __real_lk_local_listed(fuzz_pam_fixture, name);
    }
}

int __wrap_lk_local_nss_uid(const char *name, uid_t *uid)
{
    (void)name;
    switch (take_u8() % 3) {
    case 0:
        return fz.nss = 0;
    case 1:
        *uid = (uid_t)(take_u16() | (uint32_t)take_u16() << 16);
        return fz.nss = 1;
    default:
        errno = EAGAIN;
        return fz.nss = -1;
    }
}
