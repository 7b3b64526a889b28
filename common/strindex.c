/* common/strindex.c — see strindex.h. Keys are hashed with XXH3 under a seed drawn per index,
 * so a file cannot be crafted to make every name collide. */
#include "common/strindex.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/util.h"

static uint32_t hash(const mp_strindex *x, const char *k) { return (uint32_t)XXH3_64bits_withSeed(k, strlen(k), x->seed); }

int mp_strindex_find(const mp_strindex *x, const char *key, mp_strindex_key get, const void *ctx)
{
    if (!x->cap) return -1;
    for (uint32_t h = hash(x, key) & (x->cap - 1);; h = (h + 1) & (x->cap - 1)) {
        int32_t s = x->slot[h];
        if (!s) return -1;
        if (!strcmp(get(ctx, s - 1), key)) return s - 1;
    }
}

static void put(mp_strindex *x, int i, const char *key)
{
    uint32_t h = hash(x, key) & (x->cap - 1);
    while (x->slot[h]) h = (h + 1) & (x->cap - 1);
    x->slot[h] = i + 1;
}

void mp_strindex_add(mp_strindex *x, int i, mp_strindex_key get, const void *ctx)
{
    if (2 * (uint64_t)(x->n + 1) > x->cap) { /* keep the load under a half */
        if (!x->cap) { /* any value works; it differs between runs and indexes */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            x->seed = XXH3_64bits_withSeed(&x, sizeof x, (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32);
        }
        uint32_t cap = x->cap ? 2 * x->cap : 16;
        int32_t *old = x->slot;
        uint32_t oldcap = x->cap;
        x->slot = mp_xcalloc(cap, sizeof *x->slot);
        x->cap = cap;
        for (uint32_t j = 0; j < oldcap; j++)
            if (old[j]) put(x, old[j] - 1, get(ctx, old[j] - 1));
        free(old);
    }
    put(x, i, get(ctx, i));
    x->n++;
}

void mp_strindex_free(mp_strindex *x)
{
    free(x->slot);
    memset(x, 0, sizeof *x);
}
