/* nn/conv.c — 2-D convolution (groups 1), forward and backward: im2col + one sgemm per image or
 * per group of small images (darknet's scheme), an index-table gather on maps of at most 64
 * pixels (256 in the backward), and at AVX2 / AVX-512 forward kernels of magpie's own on larger
 * maps: a direct stem convolution, a direct 3x3, and im2col bands through the same column
 * kernel. nn/ref.c has the plain loop nest every path is tested against. */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/level.h"

/* ------------------------------------------------------------------ conv2d */

/* Maps smaller than this many output pixels are batched across images into one GEMM:
 * a 7x7 or 1x1 map would otherwise give GEMMs too narrow for BLAS to reach speed. */
#define NN_CONV_MIN_COLS 1024
/* maps of at most this many output pixels use index tables (see build_flat); the forward only
 * up to NN_TAB_MAX_FWD: above 8x8 its table (hw × C·taps ints, as large as the column matrix)
 * costs more to build and read than the row copies of im2col (256 px inference, 16x16 maps:
 * 4.7% of the step) */
#define NN_TAB_MAX 256
#define NN_TAB_MAX_FWD 64

static int is_direct(const nn_conv_dims *d)
{
    return d->KH == 1 && d->KW == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
}

int nn_conv2d_group(const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    long hw = (long)OH * OW;
    if (hw >= NN_CONV_MIN_COLS || d->N <= 1) return 1;
    long g = (NN_CONV_MIN_COLS + hw - 1) / hw;
    return (int)(g < d->N ? g : d->N);
}

size_t nn_conv2d_workspace(const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    size_t hw = (size_t)OH * OW, ckk = (size_t)d->C * d->KH * d->KW;
    int g = nn_conv2d_group(d);
    if (g == 1) return is_direct(d) ? 0 : ckk * hw + 32; /* colk reads up to 31 floats past a band */
    /* col + gathered output (+ on small maps the tap-compacted weight, its gradient and the
     * flat index table) */
    return (ckk + (size_t)d->OC) * hw * (size_t)g + (hw <= NN_TAB_MAX ? (2 * (size_t)d->OC + hw) * ckk : 0);
}

size_t nn_conv2d_workspace_max(const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    size_t need = nn_conv2d_workspace(d);
    /* a smaller input batches up to 2·NN_CONV_MIN_COLS output columns into one GEMM (col and
     * gathered output), plus the small-map tables at their largest, bounded by the whole batch */
    size_t ckk = (size_t)d->C * d->KH * d->KW, small = (2 * (size_t)d->OC + NN_TAB_MAX) * ckk;
    size_t bound = (ckk + d->OC) * 2 * NN_CONV_MIN_COLS + small;
    size_t full = (ckk + d->OC) * (size_t)OH * OW * d->N + small;
    if (bound > full) bound = full;
    return need > bound ? need : bound;
}

/* first o in [0, OUT) with o*s + off >= 0, and first with o*s + off >= lim */
static inline int first_ge(int off, int s, int lim_minus_off)
{
    /* smallest o >= 0 with o*s >= lim_minus_off */
    if (lim_minus_off <= 0) return 0;
    return (lim_minus_off + s - 1) / s;
}

/* Small maps make rows of a few floats: plain loops, never libc calls (GCC would otherwise turn
 * them into memset/memcpy calls whose overhead dominates at 7x7 and below). */
#if defined(__GNUC__) && !defined(__clang__)
#define NN_NOLIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NN_NOLIBCALL
#endif

/* col rows (c,kh,kw), columns the output pixels of one image; ld = row stride of col. */
NN_VEC_FN(static, void, im2col_rows, (float *col, long ld, const float *in, int C, int H, int W, int KH, int KW,
                                            int sh, int sw, int ph, int pw, int oh0, int oh1, int OW), (col, ld, in, C, H, W, KH, KW, sh, sw, ph, pw, oh0, oh1, OW), NN_NOLIBCALL)
{
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                float *dst = col + ((long)(c * KH + kh) * KW + kw) * ld;
                int off = kw - pw;
                int lo = first_ge(off, sw, -off), hi = first_ge(off, sw, W - off);
                if (lo > OW) lo = OW;
                if (hi > OW) hi = OW;
                if (hi < lo) hi = lo;
                for (int oh = oh0; oh < oh1; oh++) {
                    float *dd = dst + (long)(oh - oh0) * OW;
                    int ih = oh * sh - ph + kh;
                    if (ih < 0 || ih >= H) {
                        for (int ow = 0; ow < OW; ow++) dd[ow] = 0.0f;
                        continue;
                    }
                    const float *src = in + ((long)c * H + ih) * W + off;
                    for (int ow = 0; ow < lo; ow++) dd[ow] = 0.0f;
                    if (sw == 1)
                        for (int ow = lo; ow < hi; ow++) dd[ow] = src[ow];
                    else if (sw == 2)
                        for (int ow = lo; ow < hi; ow++) dd[ow] = src[2 * ow];
                    else
                        for (int ow = lo; ow < hi; ow++) dd[ow] = src[(long)ow * sw];
                    for (int ow = hi; ow < OW; ow++) dd[ow] = 0.0f;
                }
            }
}

NN_VEC_FN(static, void, col2im_rows, (float *in, const float *col, long ld, int C, int H, int W, int KH, int KW,
                                            int sh, int sw, int ph, int pw, int oh0, int oh1, int OW), (in, col, ld, C, H, W, KH, KW, sh, sw, ph, pw, oh0, oh1, OW), NN_NOLIBCALL)
{
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                const float *srcrow = col + ((long)(c * KH + kh) * KW + kw) * ld;
                int off = kw - pw;
                int lo = first_ge(off, sw, -off), hi = first_ge(off, sw, W - off);
                if (hi > OW) hi = OW;
                for (int oh = oh0; oh < oh1; oh++) {
                    int ih = oh * sh - ph + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *s = srcrow + (long)(oh - oh0) * OW;
                    float *dst = in + ((long)c * H + ih) * W + off;
                    if (sw == 1)
                        for (int ow = lo; ow < hi; ow++) dst[ow] += s[ow];
                    else
                        for (int ow = lo; ow < hi; ow++) dst[(long)ow * sw] += s[ow];
                }
            }
}

static void im2col(float *col, long ld, const float *in, int C, int H, int W, int KH, int KW, int sh, int sw,
                   int ph, int pw, int OH, int OW)
{
    im2col_rows(col, ld, in, C, H, W, KH, KW, sh, sw, ph, pw, 0, OH, OW);
}

static void col2im(float *in, const float *col, long ld, int C, int H, int W, int KH, int KW, int sh, int sw,
                   int ph, int pw, int OH, int OW)
{
    col2im_rows(in, col, ld, C, H, W, KH, KW, sh, sw, ph, pw, 0, OH, OW);
}

/* Large maps: the per-image column matrix (e.g. 147 × 12544 floats for the stem at 224 px)
 * would stream through memory between im2col and the GEMM; taking it in bands of output rows
 * of about NN_BAND_FLOATS keeps each band in L2 for the GEMM that consumes it. */
#define NN_BAND_FLOATS (256 * 1024)

static int band_rows(int ckk, int OH, int OW)
{
    long r = NN_BAND_FLOATS / ((long)ckk * OW);
    return r < 1 ? 1 : r > OH ? OH : (int)r;
}

/* Small maps (≤ NN_TAB_MAX output pixels): one index table per (kh, kw) maps each output pixel
 * to its input pixel (−1 in the padding), built once per conv call; im2col is then a gather and
 * col2im a scatter-add with no per-row bookkeeping, which dominates at 7x7 and below. */

static void build_tab(int *tab, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw, int OH, int OW)
{
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    int ih = oh * sh - ph + kh, iw = ow * sw - pw + kw;
                    /* padding reads the zero kept just past the plane */
                    *tab++ = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? ih * W + iw : H * W;
                }
}

/* Small maps keep the column matrix transposed: per image an hw × kk block whose row p holds
 * every (channel, valid tap) input of output pixel p. One flat index table (−1 in the
 * padding) then describes a whole image, so im2col is a single gather loop of hw·kk
 * elements and col2im a single scatter-add: no per-row or per-tap bookkeeping, which is
 * what dominates at 14x14 and below. */
static void build_flat(int *idx, const int *tab, const int *taps, int C, long HW, int nv, int hw)
{
    int kk = C * nv;
    for (int p = 0; p < hw; p++)
        for (int c = 0; c < C; c++)
            for (int v = 0; v < nv; v++) {
                int t = tab[(long)taps[v] * hw + p];
                idx[(long)p * kk + c * nv + v] = t == HW ? -1 : (int)(c * HW + t);
            }
}

#if NN_X86
/* masked AVX-512 gather: lanes in the padding are neither read nor anything but zero */
__attribute__((target("avx512f"))) static void gather_avx512(float *d, const float *src, const int *idx, long n)
{
    const __m512i zero = _mm512_setzero_si512();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i q = _mm512_loadu_si512(idx + i);
        __mmask16 m = _mm512_cmpge_epi32_mask(q, zero);
        _mm512_storeu_ps(d + i, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, q, src, 4));
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512i q = _mm512_maskz_loadu_epi32(k, idx + i);
        __mmask16 m = _mm512_mask_cmpge_epi32_mask(k, q, zero);
        _mm512_mask_storeu_ps(d + i, k, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, q, src, 4));
    }
}

/* its AVX2 twin: the mask is the index's sign (−1 in the padding), eight lanes at a time */
__attribute__((target("avx2,fma"))) static void gather_avx2(float *d, const float *src, const int *idx, long n)
{
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(idx + i));
        __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(q, _mm256_set1_epi32(-1)));
        _mm256_storeu_ps(d + i, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, q, m, 4));
    }
    for (; i < n; i++) d[i] = idx[i] >= 0 ? src[idx[i]] : 0.0f;
}
#endif

static void gather_flat(float *d, const float *src, const int *idx, long n)
{
#if NN_X86
    switch (level()) {
    case NN_KERNELS_AVX512: gather_avx512(d, src, idx, n); return;
    case NN_KERNELS_AVX2: gather_avx2(d, src, idx, n); return;
    default: break;
    }
#endif
    for (long i = 0; i < n; i++) d[i] = idx[i] >= 0 ? src[idx[i]] : 0.0f;
}

static void im2col_flat(float *colT, const float *in, long istride, const int *idx, long per_image, int gn)
{
    for (int j = 0; j < gn; j++) gather_flat(colT + j * per_image, in + j * istride, idx, per_image);
}

static void col2im_flat(float *in, const float *colT, long istride, const int *idx, long per_image, int gn)
{
    for (int j = 0; j < gn; j++) {
        float *dst = in + j * istride;
        const float *s = colT + j * per_image;
        for (long i = 0; i < per_image; i++)
            if (idx[i] >= 0) dst[idx[i]] += s[i];
    }
}

/* Taps that fall in the padding for every output pixel (8 of 9 on a 1x1 map) contribute
 * nothing: they are dropped from the column matrix and the weight is compacted to match. */
static int valid_taps(int *taps, const int *tab, int KK, int hw, long HW)
{
    int nv = 0;
    for (int k = 0; k < KK; k++)
        for (int p = 0; p < hw; p++)
            if (tab[(long)k * hw + p] != HW) {
                taps[nv++] = k;
                break;
            }
    return nv;
}

static void compact_weight(float *wc, const float *w, const int *taps, int OC, int C, int KK, int nv)
{
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
            for (int v = 0; v < nv; v++)
                wc[((long)oc * C + c) * nv + v] = w[((long)oc * C + c) * KK + taps[v]];
}

static void expand_add_weight(float *dw, const float *dwc, const int *taps, int OC, int C, int KK, int nv)
{
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
            for (int v = 0; v < nv; v++)
                dw[((long)oc * C + c) * KK + taps[v]] += dwc[((long)oc * C + c) * nv + v];
}

/* Batched GEMMs keep images side by side (OC × g·hw); NCHW wants them one after another. */
NN_VEC_FN(static, void, scatter_images, (float *o, const float *tmp, int gn, int OC, long hw, long ld), (o, tmp, gn, OC, hw, ld), NN_NOLIBCALL)
{
    for (int j = 0; j < gn; j++)
        for (int oc = 0; oc < OC; oc++) {
            float *d = o + ((long)j * OC + oc) * hw;
            const float *s = tmp + oc * ld + j * hw;
            for (long i = 0; i < hw; i++) d[i] = s[i];
        }
}

NN_VEC_FN(static, void, gather_images, (float *tmp, const float *dy, int gn, int OC, long hw, long ld), (tmp, dy, gn, OC, hw, ld), NN_NOLIBCALL)
{
    for (int j = 0; j < gn; j++)
        for (int oc = 0; oc < OC; oc++) {
            const float *s = dy + ((long)j * OC + oc) * hw;
            float *d = tmp + oc * ld + j * hw;
            for (long i = 0; i < hw; i++) d[i] = s[i];
        }
}

/* Small-map setup shared by forward and backward: the valid taps, the weight compacted to
 * them, and the flat index table. ws holds col (ckk·hw·g), the gathered output (OC·hw·g),
 * then the compacted weight, its gradient and the table. Returns kk = C·nv. */
typedef struct {
    int kk;
    const float *wk; /* the weight as the GEMM sees it */
    float *dwc;      /* gradient of the compacted weight, or NULL when w was used as is */
    int *idx;
} small_conv;

static small_conv small_setup(float *ws, int *taps, int *nv, const float *w, const nn_conv_dims *d, int OH, int OW,
                              int g)
{
    long hw = (long)OH * OW, ihw = (long)d->H * d->W;
    int KK = d->KH * d->KW, ckk = d->C * KK, tab[KK * hw];
    build_tab(tab, d->H, d->W, d->KH, d->KW, d->sh, d->sw, d->ph, d->pw, OH, OW);
    *nv = valid_taps(taps, tab, KK, (int)hw, ihw);
    float *wc = ws + (size_t)(ckk + d->OC) * hw * g;
    small_conv sc = {d->C * *nv, w, NULL, (int *)(wc + 2 * (size_t)d->OC * ckk)};
    if (*nv < KK) {
        compact_weight(wc, w, taps, d->OC, d->C, KK, *nv);
        sc.wk = wc, sc.dwc = wc + (size_t)d->OC * ckk;
    }
    build_flat(sc.idx, tab, taps, d->C, ihw, *nv, (int)hw);
    return sc;
}

/* A layer's small-map setup done once (nn_conv2d_prepare): the same three products as
 * small_setup, owned by the caller and valid for one weight and one input size. */
struct nn_conv_prep {
    nn_conv_dims d; /* N unused */
    int kk;
    float *wc;      /* the compacted weight, or NULL when every tap is valid (w used as is) */
    int *idx;
};

nn_conv_prep *nn_conv2d_prepare(const float *w, const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    long hw = (long)OH * OW, ihw = (long)d->H * d->W;
    if (hw > NN_TAB_MAX_FWD) return NULL; /* the forward takes no small-map path */
    int KK = d->KH * d->KW, taps[KK], *tab = malloc(sizeof(int) * (size_t)KK * hw);
    nn_conv_prep *p = calloc(1, sizeof *p);
    if (!tab || !p) goto fail;
    build_tab(tab, d->H, d->W, d->KH, d->KW, d->sh, d->sw, d->ph, d->pw, OH, OW);
    int nv = valid_taps(taps, tab, KK, (int)hw, ihw);
    p->d = *d, p->kk = d->C * nv;
    if (!(p->idx = malloc(sizeof(int) * (size_t)p->kk * hw))) goto fail;
    build_flat(p->idx, tab, taps, d->C, ihw, nv, (int)hw);
    if (nv < KK) {
        if (!(p->wc = malloc(sizeof(float) * (size_t)d->OC * p->kk))) goto fail;
        compact_weight(p->wc, w, taps, d->OC, d->C, KK, nv);
    }
    free(tab);
    return p;
fail:
    free(tab);
    nn_conv2d_prep_free(p);
    return NULL;
}

void nn_conv2d_prep_free(nn_conv_prep *p)
{
    if (!p) return;
    free(p->wc);
    free(p->idx);
    free(p);
}

static int prep_fits(const nn_conv_prep *p, const nn_conv_dims *d)
{
    return p && p->d.C == d->C && p->d.H == d->H && p->d.W == d->W && p->d.OC == d->OC && p->d.KH == d->KH &&
           p->d.KW == d->KW && p->d.sh == d->sh && p->d.sw == d->sw && p->d.ph == d->ph && p->d.pw == d->pw;
}

#if NN_X86
/* Few input channels, stride 2 (the stem): a direct convolution over tiles of 16 output pixels
 * of a row. Each image is copied once into a zero-padded buffer whose rows are split into even
 * and odd columns, so the 16 output pixels of a tile read contiguous vectors per tap.
 * Writes NCHW with no im2col, GEMM packing or transpose. Every output is the sum over
 * (c, kh, kw) in that order of fused multiply-adds from zero, at both levels: AVX-512 and AVX2
 * give the same bits. ws: the weight as ckk × OC, then the padded image. */
static int stem_direct_ok(const nn_conv_dims *d, int OW)
{
    (void)OW;
    return level() >= NN_KERNELS_AVX2 && d->C <= 4 && d->sh == 2 && d->sw == 2 && d->OC % 8 == 0 &&
           d->KH * d->KW >= 9;
}

/* floats per parity half of a padded row: every tile's vector loads stay inside the half */
static int stem_pw2(const nn_conv_dims *d, int OW) { return (OW + 15) / 16 * 16 + d->KW / 2 + 1; }

static size_t stem_direct_ws(const nn_conv_dims *d, int OH, int OW)
{
    size_t rows = 2 * (size_t)(OH - 1) + d->KH + 2, pw2 = (size_t)stem_pw2(d, OW);
    return (size_t)d->C * d->KH * d->KW * d->OC + (size_t)d->C * rows * 2 * pw2 + 16;
}

typedef struct {
    int C, KH, KW, OC, OH, OW, PR, pw2, rs; /* PR padded rows, pw2 floats per parity, rs per row */
} stem_geom;

/* AVX-512: a 2-row × 8-channel block keeps 16 accumulators of 16 pixels */
__attribute__((target("avx512f"))) static void stem_image_avx512(float *o, const float *buf, const float *wt,
                                                                 const stem_geom *g)
{
    const int C = g->C, KH = g->KH, KW = g->KW, OC = g->OC, OH = g->OH, OW = g->OW, PR = g->PR, rs = g->rs;
    const long ohw = (long)OH * OW;
    for (int oh = 0; oh < OH; oh += 2)
        for (int ow0 = 0; ow0 < OW; ow0 += 16) {
            int two = oh + 1 < OH;
            const __mmask16 km = OW - ow0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (OW - ow0)) - 1);
            for (int ob = 0; ob < OC; ob += 8) {
                __m512 a0[8], a1[8];
                for (int j = 0; j < 8; j++) a0[j] = a1[j] = _mm512_setzero_ps();
                for (int c = 0; c < C; c++)
                    for (int kh = 0; kh < KH; kh++) {
                        const float *r0 = buf + ((long)c * PR + 2 * oh + kh) * rs + ow0, *r1 = r0 + 2 * rs;
                        const float *wp = wt + ((long)(c * KH + kh) * KW) * OC + ob;
                        for (int kw = 0; kw < KW; kw++, wp += OC) {
                            int q = (kw & 1) * g->pw2 + (kw >> 1);
                            __m512 x0 = _mm512_loadu_ps(r0 + q), x1 = _mm512_loadu_ps(r1 + q);
                            for (int j = 0; j < 8; j++) {
                                __m512 bw = _mm512_set1_ps(wp[j]);
                                a0[j] = _mm512_fmadd_ps(x0, bw, a0[j]);
                                a1[j] = _mm512_fmadd_ps(x1, bw, a1[j]);
                            }
                        }
                    }
                for (int j = 0; j < 8; j++) {
                    float *oj = o + (long)(ob + j) * ohw + (long)oh * OW + ow0;
                    _mm512_mask_storeu_ps(oj, km, a0[j]);
                    if (two) _mm512_mask_storeu_ps(oj + OW, km, a1[j]);
                }
            }
        }
}

/* AVX2 (16 registers of 8 floats): one row of 16 pixels (two vectors) × 4 channels, 8 accumulators;
 * per tap 2 loads and 4 broadcasts feed 8 FMAs, so the FMA ports stay the limit */
__attribute__((target("avx2,fma"))) static void stem_image_avx2(float *o, const float *buf, const float *wt,
                                                               const stem_geom *g)
{
    const int C = g->C, KH = g->KH, KW = g->KW, OC = g->OC, OH = g->OH, OW = g->OW, PR = g->PR, rs = g->rs;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const long ohw = (long)OH * OW;
    for (int oh = 0; oh < OH; oh++)
        for (int ow0 = 0; ow0 < OW; ow0 += 16) {
            const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(OW - ow0), lane),
                          m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(OW - ow0 - 8), lane);
            for (int ob = 0; ob < OC; ob += 4) {
                __m256 a0[4], a1[4];
                for (int j = 0; j < 4; j++) a0[j] = a1[j] = _mm256_setzero_ps();
                for (int c = 0; c < C; c++)
                    for (int kh = 0; kh < KH; kh++) {
                        const float *r0 = buf + ((long)c * PR + 2 * oh + kh) * rs + ow0;
                        const float *wp = wt + ((long)(c * KH + kh) * KW) * OC + ob;
                        for (int kw = 0; kw < KW; kw++, wp += OC) {
                            int q = (kw & 1) * g->pw2 + (kw >> 1);
                            __m256 x0 = _mm256_loadu_ps(r0 + q), x1 = _mm256_loadu_ps(r0 + q + 8);
                            for (int j = 0; j < 4; j++) {
                                __m256 bw = _mm256_broadcast_ss(wp + j);
                                a0[j] = _mm256_fmadd_ps(x0, bw, a0[j]);
                                a1[j] = _mm256_fmadd_ps(x1, bw, a1[j]);
                            }
                        }
                    }
                for (int j = 0; j < 4; j++) {
                    float *oj = o + (long)(ob + j) * ohw + (long)oh * OW + ow0;
                    _mm256_maskstore_ps(oj, m0, a0[j]);
                    _mm256_maskstore_ps(oj + 8, m1, a1[j]);
                }
            }
        }
}

static void stem_direct(float *out, float *ws, const float *in, const float *w, const nn_conv_dims *d, int OH, int OW)
{
    const int C = d->C, H = d->H, W = d->W, KH = d->KH, KW = d->KW, OC = d->OC, ckk = C * KH * KW;
    int pw2 = stem_pw2(d, OW);
    stem_geom g = {C, KH, KW, OC, OH, OW, 2 * (OH - 1) + KH + 2, pw2, 2 * pw2};
    float *wt = ws, *buf = ws + (size_t)ckk * OC;
    for (int oc = 0; oc < OC; oc++)
        for (int t = 0; t < ckk; t++) wt[(long)t * OC + oc] = w[(long)oc * ckk + t];
    memset(buf, 0, sizeof(float) * ((size_t)C * g.PR * g.rs + 16));
    int avx512 = level() >= NN_KERNELS_AVX512;
    for (int n = 0; n < d->N; n++) {
        const float *x = in + (long)n * C * H * W;
        /* padding positions are never written: they stay zero from image to image */
        for (int c = 0; c < C; c++)
            for (int ih = 0; ih < H; ih++) {
                int pr = ih + d->ph;
                if (pr >= g.PR) break;
                float *row = buf + ((long)c * g.PR + pr) * g.rs;
                const float *src = x + ((long)c * H + ih) * W;
                for (int iw = 0; iw < W; iw++) {
                    int pc = iw + d->pw;
                    if ((pc >> 1) < g.pw2) row[(pc & 1) * g.pw2 + (pc >> 1)] = src[iw];
                }
            }
        float *o = out + (long)n * OC * OH * OW;
        if (avx512) stem_image_avx512(o, buf, wt, &g);
        else stem_image_avx2(o, buf, wt, &g);
    }
}

/* Output pixels against a column matrix on the vector units, instead of OpenBLAS (0.3.21 picks
 * its 256-bit Haswell sgemm on the AMD EPYC we measure on, family 26, whose FMA units are 512
 * bits wide; on it this kernel runs about 1.6x the sgemm probe's rate):
 * out[oc·ldo + p] = Σ_t w[oc·ckk + t] · rows[t][p] over t = 0 .. ckk−1 in that order, fused
 * multiply-adds from zero, so AVX-512 and AVX2 give the same bits. rows[t] is where row t of the
 * column matrix starts: an im2col band, or shifted views of the input (direct3). The weight is
 * read in place, eight (AVX2: four) output channels' rows at a time. Pixels go in chunks whose
 * ckk rows stay in L2 while every output channel block passes over them; rows are read up to 31
 * floats past p1 (those lanes are computed and dropped). */
static long colk_chunk(int ckk)
{
    long p = 65536 / ckk / 32 * 32;
    return p < 32 ? 32 : p;
}

/* AVX-512: 32 pixels (two vectors) × 8 output channels, 16 accumulators */
__attribute__((target("avx512f"))) static void colk_avx512(float *o, long ldo, const float *const *rows, long p0,
                                                           long p1, const float *w, int ckk, int OC)
{
    const long chunk = colk_chunk(ckk);
    for (long q0 = p0; q0 < p1; q0 += chunk) {
        long q1 = q0 + chunk < p1 ? q0 + chunk : p1;
        for (int ob = 0; ob < OC; ob += 8) {
            const float *wb = w + (long)ob * ckk;
            for (long p = q0; p < q1; p += 32) {
                __m512 a0[8], a1[8];
                for (int j = 0; j < 8; j++) a0[j] = a1[j] = _mm512_setzero_ps();
                for (int t = 0; t < ckk; t++) {
                    const float *r = rows[t] + p;
                    __m512 x0 = _mm512_loadu_ps(r), x1 = _mm512_loadu_ps(r + 16);
                    for (int j = 0; j < 8; j++) {
                        __m512 bw = _mm512_set1_ps(wb[(long)j * ckk + t]);
                        a0[j] = _mm512_fmadd_ps(x0, bw, a0[j]);
                        a1[j] = _mm512_fmadd_ps(x1, bw, a1[j]);
                    }
                }
                long n0 = q1 - p, n1 = n0 - 16;
                __mmask16 k0 = n0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n0) - 1);
                __mmask16 k1 = n1 >= 16 ? (__mmask16)0xffff : n1 <= 0 ? 0 : (__mmask16)((1u << n1) - 1);
                for (int j = 0; j < 8; j++) {
                    float *oj = o + (long)(ob + j) * ldo + p;
                    _mm512_mask_storeu_ps(oj, k0, a0[j]);
                    _mm512_mask_storeu_ps(oj + 16, k1, a1[j]);
                }
            }
        }
    }
}

/* AVX2 (16 registers): 24 pixels (three vectors) × 4 output channels, 12 accumulators; the same
 * sums */
__attribute__((target("avx2,fma"))) static void colk_avx2(float *o, long ldo, const float *const *rows, long p0,
                                                         long p1, const float *w, int ckk, int OC)
{
    const long chunk = colk_chunk(ckk) / 96 * 96 > 0 ? colk_chunk(ckk) / 96 * 96 : 96;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long q0 = p0; q0 < p1; q0 += chunk) {
        long q1 = q0 + chunk < p1 ? q0 + chunk : p1;
        for (int ob = 0; ob < OC; ob += 4) {
            const float *wb = w + (long)ob * ckk;
            for (long p = q0; p < q1; p += 24) {
                __m256 a0[4], a1[4], a2[4];
                for (int j = 0; j < 4; j++) a0[j] = a1[j] = a2[j] = _mm256_setzero_ps();
                for (int t = 0; t < ckk; t++) {
                    const float *r = rows[t] + p;
                    __m256 x0 = _mm256_loadu_ps(r), x1 = _mm256_loadu_ps(r + 8), x2 = _mm256_loadu_ps(r + 16);
                    for (int j = 0; j < 4; j++) {
                        __m256 bw = _mm256_broadcast_ss(wb + (long)j * ckk + t);
                        a0[j] = _mm256_fmadd_ps(x0, bw, a0[j]);
                        a1[j] = _mm256_fmadd_ps(x1, bw, a1[j]);
                        a2[j] = _mm256_fmadd_ps(x2, bw, a2[j]);
                    }
                }
                int n = q1 - p > 24 ? 24 : (int)(q1 - p);
                const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane),
                              m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane),
                              m2 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 16), lane);
                for (int j = 0; j < 4; j++) {
                    float *oj = o + (long)(ob + j) * ldo + p;
                    _mm256_maskstore_ps(oj, m0, a0[j]);
                    _mm256_maskstore_ps(oj + 8, m1, a1[j]);
                    _mm256_maskstore_ps(oj + 16, m2, a2[j]);
                }
            }
        }
    }
}

static void colk(float *o, long ldo, const float *const *rows, long p0, long p1, const float *w, int ckk, int OC)
{
    if (level() >= NN_KERNELS_AVX512) colk_avx512(o, ldo, rows, p0, p1, w, ckk, OC);
    else colk_avx2(o, ldo, rows, p0, p1, w, ckk, OC);
}

/* colk's row table lives on the stack: at most this many taps (36 KiB; 512 channels × 3x3) */
#define NN_COLK_MAX_CKK 4608

/* any convolution with a multiple of 8 output channels and at least 64 output pixels per image
 * (smaller maps batch images through the index tables and OpenBLAS) */
static int colk_ok(const nn_conv_dims *d, long hw)
{
    return level() >= NN_KERNELS_AVX2 && d->OC % 8 == 0 && hw >= 64 && !is_direct(d) &&
           (long)d->C * d->KH * d->KW <= NN_COLK_MAX_CKK;
}

/* per image, bands of output rows: im2col into ws (about NN_COLK_BAND floats, L2), then colk */
#define NN_COLK_BAND (128 * 1024)

static void colk_conv(float *out, float *ws, const float *in, const float *w, const nn_conv_dims *d, int OH, int OW)
{
    const int ckk = d->C * d->KH * d->KW;
    const long hw = (long)OH * OW, ihw = (long)d->H * d->W;
    long r = NN_COLK_BAND / ((long)ckk * OW);
    int br = r < 1 ? 1 : r > OH ? OH : (int)r;
    const float *rows[ckk];
    for (int n = 0; n < d->N; n++) {
        const float *src = in + (long)n * d->C * ihw;
        float *o = out + (long)n * d->OC * hw;
        for (int r0 = 0; r0 < OH; r0 += br) {
            int r1 = r0 + br < OH ? r0 + br : OH, cols = (r1 - r0) * OW;
            im2col_rows(ws, cols, src, d->C, d->H, d->W, d->KH, d->KW, d->sh, d->sw, d->ph, d->pw, r0, r1, OW);
            for (int t = 0; t < ckk; t++) rows[t] = ws + (long)t * cols;
            colk(o + (long)r0 * OW, hw, rows, 0, cols, w, ckk, d->OC);
        }
    }
}

/* 3x3 stride 1 pad 1 with 8 or more input channels: no im2col either. Each image is copied once
 * into three planes per channel, one per kernel column kw, holding the input shifted by kw − 1
 * with zeros where that leaves the map and a zero row above and below: output pixel
 * p = oh·W + ow then reads element p + kh·W of plane kw for tap (kh, kw), so colk's rows are
 * views of these planes and its tiles run along the flattened map with no waste at any width.
 * From 7x7 maps (49 pixels) up: there, two tiles beat the index-table gather and OpenBLAS by
 * ~15% of a 28 px ResNet's inference step (bench_nn, interleaved runs; at 4x4 no better). */
static int direct3_ok(const nn_conv_dims *d, long hw)
{
    return level() >= NN_KERNELS_AVX2 && d->KH == 3 && d->KW == 3 && d->sh == 1 && d->sw == 1 && d->ph == 1 &&
           d->pw == 1 && d->C >= 8 && d->C * 9 <= NN_COLK_MAX_CKK && d->OC % 8 == 0 && hw >= 48;
}

static size_t direct3_plane(const nn_conv_dims *d) { return (size_t)(d->H + 2) * d->W; }

static size_t direct3_ws(const nn_conv_dims *d) { return 3 * (size_t)d->C * direct3_plane(d) + 64; }

static void direct3(float *out, float *ws, const float *in, const float *w, const nn_conv_dims *d)
{
    const int C = d->C, H = d->H, W = d->W;
    const long hw = (long)H * W, pl = (long)direct3_plane(d), ks = (long)C * pl;
    const float *rows[C * 9];
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) rows[(c * 3 + kh) * 3 + kw] = ws + kw * ks + c * pl + (long)kh * W;
    /* the zero rows, the zero columns and the tail are never written below: cleared once */
    for (int k = 0; k < 3 * C; k++) {
        float *pk = ws + k * pl;
        memset(pk, 0, sizeof(float) * (size_t)W);
        memset(pk + (long)(H + 1) * W, 0, sizeof(float) * (size_t)W);
        if (k < C)
            for (int h = 1; h <= H; h++) pk[(long)h * W] = 0.0f;
        else if (k >= 2 * C)
            for (int h = 1; h <= H; h++) pk[(long)h * W + W - 1] = 0.0f;
    }
    memset(ws + 3 * ks, 0, sizeof(float) * (direct3_ws(d) - 3 * (size_t)ks));
    for (int n = 0; n < d->N; n++) {
        const float *x = in + (long)n * C * hw;
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++) {
                const float *src = x + (long)c * hw + (long)h * W;
                float *r0 = ws + (long)c * pl + (long)(h + 1) * W, *r1 = r0 + ks, *r2 = r1 + ks;
                /* plane kw holds x[.][w + kw − 1] at column w */
                memcpy(r0 + 1, src, sizeof(float) * (size_t)(W - 1));
                memcpy(r1, src, sizeof(float) * (size_t)W);
                memcpy(r2, src + 1, sizeof(float) * (size_t)(W - 1));
            }
        colk(out + (long)n * d->OC * hw, hw, rows, 0, hw, w, C * 9, d->OC);
    }
}
#endif

void nn_conv2d_forward(float *out, float *ws, const float *in, const float *w, const float *b,
                       const nn_conv_dims *d)
{
    nn_conv2d_forward_prep(out, ws, in, w, b, d, NULL);
}

void nn_conv2d_forward_prep(float *out, float *ws, const float *in, const float *w, const float *b,
                            const nn_conv_dims *d, const nn_conv_prep *prep)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    long hw = (long)OH * OW, ihw = (long)d->H * d->W;
    int ckk = d->C * d->KH * d->KW, g = nn_conv2d_group(d), direct = is_direct(d);
#if NN_X86
    int own = 1; /* one of magpie's own kernels below; then the bias, if any, is added here */
    if (stem_direct_ok(d, OW) && stem_direct_ws(d, OH, OW) <= nn_conv2d_workspace(d))
        stem_direct(out, ws, in, w, d, OH, OW);
    else if (direct3_ok(d, hw) && direct3_ws(d) <= nn_conv2d_workspace(d)) direct3(out, ws, in, w, d);
    else if (colk_ok(d, hw)) colk_conv(out, ws, in, w, d, OH, OW);
    else own = 0;
    if (own) {
        if (b)
            for (int n = 0; n < d->N; n++)
                for (int oc = 0; oc < d->OC; oc++) {
                    float *p = out + ((long)n * d->OC + oc) * hw, bv = b[oc];
                    for (long i = 0; i < hw; i++) p[i] += bv;
                }
        return;
    }
#endif
    int small = hw <= NN_TAB_MAX_FWD && g > 1, taps[d->KH * d->KW], nv;
    small_conv sc = {0};
    if (small && prep_fits(prep, d))
        sc = (small_conv){prep->kk, prep->wc ? prep->wc : w, NULL, prep->idx};
    else if (small)
        sc = small_setup(ws, taps, &nv, w, d, OH, OW, g);
    for (int n0 = 0; n0 < d->N; n0 += g) {
        int gn = d->N - n0 < g ? d->N - n0 : g;
        float *o = out + (long)n0 * d->OC * hw;
        if (g == 1) {
            const float *src = in + (long)n0 * d->C * ihw;
            if (direct) {
                nn_sgemm(0, 0, d->OC, (int)hw, ckk, 1.0f, w, ckk, src, (int)hw, 0.0f, o, (int)hw);
            } else {
                int br = band_rows(ckk, OH, OW);
                for (int r0 = 0; r0 < OH; r0 += br) {
                    int r1 = r0 + br < OH ? r0 + br : OH, cols = (r1 - r0) * OW;
                    im2col_rows(ws, cols, src, d->C, d->H, d->W, d->KH, d->KW, d->sh, d->sw, d->ph, d->pw, r0, r1, OW);
                    nn_sgemm(0, 0, d->OC, cols, ckk, 1.0f, w, ckk, ws, cols, 0.0f, o + (long)r0 * OW, (int)hw);
                }
            }
        } else {
            long ld = gn * hw;
            float *col = ws, *tmp = ws + (size_t)ckk * hw * g;
            if (small) {
                im2col_flat(col, in + (long)n0 * d->C * ihw, (long)d->C * ihw, sc.idx, hw * sc.kk, gn);
                if (hw == 1) /* pixel-major output (ld × OC): on a 1x1 map that is NCHW already */
                    nn_sgemm(0, 1, (int)ld, d->OC, sc.kk, 1.0f, col, sc.kk, sc.wk, sc.kk, 0.0f, o, d->OC);
                else { /* OC × ld, images side by side: each image's rows are then contiguous copies */
                    nn_sgemm(0, 1, d->OC, (int)ld, sc.kk, 1.0f, sc.wk, sc.kk, col, sc.kk, 0.0f, gn == 1 ? o : tmp, (int)ld);
                    if (gn > 1) scatter_images(o, tmp, gn, d->OC, hw, ld);
                }
            } else {
                for (int j = 0; j < gn; j++)
                    im2col(col + j * hw, ld, in + (long)(n0 + j) * d->C * ihw, d->C, d->H, d->W, d->KH, d->KW, d->sh,
                           d->sw, d->ph, d->pw, OH, OW);
                nn_sgemm(0, 0, d->OC, (int)ld, ckk, 1.0f, w, ckk, col, (int)ld, 0.0f, tmp, (int)ld);
                scatter_images(o, tmp, gn, d->OC, hw, ld);
            }
        }
        if (b)
            for (int j = 0; j < gn; j++)
                for (int oc = 0; oc < d->OC; oc++) {
                    float *p = o + ((long)j * d->OC + oc) * hw, bv = b[oc];
                    for (long i = 0; i < hw; i++) p[i] += bv;
                }
    }
}

void nn_conv2d_backward(float *din, float *dw, float *db, float *ws, const float *dout,
                        const float *in, const float *w, const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    long hw = (long)OH * OW, ihw = (long)d->H * d->W;
    int ckk = d->C * d->KH * d->KW, g = nn_conv2d_group(d), direct = is_direct(d);
    if (db)
        for (int n = 0; n < d->N; n++)
            for (int oc = 0; oc < d->OC; oc++) {
                const float *p = dout + ((long)n * d->OC + oc) * hw;
                double s = 0;
                for (long i = 0; i < hw; i++) s += p[i];
                db[oc] += (float)s;
            }
    if (!dw && !din) return;
    int small = hw <= NN_TAB_MAX && g > 1, taps[d->KH * d->KW], nv;
    small_conv sc = {0};
    float *dwk = dw;
    if (small) {
        sc = small_setup(ws, taps, &nv, w, d, OH, OW, g);
        if (sc.dwc && dw) {
            memset(sc.dwc, 0, sizeof(float) * (size_t)d->OC * sc.kk);
            dwk = sc.dwc;
        }
    }
    for (int n0 = 0; n0 < d->N; n0 += g) {
        int gn = d->N - n0 < g ? d->N - n0 : g;
        const float *dy = dout + (long)n0 * d->OC * hw;
        if (g == 1) {
            const float *src = in + (long)n0 * d->C * ihw;
            float *dsrc = din ? din + (long)n0 * d->C * ihw : NULL;
            if (direct) {
                if (dw) nn_sgemm(0, 1, d->OC, ckk, (int)hw, 1.0f, dy, (int)hw, src, (int)hw, 1.0f, dw, ckk);
                if (dsrc) nn_sgemm(1, 0, ckk, (int)hw, d->OC, 1.0f, w, ckk, dy, (int)hw, 1.0f, dsrc, (int)hw);
                continue;
            }
            int br = band_rows(ckk, OH, OW);
            for (int r0 = 0; r0 < OH; r0 += br) {
                int r1 = r0 + br < OH ? r0 + br : OH, cols = (r1 - r0) * OW;
                const float *dyb = dy + (long)r0 * OW;
                if (dw) {
                    im2col_rows(ws, cols, src, d->C, d->H, d->W, d->KH, d->KW, d->sh, d->sw, d->ph, d->pw, r0, r1, OW);
                    nn_sgemm(0, 1, d->OC, ckk, cols, 1.0f, dyb, (int)hw, ws, cols, 1.0f, dw, ckk);
                }
                if (dsrc) {
                    nn_sgemm(1, 0, ckk, cols, d->OC, 1.0f, w, ckk, dyb, (int)hw, 0.0f, ws, cols);
                    col2im_rows(dsrc, ws, cols, d->C, d->H, d->W, d->KH, d->KW, d->sh, d->sw, d->ph, d->pw, r0, r1, OW);
                }
            }
        } else {
            long ld = gn * hw;
            float *col = ws, *tmp = ws + (size_t)ckk * hw * g;
            const float *src = in + (long)n0 * d->C * ihw;
            float *dsrc = din ? din + (long)n0 * d->C * ihw : NULL;
            gather_images(tmp, dy, gn, d->OC, hw, ld);
            if (small) { /* col is the transposed ld × kk block */
                if (dw) {
                    im2col_flat(col, src, (long)d->C * ihw, sc.idx, hw * sc.kk, gn);
                    nn_sgemm(0, 0, d->OC, sc.kk, (int)ld, 1.0f, tmp, (int)ld, col, sc.kk, 1.0f, dwk, sc.kk);
                }
                if (dsrc) {
                    nn_sgemm(1, 0, (int)ld, sc.kk, d->OC, 1.0f, tmp, (int)ld, sc.wk, sc.kk, 0.0f, col, sc.kk);
                    col2im_flat(dsrc, col, (long)d->C * ihw, sc.idx, hw * sc.kk, gn);
                }
                continue;
            }
            if (dw) {
                for (int j = 0; j < gn; j++)
                    im2col(col + j * hw, ld, src + (long)j * d->C * ihw, d->C, d->H, d->W, d->KH, d->KW, d->sh, d->sw,
                           d->ph, d->pw, OH, OW);
                nn_sgemm(0, 1, d->OC, ckk, (int)ld, 1.0f, tmp, (int)ld, col, (int)ld, 1.0f, dw, ckk);
            }
            if (dsrc) {
                nn_sgemm(1, 0, ckk, (int)ld, d->OC, 1.0f, w, ckk, tmp, (int)ld, 0.0f, col, (int)ld);
                for (int j = 0; j < gn; j++)
                    col2im(dsrc + (long)j * d->C * ihw, col + j * hw, ld, d->C, d->H, d->W, d->KH, d->KW, d->sh, d->sw,
                           d->ph, d->pw, OH, OW);
            }
        }
    }
    if (sc.dwc && dw) expand_add_weight(dw, sc.dwc, taps, d->OC, d->C, d->KH * d->KW, nv);
}

