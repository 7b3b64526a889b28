/* trainer/trainer.h — the trainer's door: evaluation metrics, the data loader over a magpie
 * dataset, and the training methods (supervised, rbd, crckd, rbd+crckd) behind `magpie train`
 * and `magpie eval`. Functions return -1 (or NULL) and leave mp_err() on failure. */
#ifndef TRAINER_H
#define TRAINER_H

#include <stdint.h>

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
    double lo[TR_CI_COUNT], hi[TR_CI_COUNT]; /* 2.5 and 97.5 percentiles */
} tr_metrics_ci;

/* y[n] in 0..k-1, prob[n×k] (row-wise probabilities; prediction = argmax, first on ties). */
int tr_metrics_compute(const int *y, const float *prob, int n, int k, tr_metrics *m);
/* 95% CIs from `resamples` class-balanced bootstrap resamples (within each class, draw as many
 * samples as it has, with replacement). Deterministic for a seed. */
int tr_metrics_bootstrap(const int *y, const float *prob, int n, int k, int resamples, uint64_t seed,
                         tr_metrics_ci *ci);
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

#endif
