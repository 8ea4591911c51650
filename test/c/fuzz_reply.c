/*
 * libFuzzer target: arbitrary bytes as a daemon reply body (what follows the length prefix)
 * go through every reply parser the shims use, with no socket: the NSS passwd/group reply
 * functions (several buffer sizes, so the ERANGE paths run too), list pages handed out entry by
 * entry, initgroups over a group page, and the authorized-keys reply + key line checks. Built
 * with -fsanitize=fuzzer,address,undefined by `make -C native fuzz`; seeds are the golden
 * vectors.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyline.h"
#include "latchkey_proto.h"
#include "lk_priv.h"
#include "lk_records.h"
#include "nss_maps.h"

static char buf[70000];
static const size_t sizes[] = { 0, 7, 64, 300, 4096, sizeof buf };

static void sink(void *ctx, const char *key, size_t len)
{
    /* touch every byte so ASan sees an out-of-bounds key */
    unsigned *sum = ctx;
    for (size_t i = 0; i < len; i++)
        *sum += (unsigned char)key[i];
}

static void by_key(const uint8_t *d, size_t n, uint16_t op)
{
    struct passwd pw;
    struct group gr;
    int err = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (op == LK_OP_PW_BY_NAME || op == LK_OP_PW_BY_UID) {
            (void)lk_nss_passwd_reply(d, n, op, "alice", 0, &pw, buf, sizes[i], &err);
            if (lk_nss_passwd_reply(d, n, op, NULL, 11001, &pw, buf, sizes[i], &err) ==
                NSS_STATUS_SUCCESS)
                (void)strlen(pw.pw_name), (void)strlen(pw.pw_gecos), (void)strlen(pw.pw_shell);
        } else {
            (void)lk_nss_group_reply(d, n, op, "lega", 0, &gr, buf, sizes[i], &err);
            if (lk_nss_group_reply(d, n, op, NULL, 10000, &gr, buf, sizes[i], &err) ==
                NSS_STATUS_SUCCESS)
                for (char **m = gr.gr_mem; *m; m++)
                    (void)strlen(*m);
        }
    }
}

static void list_page(const uint8_t *d, size_t n, uint16_t op)
{
    struct lk_nss_ent e = { 0 };
    int err = 0;
    uint8_t *copy = malloc(n ? n : 1); /* the module owns and frees page bodies */
    if (!copy)
        return;
    memcpy(copy, d, n);
    if (lk_nss_ent_accept(&e, copy, n, op, &err) == NSS_STATUS_SUCCESS) {
        for (unsigned guard = 0; e.page.left > 0 && guard < 70000; guard++) {
            struct passwd pw;
            struct group gr;
            size_t size = sizes[guard % (sizeof sizes / sizeof sizes[0])];
            if (op == LK_OP_PW_LIST)
                (void)lk_nss_passwd_next(&e, &pw, buf, size, &err);
            else
                (void)lk_nss_group_next(&e, &gr, buf, size, &err);
        }
    }
    lk_nss_ent_reset(&e);
}

/* initgroups_dyn over a GR_LIST page: array growth from a tiny start, with and without limit. */
static void initgroups_page(const uint8_t *d, size_t n, long limit)
{
    struct lk_nss_ent e = { 0 };
    int err = 0, full = 0;
    long start = 1, size = 1;
    gid_t *groups = malloc(sizeof *groups);
    uint8_t *copy = malloc(n ? n : 1);
    if (groups && copy) {
        groups[0] = 10000;
        memcpy(copy, d, n);
        if (lk_nss_ent_accept(&e, copy, n, LK_OP_GR_LIST, &err) == NSS_STATUS_SUCCESS)
            (void)lk_nss_initgroups_page(&e.page, "alice", 10000, &start, &size, &groups, limit,
                                         &full, &err);
        for (long i = 0; i < start; i++) /* ASan: every reported entry is inside the array */
            (void)groups[i];
    } else {
        free(copy);
    }
    lk_nss_ent_reset(&e);
    free(groups);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned sum = 0, skipped = 0;
    /* the opcode inside the body picks the parser that would see it, so mutations get past
     * the header check; the others still run and must reject it cleanly */
    static const uint16_t ops[] = { LK_OP_PW_BY_NAME, LK_OP_PW_BY_UID, LK_OP_GR_BY_NAME,
                                    LK_OP_GR_BY_GID };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        by_key(data, size, ops[i]);
    list_page(data, size, LK_OP_PW_LIST);
    list_page(data, size, LK_OP_GR_LIST);
    initgroups_page(data, size, 0);
    initgroups_page(data, size, 2);
    (void)lk_keys_reply(data, size, LK_OP_KEYS_BY_NAME, sink, &sum, &skipped);
    (void)lk_keys_reply(data, size, LK_OP_KEYS_FOR_LOGIN, sink, &sum, &skipped);
    /* the key line check on the raw bytes too (what a daemon could put in one str) */
    (void)lk_key_line_ok((const char *)data, size);
    static const uint16_t priv_ops[] = { LK_OP_LOGIN_CHECK, LK_OP_AUTH_PASSWORD, LK_OP_ACCT_MGMT,
                                         LK_OP_SESSION_OPEN, LK_OP_SESSION_CLOSE };
    static struct lk_priv_reply pr;
    for (size_t i = 0; i < sizeof priv_ops / sizeof priv_ops[0]; i++)
        if (lk_priv_decode(priv_ops[i], data, size, &pr) == LK_STATUS_OK)
            sum += (unsigned)strlen(pr.prompt) + (unsigned)strlen(pr.home) + pr.detail[0];
    return 0;
}
