/*
 * latchkey-authorized-keys USER: for sshd_config
 *     AuthorizedKeysCommand /usr/local/libexec/latchkey-authorized-keys %u
 *     AuthorizedKeysCommandUser nobody
 * Prints USER's public keys, one per line, as latchkeyd knows them, and only when latchkey is
 * the one serving the identity sshd logs the user in as:
 *   1. a name in the local passwd file (/etc/passwd) belongs to the host: nothing printed, exit
 *      0, no socket I/O at all, so root's or an admin's login never depends on latchkeyd and the
 *      user service can never add a key to a local account;
 *   2. the name is resolved through NSS (getpwnam_r, the same lookup sshd made): unknown, exit 0;
 *   3. KEYS_FOR_LOGIN {name, uid} on nss.sock (any user may ask): the daemon answers with keys
 *      only when it serves that name with exactly that uid (another NSS source answering first
 *      with its own uid gets NOTFOUND), exit 0 either way.
 * Exit 1 with one line on stderr when the answer is not authoritative (NSS source unavailable,
 * daemon unreachable or not running as root, reply breaking the protocol): sshd(8) then uses
 * no keys from this command. Exit 2 for a usage error.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "keyline.h"
#include "latchkey_proto.h"
#include "lk_client.h"
#include "lk_local.h"
#include "lk_msgs.h"
#include "lk_records.h"
#include "lk_wire.h"

#define PROG "latchkey-authorized-keys"

static void print_key(void *ctx, const char *key, size_t len)
{
    FILE *out = ctx;
    fwrite(key, 1, len, out);
    fputc('\n', out);
}

/* Steps 1 and 2: 1 and *uid when the keys are worth asking for, 0 when the user is not
 * latchkey's, -1 after telling stderr why no answer could be had. */
static int login_identity(const char *user, uid_t *uid)
{
    int listed = lk_local_listed(NULL, user);
    if (listed < 0) {
        fprintf(stderr, PROG ": cannot read %s: %s\n", LK_LOCAL_PASSWD, strerror(errno));
        return -1;
    }
    if (listed)
        return 0;
    int found = lk_local_nss_uid(user, uid);
    if (found < 0)
        fprintf(stderr, PROG ": cannot resolve %s through NSS: %s\n", user, strerror(errno));
    return found;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: " PROG " USER\n");
        return 2;
    }
    const char *user = argv[1];
    /* A name the daemon would refuse is simply not ours: no keys, no round trip. */
    if (!lk_name_ok(user))
        return 0;
    uid_t uid = 0;
    int mine = login_identity(user, &uid);
    if (mine <= 0)
        return mine < 0 ? 1 : 0;

    uint8_t req[LK_REQ_HEADER + 2u + LK_MAX_NAME + 4u];
    size_t n = lk_msg_keys_for_login_request(req, sizeof req, user, (uint32_t)uid);
    uint8_t *body = NULL;
    size_t len = 0;
    char why[160] = "cannot encode the request";
    int rc =
        n ? lk_client_call(NULL, "nss.sock", req, n, LK_MAX_NSS_REPLY, &body, &len, why, sizeof why)
          : LK_IO_SYSTEM;
    if (rc != LK_IO_OK) {
        fprintf(stderr, PROG ": %s (socket dir %s)\n", why, lk_socket_dir());
        return 1;
    }
    unsigned skipped = 0;
    int status = lk_keys_reply(body, len, LK_OP_KEYS_FOR_LOGIN, print_key, stdout, &skipped);
    free(body);
    if (status == LK_STATUS_NOTFOUND)
        return 0;
    if (status != LK_STATUS_OK) {
        fprintf(stderr, PROG ": %s for %s\n",
                status < 0 ? "daemon reply breaks the protocol" : "daemon could not answer", user);
        return 1;
    }
    if (skipped)
        fprintf(stderr, PROG ": skipped %u malformed key(s) of %s\n", skipped, user);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": cannot write the keys\n");
        return 1;
    }
    return 0;
}
