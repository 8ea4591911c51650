/* See homes.h. The threat: a user who owns something under the base (their old home, their upload
 * dir) swaps in a symlink, a file or a hard link between our calls, hoping we chown/chmod its
 * target. Every call here is relative to a directory fd we have already checked with fstat, every
 * open uses O_NOFOLLOW, and the owner and mode are changed through the fd (fchown/fchmod), so a
 * swap makes the next step fail instead of acting on the wrong inode. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "homes.h"
#include "safedir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_OPEN_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

static void add_problem(struct home_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_problem(struct home_report *r, const char *fmt, ...)
{
    if (r->nproblems >= HOME_MAX_PROBLEMS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->problems[r->nproblems], HOME_PROBLEM_LEN, fmt, ap);
    va_end(ap);
    r->nproblems++;
}

/* open(2): with O_DIRECTORY|O_NOFOLLOW a symlink fails with ENOTDIR, the same as a file. Only to
 * name the culprit in the message: the decision (refuse) is already made. */
static int is_symlink_at(int dir_fd, const char *name)
{
    struct stat st;
    return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

int home_name_is_valid(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    if (strchr(name, '/') != NULL)
        return 0;
    return strlen(name) < NAME_MAX;
}

/* Returns an fd on the base directory, or -1 with the reason in the report. The base is opened
 * component by component from "/" without following any symlink, and every component must meet
 * sshd(8)'s ChrootDirectory rule (root-owned, not group/world-writable; a sticky parent like /tmp
 * is accepted since only root could then rename the root-owned entry below it): safedir.c. */
static int open_base(const char *base, struct home_report *r)
{
    struct safe_dir_request req = {
        .path = base,
        .trusted_uid = (uid_t)-1,
        .create = 0,
        .mode = 0755,
        .what = "home base",
        .parent_of = "base",
    };
    char why[HOME_PROBLEM_LEN];
    int missing = 0;
    int fd = safe_dir_open(&req, why, sizeof why, &missing);
    if (fd < 0)
        add_problem(r, "%s", why);
    return fd;
}

/* Makes or checks `parent_fd/name` as a directory owned by uid:gid with `mode`.
 * Returns an fd on it, or -1 when it is unsafe (the report says why and is marked refused). */
static int ensure_dir(int parent_fd, const char *label, const char *name, uid_t uid, gid_t gid,
                      mode_t mode, int *created, struct home_report *r)
{
    /* 0700 until fchown/fchmod: nobody else can use it half-made, whatever the umask. */
    int fresh = mkdirat(parent_fd, name, 0700) == 0;
    if (!fresh && errno != EEXIST) {
        add_problem(r, "cannot create %s: %s", label, strerror(errno));
        return -1;
    }
    int fd = openat(parent_fd, name, DIR_OPEN_FLAGS);
    if (fd < 0) {
        int e = errno;
        if (fresh)
            add_problem(r, "%s was replaced while being created (%s); not touched", label,
                        strerror(e));
        else if (e == ELOOP || (e == ENOTDIR && is_symlink_at(parent_fd, name)))
            add_problem(r, "%s is a symbolic link; not followed, not changed; remove it by hand",
                        label);
        else if (e == ENOTDIR)
            add_problem(r, "%s exists but is not a directory; not changed; remove it by hand",
                        label);
        else
            add_problem(r, "cannot open %s: %s", label, strerror(e));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        add_problem(r, "cannot stat %s: %s", label, strerror(errno));
        close(fd);
        return -1;
    }
    if (fresh) {
        /* What we opened must be the empty 0700 directory mkdirat just made as us; anything else
     * means it was swapped between the two calls. */
        if (st.st_uid != geteuid() || (st.st_mode & 077) != 0 || st.st_nlink != 2) {
            add_problem(r, "%s was replaced while being created; not touched", label);
            close(fd);
            return -1;
        }
        /* chown before chmod: chown may clear the set-gid bit that `mode` asks for. */
        if (fchown(fd, uid, gid) != 0 || fchmod(fd, mode) != 0) {
            add_problem(r, "cannot set owner/mode of new %s: %s", label, strerror(errno));
            close(fd);
            return -1;
        }
        *created = 1;
        return fd;
    }
    /* Existing: a directory owned by someone else is never handed over, whoever made it. */
    if (st.st_uid != uid) {
        add_problem(r, "%s is owned by uid %u, expected uid %u; not changed; fix it by hand", label,
                    (unsigned)st.st_uid, (unsigned)uid);
        close(fd);
        return -1;
    }
    /* The owner is right, so changing group and mode through the fd gives nobody anything new:
   * the configured values are the policy for this directory. */
    if (st.st_gid != gid) {
        if (fchown(fd, (uid_t)-1, gid) != 0) {
            add_problem(r, "cannot set the group of %s: %s", label, strerror(errno));
            close(fd);
            return -1;
        }
        add_problem(r, "%s had group %u, set to %u", label, (unsigned)st.st_gid, (unsigned)gid);
    }
    if ((st.st_mode & 07777) != mode || st.st_gid != gid) {
        if (fchmod(fd, mode) != 0) {
            add_problem(r, "cannot set the mode of %s: %s", label, strerror(errno));
            close(fd);
            return -1;
        }
        if ((st.st_mode & 07777) != mode)
            add_problem(r, "%s had mode %04o, set to %04o", label, (unsigned)(st.st_mode & 07777),
                        (unsigned)mode);
    }
    return fd;
}

void home_ensure(const struct home_request *req, struct home_report *r)
{
    memset(r, 0, sizeof *r);
    int chroot_layout = req->layout == HOME_LAYOUT_CHROOT;
    if (!home_name_is_valid(req->name)) {
        add_problem(r, "invalid user name for a home directory");
        r->refused = 1;
        return;
    }
    if (chroot_layout && !home_name_is_valid(req->upload_dir)) {
        add_problem(r, "invalid upload directory name \"%s\"",
                    req->upload_dir ? req->upload_dir : "");
        r->refused = 1;
        return;
    }
    if (req->uid == 0 || req->gid == 0 || (req->mode & ~(mode_t)07777) != 0) {
        add_problem(r, "refusing uid %u gid %u mode %o for %s", (unsigned)req->uid,
                    (unsigned)req->gid, (unsigned)req->mode, req->name);
        r->refused = 1;
        return;
    }
    int base_fd = open_base(req->base, r);
    if (base_fd < 0) {
        r->refused = 1;
        return;
    }
    char label[HOME_PROBLEM_LEN / 2];
    snprintf(label, sizeof label, "home %s", req->name);
    int home_fd = chroot_layout ? ensure_dir(base_fd, label, req->name, 0, 0, 0755, &r->created, r)
                                : ensure_dir(base_fd, label, req->name, req->uid, req->gid,
                                             req->mode, &r->created, r);
    close(base_fd);
    if (home_fd < 0) {
        r->refused = 1;
        return;
    }
    if (chroot_layout) {
        snprintf(label, sizeof label, "upload dir %s/%s", req->name, req->upload_dir);
        int up_fd = ensure_dir(home_fd, label, req->upload_dir, req->uid, req->gid, req->mode,
                               &r->created, r);
        if (up_fd < 0)
            r->refused = 1;
        else
            close(up_fd);
    }
    close(home_fd);
}
