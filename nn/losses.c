/* nn/losses.c — losses and their gradients (see losses.h for the exact formulas).
 * Per-row softmax work is done in double on small stack buffers (K ≤ NN_LOSS_MAX_CLASSES). */
#include "nn/losses.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "nn/ops.h"

/* logp[k] = log_softmax(z/T)[k] in double */
static void log_softmax_row(double *logp, const float *z, int K, double T)
{
    double m = -INFINITY;
    for (int k = 0; k < K; k++)
        if (z[k] / T > m) m = z[k] / T;
    double s = 0;
    for (int k = 0; k < K; k++) s += exp(z[k] / T - m);
    double lse = m + log(s);
    for (int k = 0; k < K; k++) logp[k] = z[k] / T - lse;
}

double nn_cross_entropy(float *dlogits, const float *logits, const int32_t *labels, int N, int K,
                        const float *class_w, float smoothing, float scale)
{
    assert(K <= NN_LOSS_MAX_CLASSES);
    double logp[NN_LOSS_MAX_CLASSES];
    double wsum = 0, wall = 0;
    for (int k = 0; k < K; k++) wall += class_w ? class_w[k] : 1.0;
    for (int i = 0; i < N; i++)
        if (labels[i] >= 0) wsum += class_w ? class_w[labels[i]] : 1.0;
    if (wsum == 0) return 0.0; /* nothing to learn from (all ignored) */
    double eps = smoothing, loss = 0;
    for (int i = 0; i < N; i++) {
        int y = labels[i];
        if (y < 0) continue;
        assert(y < K);
        const float *z = logits + (long)i * K;
        log_softmax_row(logp, z, K, 1.0);
        double wy = class_w ? class_w[y] : 1.0, sm = 0;
        for (int k = 0; k < K; k++) sm -= (class_w ? class_w[k] : 1.0) * logp[k];
        loss += (1 - eps) * wy * (-logp[y]) + eps / K * sm;
        if (dlogits) {
            float *d = dlogits + (long)i * K;
            for (int k = 0; k < K; k++) {
                double p = exp(logp[k]), wk = class_w ? class_w[k] : 1.0;
                double g = (1 - eps) * wy * (p - (k == y)) + eps / K * (p * wall - wk);
                d[k] += (float)(scale * g / wsum);
            }
        }
    }
    return loss / wsum;
}

double nn_kd_kl(float *dzs, float *dzt, const float *zs, const float *zt, int N, int K, float T, float scale)
{
    assert(K <= NN_LOSS_MAX_CLASSES);
    double ls[NN_LOSS_MAX_CLASSES], lt[NN_LOSS_MAX_CLASSES];
    double loss = 0, f = (double)T * T / N;
    for (int i = 0; i < N; i++) {
        log_softmax_row(ls, zs + (long)i * K, K, T);
        log_softmax_row(lt, zt + (long)i * K, K, T);
        double kl = 0;
        for (int k = 0; k < K; k++) {
            double pt = exp(lt[k]);
            if (pt > 0) kl += pt * (lt[k] - ls[k]);
        }
        loss += kl;
        /* d/dzs = T²/N · (ps − pt)/T ; d/dzt = T²/N · pt·(lr − Σ pt·lr)/T with lr = log pt − log ps */
        if (dzs)
            for (int k = 0; k < K; k++)
                dzs[(long)i * K + k] += (float)(scale * f / T * (exp(ls[k]) - exp(lt[k])));
        if (dzt)
            for (int k = 0; k < K; k++) {
                double pt = exp(lt[k]);
                dzt[(long)i * K + k] += (float)(scale * f / T * pt * ((lt[k] - ls[k]) - kl));
            }
    }
    return loss * f;
}

double nn_mse(float *da, float *db, const float *a, const float *b, size_t n, float scale)
{
    double s = 0;
    float g2 = (float)(2.0 * scale / n);
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        s += (double)d * d;
        if (da) da[i] += g2 * d;
        if (db) db[i] -= g2 * d;
    }
    return s / n;
}

double nn_l1(float *da, float *db, const float *a, const float *b, size_t n, float scale)
{
    double s = 0;
    float g = (float)((double)scale / n);
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        s += fabs((double)d);
        float sg = d > 0 ? g : d < 0 ? -g : 0.0f; /* sign(0) = 0 as in PyTorch */
        if (da) da[i] += sg;
        if (db) db[i] -= sg;
    }
    return s / n;
}

double nn_rbd_loss(float *dzs, float *dFs, float *work, const float *zs, const float *zt, const float *Fs,
                   const float *Ft, int N, int K, int C, int Hs, int Ws, int Ht, int Wt, float T, float beta,
                   int l1, float scale, double parts[2])
{
    double kd = nn_kd_kl(dzs, NULL, zs, zt, N, K, T, scale);
    nn_adaptive_maxpool_forward(work, NULL, Ft, N, C, Ht, Wt, Hs, Ws);
    size_t n = (size_t)N * C * Hs * Ws;
    double ft = l1 ? nn_l1(dFs, NULL, Fs, work, n, scale * beta) : nn_mse(dFs, NULL, Fs, work, n, scale * beta);
    if (parts) {
        parts[0] = kd;
        parts[1] = beta * ft;
    }
    return kd + beta * ft;
}

/* ------------------------------------------------------------------ CRCKD */

void nn_membank_init(float *bank, int n, int D, mp_rng *rng)
{
    float stdv = (float)(1.0 / sqrt(D / 3.0));
    for (long i = 0; i < (long)n * D; i++) bank[i] = mp_rng_uniformf(rng, -stdv, stdv);
}

void nn_membank_update(float *bank, const float *g, const int32_t *ids, int B, int D, float momentum)
{
    for (int b = 0; b < B; b++) {
        float *m = bank + (long)ids[b] * D;
        double s = 0;
        for (int d = 0; d < D; d++) {
            m[d] = momentum * m[d] + (1.0f - momentum) * g[(long)b * D + d];
            s += (double)m[d] * m[d];
        }
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int d = 0; d < D; d++) m[d] *= inv;
    }
}

double nn_ccd_loss(float *dg, const float *g, const float *bank, const int32_t *idx, int B, int D, int P, int K,
                   int n_data, float tau, float *Z, float scale)
{
    int J = P + K;
    if (*Z <= 0) { /* freeze the normaliser on the first batch, as CRD does */
        double s = 0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < J; j++) {
                const float *m = bank + (long)idx[(long)b * J + j] * D, *x = g + (long)b * D;
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double)m[d] * x[d];
                s += exp(dot / tau);
            }
        *Z = (float)(s / ((double)B * J) * n_data);
    }
    double c = (double)K / n_data, loss = 0, z = *Z;
    for (int b = 0; b < B; b++) {
        const float *x = g + (long)b * D;
        for (int j = 0; j < J; j++) {
            const float *m = bank + (long)idx[(long)b * J + j] * D;
            double dot = 0;
            for (int d = 0; d < D; d++) dot += (double)m[d] * x[d];
            double s = exp(dot / tau) / z, coef;
            if (j < P) {
                loss += log(s / (s + c)) / P;
                coef = -(c / (s + c)) / P; /* d(−term)/d dot · tau */
            } else {
                loss += log(c / (s + c));
                coef = s / (s + c);
            }
            if (dg) {
                float f = (float)(scale * coef / (tau * B));
                float *gd = dg + (long)b * D;
                for (int d = 0; d < D; d++) gd[d] += f * m[d];
            }
        }
    }
    return -loss / B;
}

void nn_class_centroids(float *cent, const float *bank, const int32_t *row_labels, int n_data, int D,
                        int n_classes)
{
    memset(cent, 0, sizeof(float) * (size_t)n_classes * D);
    /* accumulate per class in the output, then scale; count fits in an int */
    for (int k = 0; k < n_classes; k++) {
        float *ck = cent + (long)k * D;
        long cnt = 0;
        double acc[1024];
        assert(D <= 1024);
        for (int d = 0; d < D; d++) acc[d] = 0;
        for (int i = 0; i < n_data; i++) {
            if (row_labels[i] != k) continue;
            const float *r = bank + (long)i * D;
            for (int d = 0; d < D; d++) acc[d] += r[d] > 0 ? r[d] : 0;
            cnt++;
        }
        if (!cnt) continue;
        double s = 0;
        for (int d = 0; d < D; d++) {
            acc[d] /= cnt;
            s += acc[d] * acc[d];
        }
        double nr = sqrt(s);
        if (nr < 1e-12) nr = 1e-12; /* F.normalize's eps */
        for (int d = 0; d < D; d++) ck[d] = (float)(acc[d] / nr);
    }
}

double nn_crp_loss(float *dgs, float *dgt, const float *gs, const float *gt, const float *cs, const float *ct,
                   int B, int D, int n_classes, float tau, float scale)
{
    assert(n_classes <= NN_LOSS_MAX_CLASSES);
    float rs[NN_LOSS_MAX_CLASSES], rt[NN_LOSS_MAX_CLASSES], drs[NN_LOSS_MAX_CLASSES], drt[NN_LOSS_MAX_CLASSES];
    double loss = 0;
    for (int b = 0; b < B; b++) {
        const float *xs = gs + (long)b * D, *xt = gt + (long)b * D;
        for (int k = 0; k < n_classes; k++) {
            double a = 0, t = 0;
            for (int d = 0; d < D; d++) {
                a += (double)xs[d] * cs[(long)k * D + d];
                t += (double)xt[d] * ct[(long)k * D + d];
            }
            rs[k] = (float)(a / tau);
            rt[k] = (float)(t / tau);
            drs[k] = drt[k] = 0;
        }
        /* one row of batchmean KL: scale by 1/B through the KL's own N */
        loss += nn_kd_kl(drs, dgt ? drt : NULL, rs, rt, 1, n_classes, 1.0f, (float)(scale / B));
        for (int k = 0; k < n_classes; k++) {
            if (dgs) {
                float f = drs[k] / tau;
                for (int d = 0; d < D; d++) dgs[(long)b * D + d] += f * cs[(long)k * D + d];
            }
            if (dgt) {
                float f = drt[k] / tau;
                for (int d = 0; d < D; d++) dgt[(long)b * D + d] += f * ct[(long)k * D + d];
            }
        }
    }
    return loss / B;
}

void nn_softmax_rows(float *p, const float *z, int n, int k)
{
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        float mx = zi[0];
        for (int c = 1; c < k; c++) mx = zi[c] > mx ? zi[c] : mx;
        double s = 0;
        for (int c = 0; c < k; c++) s += exp((double)zi[c] - mx);
        for (int c = 0; c < k; c++) p[(size_t)i * k + c] = (float)(exp((double)zi[c] - mx) / s);
    }
}
