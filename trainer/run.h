/* trainer/run.h — inside the trainer (not a door): one training run's shared state, the method
 * table each training method fills in, and the training state's table of named buffers.
 * A method is a list of parts run in order (rbd+crckd = rbd's part, then crckd's); the loop in
 * train.c knows no method, only the hooks. */
#ifndef TRAINER_RUN_H
#define TRAINER_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "nn/card.h"
#include "nn/ckpt.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "trainer/trainer.h"

typedef struct tr_run tr_run;
typedef struct tr_state tr_state;
typedef struct tr_rbd tr_rbd;     /* trainer/rbd.c */
typedef struct tr_crckd tr_crckd; /* trainer/crckd.c */

/* Loss terms, in the order of the log's fields. */
enum { TR_KD, TR_FEAT, TR_CE, TR_MT, TR_CCD, TR_CRP, TR_NTERMS };

/* One part of a training method. Every hook may be NULL. */
typedef struct {
    const char *name;
    /* before the student exists (rbd: the teacher, which fixes the student's architecture) */
    int (*open)(tr_run *R);
    /* once the student, its optimiser and the loaders exist */
    int (*setup)(tr_run *R);
    /* at the start of each step, before the student's forward (rbd: the teacher's outputs) */
    int (*targets)(tr_run *R, const tr_batch *b, int epoch);
    /* after the student's forward on b->x: the part's loss, its terms added into parts[], and its
     * gradients accumulated into R->dz (and into R->dF, R->dpooled when it sets them); NAN with
     * mp_err on failure */
    double (*loss)(tr_run *R, const tr_batch *b, int epoch, double parts[TR_NTERMS]);
    /* after the student's optimiser step (crckd: its heads and EMA teacher) */
    void (*step)(tr_run *R);
    /* the buffers the part adds to the training state (trainer/state.c) */
    void (*state)(tr_run *R, tr_state *st);
    void (*free)(tr_run *R);
} tr_method;

extern const tr_method tr_method_supervised, tr_method_rbd, tr_method_crckd;

/* The parts of a method (TR_RBD | TR_CRCKD flags): *n of them, at most 2. */
void tr_method_parts(int method, const tr_method *parts[2], int *n);
const char *tr_method_name(int method);

struct tr_run {
    const tr_train_opts *o;
    tr_train_opts *ov;       /* the same, writable (rbd's automatic --teacher-views) */
    mp_db *db;
    db_itemset train, val, unl;
    db_item *items;          /* training items (train [+ unlabeled]) */
    int n, nlab, k;
    nn_card info, tinfo;     /* the student's card (written with every checkpoint) and the teacher's */
    nn_model *student, *teacher, *avg; /* avg: running average of the student's weights */
    tr_loader *loader, *vloader;
    nn_optim opt;
    nn_sched sched;
    float *class_w;          /* N_total / N_class, or 1 with --sampling */
    double *sample_w;        /* n: --sampling weights of the training items (NULL without) */
    float *dz;               /* B × k: gradient at the student's logits */
    float *dF;               /* gradient at the student's feature map (NULL: none) */
    float *dpooled;          /* gradient at the student's pooled features (NULL: none) */
    double avg_decay;
    int64_t step;
    int epoch0, best_epoch, bad_epochs;
    double best_val;
    double *hist;            /* per epoch: train loss, val balanced accuracy */
    int64_t nhist;           /* epochs done (rows of hist) */
    int auto_epochs;         /* the epochs came from tr_auto_schedule (for messages) */
    const tr_method *part[2];
    int nparts;
    tr_rbd *rbd;
    tr_crckd *crckd;
};

/* ---- the training state (trainer/state.c) ---- */

/* One named buffer of the state. Saving and loading walk the same table, so what is written is
 * what is read back. */
typedef enum {
    TR_ST_I64,     /* int64_t scalar, a training key */
    TR_ST_INT,     /* int scalar, stored as a 64-bit key */
    TR_ST_F64,     /* double scalar */
    TR_ST_F32,     /* float scalar, stored as a double (exact) */
    TR_ST_PARAMS,  /* every entry of an nn_params, under a name prefix */
    TR_ST_OPTIM,   /* an optimiser's scalars and moments (nn_optim_save/load) */
    TR_ST_TENSOR,  /* a float (dtype F32) or double (F64) matrix rows × cols */
} tr_st_kind;

typedef struct {
    const char *name;
    tr_st_kind kind;
    void *ptr;
    nn_dtype dtype;          /* TR_ST_TENSOR */
    int64_t rows, cols;      /* TR_ST_TENSOR: its shape */
    int per_epoch;           /* rows are the epochs done (R->nhist when used): the history */
    int save_only;           /* written for people and tools, not read back (the seed) */
} tr_st_entry;

struct tr_state {
    tr_st_entry e[32];
    int n;
};

void tr_state_add(tr_state *st, tr_st_entry e);
/* The best checkpoint (with_state 0: the validated weights and the card) or the full training
 * state of the run after `epoch` (0-based). */
int tr_state_save(tr_run *R, const char *path, int with_state, int epoch);
/* Continue from a training state; every value is checked against the run before it is used. */
int tr_state_load(tr_run *R, const char *path);

/* ---- the teacher cache (trainer/teacher_cache.c) ---- */

/* Teacher outputs for `views` augmentation draws of every pair: logits into cz (views × n × k)
 * and feature maps max-pooled to C×H×W into cf (views × n × C·H·W); read from / written to
 * o->teacher_cache when given. Ft holds a batch of pooled maps (scratch). */
int tr_teacher_cache(tr_run *R, int views, int C, int H, int W, float *cz, float *cf, float *Ft);

/* ---- the epoch log (trainer/log.c) ---- */

void tr_log_append(FILE *f, int epoch, int64_t step, double loss, const double *parts, double val, double ips,
                   double secs, const int64_t *drawn, int k);
/* Rewrite the log to its epochs 1..done, in order, each once. */
int tr_log_trim(const char *logp, int done);

#endif
