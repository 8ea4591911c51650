/* See safedir.h. The threat: an unprivileged user who can write somewhere on the path (a
 * group-writable parent, a 1777 directory, an old directory they own) swaps in a symlink so that
 * the daemon creates, chowns or chmods something else, or hands out a directory they can still
 * change. Nothing here acts on a path: each step is relative to a directory fd already checked. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "safedir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_OPEN_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
/* Directories made on the way to the target (mkdir -p) are root's and readable, like /run's. */
#define PARENT_MODE 0755

static void close_keep_errno(int fd)
{
    int saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
}

static int owner_is_trusted(const struct safe_dir_request *req, uid_t uid)
{
    return uid == 0 || (req->trusted_uid != (uid_t)-1 && uid == req->trusted_uid);
}

static const char *owner_rule(const struct safe_dir_request *req, char *buf, size_t len)
{
    if (req->trusted_uid == (uid_t)-1 || req->trusted_uid == 0)
        return "root-owned";
    snprintf(buf, len, "owned by root or uid %u (latchkeyd's)", (unsigned)req->trusted_uid);
    return buf;
}

/* The owner/mode check of one directory on the path; `at` is its path, `last` says whether it is
 * the target (never writable by others) or a parent (writable by others only when sticky). */
static int dir_is_safe(const struct safe_dir_request *req, const struct stat *st, const char *at,
                       int last, char *why, size_t why_len)
{
    int owner_ok = owner_is_trusted(req, st->st_uid);
    int writable = (st->st_mode & (S_IWGRP | S_IWOTH)) != 0;
    int mode_ok = !writable || (!last && (st->st_mode & S_ISVTX));
    if (owner_ok && mode_ok)
        return 1;
    char rule[64];
    char fix[2 * PATH_MAX + 64];
    snprintf(fix, sizeof fix, "%s%s%s%s%s", owner_ok ? "" : "chown root:root ", owner_ok ? "" : at,
             owner_ok || mode_ok ? "" : " && ", mode_ok ? "" : "chmod go-w ", mode_ok ? "" : at);
    unsigned mode = (unsigned)(st->st_mode & 07777);
    if (last)
        snprintf(why, why_len,
                 "the %s %s is owned by uid %u with mode %04o; it must be %s and not "
                 "group/world-writable (sticky or not); fix: %s",
                 req->what, at, (unsigned)st->st_uid, mode, owner_rule(req, rule, sizeof rule),
                 fix);
    else
        snprintf(
            why, why_len,
            "%s, a parent of the %s %s, is owned by uid %u with mode %04o; every "
            "parent must be %s and not group/world-writable (a sticky directory such as /tmp is "
            "accepted); fix: %s",
            at, req->parent_of, req->path, (unsigned)st->st_uid, mode,
            owner_rule(req, rule, sizeof rule), fix);
    return 0;
}

/* Why openat(dir_fd, name) failed, in words; only for the message, the decision is made. */
static void describe_open_failure(const struct safe_dir_request *req, int dir_fd, const char *name,
                                  const char *at, int last, int e, char *why, size_t why_len,
                                  int *missing)
{
    struct stat st;
    char target[PATH_MAX];
    const char *role = last ? "the " : "";
    const char *what = last ? req->what : "";
    if (e == ENOENT) {
        *missing = 1;
        snprintf(why, why_len,
                 "the %s %s does not exist; create it root-owned, not writable by "
                 "others (mkdir -p -m 0755 %s)",
                 req->what, req->path, req->path);
    } else if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        ssize_t n = readlinkat(dir_fd, name, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        if (last)
            snprintf(why, why_len,
                     "the %s %s is a symbolic link (to %s); it is not followed: configure "
                     "the real directory",
                     req->what, at, target);
        else
            snprintf(why, why_len,
                     "%s, on the path to the %s %s, is a symbolic link (to %s); it is not "
                     "followed: configure the path without symbolic links",
                     at, req->parent_of, req->path, target);
    } else if (e == ENOTDIR) {
        snprintf(why, why_len, "%s%s%s%s is not a directory", role, what, last ? " " : "", at);
    } else {
        snprintf(why, why_len, "cannot open %s%s%s%s: %s", role, what, last ? " " : "", at,
                 strerror(e));
    }
}

/* Opens (and with req->create, first makes) `name` under dir_fd; returns the fd or -1. */
static int open_component(const struct safe_dir_request *req, int dir_fd, const char *name,
                          const char *at, int last, char *why, size_t why_len, int *missing)
{
    int fresh = 0;
    int fd = openat(dir_fd, name, DIR_OPEN_FLAGS);
    if (fd < 0 && errno == ENOENT && req->create) {
        /* 0700 until checked: nobody else can use it half-made, whatever the umask. */
        if (mkdirat(dir_fd, name, 0700) == 0)
            fresh = 1;
        else if (errno != EEXIST) {
            snprintf(why, why_len, "cannot create %s: %s", at, strerror(errno));
            return -1;
        }
        fd = openat(dir_fd, name, DIR_OPEN_FLAGS);
    }
    if (fd < 0) {
        describe_open_failure(req, dir_fd, name, at, last, errno, why, why_len, missing);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, why_len, "cannot stat %s: %s", at, strerror(errno));
        close_keep_errno(fd);
        return -1;
    }
    if (fresh) {
        /* What we opened must be the empty 0700 directory mkdirat just made as us. */
        if (st.st_uid != geteuid() || (st.st_mode & 077) != 0 || st.st_nlink != 2) {
            snprintf(why, why_len, "%s was replaced while being created; not touched", at);
            close(fd);
            return -1;
        }
        if (fchmod(fd, last ? req->mode : PARENT_MODE) != 0) {
            snprintf(why, why_len, "cannot set the mode of new %s: %s", at, strerror(errno));
            close_keep_errno(fd);
            return -1;
        }
        return fd;
    }
    if (!dir_is_safe(req, &st, at, last, why, why_len)) {
        close(fd);
        return -1;
    }
    /* A trusted owner and no write bits for others: setting the configured mode through the fd
   * (e.g. 0700 -> 0755 so clients can reach the sockets) gives nobody anything they could abuse. */
    if (last && req->create && (st.st_mode & 07777) != req->mode && fchmod(fd, req->mode) != 0) {
        snprintf(why, why_len, "cannot set the mode of %s: %s", at, strerror(errno));
        close_keep_errno(fd);
        return -1;
    }
    return fd;
}

int safe_dir_open(const struct safe_dir_request *req, char *why, size_t why_len, int *missing)
{
    char path[PATH_MAX];
    *missing = 0;
    why[0] = '\0';
    size_t len = req->path ? strlen(req->path) : 0;
    if (len == 0 || req->path[0] != '/' || len >= sizeof path) {
        snprintf(why, why_len, "the %s \"%s\" must be an absolute path", req->what,
                 req->path ? req->path : "");
        return -1;
    }
    if ((req->mode & (S_IWGRP | S_IWOTH)) != 0 || (req->mode & ~(mode_t)07777) != 0) {
        snprintf(why, why_len, "refusing mode %04o for the %s: it would be writable by others",
                 (unsigned)req->mode, req->what);
        return -1;
    }
    memcpy(path, req->path, len + 1);

    int fd = open("/", DIR_OPEN_FLAGS);
    if (fd < 0) {
        snprintf(why, why_len, "cannot open /: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    int at_end = strspn(path, "/") == len;
    if (fstat(fd, &st) != 0 || !dir_is_safe(req, &st, "/", at_end, why, why_len)) {
        if (why[0] == '\0')
            snprintf(why, why_len, "cannot stat /: %s", strerror(errno));
        close(fd);
        return -1;
    }
    /* Walk "/a/b/c": at each step path[] is cut after the current component so it reads as that
   * component's full path in messages, then restored. */
    size_t i = 0;
    while (i < len) {
        while (i < len && path[i] == '/')
            i++;
        if (i >= len)
            break;
        size_t end = i;
        while (end < len && path[end] != '/')
            end++;
        size_t next = end;
        while (next < len && path[next] == '/')
            next++;
        int last = next >= len;
        char saved = path[end];
        path[end] = '\0';
        const char *name = path + i;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
            snprintf(why, why_len, "the %s %s must not contain \".\" or \"..\"", req->what,
                     req->path);
            close(fd);
            return -1;
        }
        int child = open_component(req, fd, name, path, last, why, why_len, missing);
        close(fd);
        if (child < 0)
            return -1;
        path[end] = saved;
        fd = child;
        i = end;
    }
    return fd;
}
