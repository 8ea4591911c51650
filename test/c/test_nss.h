/* Shared between test_nss.c and test_nss_more.c: the module entry points under test and the
 * fixture (a fake daemon on a temp socket dir). */
#ifndef LK_TEST_NSS_H
#define LK_TEST_NSS_H

#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>
#include <sys/types.h>

#include "fake_daemon.h"

enum nss_status _nss_latchkey_getpwnam_r(const char *, struct passwd *, char *, size_t, int *);
enum nss_status _nss_latchkey_getpwuid_r(uid_t, struct passwd *, char *, size_t, int *);
enum nss_status _nss_latchkey_setpwent(int);
enum nss_status _nss_latchkey_getpwent_r(struct passwd *, char *, size_t, int *);
enum nss_status _nss_latchkey_endpwent(void);
enum nss_status _nss_latchkey_getgrnam_r(const char *, struct group *, char *, size_t, int *);
enum nss_status _nss_latchkey_getgrgid_r(gid_t, struct group *, char *, size_t, int *);
enum nss_status _nss_latchkey_setgrent(int);
enum nss_status _nss_latchkey_getgrent_r(struct group *, char *, size_t, int *);
enum nss_status _nss_latchkey_endgrent(void);
enum nss_status _nss_latchkey_initgroups_dyn(const char *, gid_t, long int *, long int *, gid_t **,
                                             long int, int *);

struct fixture {
    char dir[64];       /* socket dir of the fake daemon */
    char empty_dir[64]; /* a dir with no socket */
    struct fake_daemon *fake;
    int iterations; /* per thread in the thread test (LK_TEST_ITER) */
};

/* getpwnam_r alice with a roomy buffer; SUCCESS and the right uid, or a failure. */
int lookup_alice(void);
/* Client-side connections to a daemon socket open in this process (test_nss_more.c). */
int count_client_sockets(void);

void test_threads(struct fixture *fx);
void test_thread_exit_destructors(void);
void test_fork(struct fixture *fx);
void test_restart(struct fixture *fx);
void test_reconnect_once(struct fixture *fx);
void test_enumeration(struct fixture *fx);
void test_initgroups(struct fixture *fx);
/* One initgroups_dyn call the way glibc makes it: groups[0..start) filled from `have`, an
 * array of `size` entries (*n, *cap: start and size after the call). The caller frees *groups. */
enum nss_status call_initgroups(const char *user, gid_t group, const gid_t *have, long start,
                                long size, long limit, gid_t **groups, long *n, long *cap,
                                int *err);
void test_authorized_keys(struct fixture *fx);
/* test_peer.c: a non-root listener on the socket path is refused before anything is sent. */
void test_impostor(struct fixture *fx);
/* test_peer.c: the daemon user (lk_peer.h) is trusted: LATCHKEY_DAEMON_USER, a passwd file. */
void test_daemon_user_env(struct fixture *fx);
void test_daemon_user_passwd(void);
/* test_pool.c: the connection pool, idle expiry, timeouts, the breaker, dropped connections. */
void test_pool_bound(struct fixture *fx);
void test_timeout(struct fixture *fx);
void test_idle(struct fixture *fx);
void test_breaker(struct fixture *fx);
void test_dropped(struct fixture *fx);
void test_fork_busy_pool(struct fixture *fx);

#endif /* LK_TEST_NSS_H */
