/* nn/optim.h — optimisers over an nn_params table with PyTorch's exact update rules (SGD with
 * momentum/nesterov/weight decay, Adam with L2 in the gradient, AdamW with decoupled decay),
 * LR schedules (constant, step, cosine, one-cycle with momentum/beta1 cycling), gradient
 * accumulation and the EMA of weights used by CRCKD's mean teacher. Only trainable entries
 * are touched; state is saved in and restored from a checkpoint's training state.
 * An optimiser owns its moments (nn_optim_init/nn_optim_free, free accepts a zeroed struct) and
 * borrows the nn_params it updates; one thread at a time. A step never fails; init, save and load
 * return -1 + mp_err. */
#ifndef NN_OPTIM_H
#define NN_OPTIM_H

#include <stdint.h>

#include "nn/ckpt.h"
#include "nn/params.h"

typedef enum { NN_OPT_SGD = 0, NN_OPT_ADAM = 1, NN_OPT_ADAMW = 2 } nn_optim_kind;

typedef struct {
    nn_optim_kind kind;
    double lr;
    double weight_decay;
    double momentum;  /* SGD (0 = plain SGD); dampening is 0 */
    int nesterov;     /* SGD, needs momentum > 0 */
    double beta1, beta2, eps; /* Adam/AdamW */
    int accum_steps;  /* gradient accumulation: update every N calls of nn_optim_step (0 or 1 = every call) */
} nn_optim_cfg;

/* PyTorch's defaults for a kind: SGD lr 0.01 (torch has none; pick one), Adam lr 1e-3
 * betas (0.9, 0.999) eps 1e-8 wd 0, AdamW the same with wd 1e-2. */
nn_optim_cfg nn_optim_defaults(nn_optim_kind kind);

typedef struct {
    nn_optim_cfg cfg;
    nn_params *ps;  /* borrowed */
    float *m;       /* SGD momentum buffer / Adam exp_avg, same layout as ps->data */
    float *v;       /* Adam exp_avg_sq (NULL for SGD) */
    int64_t step;   /* updates applied so far */
    int micro;      /* calls since the last update (accumulation) */
    /* Current values, set by the schedule before each update (start at cfg.lr / momentum / beta1). */
    double lr, momentum, beta1;
} nn_optim;

int nn_optim_init(nn_optim *o, nn_params *ps, const nn_optim_cfg *cfg);
void nn_optim_free(nn_optim *o); /* accepts a zeroed struct */
/* Call after each backward. With accumulation N, every N-th call averages the accumulated
 * gradients (scales by 1/N), updates, and zeroes the gradients; other calls do nothing.
 * Returns 1 if an update was applied, 0 if it only accumulated. Gradients are zeroed after
 * every update. */
int nn_optim_step(nn_optim *o);

/* Save / restore: kind, hyperparameters, step and moments as training state ("optim.*"). */
int nn_optim_save(const nn_optim *o, nn_ckpt *ck);
/* o must be initialised on the same parameter table; errors on kind or shape mismatch. */
int nn_optim_load(nn_optim *o, const nn_ckpt *ck);

typedef enum { NN_SCHED_CONSTANT = 0, NN_SCHED_STEP, NN_SCHED_COSINE, NN_SCHED_ONECYCLE } nn_sched_kind;

typedef struct {
    nn_sched_kind kind;
    double base_lr;        /* constant, step, cosine */
    int64_t step_size;     /* step: multiply by gamma every step_size steps */
    double gamma;
    int64_t t_max;         /* cosine: period; lr = eta_min at t_max */
    double eta_min;
    double max_lr;         /* one-cycle */
    int64_t total_steps;
    double pct_start, div_factor, final_div_factor;
    int cycle_momentum;
    double base_momentum, max_momentum;
    int64_t warmup;        /* constant, step, cosine: lr x (t + 1) / warmup for t < warmup (0 = none) */
} nn_sched;

/* Schedules with PyTorch's defaults for the other fields (StepLR gamma 0.1; CosineAnnealingLR
 * eta_min 0; OneCycleLR pct_start 0.3, div 25, final div 1e4, momentum 0.85..0.95 cycled). */
nn_sched nn_sched_constant(double lr);
nn_sched nn_sched_step(double lr, int64_t step_size, double gamma);
nn_sched nn_sched_cosine(double lr, int64_t t_max, double eta_min);
nn_sched nn_sched_onecycle(double max_lr, int64_t total_steps);
/* Learning rate after t scheduler steps (t = number of updates done so far). */
double nn_sched_lr(const nn_sched *s, int64_t t);
/* Momentum (SGD) or beta1 (Adam) at t; returns dflt when the schedule does not cycle it. */
double nn_sched_momentum(const nn_sched *s, int64_t t, double dflt);
/* Set o->lr (and momentum/beta1 for one-cycle) for the next update, from o->step. */
void nn_sched_apply(const nn_sched *s, nn_optim *o);

/* EMA of weights, trainable entries only (buffers are left alone, as the mean-teacher code
 * does): teacher = a * teacher + (1 - a) * student, a = min(1 - 1/(step + 1), decay).
 * Both tables must have the same layout (same model). */
int nn_ema_update(nn_params *teacher, const nn_params *student, int64_t step, double decay);

/* Scale gradients so their global L2 norm is at most max_norm (torch clip_grad_norm_,
 * eps 1e-6). Returns the norm before clipping. */
double nn_clip_grad_norm(nn_params *ps, double max_norm);

#endif
