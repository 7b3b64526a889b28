/* view/cache.c — the tile cache: encoded tiles by key, least recently used evicted past a byte
 * budget. One mutex; entries are copied in and out, so a tile being sent is never freed under
 * the sender. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/util.h"
#include "view/internal.h"

typedef struct entry {
    struct entry *prev, *next; /* LRU list: head = newest */
    struct entry *chain;       /* hash bucket */
    uint64_t h;
    char *key;
    view_bytes b;
} entry;

struct view_cache {
    pthread_mutex_t mu;
    size_t budget, bytes;
    entry **bucket;
    size_t nbucket, count;
    entry *head, *tail;
    uint64_t hits, misses;
};

view_cache *view_cache_new(size_t budget)
{
    view_cache *c = mp_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->budget = budget;
    c->nbucket = 4096;
    c->bucket = mp_xcalloc(c->nbucket, sizeof *c->bucket);
    return c;
}

static void unlink_lru(view_cache *c, entry *e)
{
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(view_cache *c, entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static entry **find(view_cache *c, const char *key, uint64_t h)
{
    entry **p = &c->bucket[h % c->nbucket];
    while (*p && !((*p)->h == h && !strcmp((*p)->key, key))) p = &(*p)->chain;
    return p;
}

static void drop(view_cache *c, entry *e)
{
    entry **p = find(c, e->key, e->h);
    *p = e->chain;
    unlink_lru(c, e);
    c->bytes -= e->b.len + strlen(e->key);
    c->count--;
    free(e->key);
    free(e->b.data);
    free(e);
}

static void grow(view_cache *c)
{
    size_t n = c->nbucket * 2;
    entry **nb = mp_xcalloc(n, sizeof *nb);
    for (size_t i = 0; i < c->nbucket; i++)
        for (entry *e = c->bucket[i], *next; e; e = next) {
            next = e->chain;
            e->chain = nb[e->h % n];
            nb[e->h % n] = e;
        }
    free(c->bucket);
    c->bucket = nb;
    c->nbucket = n;
}

int view_cache_get(view_cache *c, const char *key, view_bytes *out)
{
    uint64_t h = XXH3_64bits(key, strlen(key));
    pthread_mutex_lock(&c->mu);
    entry *e = *find(c, key, h);
    if (!e) {
        c->misses++;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->hits++;
    unlink_lru(c, e);
    push_front(c, e);
    out->len = e->b.len;
    out->mime = e->b.mime;
    out->from_thumb = e->b.from_thumb;
    out->data = mp_xmalloc(e->b.len ? e->b.len : 1);
    memcpy(out->data, e->b.data, e->b.len);
    pthread_mutex_unlock(&c->mu);
    return 1;
}

void view_cache_put(view_cache *c, const char *key, const view_bytes *b)
{
    size_t cost = b->len + strlen(key);
    if (cost > c->budget / 4) return; /* one entry never empties the cache */
    uint64_t h = XXH3_64bits(key, strlen(key));
    pthread_mutex_lock(&c->mu);
    if (*find(c, key, h)) { /* another thread rendered it meanwhile */
        pthread_mutex_unlock(&c->mu);
        return;
    }
    while (c->tail && c->bytes + cost > c->budget) drop(c, c->tail);
    entry *e = mp_xcalloc(1, sizeof *e);
    e->h = h;
    e->key = mp_xstrdup(key);
    e->b.len = b->len;
    e->b.mime = b->mime;
    e->b.from_thumb = b->from_thumb;
    e->b.data = mp_xmalloc(b->len ? b->len : 1);
    memcpy(e->b.data, b->data, b->len);
    entry **p = &c->bucket[h % c->nbucket];
    e->chain = *p;
    *p = e;
    push_front(c, e);
    c->bytes += cost;
    if (++c->count > c->nbucket) grow(c);
    pthread_mutex_unlock(&c->mu);
}

void view_cache_stats(view_cache *c, uint64_t *hits, uint64_t *misses, size_t *bytes)
{
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

void view_cache_free(view_cache *c)
{
    if (!c) return;
    while (c->head) drop(c, c->head);
    free(c->bucket);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
