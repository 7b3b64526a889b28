/* nn/pooling.c — max-pool (a column-max scheme, with AVX-512 / AVX2 kernels for the stem's
 * 3x3/2/1), global average pool and adaptive max-pool, forward and backward. */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/level.h"

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

/* The stem's 3x3/2/1 pool without an argmax (inference), every plane in one call: only the value
 * matters, which is the window's maximum or a NaN when the window holds one, so the order of the
 * comparisons is free and both passes are plain selects. cm holds a row of column maxima between
 * two −∞ sentinels (they lose to every number and to a NaN). */
static inline __attribute__((always_inline)) float mp_max(float best, float v)
{
    return (v > best) | (v != v) ? v : best;
}

NN_VEC_FN(static, void, maxpool332_value, (float *out, const float *in, long planes, int H, int W, int OH, int OW, float *cm),
          (out, in, planes, H, W, OH, OW, cm), )
{
    cm[0] = cm[W + 1] = -INFINITY;
    float *c = cm + 1;
    for (long pl = 0; pl < planes; pl++) {
        const float *x = in + pl * H * W;
        float *o = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + (long)(2 * oh) * W, *rt = oh ? r0 - W : r0, *rb = 2 * oh + 1 < H ? r0 + W : r0;
            for (int w = 0; w < W; w++) c[w] = mp_max(mp_max(r0[w], rt[w]), rb[w]);
            for (int ow = 0; ow < OW; ow++) o[ow] = mp_max(mp_max(c[2 * ow], c[2 * ow - 1]), c[2 * ow + 1]);
            o += OW;
        }
    }
}

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
    if (k == 3 && s == 2 && p == 1 && H >= 2 && W >= 2 && !argmax) {
        float cm[W + 2];
        maxpool332_value(out, in, (long)N * C, H, W, OH, OW, cm);
        return;
    }
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

