/* nn/ops.h — the engine's layers as plain functions over NCHW float arrays (llm.c style).
 * Outputs first, inputs const; ops never allocate and never fail. Every backward ACCUMULATES
 * (+=) into the gradients it is given; a NULL gradient pointer means "not needed".
 * One file per family: conv.c, norm.c (GroupNorm, BatchNorm, L2), pointwise.c (ReLU, add,
 * dropout, linear), pooling.c; kernels.c picks the kernel level. nn/ref.h holds the plain
 * reference of each op, which tests/nn/test_kernels.c holds every fast path to.
 * No state beside the kernel level (the CPU's best, or MAGPIE_KERNELS / nn_kernels_set before ops
 * run): ops may run on several threads at once on separate buffers. */
#ifndef NN_OPS_H
#define NN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

/* ---- kernel level: which of the hand-vectorised paths the ops take ----
 * The best this CPU runs by default. MAGPIE_KERNELS=avx512|avx2|generic (read once, on the first
 * op) forces a lower one, so every level can be tested and timed on one machine; a level above
 * the CPU's, or an unknown value, gives a one-line warning and the CPU's best. It covers magpie's
 * own loops: the small-map gather, the forward convolutions on maps of 64 pixels or more (the
 * stem's direct convolution, a direct 3x3, and im2col bands through the same kernel instead of
 * OpenBLAS), the 3x3/2 max-pool, and every elementwise/normalisation loop compiled per level
 * (AVX-512F; AVX2+FMA; baseline x86-64). At the generic level those convolutions are im2col +
 * OpenBLAS, which picks its GEMM kernels by itself (OPENBLAS_CORETYPE=Haswell forces its AVX2 ones).
 * Sanitizer builds and non-x86 builds have the generic level only. */
typedef enum { NN_KERNELS_GENERIC = 0, NN_KERNELS_AVX2 = 1, NN_KERNELS_AVX512 = 2 } nn_kernels;
nn_kernels nn_kernels_level(void); /* the level in use */
nn_kernels nn_kernels_cpu(void);   /* the best this CPU (and build) runs */
const char *nn_kernels_name(nn_kernels k);
/* Switch level (clamped to nn_kernels_cpu()); returns the level now in use. For tests and
 * benchmarks comparing levels in one process; not while ops run in other threads. */
nn_kernels nn_kernels_set(nn_kernels k);

/* ---- conv2d (groups = 1): im2col + sgemm, or the direct / column kernels (conv.c) ---- */
typedef struct {
    int N, C, H, W;       /* input */
    int OC, KH, KW;       /* weight OC×C×KH×KW */
    int sh, sw, ph, pw;   /* stride, zero padding */
} nn_conv_dims;

static inline int nn_conv_out(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }
/* Images batched into one GEMM (small maps are batched so the GEMM stays wide). */
int nn_conv2d_group(const nn_conv_dims *d);
/* Floats of workspace that forward and backward need (0 possible for 1x1 stride 1 pad 0). */
size_t nn_conv2d_workspace(const nn_conv_dims *d);
/* Enough workspace for every call of this layer with at most d->N images of at most d's size
 * (a model planned for one input size also runs smaller ones, whose small maps batch more
 * images into one GEMM): what a model plans per layer. */
size_t nn_conv2d_workspace_max(const nn_conv_dims *d);
/* out N×OC×OH×OW; bias may be NULL. */
void nn_conv2d_forward(float *out, float *ws, const float *in, const float *w, const float *b,
                       const nn_conv_dims *d);
/* A layer's small-map tables and the weight compacted to its valid taps, made once for a weight
 * that will not change and one input size (nn_model_freeze): the forward then skips rebuilding
 * them per call. NULL when the layer has no small-map path at this size, or out of memory
 * (the forward then builds them per call, as without). The weight is copied: a prep is stale
 * once w changes. */
typedef struct nn_conv_prep nn_conv_prep;
nn_conv_prep *nn_conv2d_prepare(const float *w, const nn_conv_dims *d);
void nn_conv2d_prep_free(nn_conv_prep *p); /* accepts NULL */
/* nn_conv2d_forward with a prep (NULL, or made for other dimensions: ignored). */
void nn_conv2d_forward_prep(float *out, float *ws, const float *in, const float *w, const float *b,
                            const nn_conv_dims *d, const nn_conv_prep *prep);
/* din, dw, db may each be NULL. */
void nn_conv2d_backward(float *din, float *dw, float *db, float *ws, const float *dout,
                        const float *in, const float *w, const nn_conv_dims *d);

/* ---- GroupNorm (PyTorch nn.GroupNorm): stats per (n, group); mean/rstd hold N×G ---- */
void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                          const float *beta, int N, int C, int HW, int G, float eps, int relu);
/* GroupNorm (+ReLU) then the 3x3/2/1 max-pool (the stem's pair), group by group through tmp
 * (C/G·H·W floats): the normalised map is never written, so the pool reads it from cache.
 * Inference only (no argmax); out, mean and rstd are bit-identical to the two ops in turn. */
void nn_groupnorm_maxpool_forward(float *out, float *mean, float *rstd, float *tmp, const float *in,
                                  const float *gamma, const float *beta, int N, int C, int H, int W, int G,
                                  float eps, int relu);
/* out: the forward output, needed only when relu was fused (else NULL). */
void nn_groupnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                           const float *out, const float *mean, const float *rstd, const float *gamma,
                           int N, int C, int HW, int G);
/* The same, but din is written rather than accumulated (for a din nothing else contributes to:
 * saves clearing it first). */
void nn_groupnorm_backward_set(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                               const float *out, const float *mean, const float *rstd, const float *gamma,
                               int N, int C, int HW, int G);

/* ---- BatchNorm2d: train uses batch stats and updates running_mean / running_var (unbiased) /
 * num_batches_tracked as PyTorch does; eval uses the running stats. mean/rstd hold C values
 * (those used for normalisation) for the backward. momentum 0.1, eps 1e-5 in PyTorch. ---- */
void nn_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                          float *num_batches_tracked, const float *in, const float *gamma,
                          const float *beta, int N, int C, int HW, float momentum, float eps,
                          int train, int relu);
void nn_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                           const float *out, const float *mean, const float *rstd, const float *gamma,
                           int N, int C, int HW, int train);

/* ---- pointwise ---- */
void nn_relu_forward(float *out, const float *in, size_t n);          /* in-place allowed */
void nn_relu_backward(float *din, const float *dout, const float *out, size_t n);
void nn_add_forward(float *out, const float *a, const float *b, size_t n, int relu);
/* Residual add backward: da += g, db += g (g = dout masked by out > 0 when relu). */
void nn_add_backward(float *da, float *db, const float *dout, const float *out, size_t n, int relu);
/* The same, with da (set_a) and/or db (set_b) written rather than accumulated. */
void nn_add_backward_set(float *da, float *db, const float *dout, const float *out, size_t n, int relu, int set_a,
                         int set_b);
/* Dropout with probability p (PyTorch scaling 1/(1-p) in train); mask holds 0 or 1/(1-p). */
void nn_dropout_forward(float *out, float *mask, const float *in, size_t n, float p, mp_rng *rng, int train);
void nn_dropout_backward(float *din, const float *dout, const float *mask, size_t n, int train);

/* ---- pooling: argmax holds the index within the input plane (H*W) ---- */
void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W,
                        int k, int s, int p);
void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H,
                         int W, int OH, int OW);
void nn_avgpool_global_forward(float *out, const float *in, int N, int C, int HW);
void nn_avgpool_global_backward(float *din, const float *dout, int N, int C, int HW);
/* PyTorch AdaptiveMaxPool2d: window [floor(o*I/O), ceil((o+1)*I/O)). */
void nn_adaptive_maxpool_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H,
                                 int W, int OH, int OW);

/* ---- linear: weight (out, in) ---- */
void nn_linear_forward(float *out, const float *in, const float *w, const float *b, int N, int IN, int OUT);
void nn_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                        const float *w, int N, int IN, int OUT);

/* ---- L2 normalisation of rows (F.normalize: x / max(||x||, eps)); norm holds N values ---- */
void nn_l2norm_forward(float *out, float *norm, const float *in, int N, int D, float eps);
void nn_l2norm_backward(float *din, const float *dout, const float *out, const float *norm, int N, int D,
                        float eps);

#endif
