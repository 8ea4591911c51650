/*
 * The shims check who listens before they send anything: an impostor bound to the socket path
 * (latchkeyd down, a stale or writable socket dir) must get neither a password (PAM, priv.sock)
 * nor the chance to answer a lookup (NSS, nss.sock). The impostor here is a forked child that
 * binds as root and then drops to nobody (65534) BEFORE listen(2): for a Unix stream socket the
 * client sees the listener's credentials from its listen() call (unix(7), SO_PEERCRED), so this
 * is what a non-root process listening on the path looks like. It counts the bytes it receives;
 * the test requires zero. The same listener is trusted once it runs as the daemon user
 * (lk_peer.h): then it is asked, and its answer is taken. Who the daemon user is comes from a
 * scratch passwd file (lk_peer_uid_trusted takes the file; the shims read /etc/passwd) and from
 * LATCHKEY_DAEMON_USER.
 */
#define _GNU_SOURCE
#include "test_nss.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lk_client.h"
#include "lk_local.h"
#include "lk_peer.h"
#include "lk_priv.h"
#include "lk_msgs.h"
#include "lk_wire.h"
#include "test_util.h"

#define IMPOSTOR_UID 65534

struct impostor {
    pid_t pid;
    int report; /* read end: the child writes the number of bytes it received, then exits */
};

/* Answers the one request on s (a PING) with an OK reply carrying "impostor". */
static int answer_ping(int s, unsigned long *total)
{
    uint8_t req[64];
    size_t got = 0;
    while (got < 8) { /* PING: length 4, version, opcode */
        ssize_t n = read(s, req + got, sizeof req - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    *total += got;
    static const uint8_t reply[] = { 0, 0, 0,   16,  0,   1,   0,   LK_OP_PING, 0,   LK_STATUS_OK,
                                     0, 8, 'i', 'm', 'p', 'o', 's', 't',        'o', 'r' };
    return write(s, reply, sizeof reply) == (ssize_t)sizeof reply ? 0 : -1;
}

/* Child: serve `conns` connections on path as uid 65534, reading each to EOF; answers a PING on
 * each only when `answer` is set. */
static void impostor_main(const char *path, int conns, int answer, int ready, int report)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    alarm(20); /* never outlive a broken test */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* The socket file is the impostor's, as a daemon user's own socket is (the shims check the
     * listener owns the path it was reached through). */
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        chown(sa.sun_path, IMPOSTOR_UID, IMPOSTOR_UID) != 0 || setgroups(0, NULL) != 0 ||
        setgid(IMPOSTOR_UID) != 0 || setuid(IMPOSTOR_UID) != 0 || listen(fd, 8) != 0)
        _exit(3);
    char c = 'r';
    if (write(ready, &c, 1) != 1)
        _exit(3);
    unsigned long total = 0;
    for (int i = 0; i < conns; i++) {
        int s = accept(fd, NULL, NULL);
        if (s < 0 || (answer && answer_ping(s, &total) != 0))
            _exit(3);
        char buf[512];
        ssize_t n;
        while ((n = read(s, buf, sizeof buf)) > 0)
            total += (unsigned long)n;
        close(s);
    }
    _exit(write(report, &total, sizeof total) == sizeof total ? 0 : 3);
}

static int impostor_start(struct impostor *im, const char *path, int conns, int answer)
{
    int ready[2], report[2];
    char c;
    if (pipe2(ready, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(report, O_CLOEXEC) != 0) {
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    im->pid = fork();
    if (im->pid == 0) {
        close(ready[0]);
        close(report[0]);
        impostor_main(path, conns, answer, ready[1], report[1]);
    }
    close(ready[1]);
    close(report[1]);
    im->report = report[0];
    int ok = im->pid > 0 && read(ready[0], &c, 1) == 1;
    close(ready[0]);
    return ok ? 0 : -1;
}

/* Bytes the impostor received over all its connections, or -1 if it failed. */
static long impostor_finish(struct impostor *im)
{
    unsigned long total = 0;
    int status = 0;
    ssize_t n = read(im->report, &total, sizeof total);
    close(im->report);
    waitpid(im->pid, &status, 0);
    if (n != (ssize_t)sizeof total || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return (long)total;
}

void test_impostor(struct fixture *fx)
{
    char dir[64], path[128], why[512];
    struct impostor im;
    lk_test_begin("a socket whose listener is not root gets nothing: no password, no lookup");
    unsetenv(LK_DAEMON_USER_ENV); /* whatever the caller's environment says */
    snprintf(dir, sizeof dir, "/tmp/lk-impostor-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);

    /* PAM's path: AUTH_PASSWORD is never sent; the reason names the uid. */
    snprintf(path, sizeof path, "%s/priv.sock", dir);
    CHECK(impostor_start(&im, path, 1, 0) == 0);
    struct lk_priv_reply reply;
    int status = lk_priv_auth_password(dir, "alice", "hunter2 secret", "sshd", "", &reply);
    CHECK(status == LK_PRIV_NO_ANSWER && reply.io == LK_IO_PEER);
    /* The message names the peer and who was expected (whether the host has a _latchkey user
     * is the host's business; the scratch-file test below pins that part down). */
    static const char want[] = "daemon socket is not owned by root or the daemon user (peer uid "
                               "65534; expected uid 0 or _latchkey (";
    CHECK(strncmp(reply.detail, want, sizeof want - 1) == 0);
    char line[512];
    lk_priv_describe(status, &reply, line, sizeof line);
    CHECK(strstr(line, path) != NULL && strstr(line, ": protocol error (") != NULL);
    CHECK(impostor_finish(&im) == 0);
    unlink(path);

    /* The one-shot client (keys helper) and the NSS module's kept connection. */
    snprintf(path, sizeof path, "%s/nss.sock", dir);
    CHECK(impostor_start(&im, path, 2, 0) == 0);
    uint8_t req[16];
    size_t n = lk_msg_ping_request(req, sizeof req);
    uint8_t *body = NULL;
    size_t len = 0;
    CHECK(lk_client_call(dir, "nss.sock", req, n, LK_MAX_NSS_REPLY, &body, &len, why, sizeof why) ==
          LK_IO_PEER);
    CHECK(body == NULL && strstr(why, "(peer uid 65534; expected uid 0 or _latchkey") != NULL);
    setenv("LATCHKEY_SOCKET_DIR", dir, 1);
    struct passwd pw;
    char buf[1024];
    int err = 0;
    CHECK(_nss_latchkey_getpwnam_r("alice", &pw, buf, sizeof buf, &err) == NSS_STATUS_UNAVAIL);
    CHECK(err == EAGAIN); /* "try again", never "no such user" */
    setenv("LATCHKEY_SOCKET_DIR", fx->dir, 1);
    CHECK(impostor_finish(&im) == 0);
    unlink(path);
    rmdir(dir);

    CHECK(lk_peer_uid_ok(0) && !lk_peer_uid_ok(IMPOSTOR_UID));
    lk_io_describe(LK_IO_NO_DAEMON, 0, why, sizeof why);
    CHECK(strcmp(why, lk_io_text(LK_IO_NO_DAEMON)) == 0);
    CHECK(lookup_alice()); /* the real (root) daemon is still trusted on the same thread */
}

/* The same listener as the daemon user: LATCHKEY_DAEMON_USER=65534 makes it trusted (asked, its
 * answer taken), another uid there leaves it refused, and the message says which. */
void test_daemon_user_env(struct fixture *fx)
{
    char dir[64], path[128], why[512];
    struct impostor im;
    uint8_t req[16];
    size_t n = lk_msg_ping_request(req, sizeof req);
    uint8_t *body = NULL;
    size_t len = 0;
    (void)fx;
    lk_test_begin("LATCHKEY_DAEMON_USER: a listener running as that uid is the daemon");
    snprintf(dir, sizeof dir, "/tmp/lk-daemonuser-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/nss.sock", dir);

    setenv(LK_DAEMON_USER_ENV, "65533", 1);
    CHECK(impostor_start(&im, path, 1, 0) == 0);
    CHECK(lk_client_call(dir, "nss.sock", req, n, LK_MAX_NSS_REPLY, &body, &len, why, sizeof why) ==
          LK_IO_PEER);
    CHECK(strstr(why, "(peer uid 65534; expected uid 0 or _latchkey (") != NULL);
    CHECK(strstr(why, " or LATCHKEY_DAEMON_USER=65533)") != NULL);
    CHECK(impostor_finish(&im) == 0); /* nothing was sent */
    unlink(path);

    setenv(LK_DAEMON_USER_ENV, "65534", 1);
    CHECK(impostor_start(&im, path, 1, 1) == 0);
    CHECK(lk_client_call(dir, "nss.sock", req, n, LK_MAX_NSS_REPLY, &body, &len, why, sizeof why) ==
          LK_IO_OK);
    CHECK(body != NULL && len == 16 && memcmp(body + 8, "impostor", 8) == 0);
    free(body);
    CHECK(impostor_finish(&im) == 8); /* the PING was sent */
    unlink(path);
    rmdir(dir);
    unsetenv(LK_DAEMON_USER_ENV);
    CHECK(!lk_peer_uid_ok(IMPOSTOR_UID));
}

/* Who the daemon user is, from a passwd file: _latchkey's uid there, or LATCHKEY_DAEMON_USER as
 * a uid or a name there; nothing else (a compat line, a lookalike name, another uid). */
void test_daemon_user_passwd(void)
{
    char file[] = "/tmp/lk-passwd-XXXXXX", why[512];
    lk_test_begin("the daemon user is _latchkey's uid in the passwd file, or LATCHKEY_DAEMON_USER");
    int fd = mkstemp(file);
    static const char text[] = "root:x:0:0:root:/root:/bin/bash\n"
                               "+_latchkey2\n"
                               "_latchkeyX:x:64100:64100::/:/sbin/nologin\n"
                               "_latchkey:x:64199:64199:latchkey daemon:/:/sbin/nologin\n"
                               "svc:x:64300:64300::/:/sbin/nologin\n"
                               "broken:x:notanumber:1::/:/bin/sh\n";
    CHECK(fd >= 0 && write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    uid_t uid = 0;
    CHECK(lk_local_uid(file, "_latchkey", &uid) == 1 && uid == 64199);
    CHECK(lk_local_uid(file, "_latchkey2", &uid) == 0 && lk_local_uid(file, "broken", &uid) == 0);
    CHECK(lk_local_uid(file, "nobody-here", &uid) == 0);
    CHECK(lk_local_uid("/nonexistent/passwd", "_latchkey", &uid) == -1);

    CHECK(lk_peer_uid_trusted(0, file, NULL) == 1);
    CHECK(lk_peer_uid_trusted(64199, file, NULL) == 1);  /* _latchkey */
    CHECK(lk_peer_uid_trusted(64100, file, NULL) == 0);  /* _latchkeyX: another user */
    CHECK(lk_peer_uid_trusted(64300, file, NULL) == 0);  /* svc: not named */
    CHECK(lk_peer_uid_trusted(64300, file, "svc") == 1); /* named by the environment */
    CHECK(lk_peer_uid_trusted(64301, file, "64301") == 1);
    CHECK(lk_peer_uid_trusted(64300, file, "64301") == 0);
    CHECK(lk_peer_uid_trusted(64300, file, "nobody-here") == 0);
    CHECK(lk_peer_uid_trusted(64300, file, "") == 0);
    /* Without a _latchkey line (or the file), only root and the environment's user remain. */
    CHECK(lk_peer_uid_trusted(64199, "/nonexistent/passwd", NULL) == 0);
    CHECK(lk_peer_uid_trusted(64301, "/nonexistent/passwd", "64301") == 1);

    lk_peer_expected(why, sizeof why, file, NULL);
    CHECK(strcmp(why, "uid 0 or _latchkey (uid 64199)") == 0);
    lk_peer_expected(why, sizeof why, file, "svc");
    CHECK(strcmp(why, "uid 0 or _latchkey (uid 64199) or LATCHKEY_DAEMON_USER=svc (uid 64300)") ==
          0);
    lk_peer_expected(why, sizeof why, "/nonexistent/passwd", "64301");
    CHECK(strcmp(why,
                 "uid 0 or _latchkey (not in /nonexistent/passwd) or LATCHKEY_DAEMON_USER=64301") ==
          0);
    unlink(file);
}
