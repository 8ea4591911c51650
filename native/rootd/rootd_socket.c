/* The listening socket: made by rootd (--socket PATH) or passed by systemd. See rootd.h. */
#define _GNU_SOURCE
#include "rootd.h"
#include "safedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* --socket PATH: bound in a directory opened without following symlinks (root-owned, not
 * writable by others), created 0600 by the umask so no other user can ever connect, then handed
 * to the daemon user. Only a stale socket is replaced; any other file there stops rootd. */
int rootd_bind_socket(const char *path, uid_t owner)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (path[0] != '/' || slash == NULL || strlen(slash + 1) == 0 ||
        strlen(slash + 1) >= sizeof sa.sun_path || strlen(path) >= sizeof dir) {
        rootd_log(ROOTD_LOG_ERR,
                  "event=start.failed reason=\"--socket %s: expected an absolute "
                  "path with a file name under %zu bytes\"",
                  path, sizeof sa.sun_path);
        return -1;
    }
    size_t dlen = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", slash + 1);
    struct safe_dir_request req = { .path = dir,
                                    .trusted_uid = (uid_t)-1,
                                    .create = 1,
                                    .mode = 0755,
                                    .what = "socket directory",
                                    .parent_of = "socket directory" };
    char why[1024];
    int missing = 0, fd = -1;
    int dfd = safe_dir_open(&req, why, sizeof why, &missing);
    if (dfd < 0) {
        rootd_log(ROOTD_LOG_ERR, "event=start.failed reason=\"%s\"", why);
        return -1;
    }
    struct stat st;
    const char *fail = NULL;
    if (fstatat(dfd, sa.sun_path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (!S_ISSOCK(st.st_mode) || unlinkat(dfd, sa.sun_path, 0) != 0))
        fail = "exists and is not a socket (or cannot be removed); remove it by hand";
    mode_t old = umask(0177);
    if (fail == NULL &&
        ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || fchdir(dfd) != 0 ||
         bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chdir("/") != 0 ||
         fchownat(dfd, sa.sun_path, owner, (gid_t)-1, AT_SYMLINK_NOFOLLOW) != 0 ||
         listen(fd, 16) != 0))
        fail = strerror(errno);
    umask(old);
    close(dfd);
    if (fail != NULL) {
        rootd_log(ROOTD_LOG_ERR, "event=start.failed reason=\"%s: %s\"", path, fail);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* sd_listen_fds(3) by hand (libc only): exactly one fd, meant for this pid, a listening Unix
 * stream socket. */
int rootd_activated_socket(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (pid == NULL || fds == NULL || strtol(pid, NULL, 10) != (long)getpid())
        return -1;
    int type = 0, domain = 0, listening = 0;
    socklen_t l1 = sizeof type, l2 = sizeof domain, l3 = sizeof listening;
    if (strcmp(fds, "1") != 0 || getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &l1) != 0 ||
        getsockopt(3, SOL_SOCKET, SO_DOMAIN, &domain, &l2) != 0 ||
        getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3) != 0 || type != SOCK_STREAM ||
        domain != AF_UNIX || !listening) {
        rootd_log(ROOTD_LOG_ERR, "event=start.failed reason=\"LISTEN_FDS must pass exactly one "
                                 "listening Unix stream socket (ListenStream=/path, Accept=no)\"");
        return -2;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    fcntl(3, F_SETFD, FD_CLOEXEC);
    return 3;
}
