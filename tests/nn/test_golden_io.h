/* tests/nn/test_golden_io.h — reader for the engine's golden files (format documented in
 * tools/golden_nn.py) and the comparison that prints the first values and the worst
 * difference on failure. Header-only: each golden test program includes it once. */
#ifndef TEST_GOLDEN_IO_H
#define TEST_GOLDEN_IO_H

#include <stdint.h>

#include "common/util.h"
#include "tests/test.h"

typedef struct {
    char name[128];
    int dtype, ndim;
    uint32_t dims[8];
    size_t n;
    const void *data;
} gold_t;

typedef struct {
    uint8_t *buf;
    size_t len;
    gold_t *t;
    int n;
} gold_file;

/* Load tests/nn/golden/<fname> from $MAGPIE_SRC (or the source tree the binary was built from). */
static int gold_load(gold_file *g, const char *fname)
{
    const char *src = getenv("MAGPIE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/nn/golden/%s", src ? src : ".", fname);
    memset(g, 0, sizeof *g);
    if (mp_read_file(path, &g->buf, &g->len)) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    if (g->len < 12 || memcmp(g->buf, "MPGOLD1\0", 8)) {
        fprintf(stderr, "%s: not a golden file\n", path);
        return -1;
    }
    uint32_t cnt;
    memcpy(&cnt, g->buf + 8, 4);
    g->t = calloc(cnt ? cnt : 1, sizeof(gold_t));
    size_t off = 12;
    for (uint32_t i = 0; i < cnt; i++) {
        gold_t *t = &g->t[i];
        uint32_t nl, dt, nd;
        memcpy(&nl, g->buf + off, 4), off += 4;
        if (nl >= sizeof t->name || off + nl + 8 > g->len) return -1;
        memcpy(t->name, g->buf + off, nl), off += nl;
        memcpy(&dt, g->buf + off, 4), memcpy(&nd, g->buf + off + 4, 4), off += 8;
        if (nd > 8) return -1;
        t->dtype = (int)dt, t->ndim = (int)nd, t->n = 1;
        for (uint32_t d = 0; d < nd; d++) memcpy(&t->dims[d], g->buf + off, 4), off += 4, t->n *= t->dims[d];
        size_t es = dt == 2 ? 8 : 4;
        if (off + t->n * es > g->len) return -1;
        t->data = g->buf + off;
        off += t->n * es;
        g->n++;
    }
    return 0;
}

static void gold_free(gold_file *g)
{
    free(g->buf);
    free(g->t);
    memset(g, 0, sizeof *g);
}

static const gold_t *gold_get(const gold_file *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    fprintf(stderr, "golden tensor %s missing\n", name);
    abort(); /* a missing reference is a broken test, not a failed check */
}
/* data is 4-byte aligned in the file only by luck: copy out */
static float *gold_f(const gold_file *g, const char *name, size_t *n)
{
    const gold_t *t = gold_get(g, name);
    float *p = malloc(t->n * sizeof(float) + 4);
    if (t->dtype == 2)
        for (size_t i = 0; i < t->n; i++) {
            double d;
            memcpy(&d, (const uint8_t *)t->data + 8 * i, 8);
            p[i] = (float)d;
        }
    else
        memcpy(p, t->data, t->n * 4);
    if (n) *n = t->n;
    return p;
}
static double gold_d(const gold_file *g, const char *name, size_t i)
{
    const gold_t *t = gold_get(g, name);
    double d;
    memcpy(&d, (const uint8_t *)t->data + 8 * i, 8);
    return d;
}
static int32_t *gold_i(const gold_file *g, const char *name, size_t *n)
{
    const gold_t *t = gold_get(g, name);
    int32_t *p = malloc(t->n * 4 + 4);
    memcpy(p, t->data, t->n * 4);
    if (n) *n = t->n;
    return p;
}

#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-4
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3

/* |got − ref| ≤ atol + rtol·|ref| everywhere; on failure print the first values and the worst. */
static void gold_cmp(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol)
{
    double worst = 0;
    size_t wi = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= atol + rtol * fabs(ref[i]))) {
            bad++;
            if (e > worst || worst == 0) worst = e, wi = i;
        }
    }
    t_checks++;
    if (bad) {
        t_fail++;
        fprintf(stderr, "FAIL [%s] %s: %zu of %zu differ, worst at %zu: got %.8g ref %.8g\n   got:", t_case, what, bad,
                n, wi, got[wi], ref[wi]);
        for (size_t i = 0; i < n && i < 5; i++) fprintf(stderr, " %.7g", got[i]);
        fprintf(stderr, "\n   ref:");
        for (size_t i = 0; i < n && i < 5; i++) fprintf(stderr, " %.7g", ref[i]);
        fprintf(stderr, "\n");
    }
}

/* The weights both sides generate (tools/golden_nn.py synth). */
__attribute__((unused)) static void gold_synth(float *v, size_t n, int t, double bound)
{
    for (size_t j = 0; j < n; j++) {
        uint64_t h = ((uint64_t)j * 2654435761ULL + (uint64_t)t * 40503ULL + 12345ULL) % 4294967296ULL;
        v[j] = (float)(bound * ((double)(h % 2001) - 1000.0) / 1000.0);
    }
}

#endif
