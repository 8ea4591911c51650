/*
 * lk_map: the layout rules of the shared-memory map (<socket_dir>/nss.map; layout and rules in
 * spec.json "map", generated into lk_map_layout.h) that its writer (lk_map_write.c, in the
 * addon) and its reader (native/nss/nss_map.c) share: the keyed hash, the header check, the
 * probe, and the copy-then-validate of a record. Pure: no I/O, no allocation; the fuzzer
 * (test/c/fuzz_map.c) calls these on arbitrary bytes.
 *
 * Everything read from a map is untrusted, exactly like a socket reply: every offset and length
 * is bounds-checked, a record is copied into the caller's buffer before it is checked (the file
 * is shared memory: what was checked must be what is used), and a passwd/group record must pass
 * the same lk_records.c rules as one from nss.sock.
 */
#ifndef LK_MAP_H
#define LK_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "lk_map_layout.h"
#include "lk_msgs.h"

/* A checked map: pointers into the mapping, sizes from its (validated) header. */
struct lk_map_view {
    const uint8_t *base;
    size_t size;
    const struct lk_map_header *h;
    const uint64_t *names;
    const uint64_t *uids;
    const uint8_t *data;
    uint64_t data_size;
    uint32_t slots;
    uint64_t seed0, seed1;
};

/* 0 when `base`/`size` hold a map whose header is consistent (magic, version, sizes, tables and
 * record area inside the file, aligned, not overlapping, slots a power of two within
 * LK_MAP_MAX_SLOTS); -1 otherwise. `base` must be 8-byte aligned (mmap's is). */
int lk_map_view_open(struct lk_map_view *v, const void *base, size_t size);

/* CLOCK_REALTIME_COARSE in ms (the clock of records' expires_ms), or -1. The coarse clock costs a
 * third of the precise one on a hot path; a record may answer a tick (a few ms) past its expiry,
 * well inside what a TTL means. */
int64_t lk_map_now_ms(void);

/* SipHash-1-3 of `len` bytes under the key (k0, k1). */
uint64_t lk_map_hash(uint64_t k0, uint64_t k1, const void *data, size_t len);
uint64_t lk_map_hash_name(const struct lk_map_view *v, const char *name, size_t len);
uint64_t lk_map_hash_uid(const struct lk_map_view *v, uint32_t uid);

/* A record copied out of the map and checked. The strings point into the caller's copy buffer
 * (LK_MAP_MAX_RECORD bytes), NUL-terminated, without NUL, ':' or newline. */
struct lk_map_rec {
    uint64_t expires_ms;
    uint16_t kind;
    uint32_t uid;
    uint32_t gid;
    struct lk_str name, gecos, dir, shell;
};

/* Copies the record at `ref` into buf and checks it: kind known, strings where the kind says,
 * exact size, reserved zero, passwd fields by the lk_records rules. 0, or -1 when invalid. */
int lk_map_rec_copy(const struct lk_map_view *v, uint32_t ref, uint8_t buf[LK_MAP_MAX_RECORD],
                    struct lk_map_rec *out);

/* The outcome of a lookup in the map. */
enum lk_map_result {
    LK_MAP_ASK = 0, /* not in the map, expired, or invalid: ask nss.sock */
    LK_MAP_FOUND,   /* a fresh record: *out holds it */
    LK_MAP_ABSENT,  /* a fresh negative entry: no such user (NOTFOUND) */
};

/* Where a key sits in a table (the writer's view): the slot index of the entry whose record
 * matches, or -1 and the first free (empty or tombstone) slot within LK_MAP_MAX_PROBE, -1 when
 * none. An invalid record on the way ends the search with found = -1. */
struct lk_map_slot {
    int64_t found;
    int64_t free_slot;
    uint32_t ref;
};
void lk_map_probe_name(const struct lk_map_view *v, const char *name, size_t len,
                       struct lk_map_slot *out);
void lk_map_probe_uid(const struct lk_map_view *v, uint32_t uid, struct lk_map_slot *out);

/* getpwnam / getpwuid in the map, at time now_ms. */
enum lk_map_result lk_map_find_name(const struct lk_map_view *v, const char *name, int64_t now_ms,
                                    uint8_t buf[LK_MAP_MAX_RECORD], struct lk_map_rec *out);
enum lk_map_result lk_map_find_uid(const struct lk_map_view *v, uint32_t uid, int64_t now_ms,
                                   uint8_t buf[LK_MAP_MAX_RECORD], struct lk_map_rec *out);
/* getgrnam (name) / getgrgid (name NULL): FOUND, ABSENT when the map's group is authoritative and
 * is another one, ASK otherwise. */
enum lk_map_result lk_map_find_group(const struct lk_map_view *v, const char *name, uint32_t gid,
                                     int64_t now_ms, uint8_t buf[LK_MAP_MAX_RECORD],
                                     struct lk_map_rec *out);

/* The record as the wire decoder's struct, for lk_fill_passwd / lk_fill_group. */
void lk_map_rec_passwd(const struct lk_map_rec *r, struct lk_passwd_rec *out);
void lk_map_rec_group(const struct lk_map_rec *r, struct lk_group_rec *out);

/* Table entry helpers (the spec's (tag << 32) | ref). */
static inline uint32_t lk_map_ref(uint64_t e)
{
    return (uint32_t)e;
}
static inline uint64_t lk_map_entry(uint64_t hash, uint32_t ref)
{
    return (hash & 0xffffffff00000000ull) | ref;
}

#endif /* LK_MAP_H */
