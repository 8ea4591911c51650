/* lk_peer: see lk_peer.h. */
#define _GNU_SOURCE
#include "lk_peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lk_local.h"

/* The uid a user spec names: all digits = that uid, else a name in the passwd file. 1 and *uid,
 * 0 when it names nobody (not in the file, unreadable, empty, out of range). */
static int resolve(const char *spec, const char *passwd, uid_t *uid)
{
    size_t len = spec ? strlen(spec) : 0;
    if (len == 0)
        return 0;
    if (strspn(spec, "0123456789") == len) {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(spec, &end, 10);
        if (errno != 0 || len > 10 || v >= 4294967295UL)
            return 0;
        *uid = (uid_t)v;
        return 1;
    }
    return lk_local_uid(passwd, spec, uid) == 1;
}

int lk_peer_uid_trusted(uid_t uid, const char *passwd, const char *env_user)
{
    uid_t want;
    if (uid == 0)
        return 1;
    if (env_user != NULL && resolve(env_user, passwd, &want) && want == uid)
        return 1;
    return resolve(LK_DAEMON_USER, passwd, &want) && want == uid;
}

int lk_peer_uid_ok(uid_t uid)
{
    /* Root needs no file read: the common case before the daemon drops privileges. */
    return uid == 0 || lk_peer_uid_trusted(uid, NULL, secure_getenv(LK_DAEMON_USER_ENV));
}

/* "NAME (uid N)" or "NAME (not in FILE)"; a numeric spec is its own uid. */
static void describe_user(char *buf, size_t cap, const char *label, const char *spec,
                          const char *passwd)
{
    uid_t uid;
    if (strspn(spec, "0123456789") == strlen(spec) && resolve(spec, passwd, &uid))
        snprintf(buf, cap, "%s", label);
    else if (resolve(spec, passwd, &uid))
        snprintf(buf, cap, "%s (uid %lu)", label, (unsigned long)uid);
    else
        snprintf(buf, cap, "%s (not in %s)", label, passwd ? passwd : LK_LOCAL_PASSWD);
}

void lk_peer_expected(char *buf, size_t cap, const char *passwd, const char *env_user)
{
    char daemon[320], env[320] = "";
    if (cap == 0)
        return;
    describe_user(daemon, sizeof daemon, LK_DAEMON_USER, LK_DAEMON_USER, passwd);
    if (env_user != NULL) {
        char label[160];
        snprintf(label, sizeof label, "%s=%.100s", LK_DAEMON_USER_ENV, env_user);
        describe_user(env, sizeof env, label, env_user, passwd);
    }
    snprintf(buf, cap, "uid 0 or %s%s%s", daemon, env[0] ? " or " : "", env);
}

void lk_peer_expected_now(char *buf, size_t cap)
{
    lk_peer_expected(buf, cap, NULL, secure_getenv(LK_DAEMON_USER_ENV));
}
