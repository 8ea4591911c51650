/* Opening a directory the daemon trusts (the homes base, the socket dir) without following a
 * symlink anywhere on its path, pure C so latchkey-rootd (its homes.c, config and socket) and
 * the addon (the daemon's socket dir and homes base checks) share one walk.
 *
 * The walk starts at "/" and opens one component at a time with openat(O_NOFOLLOW|O_DIRECTORY),
 * checking each directory through its fd (fstat), so what is checked is what is used. The rule is
 * sshd's StrictModes / ChrootDirectory rule: every directory is owned by root (or the trusted
 * uid) and not writable by group or others. One exception: a sticky directory such as /tmp
 * (1777) may be writable by others when the entry below it is owned by root: with the sticky bit
 * only an entry's owner may rename or remove it (unlink(2), inode(7) S_ISVTX), so nobody else can
 * swap that entry. The target directory itself is never allowed to be writable by others. */
#ifndef LATCHKEY_SAFEDIR_H
#define LATCHKEY_SAFEDIR_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct safe_dir_request {
    const char *path;
    /* owners accepted besides root; (uid_t)-1 for root only */
    uid_t trusted_uid;
    /* 1: make missing components (mkdir -p) and bring the target's mode to `mode` through its fd */
    int create;
    mode_t mode;
    /* names the directory in messages: "the <what> /x is ...", "/w (a parent of the <parent_of>)" */
    const char *what;
    const char *parent_of;
};

/* Returns an O_RDONLY|O_DIRECTORY|O_CLOEXEC fd on the checked directory, or -1 with the reason
 * (naming the path and the chown/chmod that fixes it) in `why`; *missing is set to 1 when the
 * reason is only that a component does not exist (and create was not asked). */
int safe_dir_open(const struct safe_dir_request *req, char *why, size_t why_len, int *missing);

#ifdef __cplusplus
}
#endif

#endif
