/* Race-free home directory creation: latchkey-rootd's CREATE_HOME (only rootd creates homes; the
 * daemon runs without the privileges to).
 *
 * Every step works on directory file descriptors (openat/mkdirat/fstat/fchown/fchmod), never on
 * paths, and never follows a symlink, so a user who owns something under the base cannot make us
 * chown or chmod anything else. Nothing is ever deleted. */
#ifndef LATCHKEY_HOMES_H
#define LATCHKEY_HOMES_H

#include <sys/types.h>

enum home_layout {
    /* base/name root:root 0755 (sshd ChrootDirectory), base/name/upload uid:gid `mode` */
    HOME_LAYOUT_CHROOT = 0,
    /* base/name uid:gid `mode` */
    HOME_LAYOUT_PLAIN = 1
};

struct home_request {
    const char *base;
    const char *name;
    const char *upload_dir; /* chroot layout only */
    uid_t uid;
    gid_t gid;
    enum home_layout layout;
    mode_t mode;
};

#define HOME_MAX_PROBLEMS 8
#define HOME_PROBLEM_LEN 512

struct home_report {
    /* 1 when this call made the home (or, in the chroot layout, its upload dir) */
    int created;
    /* 1 when something unsafe was found and the home must not be used; problems say why */
    int refused;
    int nproblems;
    char problems[HOME_MAX_PROBLEMS][HOME_PROBLEM_LEN];
};

/* A single path component we will create: non-empty, no '/', not "." or "..", < NAME_MAX. */
int home_name_is_valid(const char *name);

/* Makes sure the home exists with the right type, owner and mode. Never fails silently: anything
 * it could not do, or repaired, is in report->problems; report->refused says whether it is safe. */
void home_ensure(const struct home_request *req, struct home_report *report);

#endif
