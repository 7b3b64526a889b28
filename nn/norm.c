/* nn/norm.c — GroupNorm, BatchNorm2d and row L2 normalisation, forward and backward. Statistics
 * and gradient sums accumulate in double over 16 fixed float lanes, so results neither drift with
 * map size nor depend on the kernel level's vector width. nn/ref.c has the plain versions. */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/level.h"

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

void nn_groupnorm_maxpool_forward(float *out, float *mean, float *rstd, float *tmp, const float *in,
                                  const float *gamma, const float *beta, int N, int C, int H, int W, int G,
                                  float eps, int relu)
{
    assert((C / G) * G == C);
    int cpg = C / G, OH = nn_conv_out(H, 3, 2, 1), OW = nn_conv_out(W, 3, 2, 1);
    long HW = (long)H * W;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            long c0 = (long)n * C + (long)g * cpg;
            /* one group as a GroupNorm of one group: the same sums in the same order */
            groupnorm_forward_all(tmp, mean + n * G + g, rstd + n * G + g, in + c0 * HW, gamma ? gamma + g * cpg : NULL,
                                  beta ? beta + g * cpg : NULL, 1, cpg, (int)HW, 1, eps, relu);
            nn_maxpool_forward(out + c0 * OH * OW, NULL, tmp, 1, cpg, H, W, 3, 2, 1);
        }
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

