/* fake_replies: the fake daemon's user/group table and its canned reply frames (see
 * fake_daemon.h). Built with the shared writer (lk_wire); the golden vectors check that writer's
 * format against the TypeScript codec independently. */
#define _GNU_SOURCE
#include "fake_daemon.h"

#include <stdio.h>
#include <string.h>

#include "latchkey_proto.h"
#include "lk_wire.h"

static char big_gecos[2001];

void fake_replies_init(void)
{
    memset(big_gecos, 'g', sizeof big_gecos - 1);
}

static void put_passwd(struct lk_writer *w, const char *name, unsigned uid, const char *gecos)
{
    char dir[128];
    snprintf(dir, sizeof dir, "/lega/homes/%s", name);
    lk_wr_cstr(w, name);
    lk_wr_u32(w, uid);
    lk_wr_u32(w, 10000);
    lk_wr_cstr(w, gecos);
    lk_wr_cstr(w, dir);
    lk_wr_cstr(w, "/bin/bash");
}

/* The enumeration order of the fake's users: index -> name/uid. */
static void user_at(unsigned i, char *name, size_t cap, unsigned *uid)
{
    if (i == 0)
        snprintf(name, cap, "alice");
    else if (i == 1)
        snprintf(name, cap, "biggecos");
    else
        snprintf(name, cap, "user%02u", i - 2);
    *uid = i == 0 ? 11001 : i == 1 ? 11002 : 12000 + (i - 2);
}

static int find_user(const struct lk_str *name, unsigned uid, unsigned *idx)
{
    for (unsigned i = 0; i < FAKE_USERS; i++) {
        char n[32];
        unsigned u;
        user_at(i, n, sizeof n, &u);
        if (name ? lk_str_eq(*name, n) : u == uid) {
            *idx = i;
            return 1;
        }
    }
    return 0;
}

static void put_user(struct lk_writer *w, unsigned i)
{
    char n[32];
    unsigned u;
    user_at(i, n, sizeof n, &u);
    put_passwd(w, n, u, i == 1 ? big_gecos : "Fake User");
}

static void put_group(struct lk_writer *w, int crowd)
{
    lk_wr_cstr(w, crowd ? "crowd" : "lega");
    lk_wr_u32(w, crowd ? 10001 : 10000);
    lk_wr_u16(w, crowd ? 300 : 2);
    for (unsigned i = 0; i < (crowd ? 300u : 2u); i++) {
        char m[32];
        if (crowd && i == 150)
            snprintf(m, sizeof m, "alice"); /* alice is in both groups (initgroups tests) */
        else
            snprintf(m, sizeof m, crowd ? "member%03u" : (i ? "biggecos" : "alice"), i);
        lk_wr_cstr(w, m);
    }
}

static void reply_head(struct lk_writer *w, unsigned version, unsigned op, unsigned status)
{
    lk_wr_u32(w, 0);
    lk_wr_u16(w, (uint16_t)version);
    lk_wr_u16(w, (uint16_t)op);
    lk_wr_u16(w, (uint16_t)status);
}

static void status_only(struct lk_writer *w, unsigned op, unsigned status, const char *detail)
{
    w->len = 0;
    reply_head(w, LK_PROTO_VERSION, op, status);
    lk_wr_cstr(w, detail);
}

/* Builds the normal answer to one request into w (length patched by the caller). */
void fake_answer(struct lk_writer *w, unsigned op, struct lk_reader *req, enum fake_mode mode)
{
    unsigned idx = 0;
    unsigned version = mode == FAKE_WRONG_VERSION ? 2 : LK_PROTO_VERSION;
    unsigned rop =
        mode == FAKE_WRONG_OPCODE ? (op == LK_OP_PING ? LK_OP_PW_BY_NAME : LK_OP_PING) : op;
    reply_head(w, version, rop, LK_STATUS_OK);
    if (op == LK_OP_PW_BY_NAME || op == LK_OP_PW_BY_UID || op == LK_OP_KEYS_BY_NAME) {
        struct lk_str name = { "", 0 };
        unsigned uid = 0;
        if (op == LK_OP_PW_BY_UID)
            uid = lk_rd_u32(req);
        else
            name = lk_rd_str(req);
        if (op != LK_OP_PW_BY_UID && lk_str_eq(name, "flaky")) {
            status_only(w, op, LK_STATUS_UNAVAIL, "user service unavailable");
        } else if (!find_user(op == LK_OP_PW_BY_UID ? NULL : &name, uid, &idx)) {
            status_only(w, op, LK_STATUS_NOTFOUND, "no such user");
        } else if (op == LK_OP_KEYS_BY_NAME) {
            lk_wr_u16(w, mode == FAKE_COUNT_OVERFLOW ? 60000 : 4);
            lk_wr_cstr(
                w,
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C "
                "alice@demo");
            lk_wr_cstr(w, "command=\"/bin/sh\" ssh-ed25519 "
                          "AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C");
            lk_wr_cstr(
                w, "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C "
                   "type-mismatch");
            lk_wr_cstr(w, "ecdsa-sha2-nistp256 "
                          "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBKYG/"
                          "pcrNaQCzfFMwfnVcM1HLnWhwh/guMXPUQNdOmamDQbS9NAQOf1muMRMYg1R4/"
                          "yOf08cW6yd2VY1KH+ZM0= heidi");
        } else {
            char n[32];
            unsigned u;
            if (mode == FAKE_WRONG_ENTRY)
                idx = idx == 0 ? 2 : 0;
            user_at(idx, n, sizeof n, &u);
            put_passwd(w, n, mode == FAKE_ROOT ? 0 : u, idx == 1 ? big_gecos : "Fake User");
        }
    } else if (op == LK_OP_PW_LIST) {
        unsigned start = lk_rd_u32(req), first = FAKE_USERS, count = 0, next = start;
        for (unsigned i = 0; i < FAKE_USERS && first == FAKE_USERS; i++) {
            char n[32];
            unsigned u;
            user_at(i, n, sizeof n, &u);
            if (u >= start)
                first = i;
        }
        count = FAKE_USERS - first < FAKE_PAGE ? FAKE_USERS - first : FAKE_PAGE;
        if (count) {
            char n[32];
            user_at(first + count - 1, n, sizeof n, &next);
            next++;
        }
        lk_wr_u32(w, next);
        lk_wr_u16(w, mode == FAKE_COUNT_OVERFLOW ? 65535 : (uint16_t)count);
        for (unsigned i = 0; i < count; i++)
            put_user(w, first + i);
    } else if (op == LK_OP_GR_BY_NAME || op == LK_OP_GR_BY_GID) {
        struct lk_str name = { "", 0 };
        unsigned gid = 0;
        if (op == LK_OP_GR_BY_GID)
            gid = lk_rd_u32(req);
        else
            name = lk_rd_str(req);
        int lega = op == LK_OP_GR_BY_GID ? gid == 10000 : lk_str_eq(name, "lega");
        int crowd = op == LK_OP_GR_BY_GID ? gid == 10001 : lk_str_eq(name, "crowd");
        if (!lega && !crowd)
            status_only(w, op, LK_STATUS_NOTFOUND, "");
        else if (mode == FAKE_COUNT_OVERFLOW) {
            lk_wr_cstr(w, "lega");
            lk_wr_u32(w, 10000);
            lk_wr_u16(w, 9999);
        } else
            put_group(w, crowd);
    } else if (op == LK_OP_GR_LIST) {
        unsigned start = lk_rd_u32(req);
        lk_wr_u32(w, start <= 10000 ? 10001 : start <= 10001 ? 10002 : 0);
        lk_wr_u16(w, start <= 10001 ? 1 : 0);
        if (start <= 10001)
            put_group(w, start > 10000);
    } else if (op == LK_OP_PING) {
        lk_wr_cstr(w, "fake");
    } else {
        status_only(w, op, LK_STATUS_UNKNOWN_OPCODE, "");
    }
}
