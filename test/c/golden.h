/*
 * The C golden test (test_golden.c) and its generated per-message part (golden_msgs.c, written
 * by scripts/gen-protocol.mjs): a vector's "f PATH TYPE VALUE" lines are the field values the
 * TS codec decoded; requests are encoded from them with the generated writers, OK reply
 * payloads decoded with the generated readers and flattened back into the same lines.
 */
#ifndef LK_GOLDEN_H
#define LK_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

#include "lk_wire.h"

struct golden_vals; /* the f lines of one vector */
struct golden_out;  /* flattened lines being built */

/* A field value by path: a str (NUL-terminated), a number, a blob. A missing path or a value of
 * another type counts as a test failure and yields "" / 0 / an empty blob. */
const char *golden_str(const struct golden_vals *v, const char *path);
uint32_t golden_num(const struct golden_vals *v, const char *path);
const uint8_t *golden_blob(const struct golden_vals *v, const char *path, uint32_t *len);

void golden_emit_str(struct golden_out *o, const char *path, struct lk_str s);
void golden_emit_num(struct golden_out *o, const char *path, const char *type, uint32_t v);
void golden_emit_count(struct golden_out *o, const char *path, unsigned n);
void golden_emit_blob(struct golden_out *o, const char *path, struct lk_blob b);
void golden_emit_strlist(struct golden_out *o, const char *path, struct lk_seq s);

/* golden_msgs.c: every opcode of the spec; the request of `opcode` written from v (0 when
 * unknown or it does not fit); an OK reply payload read and flattened (-1 when refused). */
extern const unsigned golden_opcodes[];
extern const size_t golden_opcode_count;
size_t golden_encode_request(unsigned opcode, const struct golden_vals *v, uint8_t *buf,
                             size_t cap);
int golden_flatten_reply(unsigned opcode, struct lk_reader *r, struct golden_out *g);

#endif /* LK_GOLDEN_H */
