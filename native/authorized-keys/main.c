/*
 * latchkey-authorized-keys USER: for sshd_config
 *     AuthorizedKeysCommand /usr/local/libexec/latchkey-authorized-keys %u
 *     AuthorizedKeysCommandUser nobody
 * Prints USER's public keys, one per line, as latchkeyd knows them (KEYS_BY_NAME on nss.sock,
 * which any user may ask). Exit 0 with no output when the user is unknown; exit 1 with one line
 * on stderr when the daemon cannot answer, so sshd uses no keys from us (sshd(8) ignores the
 * output of a command that fails).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyline.h"
#include "latchkey_proto.h"
#include "lk_client.h"
#include "lk_records.h"
#include "lk_wire.h"

static void print_key(void *ctx, const char *key, size_t len)
{
    FILE *out = ctx;
    fwrite(key, 1, len, out);
    fputc('\n', out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: latchkey-authorized-keys USER\n");
        return 2;
    }
    const char *user = argv[1];
    /* A name the daemon would refuse is simply not ours: no keys, no round trip. */
    if (!lk_name_ok(user))
        return 0;

    uint8_t req[LK_REQ_HEADER + 2u + LK_MAX_NAME];
    struct lk_writer w;
    lk_wr_init(&w, req, sizeof req);
    lk_wr_request(&w, LK_OP_KEYS_BY_NAME);
    lk_wr_cstr(&w, user);
    size_t n = lk_wr_finish(&w);
    uint8_t *body = NULL;
    size_t len = 0;
    int rc = n ? lk_client_call(NULL, "nss.sock", req, n, LK_MAX_NSS_REPLY, &body, &len)
               : LK_IO_SYSTEM;
    if (rc != LK_IO_OK) {
        fprintf(stderr, "latchkey-authorized-keys: %s (socket dir %s)\n", lk_io_text(rc),
                lk_socket_dir());
        return 1;
    }
    unsigned skipped = 0;
    int status = lk_keys_reply(body, len, print_key, stdout, &skipped);
    free(body);
    if (status == LK_STATUS_NOTFOUND)
        return 0;
    if (status != LK_STATUS_OK) {
        fprintf(stderr, "latchkey-authorized-keys: %s for %s\n",
                status < 0 ? "daemon reply breaks the protocol" : "daemon could not answer",
                user);
        return 1;
    }
    if (skipped)
        fprintf(stderr, "latchkey-authorized-keys: skipped %u malformed key(s) of %s\n", skipped,
                user);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "latchkey-authorized-keys: cannot write the keys\n");
        return 1;
    }
    return 0;
}
