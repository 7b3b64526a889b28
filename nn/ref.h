/* nn/ref.h — the plain reference of every op in nn/ops.h: one readable loop nest per op, forward
 * and backward side by side, sums in double, no workspace, no kernel levels. They state the maths
 * the fast paths must reproduce; tests/nn/test_kernels.c compares every fast path at every kernel
 * level against them. Not for production use (slow). Same arguments and conventions as ops.h:
 * outputs first, backward accumulates (+=), a NULL gradient is not computed. */
#ifndef NN_REF_H
#define NN_REF_H

#include <stddef.h>
#include <stdint.h>

#include "nn/ops.h"

/* out[n,oc,oh,ow] = b[oc] + Σ_{c,kh,kw} in[n,c,oh·sh−ph+kh, ow·sw−pw+kw] · w[oc,c,kh,kw] (zero outside) */
void nn_ref_conv2d_forward(float *out, const float *in, const float *w, const float *b, const nn_conv_dims *d);
void nn_ref_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const nn_conv_dims *d);

/* y = (x − mean)·rstd·gamma + beta over each (n, group) of C/G channels, rstd = 1/sqrt(var + eps)
 * (biased variance); relu fuses max(y, 0) and the backward then takes out to mask dout. */
void nn_ref_groupnorm_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                              const float *beta, int N, int C, int HW, int G, float eps, int relu);
void nn_ref_groupnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                               const float *out, const float *mean, const float *rstd, const float *gamma, int N,
                               int C, int HW, int G);

/* The same per channel over (N, HW); train: batch statistics, running stats updated with the
 * unbiased variance; eval: the running statistics, and the backward treats them as constants. */
void nn_ref_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                              float *num_batches_tracked, const float *in, const float *gamma, const float *beta,
                              int N, int C, int HW, float momentum, float eps, int train, int relu);
void nn_ref_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                               const float *out, const float *mean, const float *rstd, const float *gamma, int N,
                               int C, int HW, int train);

/* x / max(||x||, eps) per row of D */
void nn_ref_l2norm_forward(float *out, float *norm, const float *in, int N, int D, float eps);
void nn_ref_l2norm_backward(float *din, const float *dout, const float *out, const float *norm, int N, int D, float eps);

void nn_ref_relu_forward(float *out, const float *in, size_t n);
void nn_ref_relu_backward(float *din, const float *dout, const float *out, size_t n);
void nn_ref_add_forward(float *out, const float *a, const float *b, size_t n, int relu);
void nn_ref_add_backward(float *da, float *db, const float *dout, const float *out, size_t n, int relu);

/* out = in · wᵀ + b, w (OUT, IN) */
void nn_ref_linear_forward(float *out, const float *in, const float *w, const float *b, int N, int IN, int OUT);
void nn_ref_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int N,
                            int IN, int OUT);

/* k×k window, stride s, padding p (padding never wins); the first maximum in scan order wins,
 * a NaN wins over numbers; argmax = index in the input plane. The backward routes dout there. */
void nn_ref_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W, int k, int s,
                            int p);
void nn_ref_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H, int W, int OH,
                             int OW);
void nn_ref_avgpool_global_forward(float *out, const float *in, int N, int C, int HW);
void nn_ref_avgpool_global_backward(float *din, const float *dout, int N, int C, int HW);
/* windows [floor(o·I/O), ceil((o+1)·I/O)) (PyTorch AdaptiveMaxPool2d); backward: maxpool's */
void nn_ref_adaptive_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W, int OH,
                                     int OW);

#endif
