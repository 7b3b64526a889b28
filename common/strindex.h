/* common/strindex.h — a hash index from strings to positions in a caller's array (open
 * addressing, linear probing), so name lookups in model files stay O(1) whatever a file declares.
 * The index stores positions only; the caller's key(ctx, i) gives the string at position i, so
 * the array may move (realloc) without the index knowing. A zeroed mp_strindex is empty.
 * The index owns its slots (mp_strindex_free); finds may run on several threads, an add on one
 * with no find beside it. Nothing here fails: allocation aborts (mp_xmalloc). */
#ifndef MP_STRINDEX_H
#define MP_STRINDEX_H

#include <stdint.h>

typedef const char *(*mp_strindex_key)(const void *ctx, int i);

typedef struct {
    int32_t *slot;  /* position + 1; 0 = empty */
    uint32_t cap;   /* power of two, or 0 */
    int n;
    uint64_t seed;  /* of the hash, drawn when the index is first used */
} mp_strindex;

/* Position of key, or -1. */
int mp_strindex_find(const mp_strindex *x, const char *key, mp_strindex_key get, const void *ctx);
/* Index position i (its key is get(ctx, i); the caller has checked it is absent). */
void mp_strindex_add(mp_strindex *x, int i, mp_strindex_key get, const void *ctx);
void mp_strindex_free(mp_strindex *x);

#endif
