/* lk_map_write_ops: publishing and removing entries; see lk_map_write.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>

#include "lk_map_write_int.h"

static void tombstone(uint64_t *slot)
{
    __atomic_store_n(slot, (uint64_t)LK_MAP_SLOT_TOMBSTONE, __ATOMIC_RELEASE);
}

/* The kind of the record an entry found by a probe points at (0 when none). */
static uint16_t kind_at(const struct file *f, const struct lk_map_slot *s)
{
    if (s->found < 0)
        return 0;
    uint64_t off = (uint64_t)(s->ref - 1) * LK_MAP_ALIGN;
    return ((const struct lk_map_record *)(f->data + off))->kind;
}

static const struct lk_map_record *rec_of(const struct file *f, uint32_t ref)
{
    return (const struct lk_map_record *)(f->data + (uint64_t)(ref - 1) * LK_MAP_ALIGN);
}

/* Removes the other table's entry of the user record `ref` (found in one table). */
static void unlink_user(struct lk_map_writer *w, uint32_t ref, int from_names)
{
    struct file *f = &w->f;
    const struct lk_map_record *r = rec_of(f, ref);
    struct lk_map_slot s;
    if (from_names) {
        lk_map_probe_uid(&f->v, r->uid, &s);
        if (s.found >= 0 && s.ref == ref)
            tombstone(&f->uids[s.found]);
    } else {
        lk_map_probe_name(&f->v, (const char *)r + LK_MAP_REC_HEADER, r->name_len, &s);
        if (s.found >= 0 && s.ref == ref)
            tombstone(&f->names[s.found]);
    }
}

/* Removes the user found at slot s of one table, from both tables. */
static void drop_user(struct lk_map_writer *w, const struct lk_map_slot *s, int in_names)
{
    unlink_user(w, s->ref, in_names);
    tombstone(in_names ? &w->f.names[s->found] : &w->f.uids[s->found]);
    w->users--;
}

/* The first slot within the probe window of `hash` that holds a negative entry of `kind`, or -1
 * (the window ends at an empty slot). */
static int64_t negative_in_window(const struct file *f, const uint64_t *table, uint64_t hash,
                                  uint16_t kind)
{
    uint32_t mask = f->v.slots - 1;
    for (uint32_t i = 0; i < LK_MAP_MAX_PROBE && i < f->v.slots; i++) {
        uint32_t k = ((uint32_t)hash + i) & mask;
        uint32_t ref = lk_map_ref(table[k]);
        if (ref == 0)
            return -1;
        if (ref != LK_MAP_SLOT_TOMBSTONE && rec_of(f, ref)->kind == kind)
            return k;
    }
    return -1;
}

/* A user whose probe window is full takes the place of a negative entry there: negative entries
 * are only a shortcut, while names chosen to collide could otherwise keep a user out. 1 when one
 * was evicted. */
static int evict_for_user(struct lk_map_writer *w, const char *name, uint32_t uid,
                          const struct lk_map_slot *sn, const struct lk_map_slot *su)
{
    struct file *f = &w->f;
    int evicted = 0;
    if (name && sn->found < 0 && sn->free_slot < 0) {
        int64_t k = negative_in_window(f, f->names, lk_map_hash_name(&f->v, name, strlen(name)),
                                       LK_MAP_KIND_NEG_NAME);
        if (k >= 0) {
            tombstone(&f->names[k]);
            w->neg_names--;
            evicted = 1;
        }
    }
    if (uid && su->found < 0 && su->free_slot < 0) {
        int64_t k =
            negative_in_window(f, f->uids, lk_map_hash_uid(&f->v, uid), LK_MAP_KIND_NEG_UID);
        if (k >= 0) {
            tombstone(&f->uids[k]);
            w->neg_uids--;
            evicted = 1;
        }
    }
    return evicted;
}

/* Probes both tables for an entry's keys. 0 when they can be placed, 1 when the entry is not to
 * be published, or a negative errno.
 * - A full map (records or slots) grows into a new file: each growth doubles it, so there are
 *   few of them, and an unprivileged user cannot cause more than the negative-entry cap allows.
 * - A key with no free slot within LK_MAP_MAX_PROBE of its home while the map is not full means
 *   names that collide. Readers need the hash key, so it is in the 0644 file, and anyone can
 *   choose colliding names: a negative entry (names any user picks) is then not published; a user
 *   (names only the upstream picks) takes the place of a negative entry in its window, or else
 *   rebuilds with a new key at most once per LKW_COLLISION_REBUILD_MS, or is not published. A rebuild leaves the old file to
 *   whoever still maps it, so an unbounded stream of them could fill the tmpfs. */
static int find_both(struct lk_map_writer *w, const char *name, uint32_t uid, uint32_t bytes,
                     int is_user, struct lk_map_slot *sn, struct lk_map_slot *su)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        struct file *f = &w->f;
        sn->found = su->found = -1;
        sn->free_slot = su->free_slot = 0;
        if (name)
            lk_map_probe_name(&f->v, name, strlen(name), sn);
        if (uid)
            lk_map_probe_uid(&f->v, uid, su);
        int placed =
            (sn->found >= 0 || sn->free_slot >= 0) && (su->found >= 0 || su->free_slot >= 0);
        if (!placed && is_user && evict_for_user(w, name, uid, sn, su)) {
            attempt--; /* the same map again, with the negative entries gone */
            continue;
        }
        int room = lkw_room(f, bytes, 1, 1);
        if (placed && room)
            return 0;
        if (attempt > 0)
            break;
        int64_t now = lk_map_now_ms();
        if (!room) {
            /* Growth. Negative entries share it only up to their cap (put_neg). */
        } else if (!is_user || now < w->collision_rebuild_at + LKW_COLLISION_REBUILD_MS) {
            break;
        } else {
            w->collision_rebuild_at = now;
        }
        int rc = lkw_rebuild(w, 1024, 1, 1);
        if (rc)
            return rc;
    }
    w->not_published++;
    return 1;
}

int lkw_put_user(struct lk_map_writer *w, const struct lkw_user *u)
{
    uint8_t buf[LK_MAP_MAX_RECORD];
    uint32_t size = lkw_build(buf, LK_MAP_KIND_PASSWD, u->expires_ms, u->uid, u->gid, u->name,
                              u->gecos, u->dir, u->shell);
    struct lk_map_slot sn, su;
    int rc = 1;
    if (size != 0 && u->uid != 0)
        rc = find_both(w, u->name, u->uid, size, 1, &sn, &su); /* counts what it cannot place */
    else
        w->not_published++;
    if (rc == 1) {
        /* Not published: nothing stale may stay in its place. */
        lkw_remove_name(w, u->name);
        lkw_remove_uid(w, u->uid);
    }
    if (rc)
        return rc;
    struct file *f = &w->f;
    /* Unchanged but for its expiry (a refresh): move the expiry, no new record. */
    if (sn.found >= 0 && su.found >= 0 && sn.ref == su.ref) {
        const struct lk_map_record *old = rec_of(f, sn.ref);
        if (old->size == size && memcmp((const uint8_t *)old + 8, buf + 8, size - 8) == 0) {
            __atomic_store_n(&((struct lk_map_record *)old)->expires_ms, u->expires_ms,
                             __ATOMIC_RELEASE);
            return 0;
        }
    }
    uint16_t kn = kind_at(f, &sn), ku = kind_at(f, &su);
    /* A rename: the record under this name had another uid, or this uid another name. */
    if (kn == LK_MAP_KIND_PASSWD && rec_of(f, sn.ref)->uid != u->uid)
        unlink_user(w, sn.ref, 1);
    if (ku == LK_MAP_KIND_PASSWD && sn.ref != su.ref) {
        unlink_user(w, su.ref, 0);
        w->users--;
    }
    uint32_t ref = lkw_append(f, buf, size);
    lkw_place(f->names, &f->names_used, &sn, lk_map_hash_name(&f->v, u->name, strlen(u->name)),
              ref);
    lkw_place(f->uids, &f->uids_used, &su, lk_map_hash_uid(&f->v, u->uid), ref);
    if (kn == LK_MAP_KIND_NEG_NAME)
        w->neg_names--;
    if (ku == LK_MAP_KIND_NEG_UID)
        w->neg_uids--;
    if (kn != LK_MAP_KIND_PASSWD)
        w->users++;
    return 0;
}

static uint32_t neg_cap(const struct lk_map_writer *w)
{
    return w->users > MIN_NEG_CAP ? w->users : MIN_NEG_CAP;
}

static int put_neg(struct lk_map_writer *w, const char *name, uint32_t uid, uint64_t expires)
{
    uint8_t buf[LK_MAP_MAX_RECORD];
    uint32_t size =
        name ? lkw_build(buf, LK_MAP_KIND_NEG_NAME, expires, 0, 0, name, NULL, NULL, NULL)
             : lkw_build(buf, LK_MAP_KIND_NEG_UID, expires, uid, 0, NULL, NULL, NULL, NULL);
    if (size == 0 || (!name && uid == 0))
        return 1;
    struct lk_map_slot sn, su;
    int rc = find_both(w, name, name ? 0 : uid, size, 0, &sn, &su);
    if (rc == 1) {
        /* Not published, but the user it says is gone must not stay. */
        if (name)
            lkw_remove_name(w, name);
        else
            lkw_remove_uid(w, uid);
    }
    if (rc)
        return rc;
    struct lk_map_slot *s = name ? &sn : &su;
    struct file *f = &w->f;
    uint16_t k = kind_at(f, s);
    /* The user is gone: never leave their record reachable by the other key. */
    if (k == LK_MAP_KIND_PASSWD)
        drop_user(w, s, name != NULL);
    uint32_t *count = name ? &w->neg_names : &w->neg_uids;
    if (k != (name ? LK_MAP_KIND_NEG_NAME : LK_MAP_KIND_NEG_UID) && *count >= neg_cap(w)) {
        w->not_published++;
        return 1;
    }
    if (k == (name ? LK_MAP_KIND_NEG_NAME : LK_MAP_KIND_NEG_UID)) {
        /* The same negative entry: a new expiry. */
        __atomic_store_n(&((struct lk_map_record *)rec_of(f, s->ref))->expires_ms, expires,
                         __ATOMIC_RELEASE);
        return 0;
    }
    uint32_t ref = lkw_append(f, buf, size);
    if (name)
        lkw_place(f->names, &f->names_used, s, lk_map_hash_name(&f->v, name, strlen(name)), ref);
    else
        lkw_place(f->uids, &f->uids_used, s, lk_map_hash_uid(&f->v, uid), ref);
    (*count)++;
    return 0;
}

int lkw_put_neg_name(struct lk_map_writer *w, const char *name, uint64_t expires_ms)
{
    return put_neg(w, name, 0, expires_ms);
}

int lkw_put_neg_uid(struct lk_map_writer *w, uint32_t uid, uint64_t expires_ms)
{
    return put_neg(w, NULL, uid, expires_ms);
}

/* Removes what slot s of one table holds if it is of `kind`: a user from both tables, a negative
 * entry from its own. */
static void remove_kind(struct lk_map_writer *w, const struct lk_map_slot *s, int in_names,
                        uint16_t kind)
{
    if (kind_at(&w->f, s) != kind)
        return;
    if (kind == LK_MAP_KIND_PASSWD) {
        drop_user(w, s, in_names);
        return;
    }
    tombstone(in_names ? &w->f.names[s->found] : &w->f.uids[s->found]);
    (*(in_names ? &w->neg_names : &w->neg_uids))--;
}

static int remove_name_kind(struct lk_map_writer *w, const char *name, uint16_t kind)
{
    struct lk_map_slot s;
    size_t len = strlen(name);
    if (len == 0 || len > LK_MAX_NAME)
        return 0;
    lk_map_probe_name(&w->f.v, name, len, &s);
    remove_kind(w, &s, 1, kind);
    return 0;
}

static int remove_uid_kind(struct lk_map_writer *w, uint32_t uid, uint16_t kind)
{
    struct lk_map_slot s;
    lk_map_probe_uid(&w->f.v, uid, &s);
    remove_kind(w, &s, 0, kind);
    return 0;
}

int lkw_remove_name(struct lk_map_writer *w, const char *name)
{
    return remove_name_kind(w, name, LK_MAP_KIND_PASSWD);
}

int lkw_remove_uid(struct lk_map_writer *w, uint32_t uid)
{
    return remove_uid_kind(w, uid, LK_MAP_KIND_PASSWD);
}

int lkw_remove_neg_name(struct lk_map_writer *w, const char *name)
{
    return remove_name_kind(w, name, LK_MAP_KIND_NEG_NAME);
}

int lkw_remove_neg_uid(struct lk_map_writer *w, uint32_t uid)
{
    return remove_uid_kind(w, uid, LK_MAP_KIND_NEG_UID);
}

int lkw_reset(struct lk_map_writer *w, int keep_users, int keep_negatives)
{
    return lkw_rebuild(w, w->users, keep_users, keep_negatives);
}

int lkw_set_group(struct lk_map_writer *w, const char *name, uint32_t gid, uint64_t expires_ms)
{
    if (name != NULL && (strlen(name) == 0 || strlen(name) > LK_MAX_NAME || gid == 0))
        return lkw_fail(w, EINVAL, "group %s (gid %u) cannot be published", name, gid);
    if (name ? w->have_group && strcmp(w->group, name) == 0 && w->gid == gid : !w->have_group) {
        lkw_touch_group(w, expires_ms); /* the same group: no new file */
        return 0;
    }
    w->have_group = name != NULL;
    if (name)
        strcpy(w->group, name);
    w->gid = gid;
    w->group_expires = expires_ms;
    return lkw_rebuild(w, w->users, 1, 1);
}

void lkw_touch_group(struct lk_map_writer *w, uint64_t expires_ms)
{
    uint32_t ref = w->f.h ? w->f.h->group_ref : 0;
    w->group_expires = expires_ms;
    if (ref != 0)
        __atomic_store_n(&((struct lk_map_record *)rec_of(&w->f, ref))->expires_ms, expires_ms,
                         __ATOMIC_RELEASE);
}

void lkw_get_stats(const struct lk_map_writer *w, struct lkw_stats *out)
{
    memset(out, 0, sizeof *out);
    out->generation = w->generation;
    out->file_size = w->f.size;
    out->slots = w->f.v.slots;
    out->users = w->users;
    out->neg_names = w->neg_names;
    out->neg_uids = w->neg_uids;
    out->data_used = w->f.used;
    out->data_size = w->f.v.data_size;
    out->rebuilds = w->rebuilds;
    out->not_published = w->not_published;
}
