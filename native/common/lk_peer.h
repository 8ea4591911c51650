/*
 * lk_peer: who may listen on a daemon socket. Before a shim sends anything (a password, a
 * lookup) it checks the SO_PEERCRED uid of the listener (lk_client.c): root, or the daemon user,
 * which is
 *   - the uid of LK_DAEMON_USER (_latchkey) in the local passwd file, and
 *   - the user $LATCHKEY_DAEMON_USER names (a numeric uid, or a name in the local passwd file),
 *     read with secure_getenv: a set-uid program ignores it, so a user cannot make it trust an
 *     impostor of their own.
 * The passwd file is read directly, never through NSS: the NSS module itself asks, and a lookup
 * through NSS would ask latchkey (the socket being checked) who the daemon user is.
 */
#ifndef LK_PEER_H
#define LK_PEER_H

#include <stddef.h>
#include <sys/types.h>

#define LK_DAEMON_USER "_latchkey"
#define LK_DAEMON_USER_ENV "LATCHKEY_DAEMON_USER"

/* 1 when `uid` may listen on a daemon socket: 0, the uid of LK_DAEMON_USER in the passwd file
 * `passwd`, or the user `env_user` names (NULL: not set); 0 otherwise, and when a user cannot be
 * looked up (fail closed). */
int lk_peer_uid_trusted(uid_t uid, const char *passwd, const char *env_user);
/* lk_peer_uid_trusted() with /etc/passwd and secure_getenv(LATCHKEY_DAEMON_USER). */
int lk_peer_uid_ok(uid_t uid);
/* Who would have been trusted, for the refusal message: "uid 0 or _latchkey (uid 999)",
 * "... or _latchkey (not in /etc/passwd) or LATCHKEY_DAEMON_USER=64199 (uid 64199)". Always
 * NUL-terminates (cap > 0). */
void lk_peer_expected(char *buf, size_t cap, const char *passwd, const char *env_user);
/* lk_peer_expected() with /etc/passwd and secure_getenv(LATCHKEY_DAEMON_USER). */
void lk_peer_expected_now(char *buf, size_t cap);

#endif /* LK_PEER_H */
