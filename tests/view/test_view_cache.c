/* tests/view/test_view_cache.c — view/cache.c, the viewer's tile cache: a hit returns a copy of
 * the bytes stored, the least recently used entry goes first, the byte budget holds after every
 * store, an entry past a quarter of the budget is not kept, the table grows past its first size,
 * and several threads storing and fetching at once always get the bytes of the key they asked
 * for (run under the ASan build too). */
#include <pthread.h>
#include <stdint.h>

#include "tests/test.h"
#include "view/internal.h"

/* the bytes of key k: a length and a pattern both from k, so a mix-up shows */
static size_t val_len(int k) { return 40 + (size_t)(k * 2654435761u % 200); }

static void val_fill(int k, unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(k * 31 + i * 7);
}

static int val_ok(int k, const view_bytes *b)
{
    if (b->len != val_len(k) || strcmp(b->mime, "image/jpeg")) return 0;
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] != (unsigned char)(k * 31 + i * 7)) return 0;
    return 1;
}

static void put(view_cache *c, int k)
{
    char key[32];
    snprintf(key, sizeof key, "0/s0/12/%d_0.jpeg", k);
    unsigned char buf[256];
    view_bytes b = {buf, val_len(k), "image/jpeg", 0};
    val_fill(k, buf, b.len);
    view_cache_put(c, key, &b);
}

/* 1 and the check of its bytes, or 0 */
static int has(view_cache *c, int k)
{
    char key[32];
    snprintf(key, sizeof key, "0/s0/12/%d_0.jpeg", k);
    view_bytes b = {0};
    if (!view_cache_get(c, key, &b)) return 0;
    int ok = val_ok(k, &b);
    free(b.data);
    return ok ? 1 : -1;
}

static size_t bytes_of(view_cache *c)
{
    uint64_t h, m;
    size_t n;
    view_cache_stats(c, &h, &m, &n);
    return n;
}

#define NTHREADS 8
#define NOPS 20000
#define NKEYS 400
typedef struct {
    view_cache *c;
    unsigned seed;
    int gets, bad;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < NOPS; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        int k = (int)((w->seed >> 8) % NKEYS);
        if ((w->seed >> 4) & 1) put(w->c, k);
        else {
            w->gets++;
            w->bad += has(w->c, k) < 0;
        }
    }
    return NULL;
}

int main(void)
{
    t_case = "a hit is a copy of the bytes stored";
    view_cache *c = view_cache_new(1 << 20);
    unsigned char px[100];
    for (int i = 0; i < 100; i++) px[i] = (unsigned char)(i * 13);
    view_bytes in = {px, sizeof px, "image/png", 1}, out = {0};
    CHECK_INT(view_cache_get(c, "0/s0/1/0_0.png", &out), 0);
    view_cache_put(c, "0/s0/1/0_0.png", &in);
    px[0] ^= 0xff; /* the cache kept its own copy */
    CHECK_INT(view_cache_get(c, "0/s0/1/0_0.png", &out), 1);
    CHECK_INT(out.len, 100);
    CHECK_STR(out.mime, "image/png");
    CHECK_INT(out.from_thumb, 1);
    CHECK(out.data != px && out.data[0] == 0 && !memcmp(out.data + 1, px + 1, 99));
    out.data[5] ^= 0xff; /* the caller's copy is its own too */
    free(out.data);
    CHECK_INT(view_cache_get(c, "0/s0/1/0_0.png", &out), 1);
    CHECK_INT(out.data[5], (unsigned char)(5 * 13));
    free(out.data);
    CHECK_INT(view_cache_get(c, "0/s0/1/0_0.jpeg", &out), 0); /* another key */
    size_t before = bytes_of(c);
    CHECK_INT(before, 100 + strlen("0/s0/1/0_0.png"));
    view_cache_put(c, "0/s0/1/0_0.png", &in); /* stored again: still one entry */
    CHECK_INT(bytes_of(c), before);
    view_bytes empty = {px, 0, "image/png", 0};
    view_cache_put(c, "0/empty", &empty);
    CHECK_INT(view_cache_get(c, "0/empty", &out), 1);
    CHECK(out.len == 0 && out.data != NULL);
    free(out.data);
    uint64_t hits, misses;
    size_t nb;
    view_cache_stats(c, &hits, &misses, &nb);
    CHECK_INT(hits, 3);
    CHECK_INT(misses, 2);
    view_cache_free(c);

    t_case = "least recently used goes first";
    /* six entries of the same cost (100 bytes + a 2-byte key); room for exactly four */
    c = view_cache_new(4 * 102);
    unsigned char same[100];
    char k6[6][3] = {"k0", "k1", "k2", "k3", "k4", "k5"};
    view_bytes e = {same, sizeof same, "image/jpeg", 0};
    for (int k = 0; k < 4; k++) {
        memset(same, k, sizeof same);
        view_cache_put(c, k6[k], &e);
    }
    CHECK_INT(bytes_of(c), 4 * 102);
    CHECK_INT(view_cache_get(c, k6[0], &out), 1); /* 0 is now the newest: 1 the oldest */
    CHECK_INT(out.data[0], 0);
    free(out.data);
    memset(same, 4, sizeof same);
    view_cache_put(c, k6[4], &e);
    CHECK_INT(bytes_of(c), 4 * 102);
    CHECK_INT(view_cache_get(c, k6[1], &out), 0);
    /* oldest first: 2 3 0 4; touching 2 leaves 3 the oldest */
    CHECK_INT(view_cache_get(c, k6[2], &out), 1);
    CHECK_INT(out.data[99], 2);
    free(out.data);
    memset(same, 5, sizeof same);
    view_cache_put(c, k6[5], &e);
    CHECK_INT(view_cache_get(c, k6[3], &out), 0);
    int kept4 = 0;
    for (int k = 0; k < 6; k++)
        if (view_cache_get(c, k6[k], &out)) {
            CHECK_INT(out.data[0], k);
            kept4 += k == 0 || k == 2 || k == 4 || k == 5;
            free(out.data);
        }
    CHECK_INT(kept4, 4);
    CHECK_INT(bytes_of(c), 4 * 102);
    view_cache_free(c);

    t_case = "the byte bound";
    c = view_cache_new(4000);
    for (int k = 0; k < 500; k++) {
        put(c, k % 97);
        if (bytes_of(c) > 4000) {
            CHECK(bytes_of(c) <= 4000);
            break;
        }
    }
    size_t kept = bytes_of(c);
    CHECK(kept > 4000 - 300); /* full, within one entry */
    unsigned char big[1100];
    memset(big, 7, sizeof big);
    view_bytes b = {big, sizeof big, "image/jpeg", 0}; /* past a quarter of the budget */
    view_cache_put(c, "0/big", &b);
    CHECK_INT(view_cache_get(c, "0/big", &out), 0);
    CHECK_INT(bytes_of(c), kept); /* and it evicted nothing */
    view_cache_free(c);

    t_case = "the table grows";
    c = view_cache_new((size_t)64 << 20);
    for (int k = 0; k < 12000; k++) put(c, k); /* three times the first 4096 buckets */
    int found = 0;
    for (int k = 0; k < 12000; k++) found += has(c, k) == 1;
    CHECK_INT(found, 12000);
    view_cache_free(c);

    t_case = "threads";
    /* a budget of about a quarter of the keys: constant eviction under contention */
    c = view_cache_new(NKEYS * 140 / 4);
    worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){c, 17u + 7919u * (unsigned)i, 0, 0};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    int gets = 0, bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        gets += w[i].gets;
        bad += w[i].bad;
    }
    CHECK_INT(bad, 0);
    view_cache_stats(c, &hits, &misses, &nb);
    CHECK_INT(hits + misses, gets);
    CHECK(hits > 0 && misses > 0);
    CHECK(nb <= (size_t)NKEYS * 140 / 4);
    /* what is left is intact */
    int left = 0;
    for (int k = 0; k < NKEYS; k++) {
        int h = has(c, k);
        CHECK(h >= 0);
        left += h == 1;
    }
    CHECK(left > 0);
    fprintf(stderr, "threads: %d gets, %llu hits, %d entries left in %zu bytes\n", gets, (unsigned long long)hits,
            left, nb);
    view_cache_free(c);
    fprintf(stderr, "%d checks, %d failed\n", t_checks, t_fail);
    return t_fail ? 1 : 0;
}
