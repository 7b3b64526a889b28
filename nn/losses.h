/* nn/losses.h — training losses with their gradients: cross-entropy, RBD's distillation loss
 * (temperature KL + feature-map matching) and CRCKD's pieces (contrastive distillation over
 * memory banks, categorical relation KL), as METHODS.md defines them.
 * Conventions: each returns the loss value (double accumulation), and ACCUMULATES
 * scale · dLoss/dinput into every gradient pointer that is not NULL. Losses never allocate and
 * never fail (inputs are checked by their callers); no state, so any thread on its own buffers. */
#ifndef NN_LOSSES_H
#define NN_LOSSES_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

#define NN_LOSS_MAX_CLASSES 4096

/* Softmax of n rows of k logits into p (n x k); sums in double. The one used by validation,
 * eval and infer, so they report the same probabilities for the same logits. */
void nn_softmax_rows(float *p, const float *z, int n, int k);

/* Softmax cross-entropy over N rows of K logits, reduced like PyTorch's CrossEntropyLoss
 * (mean; with class weights, the weighted mean Σ w[y_i]·l_i / Σ w[y_i]; label smoothing ε mixes
 * in ε/K · Σ_k w_k·(−log p_k) per row). class_w may be NULL. Rows with label < 0 are ignored. */
double nn_cross_entropy(float *dlogits, const float *logits, const int32_t *labels, int N, int K,
                        const float *class_w, float smoothing, float scale);

/* Knowledge-distillation KL: T² · KL(softmax(zt/T) ‖ softmax(zs/T)), batchmean (sum / N).
 * dzt may be NULL (frozen teacher). T = 1 gives CRCKD's mean-teacher term L_MT. */
double nn_kd_kl(float *dzs, float *dzt, const float *zs, const float *zt, int N, int K, float T, float scale);

/* mean((a − b)²) and mean(|a − b|) over n values; gradients for a and/or b. */
double nn_mse(float *da, float *db, const float *a, const float *b, size_t n, float scale);
double nn_l1(float *da, float *db, const float *a, const float *b, size_t n, float scale);

/* RBD student loss: T²·KL(zt‖zs)/N + beta · mean((Fs − amaxpool_{Hs×Ws}(Ft))²)   (|·| if l1).
 * Fs is N×C×Hs×Ws, Ft N×C×Ht×Wt (teacher, frozen: no gradient). work holds N·C·Hs·Ws floats.
 * parts (may be NULL) receives {kd term, feature term} (the feature term already times beta). */
double nn_rbd_loss(float *dzs, float *dFs, float *work, const float *zs, const float *zt, const float *Fs,
                   const float *Ft, int N, int K, int C, int Hs, int Ws, int Ht, int Wt, float T, float beta,
                   int l1, float scale, double parts[2]);

/* ---- CRCKD ---- */
/* Memory bank rows uniform in ±1/sqrt(D/3) (as CRD initialises them). */
void nn_membank_init(float *bank, int n, int D, mp_rng *rng);
/* m_i ← normalize(momentum·m_i + (1 − momentum)·g_b) for row i = ids[b]; momentum 0.5 in CRCKD. */
void nn_membank_update(float *bank, const float *g, const int32_t *ids, int B, int D, float momentum);
/* Class-guided contrastive distillation for one side: anchors g (B×D, L2-normalised) scored
 * against bank rows idx[b·(P+K) + j] (first P are positives, the first being the anchor's own
 * row; then K negatives): s = exp(<bank_j, g_b>/tau) / Z. *Z ≤ 0 on the first call: it is set to
 * mean(exp(<.,.>/tau)) · n_data over this batch and stays frozen (no gradient through Z).
 *   L = −(1/B) Σ_b [ (1/P) Σ_p log(s_p / (s_p + K/n_data)) + Σ_k log((K/n_data) / (s_k + K/n_data)) ]
 * For CRCKD's L_CCD^S pass (g_S, M_T); for L_CCD^T pass (g_T, M_S), each side with its own Z. */
double nn_ccd_loss(float *dg, const float *g, const float *bank, const int32_t *idx, int B, int D, int P, int K,
                   int n_data, float tau, float *Z, float scale);
/* c_k = normalize(mean over rows of class k of ReLU(bank row)); a class with no rows gets 0. */
void nn_class_centroids(float *cent, const float *bank, const int32_t *row_labels, int n_data, int D,
                        int n_classes);
/* Categorical relation KL: r_S = gs·csᵀ/tau, r_T = gt·ctᵀ/tau, L = KL(softmax(r_T) ‖ softmax(r_S)),
 * batchmean. Centroids are constants; dgt may be NULL (teacher side detached). */
double nn_crp_loss(float *dgs, float *dgt, const float *gs, const float *gt, const float *cs, const float *ct,
                   int B, int D, int n_classes, float tau, float scale);

#endif
