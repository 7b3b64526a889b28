/* tests/nn/test_kernels.c — every kernel level this CPU runs (MAGPIE_KERNELS: avx512, avx2,
 * generic) gives the results of the plain references in nn/ref.c, forward and backward, for
 * every op (refs_* cases, over shapes that reach each path), and the levels agree with each other: the
 * small-map gather convolution (bit for bit: it only moves floats), the stem's direct
 * convolution (AVX2 and AVX-512 bit for bit, both against the im2col + GEMM path of the generic
 * level within rounding), the stem's 3x3/2 max-pool (values and argmax exactly, ties and NaNs;
 * with several NaNs in a window the argmax is one of them, the same at every level),
 * and the per-level loops of GroupNorm, ReLU and residual adds. On a CPU or build with fewer
 * levels the missing ones are named and the others still checked against the reference. */
#include "tests/test.h"

#include <stdint.h>

#include "common/rng.h"
#include "nn/ops.h"
#include "nn/ref.h"

static int levels[3], nlevels;

static float *randv(size_t n, mp_rng *r, int quant)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = quant ? (float)(mp_rng_below(r, 5)) - 2.0f : (float)mp_rng_normal(r); /* quant: many ties */
    return v;
}

/* the largest |a - b| over n */
static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return d; /* a NaN counts (a later finite difference must not replace it) */
        if (d > m) m = d;
    }
    return m;
}

/* got within tol·(1 + |ref|) of ref everywhere (NaN only where ref is NaN); says where not */
static int close_to(const char *what, const char *lv, const char *tensor, const float *got, const float *ref, size_t n,
                    double tol)
{
    for (size_t i = 0; i < n; i++) {
        int nan_both = got[i] != got[i] && ref[i] != ref[i];
        if (!nan_both && !(fabs((double)got[i] - ref[i]) <= tol * (1 + fabs(ref[i])))) {
            fprintf(stderr, "%s at %s: %s[%zu] = %.8g, reference %.8g\n", what, lv, tensor, i, got[i], ref[i]);
            return 0;
        }
    }
    return 1;
}

/* forward (and backward for din, dw, db) at every level; checks against the reference and across levels */
static void conv_case(const char *what, nn_conv_dims d, int exact_all, int backward)
{
    mp_rng r;
    mp_rng_seed(&r, (uint64_t)d.H * 131 + d.C);
    int OH = nn_conv_out(d.H, d.KH, d.sh, d.ph), OW = nn_conv_out(d.W, d.KW, d.sw, d.pw);
    size_t ni = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.OC * d.C * d.KH * d.KW, no = (size_t)d.N * d.OC * OH * OW;
    float *x = randv(ni, &r, 0), *w = randv(nw, &r, 0), *b = randv(d.OC, &r, 0), *dy = randv(no, &r, 0);
    float *ref = malloc(no * sizeof(float)), *ws = calloc(nn_conv2d_workspace(&d) + 1, sizeof(float));
    nn_ref_conv2d_forward(ref, x, w, b, &d);
    float *rdx = calloc(ni, sizeof(float)), *rdw = calloc(nw, sizeof(float)), *rdb = calloc(d.OC, sizeof(float));
    if (backward) nn_ref_conv2d_backward(rdx, rdw, rdb, dy, x, w, &d);
    float *out[3], *dx[3], *dw[3], *db[3];
    for (int li = 0; li < nlevels; li++) {
        CHECK_INT(nn_kernels_set(levels[li]), levels[li]);
        out[li] = malloc(no * sizeof(float));
        dx[li] = calloc(ni, sizeof(float));
        dw[li] = calloc(nw, sizeof(float));
        db[li] = calloc(d.OC, sizeof(float));
        /* the workspace holds whatever the last op left: no path may count on zeros there */
        for (size_t i = 0; i <= nn_conv2d_workspace(&d); i++) ws[i] = NAN;
        nn_conv2d_forward(out[li], ws, x, w, b, &d);
        if (backward) nn_conv2d_backward(dx[li], dw[li], db[li], ws, dy, x, w, &d);
        double e = maxdiff(out[li], ref, no);
        if (!(e <= 1e-4)) fprintf(stderr, "%s at %s: max |out - ref| %g\n", what, nn_kernels_name(levels[li]), e);
        CHECK(e <= 1e-4);
        if (backward) {
            const char *lv = nn_kernels_name(levels[li]);
            CHECK(close_to(what, lv, "din", dx[li], rdx, ni, 1e-4));
            CHECK(close_to(what, lv, "dweight", dw[li], rdw, nw, 1e-4));
            CHECK(close_to(what, lv, "dbias", db[li], rdb, d.OC, 1e-4));
        }
    }
    for (int li = 1; li < nlevels; li++) {
        /* exact_all: the levels differ only in how floats are moved; else AVX-512 and AVX2 (levels 2
         * and 1) share the arithmetic and the generic level is within rounding */
        int exact = exact_all || levels[li] >= NN_KERNELS_AVX2;
        double e = maxdiff(out[li], out[0], no), ex = maxdiff(dx[li], dx[0], ni), ew = maxdiff(dw[li], dw[0], nw);
        if (exact ? (e != 0 || ex != 0 || ew != 0) : (e > 1e-4 || ex > 1e-4 || ew > 1e-3))
            fprintf(stderr, "%s: %s vs %s: out %g, dx %g, dw %g\n", what, nn_kernels_name(levels[li]),
                    nn_kernels_name(levels[0]), e, ex, ew);
        CHECK(exact ? e == 0 : e <= 1e-4);
        CHECK(exact ? ex == 0 && ew == 0 : ex <= 1e-4 && ew <= 1e-3);
    }
    for (int li = 0; li < nlevels; li++) free(out[li]), free(dx[li]), free(dw[li]), free(db[li]);
    free(x), free(w), free(b), free(dy), free(ref), free(ws), free(rdx), free(rdw), free(rdb);
}

TEST(conv_small_maps)
{
    /* hw ≤ 256 and several images per GEMM: the index-table gather (AVX-512 / AVX2 / scalar) */
    conv_case("3x3 on 6x6", (nn_conv_dims){24, 16, 6, 6, 8, 3, 3, 1, 1, 1, 1}, 1, 1);
    conv_case("3x3 on 7x7, 4 channels (too few for the direct kernel)", (nn_conv_dims){24, 4, 7, 7, 8, 3, 3, 1, 1, 1, 1}, 1, 1);
    conv_case("3x3/2 on 14x14", (nn_conv_dims){12, 8, 14, 14, 16, 3, 3, 2, 2, 1, 1}, 1, 1);
    /* 14x14 out: the forward batches im2col across images, the backward keeps the table */
    conv_case("3x3 on 14x14", (nn_conv_dims){7, 8, 14, 14, 16, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("1x1/2 on 31x31", (nn_conv_dims){9, 8, 31, 31, 16, 1, 1, 2, 2, 0, 0}, 0, 1);
    conv_case("3x3 on 1x1 (8 taps dropped)", (nn_conv_dims){40, 32, 1, 1, 16, 3, 3, 1, 1, 1, 1}, 1, 1);
    conv_case("3x3 on 2x2, 5 channels (gather tail)", (nn_conv_dims){33, 5, 2, 2, 8, 3, 3, 1, 1, 1, 1}, 1, 1);
}

TEST(conv_direct3)
{
    /* 3x3 stride 1, ≥ 8 channels, ≥ 48 output pixels: the direct convolution at avx2 and avx512
     * (tiles of 32 / 16 pixels along the flattened map, partial last tiles, several chunks) */
    conv_case("direct 3x3 on 7x7 (a 28 px ResNet's first stage)", (nn_conv_dims){24, 16, 7, 7, 8, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("direct 3x3 on 8x8", (nn_conv_dims){3, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("direct 3x3 on 13x9", (nn_conv_dims){2, 8, 13, 9, 24, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("direct 3x3 on 37x61 (two chunks)", (nn_conv_dims){1, 8, 37, 61, 8, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("direct 3x3 on 20x20, 40 channels", (nn_conv_dims){2, 40, 20, 20, 32, 3, 3, 1, 1, 1, 1}, 0, 1);
    /* other shapes with ≥ 64 output pixels: im2col bands into the same kernel */
    conv_case("3x3/2 on 32x32", (nn_conv_dims){3, 16, 32, 32, 24, 3, 3, 2, 2, 1, 1}, 0, 1);
    conv_case("3x3/2 on 29x35, 5 channels", (nn_conv_dims){2, 5, 29, 35, 8, 3, 3, 2, 2, 1, 1}, 0, 1);
    conv_case("5x5 on 12x12 (one band)", (nn_conv_dims){2, 6, 12, 12, 16, 5, 5, 1, 1, 2, 2}, 0, 1);
    conv_case("3x3/2 on 130x130, 40 channels (several bands)", (nn_conv_dims){1, 40, 130, 130, 8, 3, 3, 2, 2, 1, 1}, 0, 1);
}

TEST(conv_stem)
{
    /* few channels, stride 2: the direct convolution at avx2 and avx512, in tiles of 16 output pixels */
    conv_case("stem 28 px", (nn_conv_dims){5, 3, 28, 28, 32, 7, 7, 2, 2, 3, 3}, 0, 1);
    conv_case("stem 64 px (two whole tiles a row)", (nn_conv_dims){2, 3, 64, 64, 32, 7, 7, 2, 2, 3, 3}, 0, 1);
    conv_case("stem 75x41 (a partial last tile, odd output rows)", (nn_conv_dims){2, 3, 75, 41, 16, 7, 7, 2, 2, 3, 3}, 0, 1);
    conv_case("stem 33x70, 2 channels, 5x5", (nn_conv_dims){3, 2, 33, 70, 8, 5, 5, 2, 2, 2, 2}, 0, 1);
    conv_case("stem 32 px (16-pixel rows)", (nn_conv_dims){3, 3, 32, 32, 32, 7, 7, 2, 2, 3, 3}, 0, 1);
    conv_case("stem 12 px (6-pixel rows)", (nn_conv_dims){4, 3, 12, 12, 16, 7, 7, 2, 2, 3, 3}, 0, 1);
    conv_case("stem 19x23, 1 channel", (nn_conv_dims){2, 1, 19, 23, 8, 3, 3, 2, 2, 1, 1}, 0, 1);
}

/* 3x3/2/1 max-pool in scan order: the first maximum wins, a NaN wins over numbers */
static void maxpool_ref(float *out, int32_t *am, const float *x, int H, int W)
{
    int OH = nn_conv_out(H, 3, 2, 1), OW = nn_conv_out(W, 3, 2, 1);
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            float best = 0;
            int bi = -1;
            for (int h = 2 * oh - 1; h <= 2 * oh + 1; h++)
                for (int w = 2 * ow - 1; w <= 2 * ow + 1; w++) {
                    if (h < 0 || h >= H || w < 0 || w >= W) continue;
                    float v = x[h * W + w];
                    if (bi < 0 || v > best || (v != v && best == best)) best = v, bi = h * W + w;
                }
            out[oh * OW + ow] = best;
            am[oh * OW + ow] = bi;
        }
}

static int same_float(float a, float b) { return a == b || (a != a && b != b); }

TEST(maxpool_stem)
{
    static const int sizes[][2] = {{2, 2}, {3, 5}, {7, 7}, {14, 14}, {15, 17}, {16, 16}, {17, 33}, {56, 40}, {112, 9}};
    mp_rng r;
    mp_rng_seed(&r, 9);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int H = sizes[si][0], W = sizes[si][1], OH = nn_conv_out(H, 3, 2, 1), OW = nn_conv_out(W, 3, 2, 1), P = 3;
        size_t ni = (size_t)P * H * W, no = (size_t)P * OH * OW;
        float *x = randv(ni, &r, 1); /* values in {-2..2}: ties everywhere */
        for (size_t i = 0; i < ni; i += 7 + i % 5) x[i] = NAN;
        float *ref = malloc(no * sizeof(float)), *o = malloc(no * sizeof(float)), *o2 = malloc(no * sizeof(float));
        int32_t *ram = malloc(no * sizeof(int32_t)), *am = malloc(no * sizeof(int32_t)), *am0 = malloc(no * sizeof(int32_t));
        for (int p = 0; p < P; p++) maxpool_ref(ref + (size_t)p * OH * OW, ram + (size_t)p * OH * OW, x + (size_t)p * H * W, H, W);
        for (int li = 0; li < nlevels; li++) {
            nn_kernels_set(levels[li]);
            nn_maxpool_forward(o, am, x, 1, P, H, W, 3, 2, 1);
            nn_maxpool_forward(o2, NULL, x, 1, P, H, W, 3, 2, 1);
            int bad = 0;
            for (size_t i = 0; i < no; i++) {
                /* several NaNs in a window: any of them may be the argmax (the levels must still agree) */
                const float *plane = x + i / (OH * OW) * H * W;
                int oh = (int)(i % (OH * OW)) / OW, ow = (int)(i % OW), ah = am[i] / W, aw = am[i] % W;
                int nan_ok = ref[i] != ref[i] && am[i] >= 0 && am[i] < H * W && plane[am[i]] != plane[am[i]] &&
                             ah >= 2 * oh - 1 && ah <= 2 * oh + 1 && aw >= 2 * ow - 1 && aw <= 2 * ow + 1;
                if (li > 0 && am[i] != am0[i]) nan_ok = 0;
                if (!same_float(o[i], ref[i]) || (am[i] != ram[i] && !nan_ok) || !same_float(o2[i], ref[i])) {
                    if (!bad++)
                        fprintf(stderr, "maxpool %dx%d at %s: output %zu: %g (argmax %d), no-argmax %g; reference %g (%d)\n",
                                H, W, nn_kernels_name(levels[li]), i, o[i], am[i], o2[i], ref[i], ram[i]);
                }
            }
            CHECK_INT(bad, 0);
            if (li == 0) memcpy(am0, am, no * sizeof(int32_t));
        }
        free(x), free(ref), free(o), free(o2), free(ram), free(am), free(am0);
    }
}

/* GroupNorm (+ReLU) fused with the 3x3/2/1 max-pool: the same bits as the two ops in turn */
TEST(groupnorm_maxpool)
{
    enum { N = 2, C = 8, H = 17, W = 12, G = 4 };
    int OH = nn_conv_out(H, 3, 2, 1), OW = nn_conv_out(W, 3, 2, 1);
    size_t n = (size_t)N * C * H * W, no = (size_t)N * C * OH * OW;
    mp_rng r;
    mp_rng_seed(&r, 21);
    float *x = randv(n, &r, 0), *gm = randv(C, &r, 0), *bt = randv(C, &r, 0);
    float *y = malloc(n * sizeof(float)), *o1 = malloc(no * sizeof(float)), *o2 = malloc(no * sizeof(float));
    float *tmp = malloc((size_t)(C / G) * H * W * sizeof(float));
    float m1[N * G], r1[N * G], m2[N * G], r2[N * G];
    for (int li = 0; li < nlevels; li++)
        for (int relu = 0; relu < 2; relu++) {
            nn_kernels_set(levels[li]);
            nn_groupnorm_forward(y, m1, r1, x, gm, bt, N, C, H * W, G, 1e-5f, relu);
            nn_maxpool_forward(o1, NULL, y, N, C, H, W, 3, 2, 1);
            nn_groupnorm_maxpool_forward(o2, m2, r2, tmp, x, gm, bt, N, C, H, W, G, 1e-5f, relu);
            CHECK(memcmp(o1, o2, no * sizeof(float)) == 0);
            CHECK(memcmp(m1, m2, sizeof m1) == 0 && memcmp(r1, r2, sizeof r1) == 0);
        }
    free(x), free(gm), free(bt), free(y), free(o1), free(o2), free(tmp);
}

/* the loops compiled per level: GroupNorm (+ReLU) forward/backward, ReLU, residual add */
TEST(vec_loops)
{
    enum { N = 3, C = 64, HW = 37, G = 32 };
    size_t n = (size_t)N * C * HW;
    mp_rng r;
    mp_rng_seed(&r, 4);
    float *x = randv(n, &r, 0), *y = randv(n, &r, 0), *dy = randv(n, &r, 0), *gm = randv(C, &r, 0), *bt = randv(C, &r, 0);
    float *out[3], *dx[3], *dg[3], *add[3], mean[N * G], rstd[N * G];
    for (int li = 0; li < nlevels; li++) {
        nn_kernels_set(levels[li]);
        out[li] = malloc(n * sizeof(float)), dx[li] = calloc(n, sizeof(float)), dg[li] = calloc(2 * C, sizeof(float));
        add[li] = malloc(n * sizeof(float));
        nn_groupnorm_forward(out[li], mean, rstd, x, gm, bt, N, C, HW, G, 1e-5f, 1);
        nn_groupnorm_backward(dx[li], dg[li], dg[li] + C, dy, x, out[li], mean, rstd, gm, N, C, HW, G);
        nn_add_forward(add[li], x, y, n, 1);
        nn_relu_backward(dx[li], dy, add[li], n);
    }
    /* the reference for the forward: per group mean and variance in double */
    double worst = 0;
    for (int s = 0; s < N * G; s++) {
        const float *p = x + (size_t)s * (C / G) * HW;
        double m = 0, v = 0;
        for (int i = 0; i < (C / G) * HW; i++) m += p[i];
        m /= (C / G) * HW;
        for (int i = 0; i < (C / G) * HW; i++) v += (p[i] - m) * (p[i] - m);
        v /= (C / G) * HW;
        for (int i = 0; i < (C / G) * HW; i++) {
            int c = (s % G) * (C / G) + i / HW;
            double e = (p[i] - m) / sqrt(v + 1e-5) * gm[c] + bt[c];
            e = e > 0 ? e : 0;
            double d = fabs(e - out[0][(size_t)s * (C / G) * HW + i]);
            if (d > worst) worst = d;
        }
    }
    CHECK(worst < 1e-4);
    for (size_t i = 0; i < n; i++) {
        float a = x[i] + y[i];
        if (add[0][i] != (a > 0 ? a : 0)) {
            CHECK(0);
            break;
        }
    }
    for (int li = 1; li < nlevels; li++) {
        double e = maxdiff(out[li], out[0], n), ex = maxdiff(dx[li], dx[0], n), eg = maxdiff(dg[li], dg[0], 2 * C);
        if (e > 1e-5 || ex > 1e-4 || eg > 1e-3)
            fprintf(stderr, "vec loops %s vs %s: gn out %g, dx %g, dgamma/dbeta %g\n", nn_kernels_name(levels[li]),
                    nn_kernels_name(levels[0]), e, ex, eg);
        CHECK(e <= 1e-5 && ex <= 1e-4 && eg <= 1e-3);
        CHECK(maxdiff(add[li], add[0], n) == 0);
    }
    for (int li = 0; li < nlevels; li++) free(out[li]), free(dx[li]), free(dg[li]), free(add[li]);
    free(x), free(y), free(dy), free(gm), free(bt);
}

/* the other convolution paths: 1x1 stride 1 (no im2col), per-image im2col on maps of 1024+
 * pixels, grouped images between 256 and 1024 pixels, 1x1 stride 2, no bias in the sums */
TEST(refs_conv)
{
    conv_case("1x1 on 9x9", (nn_conv_dims){3, 16, 9, 9, 8, 1, 1, 1, 1, 0, 0}, 0, 1);
    conv_case("1x1/2 on 15x15", (nn_conv_dims){4, 8, 15, 15, 12, 1, 1, 2, 2, 0, 0}, 0, 1);
    conv_case("3x3 on 20x20 (grouped, no tables)", (nn_conv_dims){5, 6, 20, 20, 7, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("3x3 on 34x33 (per image)", (nn_conv_dims){2, 4, 34, 33, 5, 3, 3, 1, 1, 1, 1}, 0, 1);
    conv_case("5x3/2x1 pad 2x0 on 11x13", (nn_conv_dims){3, 3, 11, 13, 4, 5, 3, 2, 1, 2, 0}, 0, 1);
}

/* one op, every level, against its reference: the ops' outputs and gradients */
#define FOR_LEVELS for (int li = 0; li < nlevels && (nn_kernels_set(levels[li]), 1); li++)
#define LV nn_kernels_name(levels[li])

TEST(refs_norm)
{
    enum { N = 3, C = 12, G = 4 };
    static const int hws[] = {1, 5, 37, 64};
    mp_rng r;
    mp_rng_seed(&r, 21);
    for (size_t h = 0; h < sizeof hws / sizeof hws[0]; h++) {
        int HW = hws[h];
        size_t n = (size_t)N * C * HW;
        float *x = randv(n, &r, 0), *dy = randv(n, &r, 0), *gm = randv(C, &r, 0), *bt = randv(C, &r, 0);
        for (size_t i = 0; i < n; i++) x[i] = 3.0f + 0.5f * x[i]; /* |mean| > std: the centred forms matter */
        float *ro = malloc(n * sizeof(float)), *o = malloc(n * sizeof(float));
        float *rdx = calloc(n, sizeof(float)), *dx = calloc(n, sizeof(float));
        float *rdg = calloc(2 * C, sizeof(float)), *dg = calloc(2 * C, sizeof(float));
        float rm[N * G > C ? N * G : C], rr[N * G > C ? N * G : C], m[N * G > C ? N * G : C], rs[N * G > C ? N * G : C];
        char what[64];
        for (int relu = 0; relu < 2; relu++) {
            snprintf(what, sizeof what, "groupnorm HW %d relu %d", HW, relu);
            memset(rdx, 0, n * sizeof(float)), memset(rdg, 0, 2 * C * sizeof(float));
            nn_ref_groupnorm_forward(ro, rm, rr, x, gm, bt, N, C, HW, G, 1e-5f, relu);
            nn_ref_groupnorm_backward(rdx, rdg, rdg + C, dy, x, relu ? ro : NULL, rm, rr, gm, N, C, HW, G);
            FOR_LEVELS {
                memset(dx, 0, n * sizeof(float)), memset(dg, 0, 2 * C * sizeof(float));
                nn_groupnorm_forward(o, m, rs, x, gm, bt, N, C, HW, G, 1e-5f, relu);
                nn_groupnorm_backward(dx, dg, dg + C, dy, x, relu ? o : NULL, m, rs, gm, N, C, HW, G);
                CHECK(close_to(what, LV, "out", o, ro, n, 1e-4));
                CHECK(close_to(what, LV, "mean", m, rm, N * G, 1e-5));
                CHECK(close_to(what, LV, "rstd", rs, rr, N * G, 1e-4));
                CHECK(close_to(what, LV, "din", dx, rdx, n, 2e-4));
                CHECK(close_to(what, LV, "dgamma/dbeta", dg, rdg, 2 * C, 2e-4));
                /* the _set form writes din: over garbage it gives the same */
                for (size_t i = 0; i < n; i++) dx[i] = 1e6f;
                nn_groupnorm_backward_set(dx, NULL, NULL, dy, x, relu ? o : NULL, m, rs, gm, N, C, HW, G);
                CHECK(close_to(what, LV, "din (set)", dx, rdx, n, 2e-4));
            }
            for (int train = 0; train < 2; train++) {
                snprintf(what, sizeof what, "batchnorm HW %d relu %d train %d", HW, relu, train);
                float rmean[C], rvar[C], rmean2[C], rvar2[C], nbt = 0, nbt2 = 0;
                for (int c = 0; c < C; c++) rmean[c] = rmean2[c] = 0.1f * c, rvar[c] = rvar2[c] = 1.0f + 0.2f * c;
                memset(rdx, 0, n * sizeof(float)), memset(rdg, 0, 2 * C * sizeof(float));
                nn_ref_batchnorm_forward(ro, rm, rr, rmean, rvar, &nbt, x, gm, bt, N, C, HW, 0.1f, 1e-5f, train, relu);
                nn_ref_batchnorm_backward(rdx, rdg, rdg + C, dy, x, relu ? ro : NULL, rm, rr, gm, N, C, HW, train);
                FOR_LEVELS {
                    float rmean3[C], rvar3[C];
                    memcpy(rmean3, rmean2, sizeof rmean3), memcpy(rvar3, rvar2, sizeof rvar3);
                    float nbt3 = nbt2;
                    memset(dx, 0, n * sizeof(float)), memset(dg, 0, 2 * C * sizeof(float));
                    nn_batchnorm_forward(o, m, rs, rmean3, rvar3, &nbt3, x, gm, bt, N, C, HW, 0.1f, 1e-5f, train, relu);
                    nn_batchnorm_backward(dx, dg, dg + C, dy, x, relu ? o : NULL, m, rs, gm, N, C, HW, train);
                    CHECK(close_to(what, LV, "out", o, ro, n, 1e-4));
                    CHECK(close_to(what, LV, "running_mean", rmean3, rmean, C, 1e-5));
                    CHECK(close_to(what, LV, "running_var", rvar3, rvar, C, 1e-5));
                    CHECK(nbt3 == nbt);
                    CHECK(close_to(what, LV, "din", dx, rdx, n, 2e-4));
                    CHECK(close_to(what, LV, "dgamma/dbeta", dg, rdg, 2 * C, 2e-4));
                }
            }
        }
        free(x), free(dy), free(gm), free(bt), free(ro), free(o), free(rdx), free(dx), free(rdg), free(dg);
    }
    /* rows of an L2 norm, one of them zero (the clamp) */
    enum { R = 4, D = 19 };
    float *x = randv(R * D, &r, 0), *dy = randv(R * D, &r, 0), ro[R * D], o[R * D], rn[R], nr[R];
    float rdx[R * D] = {0}, dx[R * D];
    for (int i = 0; i < D; i++) x[2 * D + i] = 0;
    nn_ref_l2norm_forward(ro, rn, x, R, D, 1e-12f);
    nn_ref_l2norm_backward(rdx, dy, ro, rn, R, D, 1e-12f);
    FOR_LEVELS {
        memset(dx, 0, sizeof dx);
        nn_l2norm_forward(o, nr, x, R, D, 1e-12f);
        nn_l2norm_backward(dx, dy, o, nr, R, D, 1e-12f);
        CHECK(close_to("l2norm", LV, "out", o, ro, R * D, 1e-6));
        CHECK(close_to("l2norm", LV, "din", dx, rdx, R * D, 1e-5));
    }
    free(x), free(dy);
}

TEST(refs_pointwise_linear)
{
    mp_rng r;
    mp_rng_seed(&r, 22);
    enum { n = 1000 + 7 }; /* a tail after the vector loops */
    float *a = randv(n, &r, 0), *b = randv(n, &r, 0), *dy = randv(n, &r, 0);
    float *ro = malloc(n * sizeof(float)), *o = malloc(n * sizeof(float));
    float *rda = calloc(n, sizeof(float)), *rdb = calloc(n, sizeof(float)), *da = calloc(n, sizeof(float)),
          *db = calloc(n, sizeof(float));
    nn_ref_relu_forward(ro, a, n);
    nn_ref_relu_backward(rda, dy, ro, n);
    FOR_LEVELS {
        memset(da, 0, n * sizeof(float));
        nn_relu_forward(o, a, n);
        nn_relu_backward(da, dy, o, n);
        CHECK(close_to("relu", LV, "out", o, ro, n, 0));
        CHECK(close_to("relu", LV, "din", da, rda, n, 0));
    }
    for (int relu = 0; relu < 2; relu++) {
        memset(rda, 0, n * sizeof(float)), memset(rdb, 0, n * sizeof(float));
        nn_ref_add_forward(ro, a, b, n, relu);
        nn_ref_add_backward(rda, rdb, dy, ro, n, relu);
        FOR_LEVELS {
            memset(da, 0, n * sizeof(float)), memset(db, 0, n * sizeof(float));
            nn_add_forward(o, a, b, n, relu);
            nn_add_backward(da, db, dy, o, n, relu);
            CHECK(close_to("add", LV, "out", o, ro, n, 0));
            CHECK(close_to("add", LV, "da", da, rda, n, 0));
            CHECK(close_to("add", LV, "db", db, rdb, n, 0));
            for (int i = 0; i < n; i++) da[i] = 7.0f;
            nn_add_backward_set(da, NULL, dy, o, n, relu, 1, 0);
            CHECK(close_to("add (set)", LV, "da", da, rda, n, 0));
        }
    }
    free(a), free(b), free(dy), free(ro), free(o), free(rda), free(rdb), free(da), free(db);
    /* linear: in (N, IN), w (OUT, IN) */
    enum { N = 5, IN = 33, OUT = 9 };
    float *x = randv(N * IN, &r, 0), *w = randv(OUT * IN, &r, 0), *bias = randv(OUT, &r, 0), *g = randv(N * OUT, &r, 0);
    float rl[N * OUT], l[N * OUT], rdx[N * IN] = {0}, dx[N * IN], rdw[OUT * IN] = {0}, dw[OUT * IN], rdbi[OUT] = {0},
                                                                                       dbi[OUT];
    nn_ref_linear_forward(rl, x, w, bias, N, IN, OUT);
    nn_ref_linear_backward(rdx, rdw, rdbi, g, x, w, N, IN, OUT);
    FOR_LEVELS {
        memset(dx, 0, sizeof dx), memset(dw, 0, sizeof dw), memset(dbi, 0, sizeof dbi);
        nn_linear_forward(l, x, w, bias, N, IN, OUT);
        nn_linear_backward(dx, dw, dbi, g, x, w, N, IN, OUT);
        CHECK(close_to("linear", LV, "out", l, rl, N * OUT, 1e-5));
        CHECK(close_to("linear", LV, "din", dx, rdx, N * IN, 1e-5));
        CHECK(close_to("linear", LV, "dweight", dw, rdw, OUT * IN, 1e-5));
        CHECK(close_to("linear", LV, "dbias", dbi, rdbi, OUT, 1e-5));
    }
    free(x), free(w), free(bias), free(g);
}

TEST(refs_pooling)
{
    static const int cfg[][5] = {/* H, W, k, s, p */ {7, 7, 3, 2, 1}, {8, 6, 2, 2, 0}, {9, 11, 3, 1, 1},
                                 {5, 5, 3, 3, 0}, {13, 10, 3, 2, 1}, {1, 1, 3, 2, 1}};
    mp_rng r;
    mp_rng_seed(&r, 23);
    enum { P = 4 };
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        int H = cfg[ci][0], W = cfg[ci][1], k = cfg[ci][2], s = cfg[ci][3], p = cfg[ci][4];
        int OH = nn_conv_out(H, k, s, p), OW = nn_conv_out(W, k, s, p);
        size_t ni = (size_t)P * H * W, no = (size_t)P * OH * OW;
        float *x = randv(ni, &r, 1), *dy = randv(no, &r, 0);
        for (size_t i = 3; i < ni; i += 11) x[i] = NAN;
        float *ro = malloc(no * sizeof(float)), *o = malloc(no * sizeof(float));
        float *rdx = calloc(ni, sizeof(float)), *dx = calloc(ni, sizeof(float));
        int32_t *ram = malloc(no * sizeof(int32_t)), *am = malloc(no * sizeof(int32_t));
        char what[64];
        snprintf(what, sizeof what, "maxpool %dx%d k%d s%d p%d", H, W, k, s, p);
        nn_ref_maxpool_forward(ro, ram, x, 1, P, H, W, k, s, p);
        nn_ref_maxpool_backward(rdx, dy, ram, 1, P, H, W, OH, OW);
        FOR_LEVELS {
            memset(dx, 0, ni * sizeof(float));
            nn_maxpool_forward(o, am, x, 1, P, H, W, k, s, p);
            nn_maxpool_backward(dx, dy, am, 1, P, H, W, OH, OW);
            CHECK(close_to(what, LV, "out", o, ro, no, 0));
            /* with several NaNs in a window the fast paths may pick another of them (maxpool_stem) */
            int bad = 0;
            for (size_t i = 0; i < no; i++) bad += am[i] != ram[i] && ro[i] == ro[i];
            CHECK_INT(bad, 0);
        }
        /* the backward against the reference's argmax, without NaNs in the way */
        for (size_t i = 0; i < ni; i++)
            if (x[i] != x[i]) x[i] = 0;
        memset(rdx, 0, ni * sizeof(float));
        nn_ref_maxpool_forward(ro, ram, x, 1, P, H, W, k, s, p);
        nn_ref_maxpool_backward(rdx, dy, ram, 1, P, H, W, OH, OW);
        FOR_LEVELS {
            memset(dx, 0, ni * sizeof(float));
            nn_maxpool_forward(o, am, x, 1, P, H, W, k, s, p);
            nn_maxpool_backward(dx, dy, am, 1, P, H, W, OH, OW);
            CHECK(close_to(what, LV, "out (no NaN)", o, ro, no, 0));
            CHECK(close_to(what, LV, "din", dx, rdx, ni, 0));
        }
        /* global average and adaptive max over the same planes */
        float ga[P], rga[P], gdy[P] = {1, -2, 0.5f, 3};
        memset(rdx, 0, ni * sizeof(float));
        nn_ref_avgpool_global_forward(rga, x, 1, P, H * W);
        nn_ref_avgpool_global_backward(rdx, gdy, 1, P, H * W);
        FOR_LEVELS {
            memset(dx, 0, ni * sizeof(float));
            nn_avgpool_global_forward(ga, x, 1, P, H * W);
            nn_avgpool_global_backward(dx, gdy, 1, P, H * W);
            CHECK(close_to("global average pool", LV, "out", ga, rga, P, 1e-6));
            CHECK(close_to("global average pool", LV, "din", dx, rdx, ni, 1e-6));
        }
        int AH = (H + 1) / 2, AW = W > 2 ? W - 2 : 1;
        size_t na = (size_t)P * AH * AW;
        float *rao = malloc(na * sizeof(float)), *ao = malloc(na * sizeof(float));
        int32_t *raam = malloc(na * sizeof(int32_t)), *aam = malloc(na * sizeof(int32_t));
        nn_ref_adaptive_maxpool_forward(rao, raam, x, 1, P, H, W, AH, AW);
        FOR_LEVELS {
            nn_adaptive_maxpool_forward(ao, aam, x, 1, P, H, W, AH, AW);
            CHECK(close_to("adaptive max pool", LV, "out", ao, rao, na, 0));
            CHECK(!memcmp(aam, raam, sizeof(int32_t) * na));
        }
        free(rao), free(ao), free(raam), free(aam);
        free(x), free(dy), free(ro), free(o), free(rdx), free(dx), free(ram), free(am);
    }
}

TEST(level_control)
{
    nn_kernels cpu = nn_kernels_cpu();
    CHECK_INT(nn_kernels_set(NN_KERNELS_GENERIC), NN_KERNELS_GENERIC);
    CHECK_INT(nn_kernels_level(), NN_KERNELS_GENERIC);
    CHECK_INT(nn_kernels_set(NN_KERNELS_AVX512), cpu); /* never above the CPU */
    CHECK_STR(nn_kernels_name(NN_KERNELS_AVX2), "avx2");
}

int main(void)
{
    /* the best level first (the reference for the others), down to generic */
    for (int l = nn_kernels_cpu(); l >= NN_KERNELS_GENERIC; l--) levels[nlevels++] = l;
    fprintf(stderr, "kernel levels checked:");
    for (int i = 0; i < nlevels; i++) fprintf(stderr, " %s", nn_kernels_name(levels[i]));
    if (nlevels < 3) fprintf(stderr, " (this CPU or build runs no higher level)");
    fprintf(stderr, "\n");
    RUN(conv_small_maps);
    RUN(conv_direct3);
    RUN(conv_stem);
    RUN(maxpool_stem);
    RUN(groupnorm_maxpool);
    RUN(vec_loops);
    RUN(refs_conv);
    RUN(refs_norm);
    RUN(refs_pointwise_linear);
    RUN(refs_pooling);
    RUN(level_control);
    return test_done();
}
