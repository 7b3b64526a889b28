/* tests/nn/test_kernels.c — every kernel level this CPU runs (MAGPIE_KERNELS: avx512, avx2,
 * generic) gives the results of a plain reference, and the levels agree with each other: the
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
        if (!(d <= m)) m = d; /* NaN counts */
    }
    return m;
}

/* direct convolution in double */
static void conv_ref(float *out, const float *in, const float *w, const float *b, const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    for (int n = 0; n < d->N; n++)
        for (int oc = 0; oc < d->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double s = b ? b[oc] : 0;
                    for (int c = 0; c < d->C; c++)
                        for (int kh = 0; kh < d->KH; kh++)
                            for (int kw = 0; kw < d->KW; kw++) {
                                int ih = oh * d->sh - d->ph + kh, iw = ow * d->sw - d->pw + kw;
                                if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W) continue;
                                s += (double)in[(((long)n * d->C + c) * d->H + ih) * d->W + iw] *
                                     w[(((long)oc * d->C + c) * d->KH + kh) * d->KW + kw];
                            }
                    out[(((long)n * d->OC + oc) * OH + oh) * OW + ow] = (float)s;
                }
}

/* forward (and backward for din, dw) at every level; checks against the reference and across levels */
static void conv_case(const char *what, nn_conv_dims d, int exact_all, int backward)
{
    mp_rng r;
    mp_rng_seed(&r, (uint64_t)d.H * 131 + d.C);
    int OH = nn_conv_out(d.H, d.KH, d.sh, d.ph), OW = nn_conv_out(d.W, d.KW, d.sw, d.pw);
    size_t ni = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.OC * d.C * d.KH * d.KW, no = (size_t)d.N * d.OC * OH * OW;
    float *x = randv(ni, &r, 0), *w = randv(nw, &r, 0), *b = randv(d.OC, &r, 0), *dy = randv(no, &r, 0);
    float *ref = malloc(no * sizeof(float)), *ws = calloc(nn_conv2d_workspace(&d) + 1, sizeof(float));
    conv_ref(ref, x, w, b, &d);
    float *out[3], *dx[3], *dw[3];
    for (int li = 0; li < nlevels; li++) {
        CHECK_INT(nn_kernels_set(levels[li]), levels[li]);
        out[li] = malloc(no * sizeof(float));
        dx[li] = calloc(ni, sizeof(float));
        dw[li] = calloc(nw, sizeof(float));
        nn_conv2d_forward(out[li], ws, x, w, b, &d);
        if (backward) nn_conv2d_backward(dx[li], dw[li], NULL, ws, dy, x, w, &d);
        double e = maxdiff(out[li], ref, no);
        if (e > 1e-4) fprintf(stderr, "%s at %s: max |out - ref| %g\n", what, nn_kernels_name(levels[li]), e);
        CHECK(e <= 1e-4);
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
    for (int li = 0; li < nlevels; li++) free(out[li]), free(dx[li]), free(dw[li]);
    free(x), free(w), free(b), free(dy), free(ref), free(ws);
}

TEST(conv_small_maps)
{
    /* hw ≤ 256 and several images per GEMM: the index-table gather (AVX-512 / AVX2 / scalar) */
    conv_case("3x3 on 7x7", (nn_conv_dims){24, 16, 7, 7, 8, 3, 3, 1, 1, 1, 1}, 1, 1);
    conv_case("3x3/2 on 14x14", (nn_conv_dims){12, 8, 14, 14, 16, 3, 3, 2, 2, 1, 1}, 1, 1);
    conv_case("3x3 on 1x1 (8 taps dropped)", (nn_conv_dims){40, 32, 1, 1, 16, 3, 3, 1, 1, 1, 1}, 1, 1);
    conv_case("3x3 on 2x2, 5 channels (gather tail)", (nn_conv_dims){33, 5, 2, 2, 8, 3, 3, 1, 1, 1, 1}, 1, 1);
}

TEST(conv_stem)
{
    /* few channels, stride 2, output rows ≤ 16: the direct convolution at avx2 and avx512 */
    conv_case("stem 28 px", (nn_conv_dims){5, 3, 28, 28, 32, 7, 7, 2, 2, 3, 3}, 0, 1);
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
    RUN(conv_stem);
    RUN(maxpool_stem);
    RUN(vec_loops);
    RUN(level_control);
    return test_done();
}
