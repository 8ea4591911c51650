/* lk_wire: see lk_wire.h. Every read checks the bytes left before touching them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lk_wire.h"

#include <string.h>

#include "latchkey_proto.h"

void lk_rd_init(struct lk_reader *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->left = p ? len : 0;
    r->bad = 0;
}

/* Returns a pointer to the next n bytes and consumes them, or NULL (and marks bad). */
static const uint8_t *take(struct lk_reader *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

uint8_t lk_rd_u8(struct lk_reader *r)
{
    const uint8_t *b = take(r, 1);
    return b ? b[0] : 0;
}

/* Byte by byte: frame buffers have no alignment guarantee, so no casts to wider types. */
uint16_t lk_rd_u16(struct lk_reader *r)
{
    const uint8_t *b = take(r, 2);
    return b ? (uint16_t)((b[0] << 8) | b[1]) : 0;
}

uint32_t lk_rd_u32(struct lk_reader *r)
{
    const uint8_t *b = take(r, 4);
    if (!b)
        return 0;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

struct lk_str lk_rd_str(struct lk_reader *r)
{
    struct lk_str s = { "", 0 };
    uint16_t n = lk_rd_u16(r);
    const uint8_t *b = take(r, n);
    if (!b)
        return s;
    if (memchr(b, '\0', n) != NULL) {
        r->bad = 1;
        return s;
    }
    s.p = (const char *)b;
    s.len = n;
    return s;
}

struct lk_blob lk_rd_blob(struct lk_reader *r)
{
    struct lk_blob b = { NULL, 0 };
    uint32_t n = lk_rd_u32(r);
    const uint8_t *at = take(r, n);
    if (at) {
        b.p = at;
        b.len = n;
    }
    return b;
}

void lk_rd_strlist(struct lk_reader *r, struct lk_seq *out)
{
    out->count = lk_rd_u16(r);
    out->items = *r;
    /* Each element needs at least its 2-byte count: reject an impossible count up front
     * instead of looping 65535 times over an empty buffer. */
    if (!r->bad && (size_t)out->count * 2u > r->left)
        r->bad = 1;
    for (uint16_t i = 0; i < out->count && !r->bad; i++)
        (void)lk_rd_str(r);
    if (r->bad)
        out->count = 0;
}

int lk_rd_done(const struct lk_reader *r)
{
    return (r->bad || r->left != 0) ? -1 : 0;
}

void lk_wr_init(struct lk_writer *w, uint8_t *buf, size_t cap)
{
    w->data = buf;
    w->cap = cap;
    w->len = 0;
    w->bad = 0;
}

static void put(struct lk_writer *w, const void *p, size_t n)
{
    if (w->bad || n > w->cap - w->len) {
        w->bad = 1;
        return;
    }
    if (n)
        memcpy(w->data + w->len, p, n);
    w->len += n;
}

void lk_wr_u8(struct lk_writer *w, uint8_t v)
{
    put(w, &v, 1);
}

void lk_wr_u16(struct lk_writer *w, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    put(w, b, sizeof b);
}

void lk_wr_u32(struct lk_writer *w, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    put(w, b, sizeof b);
}

void lk_wr_cstr(struct lk_writer *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 0xffffu) {
        w->bad = 1;
        return;
    }
    lk_wr_u16(w, (uint16_t)n);
    put(w, s, n);
}

void lk_wr_blob(struct lk_writer *w, const uint8_t *p, uint32_t len)
{
    lk_wr_u32(w, len);
    put(w, p, len);
}

void lk_wr_request(struct lk_writer *w, uint16_t opcode)
{
    w->len = 0;
    w->bad = 0;
    lk_wr_u32(w, 0);
    lk_wr_u16(w, (uint16_t)LK_PROTO_VERSION);
    lk_wr_u16(w, opcode);
}

size_t lk_wr_finish(struct lk_writer *w)
{
    if (w->bad || w->len < LK_REQ_HEADER || w->len - 4u > LK_MAX_REQUEST)
        return 0;
    uint32_t body = (uint32_t)(w->len - 4u);
    w->data[0] = (uint8_t)(body >> 24);
    w->data[1] = (uint8_t)(body >> 16);
    w->data[2] = (uint8_t)(body >> 8);
    w->data[3] = (uint8_t)body;
    return w->len;
}

int lk_str_eq(struct lk_str s, const char *c)
{
    size_t n = strlen(c);
    return n == s.len && memcmp(s.p, c, n) == 0;
}

int lk_reply_open(const uint8_t *body, size_t len, uint16_t opcode, struct lk_reply *out)
{
    struct lk_reader r;
    memset(out, 0, sizeof *out);
    out->detail.p = "";
    lk_rd_init(&r, body, len);
    uint16_t version = lk_rd_u16(&r);
    uint16_t op = lk_rd_u16(&r);
    out->status = lk_rd_u16(&r);
    if (r.bad || version != LK_PROTO_VERSION || op != opcode)
        return -1;
    if (out->status != LK_STATUS_OK) {
        out->detail = lk_rd_str(&r);
        return lk_rd_done(&r);
    }
    out->payload = r;
    return 0;
}
