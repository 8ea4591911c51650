/* lk_map_write: see lk_map_write.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lk_map_write.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "latchkey_proto.h"
#include "lk_map.h"
#include "lk_map_write_int.h"

int lkw_fail(struct lk_map_writer *w, int e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof w->err)
        snprintf(w->err + n, sizeof w->err - (size_t)n, ": %s", strerror(e));
    return -e;
}

const char *lkw_error(const struct lk_map_writer *w)
{
    return w->err;
}

static uint64_t align8(uint64_t n)
{
    return (n + 7u) & ~(uint64_t)7u;
}

static void file_drop(struct file *f, int retire)
{
    if (f->base) {
        if (retire)
            __atomic_store_n(&f->h->retired, 1u, __ATOMIC_RELEASE);
        munmap(f->base, f->size);
    }
    if (f->fd >= 0)
        close(f->fd);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

/* A new, empty file under a temporary name beside the path. */
static int file_create(struct lk_map_writer *w, uint32_t slots, uint64_t data_size, struct file *nf,
                       char *tmp, size_t tmpcap)
{
    memset(nf, 0, sizeof *nf);
    nf->fd = -1;
    if ((size_t)snprintf(tmp, tmpcap, "%s.XXXXXX", w->path) >= tmpcap)
        return lkw_fail(w, ENAMETOOLONG, "map path %s", w->path);
    uint64_t names_off = LK_MAP_HEADER_SIZE, uids_off = names_off + (uint64_t)slots * 8u;
    uint64_t data_off = uids_off + (uint64_t)slots * 8u;
    size_t size = (size_t)(data_off + data_size);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return lkw_fail(w, errno, "creating %s", tmp);
    /* 0644: every process reads it; only this uid writes it. */
    int rc = fchmod(fd, 0644) != 0 ? errno : posix_fallocate(fd, 0, (off_t)size);
    void *base = rc == 0 ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (base == MAP_FAILED) {
        int e = rc ? rc : errno;
        close(fd);
        unlink(tmp);
        return lkw_fail(w, e, "sizing %s to %zu bytes", tmp, size);
    }
    struct lk_map_header *h = base;
    h->magic = LK_MAP_MAGIC;
    h->version = LK_MAP_VERSION;
    h->header_size = LK_MAP_HEADER_SIZE;
    h->file_size = size;
    h->generation = ++w->generation;
    if (getrandom(&h->seed0, sizeof h->seed0, 0) != (ssize_t)sizeof h->seed0 ||
        getrandom(&h->seed1, sizeof h->seed1, 0) != (ssize_t)sizeof h->seed1) {
        int e = errno ? errno : EIO;
        munmap(base, size);
        close(fd);
        unlink(tmp);
        return lkw_fail(w, e, "getrandom for the map's hash key");
    }
    h->names_off = names_off;
    h->uids_off = uids_off;
    h->data_off = data_off;
    h->data_size = data_size;
    h->slots = slots;
    nf->fd = fd;
    nf->base = base;
    nf->size = size;
    nf->h = h;
    nf->names = (uint64_t *)((uint8_t *)base + names_off);
    nf->uids = (uint64_t *)((uint8_t *)base + uids_off);
    nf->data = (uint8_t *)base + data_off;
    if (lk_map_view_open(&nf->v, base, size) != 0) {
        file_drop(nf, 0);
        unlink(tmp);
        return lkw_fail(w, EINVAL, "map layout self-check");
    }
    return 0;
}

uint32_t lkw_append(struct file *f, const uint8_t *rec, uint32_t size)
{
    uint64_t off = f->used;
    memcpy(f->data + off, rec, size);
    f->used = align8(off + size);
    return (uint32_t)(off / LK_MAP_ALIGN + 1u);
}

static void store(uint64_t *slot, uint64_t entry)
{
    /* Release: the record is complete before a reader can find it. */
    __atomic_store_n(slot, entry, __ATOMIC_RELEASE);
}

int lkw_room(const struct file *f, uint32_t bytes, uint32_t name_slots, uint32_t uid_slots)
{
    uint64_t limit = (uint64_t)f->v.slots * FILL_NUM / FILL_DEN;
    return f->used + align8(bytes) <= f->v.data_size && f->names_used + name_slots <= limit &&
           f->uids_used + uid_slots <= limit;
}

uint32_t lkw_build(uint8_t buf[LK_MAP_MAX_RECORD], uint16_t kind, uint64_t expires, uint32_t uid,
                   uint32_t gid, const char *name, const char *gecos, const char *dir,
                   const char *shell)
{
    const char *s[4] = { name, gecos, dir, shell };
    size_t len[4] = { 0, 0, 0, 0 }, size = LK_MAP_REC_HEADER;
    for (int i = 0; i < 4; i++) {
        if (s[i] == NULL)
            continue;
        len[i] = strlen(s[i]);
        if (len[i] > UINT16_MAX)
            return 0;
        size += len[i] + 1;
    }
    if (size > LK_MAP_MAX_RECORD)
        return 0;
    struct lk_map_record h = {
        expires, kind, (uint16_t)len[0], (uint16_t)len[1], (uint16_t)len[2], (uint16_t)len[3], 0,
        uid,     gid,  (uint32_t)size
    };
    memcpy(buf, &h, sizeof h);
    size_t at = LK_MAP_REC_HEADER;
    for (int i = 0; i < 4; i++) {
        if (s[i] == NULL)
            continue;
        memcpy(buf + at, s[i], len[i] + 1);
        at += len[i] + 1;
    }
    return (uint32_t)size;
}

void lkw_place(uint64_t *table, uint32_t *used, const struct lk_map_slot *s, uint64_t hash,
               uint32_t ref)
{
    int64_t k = s->found >= 0 ? s->found : s->free_slot;
    if (s->found < 0 && lk_map_ref(__atomic_load_n(&table[k], __ATOMIC_RELAXED)) == 0)
        (*used)++;
    store(&table[k], lk_map_entry(hash, ref));
}

/* Replaces w->f with nf (complete), then retires the old file: readers that see `retired` reopen
 * the path and find nf. */
static int publish(struct lk_map_writer *w, struct file *nf, const char *tmp)
{
    uint8_t buf[LK_MAP_MAX_RECORD];
    if (w->have_group) {
        uint32_t size = lkw_build(buf, LK_MAP_KIND_GROUP, w->group_expires, w->gid, 0, w->group,
                                  NULL, NULL, NULL);
        nf->h->group_ref = lkw_append(nf, buf, size);
        nf->h->flags = LK_MAP_FLAG_GROUP_AUTHORITATIVE;
    }
    if (rename(tmp, w->path) != 0) {
        int e = errno;
        file_drop(nf, 0);
        unlink(tmp);
        return lkw_fail(w, e, "renaming %s to %s", tmp, w->path);
    }
    file_drop(&w->f, 1);
    w->f = *nf;
    return 0;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t s = MIN_SLOTS;
    while (s < n && s < LK_MAP_MAX_SLOTS)
        s <<= 1;
    return s;
}

/* Copies the live, unexpired entries of w->f (those kept) into a new file with room for `extra`
 * more users, and publishes it. */
/* Calls fn once for every live, unexpired record of `o` that a rebuild keeps: users and name
 * negatives from the name table (a user is in both tables), uid negatives from the uid table. */
static void each_kept(const struct file *o, uint64_t now, int keep_users, int keep_negatives,
                      void (*fn)(void *ctx, const uint8_t *rec, const struct lk_map_rec *r),
                      void *ctx)
{
    uint8_t buf[LK_MAP_MAX_RECORD];
    struct lk_map_rec r;
    for (int pass = 0; pass < 2 && o->base; pass++) {
        const uint64_t *t = pass == 0 ? o->names : o->uids;
        for (uint32_t i = 0; i < o->v.slots; i++) {
            uint32_t ref = lk_map_ref(t[i]);
            if (ref == 0 || ref == LK_MAP_SLOT_TOMBSTONE || lk_map_rec_copy(&o->v, ref, buf, &r))
                continue;
            int keep = r.kind == LK_MAP_KIND_PASSWD ? keep_users && pass == 0 : keep_negatives;
            if (keep && r.expires_ms > now)
                fn(ctx, buf, &r);
        }
    }
}

struct sizing {
    uint64_t bytes, names, uids;
};

static void count_one(void *ctx, const uint8_t *rec, const struct lk_map_rec *r)
{
    struct sizing *z = ctx;
    z->bytes += align8(((const struct lk_map_record *)rec)->size);
    z->names += r->kind != LK_MAP_KIND_NEG_UID;
    z->uids += r->kind != LK_MAP_KIND_NEG_NAME;
}

struct copying {
    struct lk_map_writer *w;
    struct file *nf;
};

static void copy_one(void *ctx, const uint8_t *rec, const struct lk_map_rec *r)
{
    struct copying *c = ctx;
    struct file *nf = c->nf;
    struct lk_map_slot sn = { -1, 0, 0 }, su = { -1, 0, 0 };
    if (r->kind != LK_MAP_KIND_NEG_UID)
        lk_map_probe_name(&nf->v, r->name.p, r->name.len, &sn);
    if (r->kind != LK_MAP_KIND_NEG_NAME)
        lk_map_probe_uid(&nf->v, r->uid, &su);
    /* Both keys or none (a fresh half-full table with a new key: none is all but impossible). */
    if (sn.free_slot < 0 || su.free_slot < 0)
        return;
    uint32_t ref = lkw_append(nf, rec, ((const struct lk_map_record *)rec)->size);
    if (r->kind != LK_MAP_KIND_NEG_UID)
        lkw_place(nf->names, &nf->names_used, &sn, lk_map_hash_name(&nf->v, r->name.p, r->name.len),
                  ref);
    if (r->kind != LK_MAP_KIND_NEG_NAME)
        lkw_place(nf->uids, &nf->uids_used, &su, lk_map_hash_uid(&nf->v, r->uid), ref);
    c->w->users += r->kind == LK_MAP_KIND_PASSWD;
    c->w->neg_names += r->kind == LK_MAP_KIND_NEG_NAME;
    c->w->neg_uids += r->kind == LK_MAP_KIND_NEG_UID;
}

int lkw_rebuild(struct lk_map_writer *w, uint32_t extra, int keep_users, int keep_negatives)
{
    int64_t clock = lk_map_now_ms();
    uint64_t now = clock > 0 ? (uint64_t)clock : 0; /* 0: keep everything */
    struct sizing z = { 0, 0, 0 };
    each_kept(&w->f, now, keep_users, keep_negatives, count_one, &z);
    uint64_t most = (z.names > z.uids ? z.names : z.uids) + extra + 64u;
    uint32_t slots = pow2_at_least(most * 2u);
    uint64_t data_size = align8(z.bytes * 2u + (uint64_t)extra * 256u + MIN_DATA);
    if ((uint64_t)slots * FILL_NUM / FILL_DEN < most || data_size / LK_MAP_ALIGN >= UINT32_MAX - 1)
        return lkw_fail(w, ENOSPC, "map would exceed %u slots", LK_MAP_MAX_SLOTS);
    char tmp[PATH_MAX + 8];
    struct file nf;
    int rc = file_create(w, slots, data_size, &nf, tmp, sizeof tmp);
    if (rc)
        return rc;
    w->users = w->neg_names = w->neg_uids = 0;
    struct copying c = { w, &nf };
    each_kept(&w->f, now, keep_users, keep_negatives, copy_one, &c);
    w->rebuilds++;
    return publish(w, &nf, tmp);
}

/* Removes `path` if it is still the file open on `fd` (not one that replaced it since). */
static void unlink_if_same(const char *path, int fd)
{
    struct stat a, b;
    if (fd >= 0 && fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev)
        unlink(path);
}

/* The file at the path when a writer starts (a previous daemon's, left by a crash): marked
 * retired at once, before the new map exists, so that its readers ask the socket rather than
 * trust a map nobody updates. 1 when it was retired (this uid owns it). */
static void retire_previous(int fd)
{
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        st.st_size >= (off_t)LK_MAP_HEADER_SIZE) {
        struct lk_map_header *h =
            mmap(NULL, LK_MAP_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED) {
            if (h->magic == LK_MAP_MAGIC) {
                __atomic_store_n(&h->retired, 1u, __ATOMIC_RELEASE);
            }
            munmap(h, LK_MAP_HEADER_SIZE);
        }
    }
}

int lkw_open(struct lk_map_writer **out, const char *path, uint32_t expect_users)
{
    *out = NULL;
    struct lk_map_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    w->f.fd = -1;
    if (strlen(path) >= sizeof w->path - 8) {
        free(w);
        return -ENAMETOOLONG;
    }
    strcpy(w->path, path);
    int old = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    retire_previous(old);
    int rc = lkw_rebuild(w, expect_users, 0, 0);
    if (rc) /* No new map: the old one must not stay where a reader would open it again. */
        unlink_if_same(path, old);
    if (old >= 0)
        close(old);
    *out = w; /* on failure too, for lkw_error; the caller closes it */
    return rc;
}

void lkw_close(struct lk_map_writer *w, int unlink_file)
{
    if (w == NULL)
        return;
    if (unlink_file)
        unlink_if_same(w->path, w->f.fd);
    file_drop(&w->f, 1);
    free(w);
}
