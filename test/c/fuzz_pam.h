/* Shared by fuzz_pam.c (the driver and the priv.sock stand-in) and fuzz_pam_libpam.c (the stub
 * libpam and the wrapped system calls): the fuzzer's bytes and what one run saw. */
#ifndef LK_FUZZ_PAM_H
#define LK_FUZZ_PAM_H

#include <stddef.h>
#include <stdint.h>

#include <security/pam_modules.h>

/* The fuzzer's bytes, consumed front to back; missing bytes read as 0 / empty. */
void fuzz_input(const uint8_t *data, size_t size);
unsigned take_u8(void);
unsigned take_u16(void);
/* Up to 64 KiB of bytes: *n of them at the returned pointer (inside the input). */
const uint8_t *take_bytes(size_t *n);
/* A malloc'ed C string (cut at an embedded NUL, as any C string the module sees would be). */
char *take_str(void);

struct pam_handle {
    char *item[PAM_AUTHTOK + 1]; /* the string items, strdup'ed like libpam does */
    int get_user_rc;
};

#define MAX_ARGS 8
struct fuzz_pam_state {
    char *args[MAX_ARGS];
    char *resp; /* the last password reply handed to the module, until it frees it */
    size_t resp_len;
    char *sent_ok[4]; /* copies of what AUTH_PASSWORD may carry: AUTHTOK, each reply */
    unsigned n_sent_ok;
    int ok_login_check, ok_auth, ok_acct, ok_open;
    int listed, nss;  /* the last answers given for the local file and NSS */
    const char *user; /* what pam_get_user returned */
    struct pam_handle *h;
};
extern struct fuzz_pam_state fz; /* reset by the driver per input */

/* Remembers a password AUTH_PASSWORD may carry (a copy, freed by the driver). */
void note_password(const char *p);

#endif
