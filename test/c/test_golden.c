/*
 * Golden vectors, C side: test/golden/vectors.txt (written by test/golden/make-vectors.mjs from
 * the TypeScript codec, the same vectors as vectors.json) covers a request and an OK reply of
 * every message of the spec. Each request must come out of the generated writer byte for byte
 * from the field values TS decoded; each reply must decode with the generated reader to the
 * same values; every bad-reply vector must be refused by the framing check or the readers.
 * The shims' own reply functions (NSS, keys, lk_priv_decode) must agree, and the keys helper
 * must accept exactly the keys the daemon's validation accepts.
 *   test_golden VECTORS.txt                    run the checks
 *   test_golden --write-corpus DIR VECTORS.txt write each frame body as a fuzz seed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "keyline.h"
#include "latchkey_proto.h"
#include "lk_client.h"
#include "lk_msgs.h"
#include "lk_priv.h"
#include "lk_records.h"
#include "nss_maps.h"
#include "test_util.h"

int lk_test_failures;
int lk_test_quiet;

#define MAX_FIELDS 128

struct golden_vals {
    unsigned n;
    char path[MAX_FIELDS][64], type[MAX_FIELDS][16];
    char value[MAX_FIELDS][8192]; /* decoded: the bytes of a str/blob, NUL-terminated */
    size_t len[MAX_FIELDS];
};

struct vector {
    char name[128], kind[16];
    uint8_t bytes[8192];
    size_t len;
    unsigned version, opcode, status;
    char detail[1024];  /* x<hex> of the detail str */
    char fields[16384]; /* expected "f ..." lines, '\n'-joined */
    char keys_ok[64];   /* KEYS replies: "1 0 ..." whether the daemon accepts each key */
    struct golden_vals vals;
};

struct golden_out {
    char text[16384];
    size_t len;
};

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    unsigned v;
    while (h[0] && h[1] && n < cap && sscanf(h, "%2x", &v) == 1) {
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

/* ---- golden.h: values in, flattened lines out ---------------------------------------------- */
static int find(const struct golden_vals *v, const char *path, const char *type)
{
    for (unsigned i = 0; i < v->n; i++)
        if (strcmp(v->path[i], path) == 0 && strcmp(v->type[i], type) == 0)
            return (int)i;
    CHECK(!"vector lacks a field the writer needs");
    fprintf(stderr, "    field %s (%s)\n", path, type);
    return -1;
}

const char *golden_str(const struct golden_vals *v, const char *path)
{
    int i = find(v, path, "str");
    return i < 0 ? "" : v->value[i];
}

uint32_t golden_num(const struct golden_vals *v, const char *path)
{
    for (unsigned i = 0; i < v->n; i++)
        if (strcmp(v->path[i], path) == 0 && v->type[i][0] == 'u')
            return (uint32_t)strtoul(v->value[i], NULL, 10);
    (void)find(v, path, "u32"); /* counts the failure */
    return 0;
}

const uint8_t *golden_blob(const struct golden_vals *v, const char *path, uint32_t *len)
{
    int i = find(v, path, "blob");
    *len = i < 0 ? 0 : (uint32_t)v->len[i];
    return i < 0 ? (const uint8_t *)"" : (const uint8_t *)v->value[i];
}

static void emit(struct golden_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->text + o->len, sizeof o->text - o->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof o->text - o->len)
        o->len += (size_t)n;
}

static void emit_bytes(struct golden_out *o, const char *path, const char *type, const void *p,
                       size_t n)
{
    emit(o, "f %s %s x", path, type);
    for (size_t i = 0; i < n; i++)
        emit(o, "%02x", ((const unsigned char *)p)[i]);
    emit(o, "\n");
}

void golden_emit_str(struct golden_out *o, const char *path, struct lk_str s)
{
    emit_bytes(o, path, "str", s.p, s.len);
}

void golden_emit_blob(struct golden_out *o, const char *path, struct lk_blob b)
{
    emit_bytes(o, path, "blob", b.p, b.len);
}

void golden_emit_num(struct golden_out *o, const char *path, const char *type, uint32_t v)
{
    emit(o, "f %s %s %u\n", path, type, v);
}

void golden_emit_count(struct golden_out *o, const char *path, unsigned n)
{
    emit(o, "f %s count %u\n", path, n);
}

void golden_emit_strlist(struct golden_out *o, const char *path, struct lk_seq s)
{
    char item[160];
    golden_emit_count(o, path, s.count);
    for (unsigned i = 0; i < s.count; i++) {
        snprintf(item, sizeof item, "%s.%u", path, i);
        golden_emit_str(o, item, lk_rd_str(&s.items));
    }
}

/* ---- the shims' reply functions must agree with the readers -------------------------------- */
struct key_check {
    const char *want; /* "1 0 1": the daemon's verdict per key */
    unsigned at, emitted, mismatches;
};

/* lk_keys_reply emits the keys it accepts, in order: each must be one the daemon accepts. */
static void key_emitted(void *ctx, const char *k, size_t n)
{
    struct key_check *kc = ctx;
    (void)k;
    (void)n;
    kc->emitted++;
    while (kc->want[kc->at * 2] == '0')
        kc->at++;
    kc->mismatches += kc->want[kc->at * 2] != '1';
    kc->at++;
}

static int keys_agree(const struct vector *v, const uint8_t *b, size_t n, int bad)
{
    struct key_check kc = { v->keys_ok, 0, 0, 0 };
    unsigned skipped = 0, want_ok = 0, want_skipped = 0;
    for (const char *p = v->keys_ok; *p; p++) {
        want_ok += *p == '1';
        want_skipped += *p == '0';
    }
    int st = lk_keys_reply(b, n, (uint16_t)v->opcode, key_emitted, &kc, &skipped);
    if (bad)
        return st == -1 && kc.emitted == 0;
    return st == (int)v->status && kc.mismatches == 0 && kc.emitted == want_ok &&
           skipped == want_skipped;
}

/* A good reply (bad == 0) must map to its status; a bad one must be a protocol error. */
static int shim_agrees(const struct vector *v, const uint8_t *b, size_t n, int bad)
{
    static char buf[65536];
    struct passwd pw;
    struct group gr;
    struct lk_priv_reply pr;
    struct lk_nss_ent e = { 0 };
    int err = 0;
    unsigned op = v->opcode;
    enum nss_status want = bad                               ? NSS_STATUS_UNAVAIL
                           : v->status == LK_STATUS_OK       ? NSS_STATUS_SUCCESS
                           : v->status == LK_STATUS_NOTFOUND ? NSS_STATUS_NOTFOUND
                                                             : NSS_STATUS_UNAVAIL;
    switch (op) {
    case LK_OP_PW_BY_NAME:
    case LK_OP_PW_BY_UID:
        return lk_nss_passwd_reply(b, n, (uint16_t)op, op == LK_OP_PW_BY_NAME ? "alice" : NULL,
                                   11002, &pw, buf, sizeof buf, &err) == want;
    case LK_OP_GR_BY_NAME:
    case LK_OP_GR_BY_GID:
        return lk_nss_group_reply(b, n, (uint16_t)op, op == LK_OP_GR_BY_NAME ? "lega" : NULL, 10000,
                                  &gr, buf, sizeof buf, &err) == want;
    case LK_OP_PW_LIST:
    case LK_OP_GR_LIST: {
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy)
            return 0;
        memcpy(copy, b, n);
        enum nss_status st = lk_nss_ent_accept(&e, copy, n, (uint16_t)op, &err);
        lk_nss_ent_reset(&e);
        /* an empty page ends the list: the module says NOTFOUND */
        return st == want || (want == NSS_STATUS_SUCCESS && st == NSS_STATUS_NOTFOUND);
    }
    case LK_OP_KEYS_BY_NAME:
    case LK_OP_KEYS_FOR_LOGIN:
        return keys_agree(v, b, n, bad);
    case LK_OP_LOGIN_CHECK:
    case LK_OP_AUTH_PASSWORD:
    case LK_OP_ACCT_MGMT:
    case LK_OP_SESSION_OPEN:
    case LK_OP_SESSION_CLOSE: {
        int st = lk_priv_decode((uint16_t)op, b, n, &pr);
        return bad ? st == LK_PRIV_NO_ANSWER && pr.io == LK_IO_PROTOCOL : st == (int)v->status;
    }
    default:
        return 1; /* PING, ADMIN: no shim reads them */
    }
}

/* ---- checks -------------------------------------------------------------------------------- */
static unsigned seen_request[65536 / 32], seen_ok_reply[65536 / 32];
#define MARK(set, op) ((set)[(op) / 32] |= 1u << ((op) % 32))
#define SEEN(set, op) (((set)[(op) / 32] >> ((op) % 32)) & 1u)

static void check_vector(const struct vector *v)
{
    struct golden_out o = { .len = 0 };
    const uint8_t *p = v->bytes;
    uint32_t len =
        v->len >= 4 ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]
                    : 0;
    int frame_ok = v->len >= 4 && len == v->len - 4 && lk_reply_len_ok(len, LK_MAX_REPLY);
    const uint8_t *body = v->bytes + 4;
    size_t blen = v->len >= 4 ? v->len - 4 : 0;
    if (strcmp(v->kind, "request") == 0) {
        static uint8_t mine[LK_MAX_REQUEST + 4u];
        size_t n = golden_encode_request(v->opcode, &v->vals, mine, sizeof mine);
        CHECK(n == v->len && memcmp(mine, v->bytes, n) == 0);
        CHECK(v->version == LK_PROTO_VERSION);
        MARK(seen_request, v->opcode);
        return;
    }
    struct lk_reply rep;
    int open_ok = frame_ok && lk_reply_open(body, blen, (uint16_t)v->opcode, &rep) == 0;
    if (strcmp(v->kind, "reply") == 0) {
        CHECK(frame_ok && open_ok && rep.status == v->status);
        if (!open_ok)
            return;
        if (rep.status != LK_STATUS_OK) {
            struct golden_out d = { .len = 0 };
            golden_emit_str(&d, "d", rep.detail); /* "f d str x<hex>\n" */
            d.text[strcspn(d.text, "\n")] = '\0';
            CHECK(strcmp(d.text + strlen("f d str "), v->detail) == 0);
        } else {
            CHECK(golden_flatten_reply(v->opcode, &rep.payload, &o) == 0);
            CHECK(strcmp(o.text, v->fields) == 0);
            if (strcmp(o.text, v->fields) != 0)
                fprintf(stderr, "    got:\n%s    want:\n%s", o.text, v->fields);
            MARK(seen_ok_reply, v->opcode);
        }
        CHECK(shim_agrees(v, body, blen, 0));
        return;
    }
    /* bad-reply: the framing check, the header or the message's reader must refuse it; the
     * shims (held to MAX_NSS_REPLY for nss.sock) too */
    int decoded = open_ok && rep.status == LK_STATUS_OK &&
                  golden_flatten_reply(v->opcode, &rep.payload, &o) == 0;
    int accepted_non_ok = open_ok && rep.status != LK_STATUS_OK;
    CHECK(!decoded && !accepted_non_ok);
    if (frame_ok)
        CHECK(shim_agrees(v, body, blen, 1));
}

/* Copies src into dst (cap > 0), cut short if needed, always NUL-terminated. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* "f PATH TYPE VALUE": kept as the expected text and, decoded, as a value for the writers. */
static void add_field(struct vector *v, const char *line)
{
    size_t have = strlen(v->fields);
    snprintf(v->fields + have, sizeof v->fields - have, "%s\n", line);
    struct golden_vals *g = &v->vals;
    char path[64], type[16], value[16400];
    if (g->n >= MAX_FIELDS || sscanf(line, "f %63s %15s %16399s", path, type, value) != 3) {
        CHECK(!"unreadable f line");
        return;
    }
    copy_text(g->path[g->n], sizeof g->path[0], path);
    copy_text(g->type[g->n], sizeof g->type[0], type);
    if (value[0] == 'x') {
        g->len[g->n] = unhex(value + 1, (uint8_t *)g->value[g->n], sizeof g->value[0] - 1);
        g->value[g->n][g->len[g->n]] = '\0';
    } else {
        copy_text(g->value[g->n], sizeof g->value[0], value);
    }
    g->n++;
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
        } else if (sscanf(line, "version %u", &v.version) == 1 ||
                   sscanf(line, "opcode %u", &v.opcode) == 1 ||
                   sscanf(line, "status %u", &v.status) == 1) {
            continue;
        } else if (strncmp(line, "detail ", 7) == 0) {
            copy_text(v.detail, sizeof v.detail, line + 7);
        } else if (strncmp(line, "keys_ok ", 8) == 0) {
            copy_text(v.keys_ok, sizeof v.keys_ok, line + 8);
        } else if (strncmp(line, "f ", 2) == 0) {
            add_field(&v, line);
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
    /* Every message of the spec has a request and an OK reply vector. */
    for (size_t i = 0; i < golden_opcode_count; i++) {
        unsigned op = golden_opcodes[i];
        if (!SEEN(seen_request, op) || !SEEN(seen_ok_reply, op))
            fprintf(stderr, "FAIL: opcode %u lacks a request or an OK reply vector\n", op);
        CHECK(SEEN(seen_request, op) && SEEN(seen_ok_reply, op));
    }
    CHECK(count >= 2 * (int)golden_opcode_count && bad >= 4);
    fprintf(stderr, "test_golden: %d vectors (%d bad) over %zu opcodes, %s\n", count, bad,
            golden_opcode_count, lk_test_failures ? "FAILED" : "ok");
    return lk_test_failures ? 1 : 0;
}
