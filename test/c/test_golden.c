/*
 * Golden vectors, C side: test/golden/vectors.txt (written by test/golden/make-vectors.mjs from
 * the TypeScript codec, the same vectors as vectors.json) is decoded with the shims' own code
 * and compared field by field; the module's request encoder must produce the same bytes as the
 * TS encoder; every bad-reply vector must be rejected by the framing check or the decoders,
 * and by the NSS/keys reply functions.
 *   test_golden VECTORS.txt                    run the checks
 *   test_golden --write-corpus DIR VECTORS.txt write each frame body as a fuzz seed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyline.h"
#include "latchkey_proto.h"
#include "lk_client.h"
#include "lk_records.h"
#include "nss_maps.h"
#include "test_util.h"

int lk_test_failures;
int lk_test_quiet;

struct vector {
    char name[128], kind[16];
    uint8_t bytes[4096];
    size_t len;
    unsigned version, opcode, status;
    char detail[1024]; /* x<hex> of the detail str */
    char fields[16384]; /* expected "f ..." lines, '\n'-joined */
};

/* ---- flattening, the same scheme as make-vectors.mjs ------------------------------------ */
struct out {
    char text[16384];
    size_t len;
};

static void emit(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->text + o->len, sizeof o->text - o->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof o->text - o->len)
        o->len += (size_t)n;
}

static void emit_str(struct out *o, const char *path, struct lk_str s)
{
    emit(o, "f %s str x", path);
    for (size_t i = 0; i < s.len; i++)
        emit(o, "%02x", (unsigned char)s.p[i]);
    emit(o, "\n");
}

static void flat_passwd(struct out *o, const char *pre, const struct lk_passwd_rec *p)
{
    char path[64];
    snprintf(path, sizeof path, "%sname", pre);
    emit_str(o, path, p->name);
    emit(o, "f %suid u32 %u\nf %sgid u32 %u\n", pre, p->uid, pre, p->gid);
    snprintf(path, sizeof path, "%sgecos", pre);
    emit_str(o, path, p->gecos);
    snprintf(path, sizeof path, "%sdir", pre);
    emit_str(o, path, p->dir);
    snprintf(path, sizeof path, "%sshell", pre);
    emit_str(o, path, p->shell);
}

static void flat_group(struct out *o, const char *pre, const struct lk_group_rec *g)
{
    char path[64];
    snprintf(path, sizeof path, "%sname", pre);
    emit_str(o, path, g->name);
    emit(o, "f %sgid u32 %u\nf %smembers count %u\n", pre, g->gid, pre, g->nmembers);
    struct lk_reader m = g->members;
    for (unsigned i = 0; i < g->nmembers; i++) {
        snprintf(path, sizeof path, "%smembers.%u", pre, i);
        emit_str(o, path, lk_rd_str(&m));
    }
}

/* Decodes an OK reply payload for `opcode` with the shims' decoders; 0 or -1. */
static int flat_reply(struct out *o, unsigned opcode, struct lk_reader *r)
{
    struct lk_passwd_rec p;
    struct lk_group_rec g;
    struct lk_page pg;
    char pre[32];
    switch (opcode) {
    case LK_OP_PING:
        emit_str(o, "daemon_version", lk_rd_str(r));
        break;
    case LK_OP_PW_BY_NAME:
    case LK_OP_PW_BY_UID:
        if (lk_rd_passwd(r, &p) != 0)
            return -1;
        flat_passwd(o, "entry.", &p);
        break;
    case LK_OP_GR_BY_NAME:
    case LK_OP_GR_BY_GID:
        if (lk_rd_group(r, &g) != 0)
            return -1;
        flat_group(o, "entry.", &g);
        break;
    case LK_OP_PW_LIST:
    case LK_OP_GR_LIST:
        if (lk_page_open(r, opcode == LK_OP_GR_LIST, &pg) != 0)
            return -1;
        emit(o, "f next_%s u32 %u\nf entries count %u\n", opcode == LK_OP_GR_LIST ? "gid" : "uid",
             pg.next, pg.left);
        for (unsigned i = 0; pg.left > 0; i++) {
            snprintf(pre, sizeof pre, "entries.%u.", i);
            if (opcode == LK_OP_GR_LIST && lk_page_peek_group(&pg, &g) == 0)
                flat_group(o, pre, &g);
            else if (opcode == LK_OP_PW_LIST && lk_page_peek_passwd(&pg, &p) == 0)
                flat_passwd(o, pre, &p);
            lk_page_consume(&pg, opcode == LK_OP_GR_LIST);
        }
        return 0; /* lk_page_open checked the end of the payload */
    case LK_OP_LOGIN_CHECK:
        emit_str(o, "prompt", lk_rd_str(r));
        break;
    case LK_OP_KEYS_BY_NAME:
    case LK_OP_KEYS_FOR_LOGIN: {
        struct lk_reader c = *r;
        unsigned n = lk_rd_skip_strlist(&c);
        if (c.bad)
            return -1;
        emit(o, "f keys count %u\n", n);
        (void)lk_rd_u16(r);
        for (unsigned i = 0; i < n; i++) {
            snprintf(pre, sizeof pre, "keys.%u", i);
            emit_str(o, pre, lk_rd_str(r));
        }
        break;
    }
    default:
        return -1;
    }
    return lk_rd_done(r);
}

/* ---- the NSS and keys reply functions must agree with the decoders ---------------------- */
static void count_key(void *ctx, const char *k, size_t n)
{
    (void)k;
    (void)n;
    ++*(unsigned *)ctx;
}

/* Do the shim's reply functions give the expected outcome for this body? A good reply
 * (bad == 0) must map to its status; a bad one must be a protocol error (UNAVAIL / -1). */
static int shim_agrees(unsigned opcode, const uint8_t *b, size_t n, unsigned status, int bad)
{
    static char buf[65536];
    struct passwd pw;
    struct group gr;
    int err = 0;
    enum nss_status want = bad ? NSS_STATUS_UNAVAIL
                         : status == LK_STATUS_OK ? NSS_STATUS_SUCCESS
                         : status == LK_STATUS_NOTFOUND ? NSS_STATUS_NOTFOUND
                                                        : NSS_STATUS_UNAVAIL;
    struct lk_nss_ent e = { 0 };
    unsigned emitted = 0, skipped = 0;
    enum nss_status st;
    switch (opcode) {
    case LK_OP_PW_BY_NAME:
        return lk_nss_passwd_reply(b, n, (uint16_t)opcode, "alice", 0, &pw, buf, sizeof buf, &err) == want;
    case LK_OP_PW_BY_UID:
        return lk_nss_passwd_reply(b, n, (uint16_t)opcode, NULL, 11002, &pw, buf, sizeof buf, &err) == want;
    case LK_OP_GR_BY_NAME:
    case LK_OP_GR_BY_GID:
        return lk_nss_group_reply(b, n, (uint16_t)opcode, opcode == LK_OP_GR_BY_NAME ? "lega" : NULL,
                                  10000, &gr, buf, sizeof buf, &err) == want;
    case LK_OP_PW_LIST:
    case LK_OP_GR_LIST: {
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy)
            return 0;
        memcpy(copy, b, n);
        st = lk_nss_ent_accept(&e, copy, n, (uint16_t)opcode, &err);
        lk_nss_ent_reset(&e);
        /* an empty page ends the list: the module says NOTFOUND */
        return st == want || (want == NSS_STATUS_SUCCESS && st == NSS_STATUS_NOTFOUND);
    }
    case LK_OP_KEYS_BY_NAME:
    case LK_OP_KEYS_FOR_LOGIN:
        if (bad)
            return lk_keys_reply(b, n, (uint16_t)opcode, count_key, &emitted, &skipped) == -1 && emitted == 0;
        return lk_keys_reply(b, n, (uint16_t)opcode, count_key, &emitted, &skipped) == (int)status && skipped == 0;
    default:
        return 1; /* PING: no shim function */
    }
}

/* ---- checks ------------------------------------------------------------------------------ */
static void check_vector(const struct vector *v)
{
    struct out o = { .len = 0 };
    uint32_t len = v->len >= 4 ? ((uint32_t)v->bytes[0] << 24) | ((uint32_t)v->bytes[1] << 16) |
                                     ((uint32_t)v->bytes[2] << 8) | v->bytes[3]
                               : 0;
    int frame_ok = v->len >= 4 && len == v->len - 4 && lk_reply_len_ok(len, LK_MAX_NSS_REPLY);
    const uint8_t *body = v->bytes + 4;
    size_t blen = v->len >= 4 ? v->len - 4 : 0;
    if (strcmp(v->kind, "request") == 0) {
        uint8_t mine[512];
        struct lk_str name = { NULL, 0 };
        uint32_t id = 0;
        struct lk_reader r;
        lk_rd_init(&r, body, blen);
        unsigned version = lk_rd_u16(&r), op = lk_rd_u16(&r);
        if (op == LK_OP_PW_BY_NAME || op == LK_OP_GR_BY_NAME || op == LK_OP_KEYS_BY_NAME)
            name = lk_rd_str(&r);
        else if (op != LK_OP_PING)
            id = lk_rd_u32(&r);
        CHECK(lk_rd_done(&r) == 0 && version == v->version && op == v->opcode);
        char cname[64] = "";
        if (name.p)
            snprintf(cname, sizeof cname, "%.*s", (int)name.len, name.p);
        size_t n = lk_nss_request(mine, sizeof mine, (uint16_t)op, name.p ? cname : NULL, id);
        CHECK(n == v->len && memcmp(mine, v->bytes, n) == 0);
        if (name.p)
            emit_str(&o, op == LK_OP_PW_BY_NAME || op == LK_OP_GR_BY_NAME || op == LK_OP_KEYS_BY_NAME ? "name" : "?", name);
        else if (op != LK_OP_PING)
            emit(&o, "f %s u32 %u\n", op == LK_OP_PW_BY_UID ? "uid" : op == LK_OP_GR_BY_GID ? "gid"
                                      : op == LK_OP_PW_LIST ? "start_uid" : "start_gid", id);
        CHECK(strcmp(o.text, v->fields) == 0);
        return;
    }
    struct lk_reply rep;
    int open_ok = frame_ok && lk_reply_open(body, blen, (uint16_t)v->opcode, &rep) == 0;
    if (strcmp(v->kind, "reply") == 0) {
        CHECK(frame_ok && open_ok && rep.status == v->status);
        if (!open_ok)
            return;
        if (rep.status != LK_STATUS_OK) {
            struct out d = { .len = 0 };
            emit_str(&d, "d", rep.detail); /* "f d str x<hex>\n" */
            d.text[strcspn(d.text, "\n")] = '\0';
            CHECK(strcmp(d.text + strlen("f d str "), v->detail) == 0);
        } else {
            CHECK(flat_reply(&o, v->opcode, &rep.payload) == 0);
            CHECK(strcmp(o.text, v->fields) == 0);
            if (strcmp(o.text, v->fields) != 0)
                fprintf(stderr, "    got:\n%s    want:\n%s", o.text, v->fields);
        }
        CHECK(shim_agrees(v->opcode, body, blen, v->status, 0));
        return;
    }
    /* bad-reply: the framing check, the decoders or the end-of-payload check must refuse it */
    int decoded = open_ok && rep.status == LK_STATUS_OK && flat_reply(&o, v->opcode, &rep.payload) == 0;
    int accepted_non_ok = open_ok && rep.status != LK_STATUS_OK;
    CHECK(!decoded && !accepted_non_ok);
    if (frame_ok)
        CHECK(shim_agrees(v->opcode, body, blen, 0, 1));
}

/* Copies src into dst (cap > 0), cut short if needed, always NUL-terminated. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (h[0] && h[1] && n < cap) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *corpus = NULL;
    if (argc == 4 && strcmp(argv[1], "--write-corpus") == 0)
        corpus = argv[2];
    else if (argc != 2) {
        fprintf(stderr, "usage: test_golden [--write-corpus DIR] VECTORS.txt\n");
        return 2;
    }
    FILE *f = fopen(argv[argc - 1], "r");
    if (!f) {
        perror(argv[argc - 1]);
        return 1;
    }
    static struct vector v;
    static char line[20000];
    int count = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "vector ", 7) == 0) {
            memset(&v, 0, sizeof v);
            copy_text(v.name, sizeof v.name, line + 7);
        } else if (strncmp(line, "kind ", 5) == 0) {
            copy_text(v.kind, sizeof v.kind, line + 5);
        } else if (strncmp(line, "hex ", 4) == 0) {
            v.len = unhex(line + 4, v.bytes, sizeof v.bytes);
        } else if (sscanf(line, "version %u", &v.version) == 1 || sscanf(line, "opcode %u", &v.opcode) == 1 ||
                   sscanf(line, "status %u", &v.status) == 1) {
            continue;
        } else if (strncmp(line, "detail ", 7) == 0) {
            copy_text(v.detail, sizeof v.detail, line + 7);
        } else if (strncmp(line, "f ", 2) == 0) {
            size_t have = strlen(v.fields);
            snprintf(v.fields + have, sizeof v.fields - have, "%s\n", line);
        } else if (strcmp(line, "end") == 0) {
            int before = lk_test_failures;
            if (corpus) {
                char path[512];
                snprintf(path, sizeof path, "%s/golden-%02d", corpus, count);
                FILE *c = fopen(path, "wb");
                if (c && v.len >= 4)
                    fwrite(v.bytes + 4, 1, v.len - 4, c);
                if (c)
                    fclose(c);
            } else {
                check_vector(&v);
            }
            if (lk_test_failures != before)
                fprintf(stderr, "  in vector \"%s\"\n", v.name);
            count++;
            bad += strcmp(v.kind, "bad-reply") == 0;
        }
    }
    fclose(f);
    if (corpus)
        return 0;
    CHECK(count >= 20 && bad >= 4);
    fprintf(stderr, "test_golden: %d vectors (%d bad), %s\n", count, bad,
            lk_test_failures ? "FAILED" : "ok");
    return lk_test_failures ? 1 : 0;
}
