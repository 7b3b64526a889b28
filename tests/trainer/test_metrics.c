/* tests/trainer/test_metrics.c — metrics against values computed by hand (worked in comments). */
#include "tests/test.h"

#include <pthread.h>

#include "common/error.h"
#include "common/rng.h"
#include "trainer/trainer.h"

/* y = 0,0,1,1,2,2; predictions 0,1,1,2,2,0 →
 * confusion [[1,1,0],[0,1,1],[1,0,1]]: accuracy 3/6, every recall/precision/F1 1/2.
 * Quadratic kappa: weights (i-j)²/4; Σw·O = .25+.25+1 = 1.5; E = 2·2/6 everywhere → Σw·E = 2;
 * kappa = 1 − 1.5/2 = 0.25.
 * AUC class 0: pos .7,.3 vs neg .2,.2,.1,.5 → (4+3)/8 = .875.
 * AUC class 1: pos .6,.2 vs neg .2,.4,.2,.2 → (4 + 3·0.5)/8 = .6875 (ties count 1/2).
 * AUC class 2: pos .7,.3 vs neg .1,.3,.2,.6 → (4 + 2 + .5)/8 = .8125. */
static const int Y[6] = {0, 0, 1, 1, 2, 2};
static const float P[18] = {0.7f, 0.2f, 0.1f, 0.3f, 0.4f, 0.3f, 0.2f, 0.6f, 0.2f,
                            0.2f, 0.2f, 0.6f, 0.1f, 0.2f, 0.7f, 0.5f, 0.2f, 0.3f};

TEST(hand_computed)
{
    tr_metrics m;
    CHECK_INT(tr_metrics_compute(Y, P, 6, 3, &m), 0);
    CHECK_NEAR(m.accuracy, 0.5, 1e-12);
    CHECK_NEAR(m.balanced_accuracy, 0.5, 1e-12);
    CHECK_NEAR(m.macro_precision, 0.5, 1e-12);
    CHECK_NEAR(m.macro_recall, 0.5, 1e-12);
    CHECK_NEAR(m.macro_f1, 0.5, 1e-12);
    CHECK_NEAR(m.kappa, 0.25, 1e-12);
    CHECK_NEAR(m.auc_c[0], 0.875, 1e-12);
    CHECK_NEAR(m.auc_c[1], 0.6875, 1e-12);
    CHECK_NEAR(m.auc_c[2], 0.8125, 1e-12);
    CHECK_NEAR(m.macro_auc, 2.375 / 3, 1e-12);
    static const int conf[9] = {1, 1, 0, 0, 1, 1, 1, 0, 1};
    for (int i = 0; i < 9; i++) CHECK_INT(m.confusion[i], conf[i]);
    CHECK_INT(m.support[2], 2);
}

/* Imbalanced two-class case: y = 0,0,0,1; predictions 0,0,1,1.
 * recall0 = 2/3, recall1 = 1 → balanced 5/6; precision0 = 1, precision1 = 1/2 → macro P 3/4;
 * F1_0 = 2·(1·2/3)/(5/3) = 0.8, F1_1 = 2·(.5)/(1.5) = 2/3 → macro F1 11/15.
 * Kappa (k=2, weight 1 off-diagonal): O off = 1; rows 3,1, cols 2,2 → E off = (3·2+1·2)/4 = 2 → 0.5. */
TEST(imbalanced_binary)
{
    int y[4] = {0, 0, 0, 1};
    float p[8] = {0.9f, 0.1f, 0.8f, 0.2f, 0.4f, 0.6f, 0.3f, 0.7f};
    tr_metrics m;
    CHECK_INT(tr_metrics_compute(y, p, 4, 2, &m), 0);
    CHECK_NEAR(m.accuracy, 0.75, 1e-12);
    CHECK_NEAR(m.balanced_accuracy, 5.0 / 6, 1e-12);
    CHECK_NEAR(m.macro_precision, 0.75, 1e-12);
    CHECK_NEAR(m.macro_f1, 11.0 / 15, 1e-12);
    CHECK_NEAR(m.kappa, 0.5, 1e-12);
    CHECK_NEAR(m.auc_c[1], 1.0, 1e-12); /* .7 beats .1,.2,.6 */
    CHECK_NEAR(m.auc_c[0], 1.0, 1e-12);
}

TEST(bootstrap)
{
    tr_metrics_ci ci, ci2;
    CHECK_INT(tr_metrics_bootstrap(Y, P, 6, 3, 2000, 7, &ci), 0);
    CHECK_INT(tr_metrics_bootstrap(Y, P, 6, 3, 2000, 7, &ci2), 0);
    for (int j = 0; j < TR_CI_COUNT; j++) {
        CHECK(ci.lo[j] <= ci.hi[j]);
        CHECK(ci.lo[j] == ci2.lo[j] && ci.hi[j] == ci2.hi[j]); /* deterministic */
    }
    CHECK(ci.lo[TR_CI_ACCURACY] < 0.5 && ci.hi[TR_CI_ACCURACY] > 0.5);
    /* Class-balanced: each class keeps its 2 samples, so accuracy moves in steps of 1/6 in [0,1]. */
    CHECK(ci.lo[TR_CI_ACCURACY] >= 0 && ci.hi[TR_CI_ACCURACY] <= 1);
    /* Perfect predictions: every resample is perfect. */
    float q[18];
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++) q[i * 3 + c] = c == Y[i] ? 0.8f : 0.1f;
    CHECK_INT(tr_metrics_bootstrap(Y, q, 6, 3, 500, 1, &ci), 0);
    CHECK_NEAR(ci.lo[TR_CI_BALANCED_ACCURACY], 1.0, 1e-12);
    CHECK_NEAR(ci.hi[TR_CI_MACRO_AUC], 1.0, 1e-12);
    CHECK_NEAR(ci.lo[TR_CI_KAPPA], 1.0, 1e-12);
}

/* Slide 0: patches [.9,.1], [.43,.57], [.37,.63] → mean [.5667, .4333] (class 0);
 * vote at 0.5: all three confident, shares [1/3, 2/3] (class 1); at 0.7 only the first → [1, 0].
 * Slide 1: [.35,.65] → vote at 0.7 has no confident patch, falls back to the mean. */
TEST(slide_aggregation)
{
    float p[8] = {0.9f, 0.1f, 0.43f, 0.57f, 0.37f, 0.63f, 0.35f, 0.65f};
    int s[4] = {0, 0, 0, 1}, sy[2] = {0, 1};
    float out[4];
    tr_slide_mean(p, s, 4, 2, 2, out);
    CHECK_NEAR(out[0], 1.7 / 3, 1e-6);
    CHECK_NEAR(out[3], 0.65, 1e-6);
    tr_slide_vote(p, s, 4, 2, 2, 0.5, out);
    CHECK_NEAR(out[0], 1.0 / 3, 1e-6);
    CHECK_NEAR(out[1], 2.0 / 3, 1e-6);
    tr_slide_vote(p, s, 4, 2, 2, 0.7, out);
    CHECK_NEAR(out[0], 1.0, 1e-6);
    CHECK_NEAR(out[3], 0.65, 1e-6);
    /* 0.30–0.55 make slide 0 class 1 (wrong); 0.60 keeps .9 and .63 → a 1:1 tie resolved to class 0 (right). */
    CHECK_NEAR(tr_slide_vote_threshold(p, s, 4, 2, 2, sy), 0.60, 1e-9);
}

TEST(bad_input)
{
    int y[2] = {0, 3};
    float p[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    tr_metrics m;
    CHECK_INT(tr_metrics_compute(y, p, 2, 2, &m), -1);
    CHECK_CONTAINS(mp_err(), "label 3");
}

/* Two threads compute AUCs on different data at the same time: the score sort must not share
 * state between calls (it used a global comparator context). Each thread's results must equal
 * the ones computed alone. */
enum { RN = 3000, RK = 3, ROUNDS = 40 };
typedef struct {
    int y[RN];
    float p[RN * RK];
    double auc[RK];
    int wrong;
} reent_job;

static void *reent_worker(void *arg)
{
    reent_job *j = arg;
    for (int r = 0; r < ROUNDS; r++) {
        tr_metrics m;
        if (tr_metrics_compute(j->y, j->p, RN, RK, &m) < 0) j->wrong++;
        for (int c = 0; c < RK; c++) j->wrong += m.auc_c[c] != j->auc[c];
    }
    return NULL;
}

TEST(reentrant_sort)
{
    static reent_job job[2];
    mp_rng r;
    mp_rng_derive(&r, 11, 0, 0, 0);
    for (int t = 0; t < 2; t++) {
        reent_job *j = &job[t];
        for (int i = 0; i < RN; i++) {
            j->y[i] = (int)mp_rng_below(&r, RK);
            float s = 0;
            for (int c = 0; c < RK; c++) s += j->p[i * RK + c] = mp_rng_uniformf(&r, 0.01f, 1) + (c == j->y[i]) * (t ? 0.3f : 2.0f);
            for (int c = 0; c < RK; c++) j->p[i * RK + c] /= s;
        }
        tr_metrics m;
        CHECK_INT(tr_metrics_compute(j->y, j->p, RN, RK, &m), 0);
        for (int c = 0; c < RK; c++) j->auc[c] = m.auc_c[c];
        j->wrong = 0;
    }
    CHECK(job[0].auc[0] != job[1].auc[0]); /* the two data sets differ */
    pthread_t th[2];
    for (int t = 0; t < 2; t++) CHECK_INT(pthread_create(&th[t], NULL, reent_worker, &job[t]), 0);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    CHECK_INT(job[0].wrong, 0);
    CHECK_INT(job[1].wrong, 0);
}

/* Patches cluster by slide: 24 slides of 30 patches, 2 classes, 12 slides each; the model is right
 * on every patch of 9 slides per class and wrong on every patch of the other 3 (accuracy 0.75).
 * A patch bootstrap sees 720 independent patches and gives a narrow interval; the slide bootstrap
 * sees what is really there, 24 slides, and must give a far wider one (binomial sd over 24 units vs
 * 720: sqrt(30) = 5.5x). */
TEST(bootstrap_by_slide)
{
    enum { S = 24, PER = 30, N = S * PER };
    static int y[N], unit[N];
    static float p[2 * N];
    for (int s = 0; s < S; s++)
        for (int j = 0; j < PER; j++) {
            int i = s * PER + j, cls = s % 2, right = (s / 2) % 4 != 3;
            y[i] = cls;
            unit[i] = s;
            int pred = right ? cls : 1 - cls;
            p[2 * i + pred] = 0.6f + 0.01f * (j % 10);
            p[2 * i + 1 - pred] = 1.0f - p[2 * i + pred];
        }
    tr_metrics m;
    tr_metrics_ci byp, bys, byp2;
    CHECK_INT(tr_metrics_compute(y, p, N, 2, &m), 0);
    CHECK_NEAR(m.accuracy, 0.75, 1e-12);
    CHECK_INT(tr_metrics_bootstrap(y, p, N, 2, 2000, 3, &byp), 0);
    CHECK_INT(tr_metrics_bootstrap_units(y, p, N, 2, NULL, 0, 2000, 3, &byp2), 0);
    CHECK_INT(tr_metrics_bootstrap_units(y, p, N, 2, unit, S, 2000, 3, &bys), 0);
    CHECK_INT(bys.units, S);
    CHECK_INT(byp.units, N);
    double wp = byp.hi[TR_CI_ACCURACY] - byp.lo[TR_CI_ACCURACY], ws = bys.hi[TR_CI_ACCURACY] - bys.lo[TR_CI_ACCURACY];
    printf("  accuracy 95%% CI width: by patch %.4f, by slide %.4f\n", wp, ws);
    CHECK(wp > 0);
    CHECK(ws > 3 * wp);
    CHECK(bys.lo[TR_CI_ACCURACY] < 0.75 && bys.hi[TR_CI_ACCURACY] > 0.75);
    /* the unit-less call is the patch bootstrap, draw for draw */
    for (int j = 0; j < TR_CI_COUNT; j++) CHECK(byp.lo[j] == byp2.lo[j] && byp.hi[j] == byp2.hi[j]);
    /* a unit index outside 0..nunits-1 is refused */
    unit[5] = S;
    CHECK_INT(tr_metrics_bootstrap_units(y, p, N, 2, unit, S, 10, 3, &bys), -1);
    CHECK(strstr(mp_err(), "unit 24 of sample 5") != NULL);
    unit[5] = 0;
}

int main(void)
{
    RUN(hand_computed);
    RUN(imbalanced_binary);
    RUN(bootstrap);
    RUN(bootstrap_by_slide);
    RUN(slide_aggregation);
    RUN(bad_input);
    RUN(reentrant_sort);
    return test_done();
}
