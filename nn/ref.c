/* nn/ref.c — plain references of the ops (nn/ref.h): the maths written once, slowly and plainly. */
#include "nn/ref.h"

#include <math.h>

/* ---- conv2d ---- */

void nn_ref_conv2d_forward(float *out, const float *in, const float *w, const float *b, const nn_conv_dims *d)
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

void nn_ref_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const nn_conv_dims *d)
{
    int OH = nn_conv_out(d->H, d->KH, d->sh, d->ph), OW = nn_conv_out(d->W, d->KW, d->sw, d->pw);
    /* dw[oc,c,kh,kw] = Σ_{n,oh,ow} dout · in at the tap; db[oc] = Σ dout */
    for (int oc = 0; oc < d->OC; oc++) {
        if (db) {
            double s = 0;
            for (int n = 0; n < d->N; n++)
                for (int i = 0; i < OH * OW; i++) s += dout[((long)n * d->OC + oc) * OH * OW + i];
            db[oc] += (float)s;
        }
        if (dw)
            for (int c = 0; c < d->C; c++)
                for (int kh = 0; kh < d->KH; kh++)
                    for (int kw = 0; kw < d->KW; kw++) {
                        double s = 0;
                        for (int n = 0; n < d->N; n++)
                            for (int oh = 0; oh < OH; oh++)
                                for (int ow = 0; ow < OW; ow++) {
                                    int ih = oh * d->sh - d->ph + kh, iw = ow * d->sw - d->pw + kw;
                                    if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W) continue;
                                    s += (double)dout[(((long)n * d->OC + oc) * OH + oh) * OW + ow] *
                                         in[(((long)n * d->C + c) * d->H + ih) * d->W + iw];
                                }
                        dw[(((long)oc * d->C + c) * d->KH + kh) * d->KW + kw] += (float)s;
                    }
    }
    /* din[n,c,ih,iw] = Σ_{oc,kh,kw} dout at the output that tap reads from · w */
    if (din)
        for (int n = 0; n < d->N; n++)
            for (int c = 0; c < d->C; c++)
                for (int ih = 0; ih < d->H; ih++)
                    for (int iw = 0; iw < d->W; iw++) {
                        double s = 0;
                        for (int oc = 0; oc < d->OC; oc++)
                            for (int kh = 0; kh < d->KH; kh++)
                                for (int kw = 0; kw < d->KW; kw++) {
                                    int th = ih + d->ph - kh, tw = iw + d->pw - kw;
                                    if (th < 0 || tw < 0 || th % d->sh || tw % d->sw) continue;
                                    int oh = th / d->sh, ow = tw / d->sw;
                                    if (oh >= OH || ow >= OW) continue;
                                    s += (double)dout[(((long)n * d->OC + oc) * OH + oh) * OW + ow] *
                                         w[(((long)oc * d->C + c) * d->KH + kh) * d->KW + kw];
                                }
                        din[(((long)n * d->C + c) * d->H + ih) * d->W + iw] += (float)s;
                    }
}

/* ---- normalisation: one routine over "sets" of planes, used by GroupNorm and BatchNorm ----
 * A set is nch channels × nrep repeats of HW values; channel c of repeat r starts at
 * base + r·rep_stride + c·HW. */

static void norm_set_forward(float *out, const float *in, long base, int nch, int nrep, long rep_stride, long HW,
                             double m, double v, float eps, const float *gamma, const float *beta, int c0, int relu,
                             float *mean, float *rstd)
{
    double r = 1.0 / sqrt(v + eps);
    *mean = (float)m;
    *rstd = (float)r;
    for (int c = 0; c < nch; c++)
        for (int rep = 0; rep < nrep; rep++)
            for (long i = 0; i < HW; i++) {
                long at = base + rep * rep_stride + c * HW + i;
                double y = (in[at] - m) * r * (gamma ? gamma[c0 + c] : 1.0) + (beta ? beta[c0 + c] : 0.0);
                out[at] = (float)(relu && y < 0 ? 0 : y);
            }
}

static void set_stats(const float *in, long base, int nch, int nrep, long rep_stride, long HW, double *m, double *v)
{
    double s = 0, q = 0, cnt = (double)nch * nrep * HW;
    for (int c = 0; c < nch; c++)
        for (int rep = 0; rep < nrep; rep++)
            for (long i = 0; i < HW; i++) s += in[base + rep * rep_stride + c * HW + i];
    *m = s / cnt;
    for (int c = 0; c < nch; c++)
        for (int rep = 0; rep < nrep; rep++)
            for (long i = 0; i < HW; i++) {
                double t = in[base + rep * rep_stride + c * HW + i] - *m;
                q += t * t;
            }
    *v = q / cnt;
}

/* With xhat = (x − mean)·rstd and g = dout (masked by out > 0 when out is given):
 * dgamma += Σ g·xhat, dbeta += Σ g, and dx = rstd·(gamma·g − (A + xhat·B)/cnt) with the set's
 * A = Σ gamma·g and B = Σ gamma·g·xhat; the (A + xhat·B)/cnt part is the path through the
 * statistics, absent when they are constants (BatchNorm in eval). */
static void norm_set_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                              const float *out, long base, int nch, int nrep, long rep_stride, long HW, float mean,
                              float rstd, const float *gamma, int c0, int stats)
{
    double A = 0, B = 0, cnt = (double)nch * nrep * HW;
    for (int c = 0; c < nch; c++) {
        double sg = 0, sgx = 0, gm = gamma ? gamma[c0 + c] : 1.0;
        for (int rep = 0; rep < nrep; rep++)
            for (long i = 0; i < HW; i++) {
                long at = base + rep * rep_stride + c * HW + i;
                double g = !out || out[at] > 0 ? dout[at] : 0;
                sg += g;
                sgx += g * (in[at] - mean) * rstd;
            }
        if (dgamma) dgamma[c0 + c] += (float)sgx;
        if (dbeta) dbeta[c0 + c] += (float)sg;
        A += gm * sg;
        B += gm * sgx;
    }
    if (!din) return;
    for (int c = 0; c < nch; c++) {
        double gm = gamma ? gamma[c0 + c] : 1.0;
        for (int rep = 0; rep < nrep; rep++)
            for (long i = 0; i < HW; i++) {
                long at = base + rep * rep_stride + c * HW + i;
                double g = !out || out[at] > 0 ? dout[at] : 0, xhat = (in[at] - mean) * rstd;
                double dx = gm * g;
                if (stats) dx -= (A + xhat * B) / cnt;
                din[at] += (float)(dx * rstd);
            }
    }
}

void nn_ref_groupnorm_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                              const float *beta, int N, int C, int HW, int G, float eps, int relu)
{
    int cpg = C / G;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            long base = ((long)n * C + (long)g * cpg) * HW;
            double m, v;
            set_stats(in, base, cpg, 1, 0, HW, &m, &v);
            norm_set_forward(out, in, base, cpg, 1, 0, HW, m, v, eps, gamma, beta, g * cpg, relu, &mean[n * G + g],
                             &rstd[n * G + g]);
        }
}

void nn_ref_groupnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                               const float *out, const float *mean, const float *rstd, const float *gamma, int N,
                               int C, int HW, int G)
{
    int cpg = C / G;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++)
            norm_set_backward(din, dgamma, dbeta, dout, in, out, ((long)n * C + (long)g * cpg) * HW, cpg, 1, 0, HW,
                              mean[n * G + g], rstd[n * G + g], gamma, g * cpg, 1);
}

void nn_ref_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                              float *num_batches_tracked, const float *in, const float *gamma, const float *beta,
                              int N, int C, int HW, float momentum, float eps, int train, int relu)
{
    long cnt = (long)N * HW;
    for (int c = 0; c < C; c++) {
        double m, v;
        if (train) {
            set_stats(in, (long)c * HW, 1, N, (long)C * HW, HW, &m, &v);
            if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            if (running_var)
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * (cnt > 1 ? v * cnt / (cnt - 1) : v));
        } else m = running_mean[c], v = running_var[c];
        norm_set_forward(out, in, (long)c * HW, 1, N, (long)C * HW, HW, m, v, eps, gamma, beta, c, relu, &mean[c], &rstd[c]);
    }
    if (train && num_batches_tracked) *num_batches_tracked += 1.0f;
}

void nn_ref_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                               const float *out, const float *mean, const float *rstd, const float *gamma, int N,
                               int C, int HW, int train)
{
    for (int c = 0; c < C; c++)
        norm_set_backward(din, dgamma, dbeta, dout, in, out, (long)c * HW, 1, N, (long)C * HW, HW, mean[c], rstd[c],
                          gamma, c, train);
}

void nn_ref_l2norm_forward(float *out, float *norm, const float *in, int N, int D, float eps)
{
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int i = 0; i < D; i++) s += (double)in[(long)n * D + i] * in[(long)n * D + i];
        norm[n] = (float)sqrt(s);
        double den = norm[n] > eps ? norm[n] : eps;
        for (int i = 0; i < D; i++) out[(long)n * D + i] = (float)(in[(long)n * D + i] / den);
    }
}

void nn_ref_l2norm_backward(float *din, const float *dout, const float *out, const float *norm, int N, int D, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *y = out + (long)n * D, *dy = dout + (long)n * D;
        if (norm[n] > eps) { /* d(x/|x|) = (dy − y·<y,dy>) / |x| */
            double s = 0;
            for (int i = 0; i < D; i++) s += (double)y[i] * dy[i];
            for (int i = 0; i < D; i++) din[(long)n * D + i] += (float)((dy[i] - y[i] * s) / norm[n]);
        } else /* the clamp is active: x/eps is linear */
            for (int i = 0; i < D; i++) din[(long)n * D + i] += (float)(dy[i] / (double)eps);
    }
}

/* ---- pointwise ---- */

void nn_ref_relu_forward(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : 0;
}

void nn_ref_relu_backward(float *din, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) din[i] += out[i] > 0 ? dout[i] : 0;
}

void nn_ref_add_forward(float *out, const float *a, const float *b, size_t n, int relu)
{
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        out[i] = relu && !(v > 0) ? 0 : v;
    }
}

void nn_ref_add_backward(float *da, float *db, const float *dout, const float *out, size_t n, int relu)
{
    for (size_t i = 0; i < n; i++) {
        float g = relu && !(out[i] > 0) ? 0 : dout[i];
        if (da) da[i] += g;
        if (db) db[i] += g;
    }
}

void nn_ref_linear_forward(float *out, const float *in, const float *w, const float *b, int N, int IN, int OUT)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < IN; i++) s += (double)in[(long)n * IN + i] * w[(long)o * IN + i];
            out[(long)n * OUT + o] = (float)s;
        }
}

void nn_ref_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int N,
                            int IN, int OUT)
{
    for (int o = 0; o < OUT; o++) {
        if (db) {
            double s = 0;
            for (int n = 0; n < N; n++) s += dout[(long)n * OUT + o];
            db[o] += (float)s;
        }
        if (dw)
            for (int i = 0; i < IN; i++) {
                double s = 0;
                for (int n = 0; n < N; n++) s += (double)dout[(long)n * OUT + o] * in[(long)n * IN + i];
                dw[(long)o * IN + i] += (float)s;
            }
    }
    if (din)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < IN; i++) {
                double s = 0;
                for (int o = 0; o < OUT; o++) s += (double)dout[(long)n * OUT + o] * w[(long)o * IN + i];
                din[(long)n * IN + i] += (float)s;
            }
}

/* ---- pooling ---- */

/* the window's winner: the first maximum in scan order, a NaN over any number */
static void window_max(const float *x, int W, int h0, int h1, int w0, int w1, float *best, int32_t *at)
{
    *at = -1;
    for (int h = h0; h < h1; h++)
        for (int w = w0; w < w1; w++) {
            float v = x[h * W + w];
            if (*at < 0 || v > *best || (isnan(v) && !isnan(*best))) *best = v, *at = h * W + w;
        }
}

void nn_ref_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W, int k, int s,
                            int p)
{
    int OH = nn_conv_out(H, k, s, p), OW = nn_conv_out(W, k, s, p);
    for (long pl = 0; pl < (long)N * C; pl++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int h0 = oh * s - p, w0 = ow * s - p, h1 = h0 + k, w1 = w0 + k;
                float best = 0;
                int32_t at;
                window_max(in + pl * H * W, W, h0 < 0 ? 0 : h0, h1 > H ? H : h1, w0 < 0 ? 0 : w0, w1 > W ? W : w1,
                           &best, &at);
                out[(pl * OH + oh) * OW + ow] = best;
                if (argmax) argmax[(pl * OH + oh) * OW + ow] = at;
            }
}

void nn_ref_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H, int W, int OH,
                             int OW)
{
    for (long pl = 0; pl < (long)N * C; pl++)
        for (long i = 0; i < (long)OH * OW; i++) din[pl * H * W + argmax[pl * OH * OW + i]] += dout[pl * OH * OW + i];
}

void nn_ref_avgpool_global_forward(float *out, const float *in, int N, int C, int HW)
{
    for (long pl = 0; pl < (long)N * C; pl++) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += in[pl * HW + i];
        out[pl] = (float)(s / HW);
    }
}

void nn_ref_avgpool_global_backward(float *din, const float *dout, int N, int C, int HW)
{
    for (long pl = 0; pl < (long)N * C; pl++)
        for (int i = 0; i < HW; i++) din[pl * HW + i] += dout[pl] / (float)HW;
}

void nn_ref_adaptive_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W, int OH,
                                     int OW)
{
    for (long pl = 0; pl < (long)N * C; pl++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int h0 = (int)((long)oh * H / OH), h1 = (int)(((long)(oh + 1) * H + OH - 1) / OH);
                int w0 = (int)((long)ow * W / OW), w1 = (int)(((long)(ow + 1) * W + OW - 1) / OW);
                float best = 0;
                int32_t at;
                window_max(in + pl * H * W, W, h0, h1, w0, w1, &best, &at);
                out[(pl * OH + oh) * OW + ow] = best;
                if (argmax) argmax[(pl * OH + oh) * OW + ow] = at;
            }
}
