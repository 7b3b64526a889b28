/* nn/model.h — ResNets built from a small config, trained and run by the engine.
 * The default config is the RBD paper's ResNet-GN (../shared/peers/torch_resnet_gn.py) with its
 * exact state_dict names, so PyTorch weights load unchanged. All activations (and their
 * gradients) live in one arena sized at creation for a maximum batch and input size; forward
 * and backward never allocate. Inputs of any size up to the planned maximum are accepted
 * (student 28 px and teacher 224 px on the same net).
 * nn/ as a whole: the CNN engine, knowing no dataset, slide or command. Its doors are this header
 * (models), ops.h and losses.h (layers and losses as plain functions), head.h, optim.h, params.h,
 * card.h and arch.h (what a checkpoint's network is), ckpt.h, safetensors.h and npy.h (files),
 * gemm.h (BLAS and the thread count); level.h, pool.h and ref.h are inside. No door includes a
 * vendor header: only gemm.c sees cblas.h. Errors as common/error.h: -1 or NULL + mp_err, "PATH:
 * reason" for files; ops, losses and the optimiser's step never fail. Every object has its
 * create/free (or load/free) pair, free accepts NULL, pointers returned are borrowed unless said.
 * Threads: one thread uses a model (or optimiser, checkpoint) at a time; different objects may
 * run on different threads; nn_set_threads is process-wide, set before models are created. */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include <stdint.h>

#include "nn/params.h"

#define NN_MAX_STAGES 8
/* What a configuration (and so a model file) may declare; checked by nn_model_cfg_check. */
#define NN_MAX_BLOCKS 64          /* per stage (ResNet-152: 36) */
#define NN_MAX_WIDTH 8192
#define NN_MAX_IN_CH 64
#define NN_MAX_CLASSES 65536
#define NN_MAX_PARAMS (1ll << 30) /* weights, about 4 GiB of floats */

typedef enum { NN_NORM_GROUP = 0, NN_NORM_BATCH = 1 } nn_norm_kind;

typedef struct {
    int in_ch;                    /* input channels (3) */
    int nstages;                  /* 4 */
    int widths[NN_MAX_STAGES];    /* 32, 64, 128, 256; the stem outputs widths[0] */
    int blocks[NN_MAX_STAGES];    /* BasicBlocks per stage: 1,1,1,1 (ResNet-GN) or 2,2,2,2 (ResNet-18) */
    nn_norm_kind norm;            /* GroupNorm or BatchNorm */
    int groups;                   /* GroupNorm groups (32) */
    int classes;                  /* fc outputs */
    float norm_eps;               /* 1e-5 */
    float bn_momentum;            /* 0.1 */
} nn_model_cfg;

/* The RBD paper's ResNet-GN: widths 32/64/128/256, one block per stage, GN(32). */
void nn_model_cfg_resnet_gn(nn_model_cfg *cfg, int classes);
/* ResNet-18 layout (2 blocks per stage), widths 64/128/256/512, with the given norm. */
void nn_model_cfg_resnet18(nn_model_cfg *cfg, int classes, nn_norm_kind norm);
/* Checks a config; -1 with mp_err naming the bad field. */
int nn_model_cfg_check(const nn_model_cfg *cfg);
/* Forward FLOPs (2 per multiply-add, convs and fc) for one image of H×W. */
int64_t nn_model_flops(const nn_model_cfg *cfg, int H, int W);

typedef struct nn_model nn_model;

/* Plan parameters and the activation arena for batches up to max_batch of max_h×max_w.
 * with_grad = 0 plans an inference-only model (no activation gradients; backward refuses).
 * Parameters are zero until nn_model_init or a load. NULL + mp_err on failure. */
nn_model *nn_model_create(const nn_model_cfg *cfg, int max_batch, int max_h, int max_w, int with_grad);
void nn_model_free(nn_model *m); /* accepts NULL */

/* Data-parallel workers: forward and backward split the batch into n contiguous shares run by
 * n threads, one BLAS thread each (GroupNorm nets; BatchNorm needs the whole batch and runs on
 * one worker with BLAS threads). Defaults to nn_get_threads() at creation. Results are
 * deterministic for a given n; with n = 1 everything runs in the calling thread. */
int nn_model_set_workers(nn_model *m, int n);
int nn_model_workers(const nn_model *m);

/* PyTorch's default init, seeded: conv and linear weights U(±1/sqrt(fan_in)) (kaiming_uniform
 * with a = sqrt(5)), linear bias U(±1/sqrt(fan_in)), norm weight 1 / bias 0, BN running_mean 0,
 * running_var 1, num_batches_tracked 0. Deterministic for a seed. */
void nn_model_init(nn_model *m, uint64_t seed);

/* Borrowed; names are PyTorch state_dict names. The caller may change the weights, so this
 * undoes nn_model_freeze. */
nn_params *nn_model_params(nn_model *m);
/* Promise that the weights stay as they are (an inference-only model, loaded): forwards then
 * keep each small-map convolution's tables and compacted weight from one call to the next
 * (rebuilt when the input size changes) instead of rebuilding them per call. Ignored for a
 * model with gradients. nn_model_params or nn_model_init ends the promise. */
void nn_model_freeze(nn_model *m);
const nn_model_cfg *nn_model_config(const nn_model *m);
size_t nn_model_param_count(const nn_model *m); /* trainable floats */
size_t nn_model_arena_bytes(const nn_model *m);

/* Forward an N×in_ch×H×W batch. train selects BatchNorm batch statistics (and updates running
 * stats); GroupNorm is the same in both modes. x is borrowed and must stay unchanged until the
 * matching backward. -1 + mp_err if N or the size exceed the plan or the map collapses. */
int nn_model_forward(nn_model *m, const float *x, int N, int H, int W, int train);
/* Results of the last forward (borrowed, valid until the next forward). */
const float *nn_model_logits(const nn_model *m);   /* N × classes */
const float *nn_model_pooled(const nn_model *m);   /* N × feature_dim (global average pool) */
int nn_model_feature_dim(const nn_model *m);       /* widths[nstages-1] */
/* The last stage's map F (N × C × FH × FW), the map RBD matches; shape written if non-NULL. */
const float *nn_model_feature_map(const nn_model *m, int *C, int *FH, int *FW);

/* Backward of the last forward: ACCUMULATES parameter gradients into nn_model_params(m)->grad
 * (zero them once per step with nn_params_zero_grad). Each incoming gradient may be NULL:
 * dlogits (N × classes), dpooled (N × feature_dim, for heads on the pooled feature), dF (the
 * stage map). -1 + mp_err if the model was created without gradients or no forward ran. */
int nn_model_backward_ex(nn_model *m, const float *dlogits, const float *dpooled, const float *dF);
static inline int nn_model_backward(nn_model *m, const float *dlogits, const float *dF)
{
    return nn_model_backward_ex(m, dlogits, NULL, dF);
}

#endif
