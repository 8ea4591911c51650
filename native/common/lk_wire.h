/*
 * lk_wire: bounds-checked big-endian reader and writer for the latchkey frame format
 * (see the framing prose in latchkey_proto.h). Pure: no I/O, no allocation.
 *
 * Errors are sticky: once a read or write does not fit, every later call on the same reader or
 * writer fails too and yields zeros, so a decoder can read all fields and check `bad` once at the
 * end (the pattern of SSSD's alignment-safe SAFEALIGN readers, without the hidden returns).
 */
#ifndef LK_WIRE_H
#define LK_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* A length-counted string inside a received frame: NOT NUL-terminated, never contains NUL
 * (lk_rd_str rejects that), valid only while the frame buffer lives. */
struct lk_str {
    const char *p;
    uint16_t len;
};

struct lk_reader {
    const uint8_t *p;
    size_t left;
    int bad;
};

/* A blob inside a received frame: len bytes at p, valid only while the frame buffer lives. */
struct lk_blob {
    const uint8_t *p;
    uint32_t len;
};

/* A strlist or TYPE[] inside a received frame whose layout was checked when it was read:
 * `items` is positioned at the first element, read them with lk_rd_str / lk_msg_TYPE_read. */
struct lk_seq {
    uint16_t count;
    struct lk_reader items;
};

/* A reply body's header: status, and the detail str of a non-OK status. */
struct lk_reply {
    uint16_t status;          /* enum lk_status */
    struct lk_str detail;     /* non-OK only: the human-readable detail */
    struct lk_reader payload; /* OK only: the reply payload, for a lk_msg_*_read_reply */
};

struct lk_writer {
    uint8_t *data;
    size_t cap;
    size_t len;
    int bad;
};

void lk_rd_init(struct lk_reader *r, const uint8_t *p, size_t len);
uint8_t lk_rd_u8(struct lk_reader *r);
uint16_t lk_rd_u16(struct lk_reader *r);
uint32_t lk_rd_u32(struct lk_reader *r);
/* Reads a str; marks the reader bad if the count exceeds the bytes left or the bytes hold NUL. */
struct lk_str lk_rd_str(struct lk_reader *r);
/* Reads a blob (u32 count, then the bytes). */
struct lk_blob lk_rd_blob(struct lk_reader *r);
/* Reads a strlist, checking every element like lk_rd_str; out->items is at the first one. */
void lk_rd_strlist(struct lk_reader *r, struct lk_seq *out);
/* 0 when every read fitted and no byte is left over (the spec makes trailing bytes an error). */
int lk_rd_done(const struct lk_reader *r);

void lk_wr_init(struct lk_writer *w, uint8_t *buf, size_t cap);
void lk_wr_u8(struct lk_writer *w, uint8_t v);
void lk_wr_u16(struct lk_writer *w, uint16_t v);
void lk_wr_u32(struct lk_writer *w, uint32_t v);
/* Writes a str from a NUL-terminated C string (NULL is the empty string). */
void lk_wr_cstr(struct lk_writer *w, const char *s);
/* Writes a blob (u32 count, then the bytes). */
void lk_wr_blob(struct lk_writer *w, const uint8_t *p, uint32_t len);

/* Starts a request frame: length placeholder, protocol version, opcode. */
void lk_wr_request(struct lk_writer *w, uint16_t opcode);
/* Patches the length prefix; returns the frame size, or 0 if anything overflowed or the frame
 * exceeds LK_MAX_REQUEST. */
size_t lk_wr_finish(struct lk_writer *w);

/* Compares a received str with a C string. */
int lk_str_eq(struct lk_str s, const char *c);

/* Parses a reply body (the bytes after the length prefix). 0 when the version is ours, the
 * opcode is `opcode`, and a non-OK status carries exactly one detail str; -1 otherwise.
 * For OK the payload is left in out->payload for the message's lk_msg_*_read_reply. */
int lk_reply_open(const uint8_t *body, size_t len, uint16_t opcode, struct lk_reply *out);

#endif /* LK_WIRE_H */
