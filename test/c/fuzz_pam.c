/*
 * libFuzzer target: pam_latchkey.so's own code (pam_latchkey.c, session.c, options.c,
 * identity.c, with lk_priv's request writers and reply reader) driven by a stub libpam. The
 * fuzzer's bytes are, in order: the phase and flags, the module arguments, the PAM items
 * (user, service, rhost, tty, authtok), then, as the module asks, what the local passwd file
 * and NSS say, one chunk per conversation call (its return code and reply) and one per
 * priv.sock exchange (a transport failure, raw reply bytes, or a well-formed reply of a chosen
 * status and fields). Nothing touches a socket, the host's passwd file, NSS or the process's
 * root: the link wraps lk_client_call, lk_local_listed, lk_local_nss_uid, chroot, chdir and
 * umask with -Wl,--wrap (pam/Makefile), and free to check the wipe. Aborts, besides
 * ASan/UBSan/LeakSanitizer findings, when
 *   - a phase returns PAM_SUCCESS although the daemon did not answer OK to that phase's
 *     request (fail closed: no garbage reply, transport failure or NSS error lets a login in);
 *   - AUTH_PASSWORD goes out for another user than PAM_USER, or with a password over 1024
 *     bytes, or one that was neither PAM_AUTHTOK nor the conversation's reply;
 *   - a log line or a message to the user has the password buffer as an argument;
 *   - the conversation's reply is freed without being wiped first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "latchkey_proto.h"
#include "lk_client.h"
#include "lk_local.h"
#include "lk_priv.h"
#include "fuzz_pam.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern char fuzz_pam_fixture[64];

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static size_t put_str(uint8_t *out, size_t at, size_t cap)
{
    size_t n;
    const uint8_t *p = take_bytes(&n);
    if (n > cap - at - 2)
        n = cap - at - 2;
    put16(out + at, (unsigned)n);
    memcpy(out + at + 2, p, n);
    return at + 2 + n;
}

/* The request as lk_msgs wrote it: [u32 len][u16 version][u16 opcode] then the fields. */
static void check_auth_request(const uint8_t *req, size_t n)
{
    size_t at = 8, ulen, plen;
    if (n < at + 2 || n < at + 2 + (ulen = (size_t)req[at] << 8 | req[at + 1]) + 2)
        abort();
    const char *user = (const char *)req + at + 2;
    at += 2 + ulen;
    plen = (size_t)req[at] << 8 | req[at + 1];
    const char *pw = (const char *)req + at + 2;
    if (at + 2 + plen > n || plen > 1024 || !fz.user || strlen(fz.user) != ulen ||
        memcmp(user, fz.user, ulen) != 0)
        abort();
    for (unsigned i = 0; i < fz.n_sent_ok; i++)
        if (strlen(fz.sent_ok[i]) == plen && memcmp(fz.sent_ok[i], pw, plen) == 0)
            return;
    abort(); /* a password from nowhere */
}

int __wrap_lk_client_call(const char *sock_dir, const char *sock_name, const uint8_t *req,
                          size_t req_len, uint32_t max_reply, uint8_t **body, size_t *body_len,
                          char *why, size_t why_cap)
{
    (void)sock_dir;
    if (strcmp(sock_name, "priv.sock") != 0 || req_len < 8 || req_len > LK_MAX_REQUEST + 4u)
        abort();
    unsigned op = (unsigned)req[6] << 8 | req[7];
    if (op == LK_OP_AUTH_PASSWORD)
        check_auth_request(req, req_len);
    unsigned mode = take_u8();
    static uint8_t out[LK_MAX_REPLY];
    size_t n = 0;
    if (mode % 4 == 0) { /* the transport failed */
        int rc = -(int)(1 + take_u8() % 7);
        if (why)
            lk_io_describe(rc, 0, why, why_cap);
        return rc;
    } else if (mode % 4 == 1) { /* raw bytes */
        const uint8_t *p = take_bytes(&n);
        memcpy(out, p, n);
    } else { /* a reply of the right shape: status, then a detail or the OK payload */
        unsigned status = take_u8() % 13;
        put16(out, LK_PROTO_VERSION);
        put16(out + 2, op);
        put16(out + 4, status);
        n = 6;
        if (status != LK_STATUS_OK) {
            n = put_str(out, n, sizeof out);
        } else if (op == LK_OP_LOGIN_CHECK) {
            n = put_str(out, n, sizeof out);
        } else if (op == LK_OP_SESSION_OPEN) {
            n = put_str(out, n, sizeof out);
            n = put_str(out, n, sizeof out - 8);
            for (int i = 0; i < 5; i++)
                out[n++] = (uint8_t)take_u8();
        }
        if (mode & 0x80)
            out[n++] = (uint8_t)take_u8(); /* one byte too many */
    }
    if (n > max_reply)
        abort();
    struct lk_priv_reply r;
    int ok = lk_priv_decode((uint16_t)op, out, n, &r) == LK_STATUS_OK;
    if (op == LK_OP_LOGIN_CHECK)
        fz.ok_login_check = ok;
    else if (op == LK_OP_AUTH_PASSWORD)
        fz.ok_auth = ok;
    else if (op == LK_OP_ACCT_MGMT)
        fz.ok_acct = ok;
    else if (op == LK_OP_SESSION_OPEN)
        fz.ok_open = ok;
    *body = malloc(n ? n : 1);
    if (!*body)
        abort();
    memcpy(*body, out, n);
    *body_len = n;
    return LK_IO_OK;
}

/* PAM_SUCCESS needs: not a local account, NSS found the user, LOGIN_CHECK and the phase's own
 * request answered OK. */
static int answered_ok(int phase_ok)
{
    return fz.listed == 0 && fz.nss == 1 && fz.ok_login_check && phase_ok;
}

/* ---- one run ---------------------------------------------------------------------------------- */
static const int get_user_rcs[] = { PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS, PAM_CONV_ERR,
                                    PAM_SYSTEM_ERR };
static const int items[] = { PAM_USER, PAM_SERVICE, PAM_RHOST, PAM_TTY, PAM_AUTHTOK };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_pam_fixture[0] == '\0') {
        /* The passwd file the real lk_local_listed reads: a memfd, so no file is left behind. */
        static const char lines[] =
            "root:x:0:0:root:/root:/bin/bash\n+nisuser\n-blocked\n"
            "alice:x:1000:1000::/h:/bin/sh\nno colons\n\n:x:1:1::/:/bin/sh\n";
        int fd = memfd_create("lk-fuzz-pam-passwd", 0);
        if (fd < 0 || write(fd, lines, sizeof lines - 1) != (ssize_t)(sizeof lines - 1))
            abort();
        snprintf(fuzz_pam_fixture, sizeof fuzz_pam_fixture, "/proc/self/fd/%d", fd);
    }
    struct pam_handle h = { 0 };
    memset(&fz, 0, sizeof fz);
    fz.h = &h;
    fuzz_input(data, size);
    unsigned phase = take_u8() % 6, fl = take_u8();
    int flags = (fl & 1 ? PAM_SILENT : 0) | (fl & 2 ? PAM_DISALLOW_NULL_AUTHTOK : 0) |
                (fl & 4 ? PAM_PRELIM_CHECK : 0) | (fl & 8 ? PAM_UPDATE_AUTHTOK : 0);
    int argc = (int)(take_u8() % (MAX_ARGS + 1));
    const char *argv[MAX_ARGS];
    for (int i = 0; i < argc; i++)
        argv[i] = fz.args[i] = take_str();
    unsigned present = take_u8();
    for (unsigned i = 0; i < sizeof items / sizeof items[0]; i++)
        if (present & (1u << i))
            h.item[items[i]] = take_str();
    h.get_user_rc = get_user_rcs[take_u8() % (sizeof get_user_rcs / sizeof get_user_rcs[0])];
    if (h.item[PAM_AUTHTOK])
        note_password(h.item[PAM_AUTHTOK]);

    int rc;
    switch (phase) {
    case 0:
        rc = pam_sm_authenticate(&h, flags, argc, argv);
        if (rc == PAM_SUCCESS && !answered_ok(fz.ok_auth))
            abort();
        break;
    case 1:
        rc = pam_sm_acct_mgmt(&h, flags, argc, argv);
        if (rc == PAM_SUCCESS && !answered_ok(fz.ok_acct))
            abort();
        break;
    case 2:
        rc = pam_sm_open_session(&h, flags, argc, argv);
        if (rc == PAM_SUCCESS && !answered_ok(fz.ok_open))
            abort();
        break;
    case 3:
        rc = pam_sm_close_session(&h, flags, argc, argv);
        break;
    case 4:
        if (pam_sm_chauthtok(&h, flags, argc, argv) == PAM_SUCCESS)
            abort(); /* latchkey never changes a password */
        break;
    default:
        if (pam_sm_setcred(&h, flags, argc, argv) != PAM_SUCCESS)
            abort();
        break;
    }
    (void)rc;
    for (int i = 0; i < argc; i++)
        free(fz.args[i]);
    for (unsigned i = 0; i <= PAM_AUTHTOK; i++)
        free(h.item[i]);
    for (unsigned i = 0; i < fz.n_sent_ok; i++)
        free(fz.sent_ok[i]);
    return 0;
}
