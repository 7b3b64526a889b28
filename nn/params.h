/* nn/params.h — the parameter table shared by models, optimisers, checkpoints and interop.
 * All parameters of a model live in one allocation (data) and their gradients in another
 * (grad), in table order; each entry names a slice with its PyTorch state_dict name.
 * Buffers that are not trained (BatchNorm running stats) are entries with trainable = 0.
 * The table owns both allocations and its names; whoever creates a table frees it (a model's
 * table is the model's: nn_model_params is borrowed). */
#ifndef NN_PARAMS_H
#define NN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "common/strindex.h"

#define NN_NAME_MAX 96
#define NN_MAX_DIM 4

typedef struct {
    char name[NN_NAME_MAX]; /* e.g. "layers.1.c1.weight" */
    int ndim;
    int64_t shape[NN_MAX_DIM];
    size_t numel;
    size_t offset;  /* in floats, into nn_params.data / .grad */
    int trainable;  /* 0 for buffers (running_mean, running_var, num_batches_tracked) */
    float *data;    /* = params.data + offset */
    float *grad;    /* = params.grad + offset (NULL for buffers) */
} nn_param;

typedef struct {
    nn_param *p;
    int n, cap;
    size_t total;   /* floats in data (and grad) */
    float *data;    /* one allocation, 64-byte aligned */
    float *grad;    /* one allocation, same layout; zeroed by nn_params_zero_grad */
    mp_strindex idx; /* name -> entry */
} nn_params;

/* Planning pass: declare entries (no memory yet). Returns the index or -1 (mp_err). */
int nn_params_add(nn_params *ps, const char *name, int ndim, const int64_t *shape, int trainable);
/* Allocate data and grad for every declared entry (zeroed) and set the data/grad pointers. */
int nn_params_alloc(nn_params *ps);
/* The same; grads = 0 allocates no gradients (grad pointers NULL): an inference-only model's
 * parameters, half the memory and none of its zeroing (~5 MB for the RBD ResNet). */
int nn_params_alloc_ex(nn_params *ps, int grads);
void nn_params_zero_grad(nn_params *ps);
nn_param *nn_params_find(const nn_params *ps, const char *name);
size_t nn_params_count_trainable(const nn_params *ps); /* number of trainable floats */
void nn_params_free(nn_params *ps); /* accepts a zeroed struct */

#endif
