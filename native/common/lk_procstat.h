/* A process's kernel start time (field 22 of /proc/PID/stat, in clock ticks since boot): with the
 * pid it names one process for its whole life, since pids are reused. latchkey-rootd compares it
 * before it signals a session process; pam_latchkey sends its own with SESSION_OPEN, because
 * latchkeyd (unprivileged) cannot read a root process's /proc entry when /proc is mounted with
 * hidepid. */
#ifndef LK_PROCSTAT_H
#define LK_PROCSTAT_H

#include <stddef.h>

/* Parses the text of a /proc/PID/stat file. comm (field 2) may hold spaces and ')', so fields
 * are counted from the last ')'. 0 on success, -1 when the text is not such a file. */
int lk_stat_starttime(const char *stat_text, unsigned long long *out);

/* This process's start time as a decimal string in buf; "" (and -1) when it cannot be read. */
int lk_self_starttime(char *buf, size_t cap);

#endif
