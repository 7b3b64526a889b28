/* trainer/trainer.h — the trainer's door: evaluation metrics, the data loader over a magpie
 * dataset, and the training methods (supervised, rbd, crckd, rbd+crckd) behind `magpie train`
 * and `magpie eval`. Functions return -1 (or NULL) and leave mp_err() on failure.
 * Contract: reads a dataset (never writes it); writes only the checkpoint paths it is given and
 * the files beside them (tr_side_path). Inside: train.c runs the loop over a method's parts
 * (supervised.c, rbd.c, crckd.c, composed through trainer/run.h), state.c saves and resumes the
 * training state, teacher_cache.c keeps rbd's teacher outputs, log.c and curves.c the epoch log
 * and its curve, loader.c the batches, metrics.c and modelio.c evaluation.
 * Memory: a loader is created and freed in pairs (tr_loader_new/tr_loader_free) and copies what it
 * is given; batches it returns are borrowed, valid until the next call; every other array is the
 * caller's, in and out. Threads: tr_train and tr_predict use nn's thread count and the loader's
 * one decoding thread (its own database connection); a loader, like the mp_db it is given, is
 * one caller thread's; the metrics are pure and callable from any thread. trainer/run.h is inside;
 * no header here includes a vendor header (SQL stays in db/). */
#ifndef TRAINER_H
#define TRAINER_H

#include <stdint.h>

#include "common/rng.h"
#include "db/dataset.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "nn/model.h"

#define TR_MAX_CLASSES 16

/* ---- metrics (trainer/metrics.c) ---- */

/* Indices of the scalar metrics that get bootstrap confidence intervals. */
enum {
    TR_CI_ACCURACY,
    TR_CI_BALANCED_ACCURACY,
    TR_CI_MACRO_PRECISION,
    TR_CI_MACRO_RECALL,
    TR_CI_MACRO_F1,
    TR_CI_MACRO_AUC,
    TR_CI_KAPPA,
    TR_CI_COUNT
};

typedef struct {
    int n, k;
    double accuracy, balanced_accuracy; /* balanced = mean recall over classes present */
    double macro_precision, macro_recall, macro_f1, macro_auc, kappa;
    double precision_c[TR_MAX_CLASSES], recall_c[TR_MAX_CLASSES], f1_c[TR_MAX_CLASSES];
    double auc_c[TR_MAX_CLASSES];       /* one-vs-rest, ties count 1/2; NAN if a side is empty */
    int64_t support[TR_MAX_CLASSES];
    int64_t confusion[TR_MAX_CLASSES * TR_MAX_CLASSES]; /* k×k, rows = truth, cols = prediction */
} tr_metrics;

typedef struct {
    int resamples;
    int units;                               /* resampled units that hold patches */
    double lo[TR_CI_COUNT], hi[TR_CI_COUNT]; /* 2.5 and 97.5 percentiles */
} tr_metrics_ci;

/* y[n] in 0..k-1, prob[n×k] (row-wise probabilities; prediction = argmax, first on ties). */
int tr_metrics_compute(const int *y, const float *prob, int n, int k, tr_metrics *m);
/* 95% CIs from `resamples` class-balanced bootstrap resamples (within each class, draw as many
 * samples as it has, with replacement). Deterministic for a seed. */
int tr_metrics_bootstrap(const int *y, const float *prob, int n, int k, int resamples, uint64_t seed,
                         tr_metrics_ci *ci);
/* The same over units: unit[i] in 0..nunits-1 names the slide or patient of sample i, and whole
 * units are drawn (within strata of their majority label), so patches that cluster by slide do
 * not count as independent. unit NULL: every sample is its own unit (= tr_metrics_bootstrap). */
int tr_metrics_bootstrap_units(const int *y, const float *prob, int n, int k, const int *unit, int nunits,
                               int resamples, uint64_t seed, tr_metrics_ci *ci);
const char *tr_ci_name(int j);
double tr_metric_value(const tr_metrics *m, int j);

/* Slide-level aggregation. slide[i] in 0..nslides-1; out is nslides×k.
 * mean: mean patch probability. vote: share of confident patches (top prob > threshold) per
 * predicted class; a slide without confident patches falls back to its mean probability. */
int tr_slide_mean(const float *prob, const int *slide, int n, int k, int nslides, float *out);
int tr_slide_vote(const float *prob, const int *slide, int n, int k, int nslides, double threshold, float *out);
/* Grid search 0.30..0.90 (step 0.05) for the vote threshold with the best slide-level balanced
 * accuracy (slide_y[s] = -1 ignores a slide); ties keep the lowest threshold. */
double tr_slide_vote_threshold(const float *prob, const int *slide, int n, int k, int nslides, const int *slide_y);

/* ---- data loader (trainer/loader.c) ---- */

typedef struct {
    double mag[2];       /* primary view's magnification; paired view's (0 = none) */
    int batch;
    int shuffle;         /* reshuffle every epoch from (seed, epoch) */
    int augment;         /* flips, rot90 (if rot90), colour jitter — identical on both views */
    int rot90;
    float jitter[4];     /* brightness, contrast, saturation, hue (METHODS.md: .5 .5 .5 .2) */
    int teacher_view;    /* also produce the primary view with extra rot90 + flip (CRCKD) */
    uint64_t seed;
    int aug_period;      /* > 0: epoch e reuses the augmentations of epoch e mod aug_period */
    int extra_dihedral;  /* primary view only: a fresh flip + rot90 per (epoch, patch) after the shared
                          * transform, reported in batch->xd (cached teacher targets are turned to match) */
    float mean[2][3], std[2][3]; /* normalisation per view, in [0,1] pixel units */
} tr_loader_cfg;

typedef struct {
    int n;               /* items in this batch (the last one may be short) */
    float *x;            /* n×3×S×S primary view, normalised */
    float *xp;           /* n×3×P×P paired view (NULL without one) */
    float *xt;           /* n×3×S×S teacher view (NULL unless teacher_view) */
    uint8_t *xd;         /* extra transform of x per item: hflip | rot90 << 1 (NULL unless extra_dihedral) */
    int *y;              /* class id or -1 */
    int *idx;            /* index into the loader's item array (memory banks) */
    int *slide;
    int64_t *patch_id;
} tr_batch;

typedef struct {
    int hflip, vflip, rot90;
    float brightness, contrast, saturation, hue;
    int order[4];
} tr_aug;

typedef struct tr_loader tr_loader;
/* Items are copied. Checks up front that every patch has an image at each view's magnification
 * ("DB: patch N has no image at 10x"). The worker opens its own connection to the same file. */
tr_loader *tr_loader_new(mp_db *db, const tr_loader_cfg *cfg, const db_item *items, int n);
int tr_loader_start(tr_loader *L, int epoch);           /* begin an epoch (stops a running one) */
/* 1 and *b (valid until the next call), 0 at the end of the epoch, -1 + mp_err on failure. */
int tr_loader_next(tr_loader *L, const tr_batch **b);
int tr_loader_size(const tr_loader *L, int view);
/* Stop decoding the paired view (batch->xp is left unset) from the next epoch on: RBD with a
 * teacher cache needs only the student's images, and the 10x decode + augmentation dominated. */
void tr_loader_skip_paired(tr_loader *L, int skip);
/* Switch on reuse of augmentation draws (cfg.aug_period) and the primary view's extra turn
 * (cfg.extra_dihedral) from the next tr_loader_start. */
void tr_loader_set_reuse(tr_loader *L, int period, int extra_dihedral);
/* Draw each epoch's order with replacement: n items by probability w[i] / sum(w) (weights copied;
 * an item of weight 0 is never drawn), seeded by (seed, epoch) like the shuffle. NULL: back to a
 * permutation. For `train --sampling` (db/sampling.h). */
void tr_loader_set_weights(tr_loader *L, const double *w);
int tr_loader_count(const tr_loader *L);
int tr_loader_batches(const tr_loader *L);
void tr_loader_free(tr_loader *L);

void tr_aug_draw(tr_aug *a, mp_rng *r, const tr_loader_cfg *c);
/* rgb: n×n×3 bytes → out: 3×n×n normalised floats; work holds 3·n·n floats. The extra flip and
 * rotation are applied after the shared transform (teacher-view noise). */
void tr_augment_image(const uint8_t *rgb, int n, const tr_aug *a, int extra_hflip, int extra_rot, const float mean[3],
                      const float std[3], float *out, float *work);
/* Source cell of output (x, y) in an n×n grid under hflip, vflip, then rot (quarter turns CCW). */
void tr_dihedral_src(int x, int y, int n, int hflip, int vflip, int rot, int *sx, int *sy);
/* C×n×n map of the shared view → the same map under a batch's extra transform xd (hflip | rot << 1),
 * so that cell (x, y) still covers the tissue it covers in the turned image. RBD turns the cached
 * teacher map this way; the teacher's logits are kept, as it was trained with flips and rot90. */
void tr_turn_map(float *dst, const float *src, int C, int n, uint8_t xd);
int tr_channel_stats(mp_db *db, const db_item *items, int n, double mag, int max_images, float mean[3], float std[3]);

/* ---- prediction (trainer/modelio.c) ---- */

/* A trained model's card (architecture, magnification, input size, normalisation, classes,
 * method) is nn/card.h's: train writes it, --teacher and eval read it with nn_card_load. */
/* Probabilities (n×k) over one unshuffled pass of L; y and slide may be NULL. Returns n or -1. */
int tr_predict(nn_model *m, tr_loader *L, float *prob, int *y, int *slide);

/* ---- training (trainer/train.c) ---- */

enum { TR_RBD = 1, TR_CRCKD = 2 }; /* method flags; 0 = supervised */
/* Bounds on a run (options and resumed training states are checked against them). */
enum { TR_MAX_EPOCHS = 100000, TR_MAX_BATCH = 65536 };

typedef struct {
    const char *db_path, *out, *teacher, *arch;
    int method;
    double mag;
    int epochs, batch, patience, threads, resume, use_unlabeled, max_train; /* max_train: cap items (0 = all) */
    uint64_t seed;
    double lr, wd;
    int warmup;              /* rbd/supervised: linear LR warm-up over this many steps (0 = none) */
    double ce_weight;        /* rbd: weight of a CE term on labelled patches (default 0) */
    double temperature, beta;
    int l1;
    /* crckd */
    double lambda_ccd, lambda_crp, ema, tau, max_lr;
    int P, K, feat_dim, rampup;
    int augment;
    float jitter[4];
    int progress;            /* mp_progress_mode */
    int log_every;
    int teacher_views;       /* rbd: > 0 caches the teacher's outputs for this many augmentation draws
                              * per pair (computed once; epoch e uses draw e mod N); 0 = live teacher;
                              * -1 (default) = 4 when the cache fits in 2 GiB, else 0 */
    const char *teacher_cache; /* file to reuse cached teacher outputs across runs (NULL = none) */
    double avg_epochs;       /* > 0: validate and keep an exponential moving average of the weights with
                              * a horizon of this many epochs (default 2 for rbd methods, 0 = off) */
    int extra_flips;         /* with cached teacher outputs: turn the student's view by a fresh flip +
                              * rot90 every epoch (and the cached map with it); default 1 */
    int stop_after;          /* run at most this many epochs in this call (0 = all); --resume continues */
    const char *sampling;    /* a db/sampling.h file: each epoch draws the training patches with its weights
                              * (with replacement) instead of a permutation; supervised and crckd only */
} tr_train_opts;

/* Defaults per method (METHODS.md), to be overridden field by field. */
void tr_train_defaults(tr_train_opts *o, int method);
/* Fill epochs left at 0 and patience left at -1 (the defaults) for a training set of n patches:
 * epochs for about 1000 steps within 30..200 and patience a quarter of them (at least 8); RBD
 * methods 100 and 25. Values already set are kept. */
void tr_auto_schedule(tr_train_opts *o, int n);

/* Whether an epoch without improvement counts towards early stopping: not inside the warm-up
 * (step <= warmup_steps) and not while the best validation is the first epoch's (best_epoch 0,
 * 0-based) and at chance, balanced accuracy 1/k (a network that has not started is not on a plateau). */
int tr_patience_counts(int64_t step, int64_t warmup_steps, int best_epoch, double best_val, int k);

typedef struct {
    int epochs_run, best_epoch;
    double best_val, last_loss, train_seconds;
    int64_t steps;
} tr_train_result;

/* Train per opts; writes OUT (best on validation), OUT's stem + .last.mpk (every epoch, with
 * training state), .log.jsonl, and the curve as .svg and .png. -1 + mp_err on failure (the last good checkpoint stays).
 * With resume, the log is first cut back to the epochs the state holds; a state that has run all
 * the epochs asked for finishes at once (0 epochs run), one that has run more is an error. */
int tr_train(const tr_train_opts *o, tr_train_result *res);
/* ---- training curves (trainer/curves.c) ---- */

/* The curve of a run from its .log.jsonl: total loss and (when there are several) its terms on the
 * left axis, validation balanced accuracy on the right, epochs 1-based, the best epoch in a note;
 * written as SVG to svg_path and, unless png_path is NULL, rendered from that SVG to a PNG. */
int tr_curve_write(const char *log_path, const char *svg_path, const char *png_path, const char *title);
/* An SVG document rendered to a PNG file through libvips (librsvg), written atomically. */
int tr_svg_to_png(const char *svg, const char *png_path);

/* Paths next to the checkpoint: stem(OUT) + suffix (".last.mpk", ".log.jsonl", ".svg", ".png"). */
void tr_side_path(char *buf, size_t cap, const char *out, const char *suffix);

#endif
