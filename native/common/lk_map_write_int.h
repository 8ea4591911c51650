/*
 * lk_map_write_int: what lk_map_write.c (files, rebuilds) and lk_map_write_ops.c (publishing
 * and removing entries) share. Not an interface: see lk_map_write.h.
 */
#ifndef LK_MAP_WRITE_INT_H
#define LK_MAP_WRITE_INT_H

#include <limits.h>
#include <stdint.h>

#include "latchkey_proto.h"
#include "lk_map.h"
#include "lk_map_write.h"

/* A table is rebuilt into a new file once this share of its slots is used (tombstones count):
 * linear probing stays short, and every key stays within LK_MAP_MAX_PROBE of its home slot. */
#define FILL_NUM 5u
#define FILL_DEN 10u
#define MIN_SLOTS 1024u
#define MIN_DATA (64u * 1024u)
#define MIN_NEG_CAP 1024u
/* At most one rebuild for colliding names per this many ms (find_both in lk_map_write_ops.c). */
#define LKW_COLLISION_REBUILD_MS 10000u

struct file {
    int fd;
    uint8_t *base;
    size_t size;
    struct lk_map_header *h;
    uint64_t *names, *uids;
    uint8_t *data;
    uint64_t used;                  /* bytes of the record area in use */
    uint32_t names_used, uids_used; /* non-empty slots, tombstones included */
    struct lk_map_view v;
};

struct lk_map_writer {
    char path[PATH_MAX];
    struct file f;
    uint32_t users, neg_names, neg_uids;
    uint64_t generation, rebuilds, not_published;
    int64_t collision_rebuild_at; /* lk_map_now_ms() of the last rebuild for colliding names */
    int have_group;
    char group[LK_MAX_NAME + 1];
    uint32_t gid;
    uint64_t group_expires;
    char err[256];
};

int lkw_fail(struct lk_map_writer *w, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether f has room for a record of `bytes` and that many more used slots per table. */
int lkw_room(const struct file *f, uint32_t bytes, uint32_t name_slots, uint32_t uid_slots);
/* Builds a record in buf; its size, or 0 when it would exceed LK_MAP_MAX_RECORD. */
uint32_t lkw_build(uint8_t buf[LK_MAP_MAX_RECORD], uint16_t kind, uint64_t expires, uint32_t uid,
                   uint32_t gid, const char *name, const char *gecos, const char *dir,
                   const char *shell);
/* Appends a record to f (the caller made room); its ref. */
uint32_t lkw_append(struct file *f, const uint8_t *rec, uint32_t size);
/* Puts an entry into the slot a probe found (or the free one it found). */
void lkw_place(uint64_t *table, uint32_t *used, const struct lk_map_slot *s, uint64_t hash,
               uint32_t ref);
/* A new file holding the live, unexpired entries kept, room for `extra` users, published. */
int lkw_rebuild(struct lk_map_writer *w, uint32_t extra, int keep_users, int keep_negatives);

#endif /* LK_MAP_WRITE_INT_H */
