/*
 * libFuzzer target: latchkey-rootd's frame reader and request checks, the code that reads what
 * the (unprivileged, possibly compromised) daemon sends to the root helper. The bytes are a
 * request frame (also cut or padded to ROOTD_REQ_SIZE, so most inputs get past the length check)
 * decoded by rootd_decode, then checked by rootd_check_create / rootd_check_end against a fixed
 * policy, and the reply encoded. Aborts, besides ASan/UBSan findings, when a request passes a
 * check it must not: a name that is not portable or is denied, a uid outside the ranges or one
 * rootd may never act for, another gid, a pid rootd may never signal. Also fed to the deny-list
 * syntax check and the log quoting. Nothing is created or signalled: only the pure checks run.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rootd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rootd_policy pol;
static const struct rootd_identity id = { .daemon_uid = 64199, .self = 4242, .parent = 4241 };

static void setup(void)
{
    /* The host's own accounts, as the policy's local passwd file: a memfd, nothing left behind. */
    static const char lines[] = "root:x:0:0:root:/root:/bin/sh\nadmin:x:11500:100::/h:/bin/sh\n"
                                "+nis\nbroken\n";
    int fd = memfd_create("lk-fuzz-rootd-passwd", 0);
    if (fd < 0 || write(fd, lines, sizeof lines - 1) != (ssize_t)(sizeof lines - 1))
        abort();
    snprintf(pol.local_passwd, sizeof pol.local_passwd, "/proc/self/fd/%d", fd);
    snprintf(pol.base, sizeof pol.base, "/nonexistent/lega-homes");
    snprintf(pol.deny_names, sizeof pol.deny_names, "root, backup operator");
    pol.gid = 10000;
    pol.uid_shift = 10000;
    pol.min_uid = 10001;
    pol.max_uid = 60000;
    pol.local_min_uid = 70000;
    pol.local_max_uid = 70999;
    pol.mode = 0700;
}

static void must_be_servable(const struct rootd_request *req)
{
    uint32_t uid = req->uid;
    int in_range = (uid >= pol.min_uid && uid <= pol.max_uid) ||
                   (uid >= pol.local_min_uid && uid <= pol.local_max_uid);
    if (!in_range || uid == 0 || uid == 65534 || uid == 65535 || uid == id.daemon_uid ||
        uid == 11500 /* the local account admin */)
        abort();
    if (req->name[0] != '\0' &&
        (!rootd_name_is_portable(req->name) || strcmp(req->name, "root") == 0 ||
         strcmp(req->name, "backup") == 0 || strcmp(req->name, "operator") == 0 ||
         strcmp(req->name, "admin") == 0 || strchr(req->name, '/') != NULL))
        abort();
}

static void one_frame(const uint8_t *f, size_t len)
{
    struct rootd_request req;
    struct rootd_reply rep = { 0 };
    unsigned char out[ROOTD_REPLY_SIZE];
    if (rootd_decode(f, len, &req, &rep) == 0) {
        if (len != ROOTD_REQ_SIZE || strlen(req.name) > ROOTD_NAME_SIZE)
            abort();
        if (req.opcode == ROOTD_OP_CREATE_HOME && rootd_check_create(&req, &pol, &id, &rep) == 0) {
            if (req.name[0] == '\0' || req.gid != pol.gid)
                abort();
            must_be_servable(&req);
        }
        if (req.opcode == ROOTD_OP_END_SESSION &&
            rootd_check_end(&req, &pol, &id, 4000, &rep) == 0) {
            must_be_servable(&req);
            if (req.pid <= 1 || req.pid == (uint32_t)id.self || req.pid == (uint32_t)id.parent ||
                req.pid == 4000 || req.pid_start == 0)
                abort();
        }
    }
    rootd_encode(&rep, out);
    if (strnlen(rep.msg, sizeof rep.msg) > ROOTD_MSG_SIZE)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pol.gid == 0)
        setup();
    one_frame(data, size);
    uint8_t frame[ROOTD_REQ_SIZE] = { 0 };
    memcpy(frame, data, size < sizeof frame ? size : sizeof frame);
    one_frame(frame, sizeof frame);

    char *text = strndup((const char *)data, size);
    if (text == NULL)
        return 0;
    (void)rootd_deny_list_ok(text);
    char quoted[128];
    rootd_log_quote(quoted, sizeof quoted, (const char *)data, size);
    if (strlen(quoted) >= sizeof quoted)
        abort();
    free(text);
    return 0;
}
