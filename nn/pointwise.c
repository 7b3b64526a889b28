/* nn/pointwise.c — elementwise layers: ReLU, the residual add (ReLU optionally fused), dropout;
 * and the linear layer (one sgemm). */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/level.h"

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

