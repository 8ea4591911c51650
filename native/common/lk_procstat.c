/* See lk_procstat.h. */
#define _GNU_SOURCE
#include "lk_procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lk_stat_starttime(const char *stat_text, unsigned long long *out)
{
    const char *p = strrchr(stat_text, ')');
    if (p == NULL)
        return -1;
    p++;
    for (int field = 3; field <= 22; field++) {
        if (*p != ' ')
            return -1;
        p++;
        if (field == 22) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            if (errno != 0 || end == p || (*end != ' ' && *end != '\0' && *end != '\n'))
                return -1;
            *out = v;
            return 0;
        }
        p += strcspn(p, " ");
    }
    return -1;
}

int lk_self_starttime(char *buf, size_t cap)
{
    if (cap == 0)
        return -1;
    buf[0] = '\0';
    char text[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    unsigned long long v;
    if (lk_stat_starttime(text, &v) != 0)
        return -1;
    int w = snprintf(buf, cap, "%llu", v);
    if (w < 0 || (size_t)w >= cap) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}
