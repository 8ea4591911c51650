/*
 * lk_map_write: the one writer of <socket_dir>/nss.map (layout: spec.json "map"), used by the
 * daemon through the addon (native/addon/map_napi.cc) and by the C tests. Single-threaded: every
 * call comes from the daemon's main thread.
 *
 * A record is written whole, then published by a release store of its table entry, and never
 * changed afterwards except its expiry (an atomic store). Space is never reused within a file:
 * when a table or the record area is full (or the group changes, or lkw_reset), the live,
 * unexpired entries are copied into a new file, which is renamed over the path before the old
 * one is marked retired (readers then reopen the path). Files are sized with posix_fallocate, so
 * a full tmpfs is an error here and never a SIGBUS later.
 *
 * Every function returns 0 or a negative errno; lkw_error() says what failed, for the log.
 */
#ifndef LK_MAP_WRITE_H
#define LK_MAP_WRITE_H

#include <stddef.h>
#include <stdint.h>

struct lk_map_writer;

struct lkw_user {
    const char *name, *gecos, *dir, *shell;
    uint32_t uid, gid;
    uint64_t expires_ms;
};

struct lkw_stats {
    uint64_t generation; /* files written by this writer */
    uint64_t file_size;
    uint32_t slots;
    uint32_t users, neg_names, neg_uids;
    uint64_t data_used, data_size;
    uint64_t rebuilds;
    uint64_t not_published; /* records too large, or negative entries over the cap */
};

/* Creates an empty map at `path` (replacing and retiring any map there that this uid owns).
 * `expect_users` sizes the first file. */
int lkw_open(struct lk_map_writer **out, const char *path, uint32_t expect_users);
/* Marks the file retired; with `unlink_file`, removes it (a clean stop: readers fall back to the
 * socket, which answers "unavailable" while no daemon listens). Frees the writer. */
void lkw_close(struct lk_map_writer *w, int unlink_file);

/* Publishes a user (replacing what the map holds for its name and its uid, negative entries
 * included). 1 when the record is too large for the map: nothing is published, and anything the
 * map held for the name or uid is removed. */
int lkw_put_user(struct lk_map_writer *w, const struct lkw_user *u);
/* Negative entries. A user the map holds under that name / uid is removed. 1 when not
 * published (over the cap of max(1024, users) negative entries per table). */
int lkw_put_neg_name(struct lk_map_writer *w, const char *name, uint64_t expires_ms);
int lkw_put_neg_uid(struct lk_map_writer *w, uint32_t uid, uint64_t expires_ms);
/* Removes the user with this name / uid (negative entries stay). */
int lkw_remove_name(struct lk_map_writer *w, const char *name);
int lkw_remove_uid(struct lk_map_writer *w, uint32_t uid);
/* Removes the negative entry for this name / uid, if any: the daemon now answers for it from
 * elsewhere (a persistent local user was added). Users stay. */
int lkw_remove_neg_name(struct lk_map_writer *w, const char *name);
int lkw_remove_neg_uid(struct lk_map_writer *w, uint32_t uid);
/* A new file holding only what `keep_users` / `keep_negatives` say, and the group. */
int lkw_reset(struct lk_map_writer *w, int keep_users, int keep_negatives);
/* The group (name NULL: none; then group lookups ask the socket). A new file when it changed;
 * the same group only has its expiry moved. */
int lkw_set_group(struct lk_map_writer *w, const char *name, uint32_t gid, uint64_t expires_ms);
/* Moves the group record's expiry (the daemon keeps it fresh while it runs). */
void lkw_touch_group(struct lk_map_writer *w, uint64_t expires_ms);

void lkw_get_stats(const struct lk_map_writer *w, struct lkw_stats *out);
const char *lkw_error(const struct lk_map_writer *w);

#endif /* LK_MAP_WRITE_H */
