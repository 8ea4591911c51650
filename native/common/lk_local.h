/*
 * lk_local: what this host itself says about a login name, asked by pam_latchkey and
 * latchkey-authorized-keys before they talk to latchkeyd.
 *
 *   lk_local_listed()   is the name in the local passwd file? Those accounts belong to the host
 *                       (root, admins, service users): the shims leave them alone at once, with
 *                       no socket I/O, so a local login never waits on or depends on latchkeyd.
 *   lk_local_nss_uid()  the uid NSS resolves the name to, i.e. the identity the application
 *                       (sshd, login) will use; the daemon is then asked whether it serves the
 *                       name with exactly that uid (LOGIN_CHECK / KEYS_FOR_LOGIN).
 *
 * Neither logs; both are thread-safe (no static buffers: fgetpwent_r is avoided on purpose,
 * a line parser over a FILE opened O_CLOEXEC is all it takes).
 */
#ifndef LK_LOCAL_H
#define LK_LOCAL_H

#include <sys/types.h>

#define LK_LOCAL_PASSWD "/etc/passwd"

/* 1 when `name` is the first field of a line of the passwd file `path` (NULL: /etc/passwd),
 * 0 when it is not, -1 with errno set when the file cannot be read. A compat-mode line
 * ("+name" / "-name", nsswitch `passwd: compat`) counts as listed: the admin named that user
 * on this host, and a name latchkey should have served is never worth shadowing one. */
int lk_local_listed(const char *path, const char *name);

/* The uid of the line of the passwd file `path` (NULL: /etc/passwd) whose first field is exactly
 * `name` (compat "+"/"-" lines carry no uid of their own and never match): 1 and *uid, 0 when no
 * line names it (or its uid field is not a number), -1 with errno set when the file cannot be
 * read. The file itself, never NSS: the shims ask this inside the NSS module (lk_peer.c). */
int lk_local_uid(const char *path, const char *name, uid_t *uid);

/* getpwnam_r through NSS with a buffer grown on ERANGE. 1 and *uid when found; 0 when every
 * source said "no such user" (getpwnam_r returned 0 with no entry); -1 with errno set when
 * the answer is not authoritative: a source was unavailable (glibc then returns that
 * source's errno, even ENOENT), out of memory, or a record too large. */
int lk_local_nss_uid(const char *name, uid_t *uid);

#endif /* LK_LOCAL_H */
