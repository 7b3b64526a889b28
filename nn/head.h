/* nn/head.h — a projection head as a layer: g = L2norm(W2 · (W1 · x + b1) + b2), the embedding
 * CRCKD's contrastive and relation losses compare (one head on the student, one on its EMA
 * teacher). Parameters live in a caller's nn_params under PREFIX.0.weight/bias, PREFIX.1.weight/bias
 * (PyTorch's nn.Sequential(Linear, Linear) names); activations are the head's own.
 * nn_head_bind allocates the activations (aborting if memory runs out), nn_head_free releases
 * them; the parameters stay the nn_params' own. Nothing fails; one thread at a time per head. */
#ifndef NN_HEAD_H
#define NN_HEAD_H

#include "common/rng.h"
#include "nn/params.h"

typedef struct {
    int in, d, batch;            /* input dim, embedding dim, rows */
    nn_param *w1, *b1, *w2, *b2; /* borrowed from the nn_params given to nn_head_bind */
    float *f, *h, *g, *norm;     /* forward: first linear, second linear, embedding, row norms */
    float *dg;                   /* gradient at g, set by the caller before nn_head_backward */
    float *df, *dh;              /* backward scratch */
} nn_head;

/* Declare the four parameters under prefix in ps (before nn_params_alloc). */
void nn_head_plan(nn_params *ps, const char *prefix, int in, int d);
/* Bind to the four parameters declared from index `first` of ps (after nn_params_alloc) and
 * allocate activations for `batch` rows. */
void nn_head_bind(nn_head *H, nn_params *ps, int first, int in, int d, int batch);
/* PyTorch's nn.Linear init, U(±1/sqrt(fan_in)) for weights and biases, drawn from r in the order
 * w1, b1, w2, b2. */
void nn_head_init(nn_head *H, mp_rng *r);
void nn_head_free(nn_head *H);

void nn_head_forward(nn_head *H, const float *x, int n);
/* From H->dg: parameter gradients accumulate; dx (if not NULL) accumulates the input's. */
void nn_head_backward(nn_head *H, const float *x, int n, float *dx);

#endif
