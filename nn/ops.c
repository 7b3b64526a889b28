/* nn/ops.c — forward/backward of the engine's layers over NCHW float arrays.
 * Reductions (norm statistics, gradient sums) accumulate in double so results do not drift
 * with map size; the heavy lifting of convolutions and linear layers goes to nn_sgemm. */
#include "nn/ops.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "nn/gemm.h"

/* x86-64 builds carry three levels of the hot loops (see nn_kernels in ops.h): hand-written
 * AVX-512 / AVX2 kernels for a few small-map paths, and every NN_VEC_FN loop compiled three
 * times (AVX-512F, AVX2+FMA, baseline) behind a switch on the level. The baseline build targets
 * plain x86-64. Not under the sanitizers, which do not need the speed. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define NN_X86 1
#include <immintrin.h>
#else
#define NN_X86 0
#endif

static int g_cpu = -1, g_level = -1;
static pthread_once_t g_level_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"generic", "avx2", "avx512"};

const char *nn_kernels_name(nn_kernels k) { return k >= 0 && k <= NN_KERNELS_AVX512 ? level_names[k] : "?"; }

static int cpu_best(void)
{
#if NN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return NN_KERNELS_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NN_KERNELS_AVX2;
#endif
    return NN_KERNELS_GENERIC;
}

/* MAGPIE_KERNELS is a tuning knob, not a command's input: a bad value warns and runs on */
static void level_init(void)
{
    int cpu = cpu_best(), lv = cpu;
    const char *e = getenv("MAGPIE_KERNELS");
    if (e && *e && strcmp(e, "auto")) {
        int want = -1;
        for (int k = 0; k <= NN_KERNELS_AVX512; k++)
            if (!strcmp(e, level_names[k])) want = k;
        if (want < 0)
            mp_warn("MAGPIE_KERNELS=%s is not avx512, avx2, generic or auto: using %s", e, level_names[cpu]);
        else if (want > cpu)
            mp_warn("MAGPIE_KERNELS=%s: this CPU (or build) runs %s at most: using %s", e, level_names[cpu],
                    level_names[cpu]);
        else
            lv = want;
    }
    __atomic_store_n(&g_cpu, cpu, __ATOMIC_RELAXED);
    __atomic_store_n(&g_level, lv, __ATOMIC_RELEASE);
}

static inline int level(void)
{
    int v = __atomic_load_n(&g_level, __ATOMIC_ACQUIRE);
    if (__builtin_expect(v < 0, 0)) {
        pthread_once(&g_level_once, level_init);
        v = __atomic_load_n(&g_level, __ATOMIC_ACQUIRE);
    }
    return v;
}

nn_kernels nn_kernels_level(void) { return (nn_kernels)level(); }

nn_kernels nn_kernels_cpu(void)
{
    level();
    return (nn_kernels)__atomic_load_n(&g_cpu, __ATOMIC_RELAXED);
}

nn_kernels nn_kernels_set(nn_kernels k)
{
    int cpu = nn_kernels_cpu(), v = k < NN_KERNELS_GENERIC ? NN_KERNELS_GENERIC : k > cpu ? cpu : (int)k;
    __atomic_store_n(&g_level, v, __ATOMIC_RELEASE);
    return (nn_kernels)v;
}

/* NN_VEC_FN(storage, type, name, (params), (args), extra attributes) { body }: the body becomes
 * an always_inline name_i, compiled into one function per level, and name switches on the
 * level. Helpers a body calls should be always_inline too (or the _i of another NN_VEC_FN), so
 * they are compiled for the caller's level rather than dispatched again. */
#if NN_X86
#define NN_VEC_FN(sc, ret, name, params, args, extra)                                                         \
    static inline __attribute__((always_inline)) extra ret name##_i params;                                  \
    __attribute__((target("avx512f"))) extra static ret name##_avx512 params { return name##_i args; }      \
    __attribute__((target("avx2,fma"))) extra static ret name##_avx2 params { return name##_i args; }       \
    extra static ret name##_generic params { return name##_i args; }                                        \
    sc ret name params                                                                                       \
    {                                                                                                        \
        switch (level()) {                                                                                   \
        case NN_KERNELS_AVX512: return name##_avx512 args;                                                   \
        case NN_KERNELS_AVX2: return name##_avx2 args;                                                       \
        default: return name##_generic args;                                                                 \
        }                                                                                                    \
    }                                                                                                        \
    static inline __attribute__((always_inline)) extra ret name##_i params
#else
#define NN_VEC_FN(sc, ret, name, params, args, extra) \
    static inline ret name##_i params;              \
    sc ret name params { return name##_i args; }   \
    static inline ret name##_i params
#endif

/* Sums use 16 float lanes (a fixed order, so results are deterministic and vectorise without
 * -ffast-math), folded into double per call. */
#define LANES 16

/* ------------------------------------------------------------------ conv2d */

/* Maps smaller than this many output pixels are batched across images into one GEMM:
 * a 7x7 or 1x1 map would otherwise give GEMMs too narrow for BLAS to reach speed. */
#define NN_CONV_MIN_COLS 1024
/* maps of at most this many output pixels use index tables (see build_flat) */
#define NN_TAB_MAX 256

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
    if (g == 1) return is_direct(d) ? 0 : ckk * hw;
    /* col + gathered output (+ on small maps the tap-compacted weight, its gradient and the
     * flat index table) */
    return (ckk + (size_t)d->OC) * hw * (size_t)g + (hw <= NN_TAB_MAX ? (2 * (size_t)d->OC + hw) * ckk : 0);
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

/* pixel-major (image, pixel) × OC → NCHW, image by image */
NN_VEC_FN(static, void, transpose_images, (float *o, const float *tmp, int gn, int OC, long hw), (o, tmp, gn, OC, hw), NN_NOLIBCALL)
{
    for (int j = 0; j < gn; j++) {
        float *dj = o + (long)j * OC * hw;
        const float *sj = tmp + (long)j * hw * OC;
        for (long p = 0; p < hw; p++)
            for (int oc = 0; oc < OC; oc++) dj[oc * hw + p] = sj[p * OC + oc];
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

#if NN_X86
/* Few input channels, stride 2, output rows of at most 16 pixels (the stem below 32 px): a
 * direct convolution. Each image is copied once into a zero-padded buffer whose rows are split
 * into even and odd columns, so the 16 output pixels of a row read contiguous vectors per tap.
 * Writes NCHW with no im2col, GEMM packing or transpose. Every output is the sum over
 * (c, kh, kw) in that order of fused multiply-adds from zero, at both levels: AVX-512 and AVX2
 * give the same bits. ws: the weight as ckk × OC, then the padded image. */
static int stem_direct_ok(const nn_conv_dims *d, int OW)
{
    return level() >= NN_KERNELS_AVX2 && d->C <= 4 && d->sh == 2 && d->sw == 2 && OW <= 16 && d->OC % 8 == 0 &&
           d->KH * d->KW >= 9;
}

static size_t stem_direct_ws(const nn_conv_dims *d, int OH)
{
    size_t rows = 2 * (size_t)(OH - 1) + d->KH + 2, pw2 = d->KW / 2 + 17;
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
    const __mmask16 km = (__mmask16)((1u << OW) - 1);
    const long ohw = (long)OH * OW;
    for (int oh = 0; oh < OH; oh += 2) {
        int two = oh + 1 < OH;
        for (int ob = 0; ob < OC; ob += 8) {
            __m512 a0[8], a1[8];
            for (int j = 0; j < 8; j++) a0[j] = a1[j] = _mm512_setzero_ps();
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < KH; kh++) {
                    const float *r0 = buf + ((long)c * PR + 2 * oh + kh) * rs, *r1 = r0 + 2 * rs;
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
                float *oj = o + (long)(ob + j) * ohw + (long)oh * OW;
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
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(OW), lane),
                  m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(OW - 8), lane);
    const long ohw = (long)OH * OW;
    for (int oh = 0; oh < OH; oh++)
        for (int ob = 0; ob < OC; ob += 4) {
            __m256 a0[4], a1[4];
            for (int j = 0; j < 4; j++) a0[j] = a1[j] = _mm256_setzero_ps();
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < KH; kh++) {
                    const float *r0 = buf + ((long)c * PR + 2 * oh + kh) * rs;
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
                float *oj = o + (long)(ob + j) * ohw + (long)oh * OW;
                _mm256_maskstore_ps(oj, m0, a0[j]);
                _mm256_maskstore_ps(oj + 8, m1, a1[j]);
            }
        }
}

static void stem_direct(float *out, float *ws, const float *in, const float *w, const nn_conv_dims *d, int OH, int OW)
{
    const int C = d->C, H = d->H, W = d->W, KH = d->KH, KW = d->KW, OC = d->OC, ckk = C * KH * KW;
    stem_geom g = {C, KH, KW, OC, OH, OW, 2 * (OH - 1) + KH + 2, KW / 2 + 17, 2 * (KW / 2 + 17)};
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
#endif

void nn_conv2d_forward(float *out, float *ws, const float *in, const float *w, const float *b,
                       const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    long hw = (long)OH * OW, ihw = (long)d->H * d->W;
    int ckk = d->C * d->KH * d->KW, g = nn_conv2d_group(d), direct = is_direct(d);
#if NN_X86
    if (stem_direct_ok(d, OW) && stem_direct_ws(d, OH) <= nn_conv2d_workspace(d)) {
        stem_direct(out, ws, in, w, d, OH, OW);
        if (b)
            for (int n = 0; n < d->N; n++)
                for (int oc = 0; oc < d->OC; oc++) {
                    float *p = out + ((long)n * d->OC + oc) * hw, bv = b[oc];
                    for (long i = 0; i < hw; i++) p[i] += bv;
                }
        return;
    }
#endif
    int small = hw <= NN_TAB_MAX && g > 1, taps[d->KH * d->KW], nv;
    small_conv sc = {0};
    if (small) sc = small_setup(ws, taps, &nv, w, d, OH, OW, g);
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
                /* pixel-major output (ld × OC): on a 1x1 map that is NCHW already */
                im2col_flat(col, in + (long)n0 * d->C * ihw, (long)d->C * ihw, sc.idx, hw * sc.kk, gn);
                nn_sgemm(0, 1, (int)ld, d->OC, sc.kk, 1.0f, col, sc.kk, sc.wk, sc.kk, 0.0f, hw == 1 ? o : tmp, d->OC);
                if (hw > 1) transpose_images(o, tmp, gn, d->OC, hw);
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

/* ------------------------------------------------------------------ normalisation */

/* Normalise one channel plane, ReLU optionally fused. (x − mean)·scale + beta rather than
 * x·scale + shift: the latter cancels badly when rstd is large (near-constant groups). */
NN_VEC_FN(static, void, affine_plane, (float *o, const float *x, long n, float mean, float scale, float beta, int relu), (o, x, n, mean, scale, beta, relu), )
{
    if (relu)
        for (long i = 0; i < n; i++) {
            float v = (x[i] - mean) * scale + beta;
            o[i] = v > 0.0f ? v : 0.0f;
        }
    else
        for (long i = 0; i < n; i++) o[i] = (x[i] - mean) * scale + beta;
}

/* The lane sums spelt as GCC vectors: the scalar-array form above was left as 16 scalar
 * accumulators (vaddss/vfmadd231ss) by the vectoriser. Same lanes, same order, same results. */
typedef float vf16 __attribute__((vector_size(4 * LANES)));
typedef int vi16 __attribute__((vector_size(4 * LANES)));
/* unaligned load (a macro: a function returning vf16 would change the ABI between clones) */
#define VLOAD(p) (__extension__({                                                                                  \
    vf16 v_;                                                                                                       \
    memcpy(&v_, (p), sizeof v_);                                                                                   \
    v_;                                                                                                            \
}))

/* sums over a plane of g = dy (masked by out > 0 when out != NULL): Σg and Σg·x */
static inline __attribute__((always_inline)) void plane_sums(const float *dy, const float *x, const float *out, long n, double *sg, double *sgx)
{
    vf16 a = {0}, b = {0};
    long i = 0;
    if (out)
        for (; i + LANES <= n; i += LANES) {
            vf16 g = (vf16)((vi16)VLOAD(dy + i) & (VLOAD(out + i) > 0.0f));
            a += g;
            b += g * VLOAD(x + i);
        }
    else
        for (; i + LANES <= n; i += LANES) {
            vf16 g = VLOAD(dy + i);
            a += g;
            b += g * VLOAD(x + i);
        }
    double A = 0, B = 0;
    for (int j = 0; j < LANES; j++) A += a[j], B += b[j];
    for (; i < n; i++) {
        float g = (!out || out[i] > 0.0f) ? dy[i] : 0.0f;
        A += g;
        B += (double)g * x[i];
    }
    *sg += A;
    *sgx += B;
}

/* always_inline bodies, so one clone of a caller covers a whole norm (at 2x2 and 1x1 maps the
 * per-group calls through the clone dispatcher cost more than the sums) */
NN_VEC_FN(static, double, lane_sum, (const float *x, long n), (x, n), )
{
    vf16 acc = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES) acc += VLOAD(x + i);
    double s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += x[i];
    return s;
}

NN_VEC_FN(static, double, lane_sqdev, (const float *x, long n, float m), (x, n, m), )
{
    vf16 acc = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES) {
        vf16 t = VLOAD(x + i) - m;
        acc += t * t;
    }
    double s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += (double)(x[i] - m) * (x[i] - m);
    return s;
}


/* mean and biased variance of a set of planes (two passes: no cancellation when |mean| >> std) */
static void planes_stats(const float *x, long stride, int nplanes, long n, double *mean, double *var)
{
    double s = 0;
    for (int p = 0; p < nplanes; p++) s += lane_sum(x + p * stride, n);
    double cnt = (double)nplanes * n, m = s / cnt, v = 0;
    for (int p = 0; p < nplanes; p++) v += lane_sqdev(x + p * stride, n, (float)m);
    *mean = m;
    *var = v / cnt;
}

/* One group of GroupNorm: cpg channel planes, contiguous in NCHW. */
static inline __attribute__((always_inline)) void gn_apply(float *out, const float *in, int cpg, long HW, float mean, float r, const float *gamma,
                            const float *beta, int relu)
{
    for (int c = 0; c < cpg; c++) {
        float scale = r * (gamma ? gamma[c] : 1.0f), b = beta ? beta[c] : 0.0f;
        affine_plane_i(out + c * HW, in + c * HW, HW, mean, scale, b, relu);
    }
}

NN_VEC_FN(static, void, groupnorm_forward_all, (float *out, float *mean, float *rstd, const float *in, const float *gamma,
                                         const float *beta, int N, int C, int HW, int G, float eps, int relu), (out, mean, rstd, in, gamma, beta, N, C, HW, G, eps, relu), )
{
    int cpg = C / G;
    long cnt = (long)cpg * HW;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            long base = ((long)n * C + (long)g * cpg) * HW;
            double m = lane_sum_i(in + base, cnt) / cnt;
            double v = lane_sqdev_i(in + base, cnt, (float)m) / cnt;
            float r = (float)(1.0 / sqrt(v + eps));
            mean[n * G + g] = (float)m;
            rstd[n * G + g] = r;
            gn_apply(out + base, in + base, cpg, HW, (float)m, r, gamma ? gamma + g * cpg : NULL,
                     beta ? beta + g * cpg : NULL, relu);
        }
}

void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                          const float *beta, int N, int C, int HW, int G, float eps, int relu)
{
    assert((C / G) * G == C);
    groupnorm_forward_all(out, mean, rstd, in, gamma, beta, N, C, HW, G, eps, relu);
}

static inline __attribute__((always_inline)) void norm_dx(float *dx, const float *dy, const float *x, const float *o, long n, float k, float mean,
                           float c2, float c3, int set)
{
    if (set) { /* dx written, not accumulated (the caller skipped zeroing it) */
        if (o)
            for (long i = 0; i < n; i++) {
                float g = o[i] > 0.0f ? dy[i] : 0.0f;
                dx[i] = g * k + (x[i] - mean) * c2 + c3;
            }
        else
            for (long i = 0; i < n; i++) dx[i] = dy[i] * k + (x[i] - mean) * c2 + c3;
        return;
    }
    if (o)
        for (long i = 0; i < n; i++) {
            float g = o[i] > 0.0f ? dy[i] : 0.0f;
            dx[i] += g * k + (x[i] - mean) * c2 + c3;
        }
    else
        for (long i = 0; i < n; i++) dx[i] += dy[i] * k + (x[i] - mean) * c2 + c3;
}

/* Backward of y = (x - mean)·rstd·gamma + beta over a set of planes sharing one (mean, rstd):
 * dx = dy·rstd·gamma + (x − mean)·c2 + c3 with the group sums folded into c2, c3. stats_sums=1 means
 * mean and rstd came from these planes (train); 0 means they are constants (BN eval). */
static inline __attribute__((always_inline)) void
norm_backward_group_body(float *din, float *dgamma, float *dbeta, const float *dout, const float *in, const float *out,
                      float mean, float rstd, const float *gamma, int c0, int nch, int nrep, long rep_stride, long HW,
                      int stats_sums, int set)
{
    double A = 0, B = 0; /* Σ gamma·dy, Σ gamma·dy·xhat over the whole group */
    for (int c = 0; c < nch; c++) {
        double sg = 0, sgx = 0;
        for (int r = 0; r < nrep; r++) {
            long off = r * rep_stride + (long)c * HW;
            plane_sums(dout + off, in + off, out ? out + off : NULL, HW, &sg, &sgx);
        }
        double sxhat = (sgx - mean * sg) * rstd; /* Σ dy·xhat */
        float gm = gamma ? gamma[c0 + c] : 1.0f;
        if (dgamma) dgamma[c0 + c] += (float)sxhat;
        if (dbeta) dbeta[c0 + c] += (float)sg;
        A += gm * sg;
        B += gm * sxhat;
    }
    if (!din) return;
    double cnt = (double)nch * nrep * HW;
    /* centred form: folding mean into the constant would cancel badly when |mean| >> std */
    float c2 = 0, c3 = 0;
    if (stats_sums) {
        c2 = (float)(-(double)rstd * rstd * B / cnt);
        c3 = (float)(-(double)rstd * A / cnt);
    }
    for (int c = 0; c < nch; c++) {
        float k = rstd * (gamma ? gamma[c0 + c] : 1.0f);
        for (int r = 0; r < nrep; r++) {
            long off = r * rep_stride + (long)c * HW;
            norm_dx(din + off, dout + off, in + off, out ? out + off : NULL, HW, k, mean, c2, c3, set);
        }
    }
}

NN_VEC_FN(static, void, norm_backward_group, (float *din, float *dgamma, float *dbeta, const float *dout,
                                       const float *in, const float *out, float mean, float rstd,
                                       const float *gamma, int c0, int nch, int nrep, long rep_stride, long HW,
                                       int stats_sums), (din, dgamma, dbeta, dout, in, out, mean, rstd, gamma, c0, nch, nrep, rep_stride, HW, stats_sums), )
{
    norm_backward_group_body(din, dgamma, dbeta, dout, in, out, mean, rstd, gamma, c0, nch, nrep, rep_stride, HW,
                          stats_sums, 0);
}

/* the whole GroupNorm in one clone: per-group calls through the dispatcher dominate on small maps */
NN_VEC_FN(static, void, groupnorm_backward_all, (float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                                          const float *out, const float *mean, const float *rstd, const float *gamma,
                                          int N, int C, int HW, int G, int set), (din, dgamma, dbeta, dout, in, out, mean, rstd, gamma, N, C, HW, G, set), )
{
    int cpg = C / G;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            long base = ((long)n * C + (long)g * cpg) * HW;
            norm_backward_group_body(din ? din + base : NULL, dgamma, dbeta, dout + base, in + base,
                                out ? out + base : NULL, mean[n * G + g], rstd[n * G + g],
                                gamma, g * cpg, cpg, 1, 0, HW, 1, set);
        }
}

void nn_groupnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                           const float *out, const float *mean, const float *rstd, const float *gamma,
                           int N, int C, int HW, int G)
{
    groupnorm_backward_all(din, dgamma, dbeta, dout, in, out, mean, rstd, gamma, N, C, HW, G, 0);
}

void nn_groupnorm_backward_set(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                               const float *out, const float *mean, const float *rstd, const float *gamma,
                               int N, int C, int HW, int G)
{
    groupnorm_backward_all(din, dgamma, dbeta, dout, in, out, mean, rstd, gamma, N, C, HW, G, 1);
}

void nn_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                          float *num_batches_tracked, const float *in, const float *gamma,
                          const float *beta, int N, int C, int HW, float momentum, float eps,
                          int train, int relu)
{
    long cnt = (long)N * HW;
    for (int c = 0; c < C; c++) {
        double m, v;
        if (train) {
            planes_stats(in + (long)c * HW, (long)C * HW, N, HW, &m, &v);
            if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            if (running_var)
                running_var[c] = (float)((1.0 - momentum) * running_var[c] +
                                         momentum * (cnt > 1 ? v * cnt / (cnt - 1) : v));
        } else {
            m = running_mean[c];
            v = running_var[c];
        }
        float r = (float)(1.0 / sqrt(v + eps));
        mean[c] = (float)m;
        rstd[c] = r;
        float scale = r * (gamma ? gamma[c] : 1.0f), bt = beta ? beta[c] : 0.0f;
        for (int n = 0; n < N; n++) {
            long off = ((long)n * C + c) * HW;
            affine_plane(out + off, in + off, HW, (float)m, scale, bt, relu);
        }
    }
    if (train && num_batches_tracked) *num_batches_tracked += 1.0f;
}

void nn_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                           const float *out, const float *mean, const float *rstd, const float *gamma,
                           int N, int C, int HW, int train)
{
    for (int c = 0; c < C; c++) {
        long off = (long)c * HW;
        norm_backward_group(din ? din + off : NULL, dgamma, dbeta, dout + off, in + off,
                            out ? out + off : NULL, mean[c], rstd[c], gamma, c, 1, N, (long)C * HW, HW, train);
    }
}

/* ------------------------------------------------------------------ pointwise */

NN_VEC_FN(, void, nn_relu_forward, (float *out, const float *in, size_t n), (out, in, n), )
{
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

NN_VEC_FN(, void, nn_relu_backward, (float *din, const float *dout, const float *out, size_t n), (din, dout, out, n), )
{
    for (size_t i = 0; i < n; i++) din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

NN_VEC_FN(, void, nn_add_forward, (float *out, const float *a, const float *b, size_t n, int relu), (out, a, b, n, relu), )
{
    if (relu)
        for (size_t i = 0; i < n; i++) {
            float v = a[i] + b[i];
            out[i] = v > 0.0f ? v : 0.0f;
        }
    else
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

NN_VEC_FN(, void, nn_add_backward_set, (float *da, float *db, const float *dout, const float *out, size_t n, int relu,
                               int set_a, int set_b), (da, db, dout, out, n, relu, set_a, set_b), )
{
    if (!set_a && !set_b) {
        nn_add_backward(da, db, dout, out, n, relu);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float g = (!relu || out[i] > 0.0f) ? dout[i] : 0.0f;
        if (da) da[i] = set_a ? g : da[i] + g;
        if (db) db[i] = set_b ? g : db[i] + g;
    }
}

NN_VEC_FN(, void, nn_add_backward, (float *da, float *db, const float *dout, const float *out, size_t n, int relu), (da, db, dout, out, n, relu), )
{
    for (size_t i = 0; i < n; i++) {
        float g = (!relu || out[i] > 0.0f) ? dout[i] : 0.0f;
        if (da) da[i] += g;
        if (db) db[i] += g;
    }
}

void nn_dropout_forward(float *out, float *mask, const float *in, size_t n, float p, mp_rng *rng, int train)
{
    if (!train || p <= 0.0f) {
        if (out != in) memcpy(out, in, n * sizeof(float));
        if (mask)
            for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    float keep = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = mp_rng_uniform(rng) < p ? 0.0f : keep;
        out[i] = in[i] * mask[i];
    }
}

void nn_dropout_backward(float *din, const float *dout, const float *mask, size_t n, int train)
{
    if (!train) {
        for (size_t i = 0; i < n; i++) din[i] += dout[i];
        return;
    }
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * mask[i];
}

/* ------------------------------------------------------------------ pooling */

/* Max over rows first (contiguous, vectorises), then over the column window. With an argmax
 * the row of each column maximum is kept too, and the window picks the first maximum in scan
 * order (smallest row, then column), as PyTorch does; a NaN wins. */
static inline __attribute__((always_inline)) void colmax_rows(float *cm, int *ri, const float *x, int W, int h0, int h1)
{
    for (int w = 0; w < W; w++) cm[w] = x[(long)h0 * W + w], ri[w] = h0;
    for (int h = h0 + 1; h < h1; h++)
        for (int w = 0; w < W; w++) {
            float v = x[(long)h * W + w];
            int take = v > cm[w] || (v != v && cm[w] == cm[w]);
            cm[w] = take ? v : cm[w];
            ri[w] = take ? h : ri[w];
        }
}

/* One whole plane per call: at 14x14 the per-row calls through the clone dispatcher cost more
 * than the maxima. */
NN_VEC_FN(static, void, maxpool_plane, (float *o, int32_t *am, const float *x, float *cm, int *ri, int H, int W, int k,
                                 int s, int p, int OH, int OW), (o, am, x, cm, ri, H, W, k, s, p, OH, OW), )
{
    for (int oh = 0; oh < OH; oh++) {
        int h0 = oh * s - p, h1 = h0 + k;
        if (h0 < 0) h0 = 0;
        if (h1 > H) h1 = H;
        colmax_rows(cm, ri, x, W, h0, h1);
        for (int ow = 0; ow < OW; ow++) {
            int w0 = ow * s - p, w1 = w0 + k;
            if (w0 < 0) w0 = 0;
            if (w1 > W) w1 = W;
            float best = cm[w0];
            int bi = ri[w0] * W + w0;
            /* selects, not branches: on real activations the comparisons are coin flips */
            if (am)
                for (int w = w0 + 1; w < w1; w++) {
                    float v = cm[w];
                    int key = ri[w] * W + w;
                    int take = (v > best) | ((v == best) & (key < bi)) | ((v != v) & (best == best));
                    best = take ? v : best;
                    bi = take ? key : bi;
                }
            else
                for (int w = w0 + 1; w < w1; w++) {
                    float v = cm[w];
                    int take = (v > best) | ((v != v) & (best == best));
                    best = take ? v : best;
                }
            o[oh * OW + ow] = best;
            if (am) am[oh * OW + ow] = bi;
        }
    }
}

#if NN_X86
/* 3x3 stride 2 pad 1 (the stem's pool), 16 columns at a time with AVX-512: a vertical pass
 * into cm/ri (column maxima and their rows), then a horizontal pass picking columns
 * 2ow-1, 2ow, 2ow+1 by permutes. Same choices as maxpool_plane (the first maximum in scan
 * order, a NaN wins), taken centre first: the earlier neighbour on > or on = with the smaller
 * key or on NaN, the later one on >, on = with the smaller key, or on a first NaN. */
static inline __attribute__((target("avx512f"), always_inline)) __mmask16 mp_take(__m512 v, __m512 best, __mmask16 valid)
{
    __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
    return (gt | nan) & valid;
}

static inline __attribute__((target("avx512f"), always_inline)) void
maxpool332_plane(float *o, int32_t *am, const float *x, float *cm, int *ri, int H, int W, int OH, int OW, int with_am)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int oh = 0; oh < OH; oh++) {
        int hc = 2 * oh, ht = hc - 1, hb = hc + 1;
        for (int w0 = 0; w0 < W; w0 += 16) {
            __mmask16 k = W - w0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (W - w0)) - 1);
            __m512 best = _mm512_maskz_loadu_ps(k, x + (long)hc * W + w0);
            __m512i r = _mm512_set1_epi32(hc);
            if (ht >= 0) { /* the earlier row wins ties */
                __m512 v = _mm512_maskz_loadu_ps(k, x + (long)ht * W + w0);
                __mmask16 t = (_mm512_cmp_ps_mask(v, best, _CMP_GE_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) & k;
                best = _mm512_mask_blend_ps(t, best, v);
                if (with_am) r = _mm512_mask_blend_epi32(t, r, _mm512_set1_epi32(ht));
            }
            if (hb < H) {
                __m512 v = _mm512_maskz_loadu_ps(k, x + (long)hb * W + w0);
                __mmask16 t = mp_take(v, best, k);
                best = _mm512_mask_blend_ps(t, best, v);
                if (with_am) r = _mm512_mask_blend_epi32(t, r, _mm512_set1_epi32(hb));
            }
            _mm512_mask_storeu_ps(cm + w0, k, best);
            if (with_am) _mm512_mask_storeu_epi32(ri + w0, k, r);
        }
        for (int o0 = 0; o0 < OW; o0 += 16) {
            int n = OW - o0 < 16 ? OW - o0 : 16;
            __mmask16 ko = (__mmask16)((1u << n) - 1);
            /* columns 2o0-2 .. 2o0+31 of cm (cm has 2 leading and 32 trailing spare slots) */
            int c0 = 2 * o0;
            __m512 pm = _mm512_loadu_ps(cm + c0 - 2), p0 = _mm512_loadu_ps(cm + c0), p1 = _mm512_loadu_ps(cm + c0 + 14),
                   p2 = _mm512_loadu_ps(cm + c0 + 16);
            __m512 B = _mm512_permutex2var_ps(p0, even, p2), C = _mm512_permutex2var_ps(p0, odd, p2);
            __m512 A = _mm512_permutex2var_ps(pm, odd, p1);
            __m512i col = _mm512_add_epi32(_mm512_slli_epi32(lane, 1), _mm512_set1_epi32(c0)); /* 2ow */
            __mmask16 vA = _mm512_cmpgt_epi32_mask(col, _mm512_setzero_si512()) & ko;
            __mmask16 vC = _mm512_cmplt_epi32_mask(_mm512_add_epi32(col, _mm512_set1_epi32(1)), _mm512_set1_epi32(W)) & ko;
            __m512 best = B;
            __m512i key = _mm512_setzero_si512();
            if (with_am) {
                __m512i q0 = _mm512_loadu_si512(ri + c0), q2 = _mm512_loadu_si512(ri + c0 + 16);
                __m512i qm = _mm512_loadu_si512(ri + c0 - 2), q1 = _mm512_loadu_si512(ri + c0 + 14);
                __m512i Wv = _mm512_set1_epi32(W);
                __m512i kB = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_permutex2var_epi32(q0, even, q2), Wv), col);
                __m512i kC = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_permutex2var_epi32(q0, odd, q2), Wv),
                                              _mm512_add_epi32(col, _mm512_set1_epi32(1)));
                __m512i kA = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_permutex2var_epi32(qm, odd, q1), Wv),
                                              _mm512_sub_epi32(col, _mm512_set1_epi32(1)));
                __mmask16 tA = (_mm512_cmp_ps_mask(A, best, _CMP_GT_OQ) |
                                (_mm512_cmp_ps_mask(A, best, _CMP_EQ_OQ) & _mm512_cmplt_epi32_mask(kA, kB)) |
                                _mm512_cmp_ps_mask(A, A, _CMP_UNORD_Q)) & vA;
                best = _mm512_mask_blend_ps(tA, best, A);
                key = _mm512_mask_blend_epi32(tA, kB, kA);
                __mmask16 tC = mp_take(C, best, vC) |
                               (_mm512_cmp_ps_mask(C, best, _CMP_EQ_OQ) & _mm512_cmplt_epi32_mask(kC, key) & vC);
                best = _mm512_mask_blend_ps(tC, best, C);
                key = _mm512_mask_blend_epi32(tC, key, kC);
                _mm512_mask_storeu_epi32(am + oh * OW + o0, ko, key);
            } else {
                __mmask16 tA = (_mm512_cmp_ps_mask(A, best, _CMP_GE_OQ) | _mm512_cmp_ps_mask(A, A, _CMP_UNORD_Q)) & vA;
                best = _mm512_mask_blend_ps(tA, best, A);
                best = _mm512_mask_blend_ps(mp_take(C, best, vC), best, C);
            }
            _mm512_mask_storeu_ps(o + oh * OW + o0, ko, best);
        }
    }
}

__attribute__((target("avx512f"))) static void maxpool332(float *out, int32_t *argmax, const float *in, long planes,
                                                          int H, int W, int OH, int OW)
{
    float cmb[W + 40];
    int rib[W + 40];
    for (int i = 0; i < W + 40; i++) cmb[i] = 0.0f, rib[i] = 0;
    for (long pl = 0; pl < planes; pl++)
        if (argmax)
            maxpool332_plane(out + pl * OH * OW, argmax + pl * OH * OW, in + pl * H * W, cmb + 2, rib + 2, H, W, OH,
                             OW, 1);
        else
            maxpool332_plane(out + pl * OH * OW, NULL, in + pl * H * W, cmb + 2, rib + 2, H, W, OH, OW, 0);
}

/* The AVX2 twin, eight columns at a time: the same passes and the same choices, with compare
 * results as lane masks and blendv for the masked blends; the even and odd columns come from
 * an in-lane shuffle and a 64-bit permute (AVX2 has no two-source cross-lane permute). */
#define MP2_F(x) _mm256_castsi256_ps(x)
#define MP2_I(x) _mm256_castps_si256(x)
static inline __attribute__((target("avx2,fma"), always_inline)) __m256 mp2_take(__m256 v, __m256 best, __m256 valid)
{
    __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
    __m256 nan = _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q));
    return _mm256_and_ps(_mm256_or_ps(gt, nan), valid);
}

/* columns 0, 2, .., 14 (even) or 1, 3, .., 15 (odd) of lo:hi */
static inline __attribute__((target("avx2,fma"), always_inline)) __m256 mp2_even(__m256 lo, __m256 hi)
{
    __m256 t = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}
static inline __attribute__((target("avx2,fma"), always_inline)) __m256 mp2_odd(__m256 lo, __m256 hi)
{
    __m256 t = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

static inline __attribute__((target("avx2,fma"), always_inline)) void
maxpool332_plane_avx2(float *o, int32_t *am, const float *x, float *cm, int *ri, int H, int W, int OH, int OW,
                      int with_am)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i Wv = _mm256_set1_epi32(W), one = _mm256_set1_epi32(1);
    for (int oh = 0; oh < OH; oh++) {
        int hc = 2 * oh, ht = hc - 1, hb = hc + 1;
        for (int w0 = 0; w0 < W; w0 += 8) {
            __m256i ki = _mm256_cmpgt_epi32(_mm256_set1_epi32(W - w0), lane);
            __m256 k = MP2_F(ki);
            __m256 best = _mm256_maskload_ps(x + (long)hc * W + w0, ki);
            __m256i r = _mm256_set1_epi32(hc);
            if (ht >= 0) { /* the earlier row wins ties */
                __m256 v = _mm256_maskload_ps(x + (long)ht * W + w0, ki);
                __m256 t = _mm256_and_ps(_mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GE_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)), k);
                best = _mm256_blendv_ps(best, v, t);
                if (with_am) r = MP2_I(_mm256_blendv_ps(MP2_F(r), MP2_F(_mm256_set1_epi32(ht)), t));
            }
            if (hb < H) {
                __m256 v = _mm256_maskload_ps(x + (long)hb * W + w0, ki);
                __m256 t = mp2_take(v, best, k);
                best = _mm256_blendv_ps(best, v, t);
                if (with_am) r = MP2_I(_mm256_blendv_ps(MP2_F(r), MP2_F(_mm256_set1_epi32(hb)), t));
            }
            _mm256_maskstore_ps(cm + w0, ki, best);
            if (with_am) _mm256_maskstore_epi32(ri + w0, ki, r);
        }
        for (int o0 = 0; o0 < OW; o0 += 8) {
            __m256i koi = _mm256_cmpgt_epi32(_mm256_set1_epi32(OW - o0), lane);
            /* columns 2o0-2 .. 2o0+15 of cm (cm has 2 leading and 32 trailing spare slots) */
            int c0 = 2 * o0;
            __m256 p0 = _mm256_loadu_ps(cm + c0), p1 = _mm256_loadu_ps(cm + c0 + 8);
            __m256 pm = _mm256_loadu_ps(cm + c0 - 2), pn = _mm256_loadu_ps(cm + c0 + 6);
            __m256 B = mp2_even(p0, p1), C = mp2_odd(p0, p1), A = mp2_odd(pm, pn);
            __m256i col = _mm256_add_epi32(_mm256_slli_epi32(lane, 1), _mm256_set1_epi32(c0)); /* 2ow */
            __m256 vA = MP2_F(_mm256_and_si256(_mm256_cmpgt_epi32(col, _mm256_setzero_si256()), koi));
            __m256 vC = MP2_F(_mm256_and_si256(_mm256_cmpgt_epi32(Wv, _mm256_add_epi32(col, one)), koi));
            __m256 best = B;
            if (with_am) {
                __m256 q0 = _mm256_loadu_ps((const float *)(ri + c0)), q1 = _mm256_loadu_ps((const float *)(ri + c0 + 8));
                __m256 qm = _mm256_loadu_ps((const float *)(ri + c0 - 2)), qn = _mm256_loadu_ps((const float *)(ri + c0 + 6));
                __m256i kB = _mm256_add_epi32(_mm256_mullo_epi32(MP2_I(mp2_even(q0, q1)), Wv), col);
                __m256i kC = _mm256_add_epi32(_mm256_mullo_epi32(MP2_I(mp2_odd(q0, q1)), Wv), _mm256_add_epi32(col, one));
                __m256i kA = _mm256_add_epi32(_mm256_mullo_epi32(MP2_I(mp2_odd(qm, qn)), Wv), _mm256_sub_epi32(col, one));
                __m256 tA = _mm256_and_ps(
                    _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(A, best, _CMP_GT_OQ),
                                              _mm256_and_ps(_mm256_cmp_ps(A, best, _CMP_EQ_OQ), MP2_F(_mm256_cmpgt_epi32(kB, kA)))),
                                 _mm256_cmp_ps(A, A, _CMP_UNORD_Q)),
                    vA);
                best = _mm256_blendv_ps(best, A, tA);
                __m256i key = MP2_I(_mm256_blendv_ps(MP2_F(kB), MP2_F(kA), tA));
                __m256 tC = _mm256_or_ps(mp2_take(C, best, vC),
                                         _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(C, best, _CMP_EQ_OQ),
                                                                     MP2_F(_mm256_cmpgt_epi32(key, kC))), vC));
                best = _mm256_blendv_ps(best, C, tC);
                key = MP2_I(_mm256_blendv_ps(MP2_F(key), MP2_F(kC), tC));
                _mm256_maskstore_epi32(am + oh * OW + o0, koi, key);
            } else {
                __m256 tA = _mm256_and_ps(_mm256_or_ps(_mm256_cmp_ps(A, best, _CMP_GE_OQ), _mm256_cmp_ps(A, A, _CMP_UNORD_Q)), vA);
                best = _mm256_blendv_ps(best, A, tA);
                best = _mm256_blendv_ps(best, C, mp2_take(C, best, vC));
            }
            _mm256_maskstore_ps(o + oh * OW + o0, koi, best);
        }
    }
}

__attribute__((target("avx2,fma"))) static void maxpool332_avx2(float *out, int32_t *argmax, const float *in,
                                                               long planes, int H, int W, int OH, int OW)
{
    float cmb[W + 40];
    int rib[W + 40];
    for (int i = 0; i < W + 40; i++) cmb[i] = 0.0f, rib[i] = 0;
    for (long pl = 0; pl < planes; pl++)
        if (argmax)
            maxpool332_plane_avx2(out + pl * OH * OW, argmax + pl * OH * OW, in + pl * H * W, cmb + 2, rib + 2, H, W,
                                  OH, OW, 1);
        else
            maxpool332_plane_avx2(out + pl * OH * OW, NULL, in + pl * H * W, cmb + 2, rib + 2, H, W, OH, OW, 0);
}
#endif

void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W,
                        int k, int s, int p)
{
    int OH = nn_conv_out(H, k, s, p), OW = nn_conv_out(W, k, s, p);
#if NN_X86
    if (k == 3 && s == 2 && p == 1 && H >= 2 && W >= 2 && level() >= NN_KERNELS_AVX2) {
        if (level() >= NN_KERNELS_AVX512) maxpool332(out, argmax, in, (long)N * C, H, W, OH, OW);
        else maxpool332_avx2(out, argmax, in, (long)N * C, H, W, OH, OW);
        return;
    }
#endif
    float cm[W > 0 ? W : 1]; /* one row of column maxima and their rows: 2·W words of stack */
    int ri[W > 0 ? W : 1];
    for (long pl = 0; pl < (long)N * C; pl++)
        maxpool_plane(out + pl * OH * OW, argmax ? argmax + pl * OH * OW : NULL, in + pl * H * W, cm, ri, H, W, k, s,
                      p, OH, OW);
}

void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H,
                         int W, int OH, int OW)
{
    for (long pl = 0; pl < (long)N * C; pl++) {
        float *dx = din + pl * H * W;
        const float *dy = dout + pl * OH * OW;
        const int32_t *am = argmax + pl * OH * OW;
        for (long i = 0; i < (long)OH * OW; i++) dx[am[i]] += dy[i];
    }
}

void nn_avgpool_global_forward(float *out, const float *in, int N, int C, int HW)
{
    for (long pl = 0; pl < (long)N * C; pl++) {
        const float *x = in + pl * HW;
        double s = 0;
        for (int i = 0; i < HW; i++) s += x[i];
        out[pl] = (float)(s / HW);
    }
}

NN_VEC_FN(, void, nn_avgpool_global_backward, (float *din, const float *dout, int N, int C, int HW), (din, dout, N, C, HW), )
{
    for (long pl = 0; pl < (long)N * C; pl++) {
        float g = dout[pl] / (float)HW;
        float *dx = din + pl * HW;
        for (int i = 0; i < HW; i++) dx[i] += g;
    }
}

void nn_adaptive_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H,
                                 int W, int OH, int OW)
{
    for (long pl = 0; pl < (long)N * C; pl++) {
        const float *x = in + pl * H * W;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = (int)(((long)oh * H) / OH), h1 = (int)(((long)(oh + 1) * H + OH - 1) / OH);
            for (int ow = 0; ow < OW; ow++) {
                int w0 = (int)(((long)ow * W) / OW), w1 = (int)(((long)(ow + 1) * W + OW - 1) / OW);
                float best = -INFINITY;
                int bi = h0 * W + w0;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) {
                        float v = x[h * W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = h * W + w;
                            if (isnan(v)) goto done;
                        }
                    }
            done:
                out[pl * OH * OW + oh * OW + ow] = best;
                if (argmax) argmax[pl * OH * OW + oh * OW + ow] = bi;
            }
        }
    }
}

/* ------------------------------------------------------------------ linear */

void nn_linear_forward(float *out, const float *in, const float *w, const float *b, int N, int IN, int OUT)
{
    nn_sgemm(0, 1, N, OUT, IN, 1.0f, in, IN, w, IN, 0.0f, out, OUT);
    if (b)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OUT; o++) out[(long)n * OUT + o] += b[o];
}

void nn_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                        const float *w, int N, int IN, int OUT)
{
    if (dw) nn_sgemm(1, 0, OUT, IN, N, 1.0f, dout, OUT, in, IN, 1.0f, dw, IN);
    if (din) nn_sgemm(0, 0, N, IN, OUT, 1.0f, dout, OUT, w, IN, 1.0f, din, IN);
    if (db)
        for (int o = 0; o < OUT; o++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += dout[(long)n * OUT + o];
            db[o] += (float)s;
        }
}

/* ------------------------------------------------------------------ L2 normalisation */

void nn_l2norm_forward(float *out, float *norm, const float *in, int N, int D, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *x = in + (long)n * D;
        double s = 0;
        for (int i = 0; i < D; i++) s += (double)x[i] * x[i];
        float nr = (float)sqrt(s);
        norm[n] = nr;
        float inv = 1.0f / (nr > eps ? nr : eps);
        for (int i = 0; i < D; i++) out[(long)n * D + i] = x[i] * inv;
    }
}

void nn_l2norm_backward(float *din, const float *dout, const float *out, const float *norm, int N, int D,
                        float eps)
{
    for (int n = 0; n < N; n++) {
        const float *y = out + (long)n * D, *dy = dout + (long)n * D;
        float *dx = din + (long)n * D;
        if (norm[n] > eps) { /* d(x/|x|) = (dy - y·<y,dy>) / |x| */
            double s = 0;
            for (int i = 0; i < D; i++) s += (double)y[i] * dy[i];
            float inv = 1.0f / norm[n], sf = (float)s;
            for (int i = 0; i < D; i++) dx[i] += (dy[i] - y[i] * sf) * inv;
        } else { /* the clamp is active: x/eps is linear */
            for (int i = 0; i < D; i++) dx[i] += dy[i] / eps;
        }
    }
}
