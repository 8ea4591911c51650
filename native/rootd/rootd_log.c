/* See rootd.h. Lines go to stderr with a "<N>" syslog priority prefix, which journald (and
 * sd-daemon(3)) turn into the entry's priority; under another supervisor they stay readable.
 * Per-request lines are rate-limited: a compromised daemon could otherwise send thousands of bad
 * requests a second and bury everything else in the journal. */
#define _GNU_SOURCE
#include "rootd.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static time_t window_start;
static unsigned window_lines;
static unsigned suppressed;

static void vlog_line(int prio, const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    /* One event is one line, whatever a message contains. */
    for (char *p = line; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    fprintf(stderr, "<%d>latchkey-rootd: %s\n", prio, line);
    fflush(stderr);
}

void rootd_log(int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line(prio, fmt, ap);
    va_end(ap);
}

void rootd_log_flush(void)
{
    if (suppressed > 0)
        rootd_log(ROOTD_LOG_WARNING, "event=log.suppressed count=%u window_s=%d", suppressed,
                  ROOTD_LOG_WINDOW_S);
    suppressed = 0;
}

void rootd_log_event(int prio, const char *fmt, ...)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - window_start >= ROOTD_LOG_WINDOW_S) {
        rootd_log_flush();
        window_start = now.tv_sec;
        window_lines = 0;
    }
    if (window_lines >= ROOTD_LOG_BURST) {
        suppressed++;
        return;
    }
    window_lines++;
    va_list ap;
    va_start(ap, fmt);
    vlog_line(prio, fmt, ap);
    va_end(ap);
}

void rootd_log_quote(char *out, size_t out_len, const char *in, size_t in_len)
{
    size_t o = 0;
    for (size_t i = 0; i < in_len && o + 5 < out_len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, out_len - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}
