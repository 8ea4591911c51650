/*
 * The shims check who listens before they send anything: an impostor bound to the socket path
 * (latchkeyd down, a stale or writable socket dir) must get neither a password (PAM, priv.sock)
 * nor the chance to answer a lookup (NSS, nss.sock). The impostor here is a forked child that
 * binds as root and then drops to nobody (65534) BEFORE listen(2): for a Unix stream socket the
 * client sees the listener's credentials from its listen() call (unix(7), SO_PEERCRED), so this
 * is what a non-root process listening on the path looks like. It counts the bytes it receives;
 * the test requires zero.
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
#include "lk_priv.h"
#include "lk_msgs.h"
#include "lk_wire.h"
#include "test_util.h"

#define IMPOSTOR_UID 65534

struct impostor {
    pid_t pid;
    int report; /* read end: the child writes the number of bytes it received, then exits */
};

/* Child: serve `conns` connections on path as uid 65534, reading each to EOF; never answers. */
static void impostor_main(const char *path, int conns, int ready, int report)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    alarm(20); /* never outlive a broken test */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || setgroups(0, NULL) != 0 ||
        setgid(IMPOSTOR_UID) != 0 || setuid(IMPOSTOR_UID) != 0 || listen(fd, 8) != 0)
        _exit(3);
    char c = 'r';
    if (write(ready, &c, 1) != 1)
        _exit(3);
    unsigned long total = 0;
    for (int i = 0; i < conns; i++) {
        int s = accept(fd, NULL, NULL);
        if (s < 0)
            _exit(3);
        char buf[512];
        ssize_t n;
        while ((n = read(s, buf, sizeof buf)) > 0)
            total += (unsigned long)n;
        close(s);
    }
    _exit(write(report, &total, sizeof total) == sizeof total ? 0 : 3);
}

static int impostor_start(struct impostor *im, const char *path, int conns)
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
        impostor_main(path, conns, ready[1], report[1]);
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
    char dir[64], path[128], why[160];
    struct impostor im;
    lk_test_begin("a socket whose listener is not root gets nothing: no password, no lookup");
    snprintf(dir, sizeof dir, "/tmp/lk-impostor-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);

    /* PAM's path: AUTH_PASSWORD is never sent; the reason names the uid. */
    snprintf(path, sizeof path, "%s/priv.sock", dir);
    CHECK(impostor_start(&im, path, 1) == 0);
    struct lk_priv_reply reply;
    int status = lk_priv_auth_password(dir, "alice", "hunter2 secret", "sshd", "", &reply);
    CHECK(status == LK_PRIV_NO_ANSWER && reply.io == LK_IO_PEER);
    CHECK(strcmp(reply.detail, "daemon socket is not owned by root (peer uid 65534)") == 0);
    char line[512];
    lk_priv_describe(status, &reply, line, sizeof line);
    CHECK(strstr(line, path) != NULL && strstr(line, ": protocol error (") != NULL);
    CHECK(impostor_finish(&im) == 0);
    unlink(path);

    /* The one-shot client (keys helper) and the NSS module's kept connection. */
    snprintf(path, sizeof path, "%s/nss.sock", dir);
    CHECK(impostor_start(&im, path, 2) == 0);
    uint8_t req[16];
    size_t n = lk_msg_ping_request(req, sizeof req);
    uint8_t *body = NULL;
    size_t len = 0;
    CHECK(lk_client_call(dir, "nss.sock", req, n, LK_MAX_NSS_REPLY, &body, &len, why, sizeof why) ==
          LK_IO_PEER);
    CHECK(body == NULL && strstr(why, "(peer uid 65534)") != NULL);
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
