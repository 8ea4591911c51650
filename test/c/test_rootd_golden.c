/* latchkey-rootd's side of the rootd golden vectors (test/golden/rootd-vectors.txt, written by
 * test/golden/make-rootd-vectors.mjs with the daemon's encoder, src/protocol/rootd.ts; the TS
 * codec test checks the same file's JSON twin):
 *   request      rootd_decode accepts the bytes and reads every field as the daemon wrote it
 *   reply        rootd_encode writes exactly these bytes for that status, flags and message
 *   bad-request  rootd_decode refuses it as MALFORMED, saying why
 *   bad-reply    not rootd's to read (the daemon refuses them); skipped here
 * Built and run by `make -C native/rootd check` (under valgrind too).
 *
 *   test_rootd_golden FILE */
#define _GNU_SOURCE
#include "rootd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vec {
    char name[200];
    char kind[16];
    unsigned char bytes[512];
    size_t len;
    uint64_t num[8]; /* op uid gid pid pid_start status flags, by key_index() */
    char text[512];  /* name (request), msg (reply), why (bad-request) */
    size_t text_len;
};

static const char *const KEYS[] = { "op", "uid", "gid", "pid", "pid_start", "status", "flags" };

static int key_index(const char *k)
{
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        if (strcmp(KEYS[i], k) == 0)
            return (int)i;
    }
    return -1;
}

/* Hex digits into out; the count of bytes, or -1. */
static long unhex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return (long)(n / 2);
}

static int failures;

#define EXPECT(cond, v)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s: %s\n", (v)->name, #cond);                                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void check_request(const struct vec *v)
{
    struct rootd_request req;
    struct rootd_reply rep = { 0 };
    EXPECT(rootd_decode(v->bytes, v->len, &req, &rep) == 0, v);
    EXPECT(rep.status == ROOTD_OK, v);
    EXPECT(req.version == ROOTD_PROTO_VERSION && req.opcode == v->num[0], v);
    EXPECT(req.uid == v->num[1] && req.gid == v->num[2] && req.pid == v->num[3], v);
    EXPECT(req.pid_start == v->num[4], v);
    EXPECT(strlen(req.name) == v->text_len && memcmp(req.name, v->text, v->text_len) == 0, v);
}

static void check_reply(const struct vec *v)
{
    struct rootd_reply rep = { .status = (unsigned)v->num[5], .flags = (unsigned)v->num[6] };
    unsigned char out[ROOTD_REPLY_SIZE];
    EXPECT(v->text_len <= ROOTD_MSG_SIZE, v);
    memcpy(rep.msg, v->text, v->text_len);
    rep.msg[v->text_len] = '\0';
    rootd_encode(&rep, out);
    EXPECT(v->len == ROOTD_REPLY_SIZE && memcmp(out, v->bytes, ROOTD_REPLY_SIZE) == 0, v);
}

static void check_bad_request(const struct vec *v)
{
    struct rootd_request req;
    struct rootd_reply rep = { 0 };
    EXPECT(rootd_decode(v->bytes, v->len, &req, &rep) == -1, v);
    EXPECT(rep.status == ROOTD_MALFORMED, v);
    EXPECT(strstr(rep.msg, v->text) != NULL, v);
    if (strstr(rep.msg, v->text) == NULL)
        fprintf(stderr, "  rootd said: %s\n", rep.msg);
}

int main(int argc, char **argv)
{
    FILE *f = argc == 2 ? fopen(argv[1], "re") : NULL;
    if (f == NULL) {
        fprintf(stderr, "usage: test_rootd_golden test/golden/rootd-vectors.txt\n");
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    struct vec v;
    int counts[3] = { 0 };
    memset(&v, 0, sizeof v);
    while ((n = getline(&line, &cap, f)) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *sp = strchr(line, ' ');
        const char *val = sp ? sp + 1 : "";
        if (sp)
            *sp = '\0';
        int k = key_index(line);
        long got = 0;
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        } else if (strcmp(line, "vector") == 0) {
            memset(&v, 0, sizeof v);
            snprintf(v.name, sizeof v.name, "%s", val);
        } else if (strcmp(line, "kind") == 0) {
            snprintf(v.kind, sizeof v.kind, "%s", val);
        } else if (strcmp(line, "hex") == 0) {
            got = unhex(val, v.bytes, sizeof v.bytes);
            v.len = got > 0 ? (size_t)got : 0;
        } else if (k >= 0) {
            v.num[k] = strtoull(val, NULL, 10);
        } else if (strcmp(line, "name") == 0 || strcmp(line, "msg") == 0 ||
                   strcmp(line, "why") == 0) {
            got = val[0] == 'x' ? unhex(val + 1, (unsigned char *)v.text, sizeof v.text - 1) : -1;
            v.text_len = got > 0 ? (size_t)got : 0;
            v.text[v.text_len] = '\0';
        } else if (strcmp(line, "end") == 0) {
            if (strcmp(v.kind, "request") == 0) {
                check_request(&v);
                counts[0]++;
            } else if (strcmp(v.kind, "reply") == 0) {
                check_reply(&v);
                counts[1]++;
            } else if (strcmp(v.kind, "bad-request") == 0) {
                check_bad_request(&v);
                counts[2]++;
            }
        } else {
            fprintf(stderr, "rootd-vectors: unknown line \"%s\"\n", line);
            failures++;
        }
        if (got < 0) {
            fprintf(stderr, "rootd-vectors: %s: bad hex in %s\n", v.name, line);
            failures++;
        }
    }
    free(line);
    fclose(f);
    if (counts[0] == 0 || counts[1] == 0 || counts[2] == 0) {
        fprintf(stderr, "rootd-vectors: expected requests, replies and bad requests\n");
        failures++;
    }
    printf("rootd golden: %d requests decoded, %d replies encoded, %d bad requests refused: %s\n",
           counts[0], counts[1], counts[2], failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
