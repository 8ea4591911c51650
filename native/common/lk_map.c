/* lk_map: see lk_map.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lk_map.h"

#include <string.h>
#include <time.h>

#include "lk_records.h"

int64_t lk_map_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- SipHash-1-3 (Aumasson and Bernstein; the variant Rust's HashMap uses), 64-bit output --
 * Keyed with a random key per file, so that names do not collide by accident or across files.
 * The key is in the 0644 header (every reader hashes with it), so anyone can still choose names
 * that collide: the writer keeps that from forcing a new file or keeping a user out
 * (lk_map_write_ops.c). One compression round instead of two: it runs on every lookup. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t lk_map_hash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0;
    uint64_t v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0;
    uint64_t v3 = 0x7465646279746573ull ^ k1;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t lk_map_hash_name(const struct lk_map_view *v, const char *name, size_t len)
{
    return lk_map_hash(v->seed0, v->seed1, name, len);
}

uint64_t lk_map_hash_uid(const struct lk_map_view *v, uint32_t uid)
{
    uint8_t b[4] = { (uint8_t)uid, (uint8_t)(uid >> 8), (uint8_t)(uid >> 16),
                     (uint8_t)(uid >> 24) };
    return lk_map_hash(v->seed0, v->seed1, b, sizeof b);
}

/* ---- the header ---------------------------------------------------------------------------- */

/* [off, off + len) inside [0, size), without overflow. */
static int inside(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

static int disjoint(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a + alen <= b || b + blen <= a;
}

int lk_map_view_open(struct lk_map_view *v, const void *base, size_t size)
{
    memset(v, 0, sizeof *v);
    if (base == NULL || ((uintptr_t)base & 7u) != 0 || size < LK_MAP_HEADER_SIZE)
        return -1;
    const struct lk_map_header *h = base;
    /* Plain reads: a header changes only in `retired` (checked by the reader on each lookup). */
    if (h->magic != LK_MAP_MAGIC || h->version != LK_MAP_VERSION ||
        h->header_size != LK_MAP_HEADER_SIZE || h->file_size != size)
        return -1;
    uint32_t slots = h->slots;
    if (slots == 0 || slots > LK_MAP_MAX_SLOTS || (slots & (slots - 1)) != 0)
        return -1;
    uint64_t tbl = (uint64_t)slots * 8u;
    if (h->names_off < LK_MAP_HEADER_SIZE || h->uids_off < LK_MAP_HEADER_SIZE ||
        h->data_off < LK_MAP_HEADER_SIZE || (h->names_off & 7u) || (h->uids_off & 7u) ||
        (h->data_off & 7u) || !inside(h->names_off, tbl, size) || !inside(h->uids_off, tbl, size) ||
        !inside(h->data_off, h->data_size, size) ||
        !disjoint(h->names_off, tbl, h->uids_off, tbl) ||
        !disjoint(h->names_off, tbl, h->data_off, h->data_size) ||
        !disjoint(h->uids_off, tbl, h->data_off, h->data_size))
        return -1;
    /* A ref is 1 + offset / ALIGN in 32 bits, below SLOT_TOMBSTONE. */
    if (h->data_size / LK_MAP_ALIGN >= LK_MAP_SLOT_TOMBSTONE)
        return -1;
    v->base = base;
    v->size = size;
    v->h = h;
    v->names = (const uint64_t *)((const uint8_t *)base + h->names_off);
    v->uids = (const uint64_t *)((const uint8_t *)base + h->uids_off);
    v->data = (const uint8_t *)base + h->data_off;
    v->data_size = h->data_size;
    v->slots = slots;
    v->seed0 = h->seed0;
    v->seed1 = h->seed1;
    return 0;
}

/* ---- records ------------------------------------------------------------------------------- */

/* The record header at ref, or NULL when it does not fit the record area. */
static const struct lk_map_record *rec_at(const struct lk_map_view *v, uint32_t ref)
{
    if (ref == 0 || ref == LK_MAP_SLOT_TOMBSTONE)
        return NULL;
    uint64_t off = (uint64_t)(ref - 1) * LK_MAP_ALIGN;
    if (!inside(off, LK_MAP_REC_HEADER, v->data_size))
        return NULL;
    return (const struct lk_map_record *)(v->data + off);
}

/* The next string of a copied record: len bytes without NUL, then a NUL. */
static int take_str(const uint8_t *buf, size_t size, size_t *at, uint16_t len, struct lk_str *s)
{
    if (*at > size || (size_t)len + 1 > size - *at)
        return -1;
    const char *p = (const char *)buf + *at;
    if (p[len] != '\0' || memchr(p, '\0', len) != NULL)
        return -1;
    s->p = p;
    s->len = len;
    *at += (size_t)len + 1;
    return 0;
}

int lk_map_rec_copy(const struct lk_map_view *v, uint32_t ref, uint8_t buf[LK_MAP_MAX_RECORD],
                    struct lk_map_rec *out)
{
    memset(out, 0, sizeof *out);
    const struct lk_map_record *r = rec_at(v, ref);
    if (r == NULL)
        return -1;
    uint32_t size = __atomic_load_n(&r->size, __ATOMIC_RELAXED);
    uint64_t off = (uint64_t)(ref - 1) * LK_MAP_ALIGN;
    if (size < LK_MAP_REC_HEADER || size > LK_MAP_MAX_RECORD || !inside(off, size, v->data_size))
        return -1;
    /* expires_ms is the one field the writer changes in place: an atomic load, and the copy
     * below starts after it. Everything else is read once, from the private copy. */
    uint64_t expires = __atomic_load_n(&r->expires_ms, __ATOMIC_RELAXED);
    memcpy(buf + 8, (const uint8_t *)r + 8, size - 8);
    memcpy(buf, &expires, 8);
    struct lk_map_record h;
    memcpy(&h, buf, sizeof h);
    if (h.size != size || h.reserved != 0)
        return -1;
    out->expires_ms = h.expires_ms;
    out->kind = h.kind;
    out->uid = h.uid;
    out->gid = h.gid;
    size_t at = LK_MAP_REC_HEADER;
    int has_name = 1, has_rest = 0;
    switch (h.kind) {
    case LK_MAP_KIND_PASSWD:
        has_rest = 1;
        break;
    case LK_MAP_KIND_NEG_NAME:
    case LK_MAP_KIND_GROUP:
        break;
    case LK_MAP_KIND_NEG_UID:
        has_name = 0;
        break;
    default:
        return -1;
    }
    if ((!has_name && h.name_len != 0) ||
        (!has_rest && (h.gecos_len != 0 || h.dir_len != 0 || h.shell_len != 0)))
        return -1;
    if (has_name && take_str(buf, size, &at, h.name_len, &out->name) != 0)
        return -1;
    if (has_rest && (take_str(buf, size, &at, h.gecos_len, &out->gecos) != 0 ||
                     take_str(buf, size, &at, h.dir_len, &out->dir) != 0 ||
                     take_str(buf, size, &at, h.shell_len, &out->shell) != 0))
        return -1;
    if (at != size)
        return -1;
    /* The socket reply rules (lk_records.c), whatever the kind. */
    if (h.kind == LK_MAP_KIND_PASSWD) {
        struct lk_passwd_rec pw;
        lk_map_rec_passwd(out, &pw);
        return lk_passwd_ok(&pw) ? 0 : -1;
    }
    if (h.kind == LK_MAP_KIND_GROUP) {
        struct lk_group_rec gr;
        lk_map_rec_group(out, &gr);
        return lk_group_head_ok(&gr) ? 0 : -1;
    }
    if (h.kind == LK_MAP_KIND_NEG_NAME) {
        struct lk_group_rec named = { out->name, 1, { 0, { NULL, 0, 0 } } };
        return lk_group_head_ok(&named) ? 0 : -1; /* the same name rule */
    }
    return h.uid != 0 ? 0 : -1;
}

void lk_map_rec_passwd(const struct lk_map_rec *r, struct lk_passwd_rec *out)
{
    out->name = r->name;
    out->uid = r->uid;
    out->gid = r->gid;
    out->gecos = r->gecos;
    out->dir = r->dir;
    out->shell = r->shell;
}

void lk_map_rec_group(const struct lk_map_rec *r, struct lk_group_rec *out)
{
    memset(out, 0, sizeof *out);
    out->name = r->name;
    out->gid = r->uid;
}

/* ---- probing ------------------------------------------------------------------------------- */

/* Does the record at ref carry this key? Reads the record in place (the caller copies and
 * re-checks the one it answers with). 1 yes, 0 no, -1 invalid. */
static int rec_has_name(const struct lk_map_view *v, uint32_t ref, const char *name, size_t len)
{
    const struct lk_map_record *r = rec_at(v, ref);
    if (r == NULL)
        return -1;
    uint16_t kind = r->kind;
    if (kind != LK_MAP_KIND_PASSWD && kind != LK_MAP_KIND_NEG_NAME)
        return -1;
    uint64_t off = (uint64_t)(ref - 1) * LK_MAP_ALIGN;
    if (r->name_len != len || !inside(off + LK_MAP_REC_HEADER, len, v->data_size))
        return 0;
    return memcmp((const uint8_t *)r + LK_MAP_REC_HEADER, name, len) == 0;
}

static int rec_has_uid(const struct lk_map_view *v, uint32_t ref, uint32_t uid)
{
    const struct lk_map_record *r = rec_at(v, ref);
    if (r == NULL)
        return -1;
    uint16_t kind = r->kind;
    if (kind != LK_MAP_KIND_PASSWD && kind != LK_MAP_KIND_NEG_UID)
        return -1;
    return r->uid == uid;
}

static void probe(const struct lk_map_view *v, const uint64_t *table, uint64_t hash,
                  const char *name, size_t len, uint32_t uid, struct lk_map_slot *out)
{
    out->found = -1;
    out->free_slot = -1;
    out->ref = 0;
    uint32_t mask = v->slots - 1;
    uint32_t tag = (uint32_t)(hash >> 32);
    for (uint32_t i = 0; i < LK_MAP_MAX_PROBE && i < v->slots; i++) {
        uint32_t k = ((uint32_t)hash + i) & mask;
        /* Acquire: the record an entry points at was written before the entry was published. */
        uint64_t e = __atomic_load_n(&table[k], __ATOMIC_ACQUIRE);
        uint32_t ref = lk_map_ref(e);
        if (ref == 0) {
            if (out->free_slot < 0)
                out->free_slot = k;
            return;
        }
        if (ref == LK_MAP_SLOT_TOMBSTONE) {
            if (out->free_slot < 0)
                out->free_slot = k;
            continue;
        }
        if ((uint32_t)(e >> 32) != tag)
            continue;
        int m = name ? rec_has_name(v, ref, name, len) : rec_has_uid(v, ref, uid);
        if (m < 0) {
            out->free_slot = -1;
            return;
        }
        if (m == 1) {
            out->found = k;
            out->ref = ref;
            return;
        }
    }
}

void lk_map_probe_name(const struct lk_map_view *v, const char *name, size_t len,
                       struct lk_map_slot *out)
{
    probe(v, v->names, lk_map_hash_name(v, name, len), name, len, 0, out);
}

void lk_map_probe_uid(const struct lk_map_view *v, uint32_t uid, struct lk_map_slot *out)
{
    probe(v, v->uids, lk_map_hash_uid(v, uid), NULL, 0, uid, out);
}

/* The answer a found entry gives, after copying and checking it. */
static enum lk_map_result answer(const struct lk_map_view *v, uint32_t ref, int64_t now_ms,
                                 uint16_t neg_kind, uint8_t *buf, struct lk_map_rec *out)
{
    if (lk_map_rec_copy(v, ref, buf, out) != 0)
        return LK_MAP_ASK;
    if (now_ms < 0 || out->expires_ms <= (uint64_t)now_ms)
        return LK_MAP_ASK;
    if (out->kind == LK_MAP_KIND_PASSWD)
        return LK_MAP_FOUND;
    return out->kind == neg_kind ? LK_MAP_ABSENT : LK_MAP_ASK;
}

enum lk_map_result lk_map_find_name(const struct lk_map_view *v, const char *name, int64_t now_ms,
                                    uint8_t buf[LK_MAP_MAX_RECORD], struct lk_map_rec *out)
{
    size_t len = strnlen(name, LK_MAX_NAME + 1);
    if (len == 0 || len > LK_MAX_NAME)
        return LK_MAP_ASK;
    struct lk_map_slot s;
    lk_map_probe_name(v, name, len, &s);
    if (s.found < 0)
        return LK_MAP_ASK;
    enum lk_map_result r = answer(v, s.ref, now_ms, LK_MAP_KIND_NEG_NAME, buf, out);
    /* Checked again on the private copy: the answer must be for the name asked. */
    if (r != LK_MAP_ASK && (out->name.len != len || memcmp(out->name.p, name, len) != 0))
        return LK_MAP_ASK;
    return r;
}

enum lk_map_result lk_map_find_uid(const struct lk_map_view *v, uint32_t uid, int64_t now_ms,
                                   uint8_t buf[LK_MAP_MAX_RECORD], struct lk_map_rec *out)
{
    struct lk_map_slot s;
    lk_map_probe_uid(v, uid, &s);
    if (s.found < 0)
        return LK_MAP_ASK;
    enum lk_map_result r = answer(v, s.ref, now_ms, LK_MAP_KIND_NEG_UID, buf, out);
    return r != LK_MAP_ASK && out->uid != uid ? LK_MAP_ASK : r;
}

enum lk_map_result lk_map_find_group(const struct lk_map_view *v, const char *name, uint32_t gid,
                                     int64_t now_ms, uint8_t buf[LK_MAP_MAX_RECORD],
                                     struct lk_map_rec *out)
{
    uint32_t ref = v->h->group_ref;
    if (ref == 0 || (v->h->flags & LK_MAP_FLAG_GROUP_AUTHORITATIVE) == 0)
        return LK_MAP_ASK;
    if (lk_map_rec_copy(v, ref, buf, out) != 0 || out->kind != LK_MAP_KIND_GROUP || now_ms < 0 ||
        out->expires_ms <= (uint64_t)now_ms)
        return LK_MAP_ASK;
    int same = name ? lk_str_eq(out->name, name) : out->uid == gid;
    return same ? LK_MAP_FOUND : LK_MAP_ABSENT;
}
