/*
 * libFuzzer target: arbitrary bytes as a map file (spec.json "map"), read the way the NSS module
 * reads one: the header check, lookups by name, uid and group, and a walk over every table entry.
 * Whatever the bytes, nothing may read outside them, and any answer must pass the socket rules
 * (lk_map_rec_copy checks them). Seeded by test_map --write-corpus.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lk_map.h"
#include "lk_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A mapping is page-aligned; the view requires 8. */
    uint64_t *copy = malloc(size / 8 + 1 > 0 ? (size / 8 + 1) * 8 : 8);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    /* Mutations that change the size would almost always fail the file_size check first: make
     * it agree, so the fuzzer reaches the tables and records (the check itself is trivial). */
    if (size >= LK_MAP_HEADER_SIZE)
        ((struct lk_map_header *)copy)->file_size = size;
    struct lk_map_view v;
    if (lk_map_view_open(&v, copy, size) == 0) {
        uint8_t buf[LK_MAP_MAX_RECORD];
        struct lk_map_rec rec;
        const char *names[] = { "alice", "bob", "ghost", "lega", "x" };
        for (unsigned i = 0; i < sizeof names / sizeof *names; i++) {
            if (lk_map_find_name(&v, names[i], 1, buf, &rec) == LK_MAP_FOUND) {
                struct lk_passwd_rec pw;
                lk_map_rec_passwd(&rec, &pw);
                if (!lk_passwd_ok(&pw) || strcmp(rec.name.p, names[i]) != 0)
                    abort();
            }
        }
        uint32_t uids[] = { 20001, 20002, 30000, 0, 0xffffffffu };
        for (unsigned i = 0; i < sizeof uids / sizeof *uids; i++) {
            if (lk_map_find_uid(&v, uids[i], 1, buf, &rec) == LK_MAP_FOUND && rec.uid != uids[i])
                abort();
        }
        lk_map_find_group(&v, "lega", 0, 1, buf, &rec);
        lk_map_find_group(&v, NULL, 10000, 1, buf, &rec);
        for (uint32_t i = 0; i < v.slots && i < 4096; i++) {
            lk_map_rec_copy(&v, lk_map_ref(v.names[i]), buf, &rec);
            lk_map_rec_copy(&v, lk_map_ref(v.uids[i]), buf, &rec);
        }
    }
    free(copy);
    return 0;
}
