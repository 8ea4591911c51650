/*
 * keyline: what latchkey-authorized-keys accepts from the daemon, as pure functions (the
 * fuzzer and tests call them). Only plain `TYPE BASE64[ comment]` lines pass: no options
 * prefix (command=, from=, environment=... would let the user service take over the login),
 * no second line, a known key type whose name is repeated inside the base64 blob.
 */
#ifndef LK_KEYLINE_H
#define LK_KEYLINE_H

#include <stddef.h>
#include <stdint.h>

/* 1 when p[0..n) is one acceptable authorized_keys line, 0 otherwise. */
int lk_key_line_ok(const char *p, size_t n);

typedef void (*lk_key_emit)(void *ctx, const char *key, size_t len);

/* Decodes a reply body of `opcode` (KEYS_FOR_LOGIN or KEYS_BY_NAME: the same keys strlist).
 * The whole reply is checked before anything is emitted; then emit() gets each acceptable key
 * and *skipped counts the others. Returns the reply's lk_status, or -1 when the reply breaks
 * the protocol (nothing emitted). */
int lk_keys_reply(const uint8_t *body, size_t len, uint16_t opcode, lk_key_emit emit, void *ctx,
                  unsigned *skipped);

#endif /* LK_KEYLINE_H */
