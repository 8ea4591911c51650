/* keyline: see keyline.h. Rules follow sshd(8) AUTHORIZED_KEYS FILE FORMAT, minus options. */
#define _GNU_SOURCE
#include "keyline.h"

#include <string.h>

#include "latchkey_proto.h"
#include "lk_msgs.h"
#include "lk_wire.h"

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64: alphabet only, length a multiple of 4, '=' only as the last one or two. */
static int b64_ok(const char *p, size_t n)
{
    size_t pad = 0;
    if (n == 0 || n % 4 != 0)
        return 0;
    while (pad < 2 && p[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (b64_value((unsigned char)p[i]) < 0)
            return 0;
    return 1;
}

/* Decodes the first `want` bytes of a base64 text (already checked by b64_ok) into out;
 * returns how many bytes were produced. */
static size_t b64_prefix(const char *p, size_t n, uint8_t *out, size_t want)
{
    size_t got = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && got < want && p[i] != '='; i++) {
        acc = (acc << 6) | (uint32_t)b64_value((unsigned char)p[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[got++] = (uint8_t)(acc >> bits);
        }
    }
    return got;
}

/* The key blob starts with the key type as an SSH string (RFC 4253 section 6.6): it must
 * name the same type as the text before it, or sshd would reject the line anyway. */
static int blob_type_matches(const char *b64, size_t n, const char *type)
{
    uint8_t head[4 + 40];
    size_t tlen = strlen(type);
    if (tlen + 4 > sizeof head)
        return 0;
    if (b64_prefix(b64, n, head, 4 + tlen) != 4 + tlen)
        return 0;
    uint32_t len =
        ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
    return len == tlen && memcmp(head + 4, type, tlen) == 0;
}

int lk_key_line_ok(const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    if (!sp)
        return 0;
    size_t tlen = (size_t)(sp - p);
    const char *type = NULL;
    /* The one list of the spec (src/protocol/spec.json ssh_key_types), also what the daemon's
     * upstream validation accepts: a key it cached is never dropped here as malformed. */
    for (size_t i = 0; i < LK_SSH_KEY_TYPE_COUNT; i++)
        if (strlen(lk_ssh_key_types[i]) == tlen && memcmp(p, lk_ssh_key_types[i], tlen) == 0)
            type = lk_ssh_key_types[i];
    if (!type)
        return 0;
    const char *b64 = sp + 1;
    size_t rest = n - tlen - 1;
    const char *sp2 = memchr(b64, ' ', rest);
    size_t blen = sp2 ? (size_t)(sp2 - b64) : rest;
    if (!b64_ok(b64, blen) || !blob_type_matches(b64, blen, type))
        return 0;
    /* The comment is free text but one line: no control characters (CR, LF, TAB, ESC, DEL). */
    for (size_t i = tlen + 1 + blen; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

int lk_keys_reply(const uint8_t *body, size_t len, uint16_t opcode, lk_key_emit emit, void *ctx,
                  unsigned *skipped)
{
    struct lk_reply rep;
    *skipped = 0;
    if (lk_reply_open(body, len, opcode, &rep) != 0)
        return -1;
    if (rep.status != LK_STATUS_OK)
        return rep.status;
    /* KEYS_BY_NAME and KEYS_FOR_LOGIN carry the same keys strlist. */
    struct lk_msg_keys_for_login_reply login;
    struct lk_msg_keys_by_name_reply by_name;
    struct lk_seq keys;
    if (opcode == LK_OP_KEYS_FOR_LOGIN) {
        if (lk_msg_keys_for_login_read_reply(&rep.payload, &login) != 0)
            return -1;
        keys = login.keys;
    } else {
        if (lk_msg_keys_by_name_read_reply(&rep.payload, &by_name) != 0)
            return -1;
        keys = by_name.keys;
    }
    for (uint16_t i = 0; i < keys.count; i++) {
        struct lk_str key = lk_rd_str(&keys.items);
        if (lk_key_line_ok(key.p, key.len))
            emit(ctx, key.p, key.len);
        else
            (*skipped)++;
    }
    return LK_STATUS_OK;
}
