/* nn/head.c — the projection head layer (nn/head.h): two linear layers and a row L2 norm,
 * forward and backward over the ops in nn/ops.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "nn/head.h"
#include "nn/ops.h"

void nn_head_plan(nn_params *ps, const char *prefix, int in, int d)
{
    char n[64];
    int64_t sw1[2] = {d, in}, sb[1] = {d}, sw2[2] = {d, d};
    snprintf(n, sizeof n, "%s.0.weight", prefix);
    nn_params_add(ps, n, 2, sw1, 1);
    snprintf(n, sizeof n, "%s.0.bias", prefix);
    nn_params_add(ps, n, 1, sb, 1);
    snprintf(n, sizeof n, "%s.1.weight", prefix);
    nn_params_add(ps, n, 2, sw2, 1);
    snprintf(n, sizeof n, "%s.1.bias", prefix);
    nn_params_add(ps, n, 1, sb, 1);
}

void nn_head_bind(nn_head *H, nn_params *ps, int first, int in, int d, int batch)
{
    H->in = in;
    H->d = d;
    H->batch = batch;
    H->w1 = &ps->p[first + 0];
    H->b1 = &ps->p[first + 1];
    H->w2 = &ps->p[first + 2];
    H->b2 = &ps->p[first + 3];
    H->f = mp_xmalloc(sizeof(float) * batch * d);
    H->h = mp_xmalloc(sizeof(float) * batch * d);
    H->g = mp_xmalloc(sizeof(float) * batch * d);
    H->norm = mp_xmalloc(sizeof(float) * batch);
    H->dg = mp_xmalloc(sizeof(float) * batch * d);
    H->df = mp_xmalloc(sizeof(float) * batch * d);
    H->dh = mp_xmalloc(sizeof(float) * batch * d);
}

void nn_head_init(nn_head *H, mp_rng *r)
{
    nn_param *p[4] = {H->w1, H->b1, H->w2, H->b2};
    for (int k = 0; k < 4; k++) {
        float bound = 1.0f / sqrtf((float)(k < 2 ? H->in : H->d)); /* fan_in */
        for (size_t i = 0; i < p[k]->numel; i++) p[k]->data[i] = mp_rng_uniformf(r, -bound, bound);
    }
}

void nn_head_free(nn_head *H)
{
    free(H->f);
    free(H->h);
    free(H->g);
    free(H->norm);
    free(H->dg);
    free(H->df);
    free(H->dh);
    memset(H, 0, sizeof *H);
}

void nn_head_forward(nn_head *H, const float *x, int n)
{
    nn_linear_forward(H->f, x, H->w1->data, H->b1->data, n, H->in, H->d);
    nn_linear_forward(H->h, H->f, H->w2->data, H->b2->data, n, H->d, H->d);
    nn_l2norm_forward(H->g, H->norm, H->h, n, H->d, 1e-12f);
}

void nn_head_backward(nn_head *H, const float *x, int n, float *dx)
{
    memset(H->dh, 0, sizeof(float) * n * H->d);
    nn_l2norm_backward(H->dh, H->dg, H->g, H->norm, n, H->d, 1e-12f);
    memset(H->df, 0, sizeof(float) * n * H->d);
    nn_linear_backward(H->df, H->w2->grad, H->b2->grad, H->dh, H->f, H->w2->data, n, H->d, H->d);
    nn_linear_backward(dx, H->w1->grad, H->b1->grad, H->df, x, H->w1->data, n, H->in, H->d);
}
