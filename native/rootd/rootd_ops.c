/* What rootd does for CREATE_HOME and END_SESSION, each only after rootd_check.c allowed the
 * request (RELOAD is rootd_main.c's: it replaces the policy between two requests). */
#define _GNU_SOURCE
#include "lk_procstat.h"
#include "rootd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* homes.c does the work on directory fds without following symlinks (see its header): the home is
 * always policy base + the checked name, the owner the checked uid and the configured gid. */
void rootd_create_home(const struct rootd_request *req, const struct rootd_policy *pol,
                       struct rootd_reply *rep)
{
    struct home_request hr = { .base = pol->base,
                               .name = req->name,
                               .upload_dir = pol->upload_dir,
                               .uid = (uid_t)req->uid,
                               .gid = (gid_t)req->gid,
                               .layout = pol->layout,
                               .mode = pol->mode };
    struct home_report report;
    home_ensure(&hr, &report);
    size_t used = 0;
    rep->msg[0] = '\0';
    for (int i = 0; i < report.nproblems && used < sizeof rep->msg - 1; i++) {
        int n = snprintf(rep->msg + used, sizeof rep->msg - used, "%s%s", i ? "; " : "",
                         report.problems[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (report.refused) {
        rep->status = ROOTD_UNSAFE;
        return;
    }
    if (report.nproblems == 0)
        rootd_reply_set(rep, ROOTD_OK, "%s %s/%s", report.created ? "created" : "checked",
                        pol->base, req->name);
    rep->status = ROOTD_OK;
    rep->flags = (report.created ? ROOTD_FLAG_CREATED : 0) |
                 (report.nproblems > 0 ? ROOTD_FLAG_REPAIRED : 0);
}

/* A small /proc file of the process, NUL-terminated, through its /proc directory fd. */
static int read_proc_text(int proc_fd, const char *name, char *buf, size_t cap)
{
    int fd = openat(proc_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* Field 22 (starttime) of /proc/PID/stat, read through the process's /proc directory fd. */
static int read_start_time(int proc_fd, uint64_t *out)
{
    char buf[1024];
    if (read_proc_text(proc_fd, "stat", buf, sizeof buf) != 0)
        return -1;
    unsigned long long v;
    if (lk_stat_starttime(buf, &v) != 0)
        return -1;
    *out = v;
    return 0;
}

/* /proc/PID/loginuid through the process's /proc directory fd: the uid pam_loginuid recorded for
 * the login session (it runs before pam_latchkey, etc/pam.d/latchkey-sshd); 4294967295 = unset. */
static int read_loginuid(int proc_fd, uint32_t *out)
{
    char buf[32];
    if (read_proc_text(proc_fd, "loginuid", buf, sizeof buf) != 0)
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\0' && *end != '\n') || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Race-free against pid reuse: the pidfd pins the process that had the pid when it was opened,
 * and a start time read afterwards that matches the recorded one proves it is the recorded
 * process (it was alive then, so it held the pid all along). The signal goes through the pidfd,
 * so it reaches that process or nobody (pidfd_open(2), pidfd_send_signal(2)). The loginuid must
 * be the session user's (already checked against the policy): a process that is not the login
 * of that user, e.g. a daemon or an admin's shell that happens to match a recorded start time, is
 * never signalled. */
void rootd_end_session(const struct rootd_request *req, const struct rootd_identity *id,
                       struct rootd_reply *rep)
{
    unsigned pid = (unsigned)req->pid;
    int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (pidfd < 0) {
        if (errno == ESRCH)
            rootd_reply_set(rep, ROOTD_GONE, "pid %u: no such process", pid);
        else
            rootd_reply_set(rep, ROOTD_FAILED, "pidfd_open(%u): %s%s", pid, strerror(errno),
                            errno == ENOSYS ? " (Linux 5.3 or later is needed)" : "");
        return;
    }
    char path[32];
    snprintf(path, sizeof path, "/proc/%u", pid);
    int proc_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    uint64_t start = 0;
    uint32_t loginuid = 0;
    if (proc_fd < 0 || fstat(proc_fd, &st) != 0 || read_start_time(proc_fd, &start) != 0) {
        if (errno == ENOENT || errno == ESRCH)
            rootd_reply_set(rep, ROOTD_GONE, "pid %u: no such process", pid);
        else
            rootd_reply_set(rep, ROOTD_FAILED, "cannot read /proc/%u/stat: %s", pid,
                            strerror(errno));
    } else if (st.st_uid == id->daemon_uid) {
        /* No session process runs as the daemon user, which can signal its own processes
         * without rootd anyway: such a request is a bug or an attack. */
        rootd_reply_set(rep, ROOTD_REFUSED, "pid %u runs as the daemon user; not signalled", pid);
    } else if (start != req->pid_start) {
        rootd_reply_set(rep, ROOTD_REFUSED,
                        "pid %u started at %" PRIu64 ", not at the recorded "
                        "%" PRIu64 ": another process has the pid now; not signalled",
                        pid, start, req->pid_start);
    } else if (read_loginuid(proc_fd, &loginuid) != 0) {
        if (errno == ENOENT || errno == ESRCH)
            rootd_reply_set(rep, ROOTD_GONE, "pid %u: no such process", pid);
        else
            rootd_reply_set(rep, ROOTD_FAILED, "cannot read /proc/%u/loginuid: %s", pid,
                            strerror(errno));
    } else if (loginuid != req->uid) {
        char has[16];
        snprintf(has, sizeof has, "%u", (unsigned)loginuid);
        rootd_reply_set(rep, ROOTD_REFUSED,
                        "pid %u has loginuid %s, not the session user's uid %u; not signalled", pid,
                        loginuid == UINT32_MAX ? "unset" : has, (unsigned)req->uid);
    } else if (syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0) != 0) {
        if (errno == ESRCH)
            rootd_reply_set(rep, ROOTD_GONE, "pid %u ended before the signal", pid);
        else
            rootd_reply_set(rep, ROOTD_FAILED, "SIGTERM to pid %u: %s", pid, strerror(errno));
    } else {
        rootd_reply_set(rep, ROOTD_OK, "SIGTERM sent to pid %u", pid);
    }
    if (proc_fd >= 0)
        close(proc_fd);
    close(pidfd);
}
