/* trainer/metrics.c — classification metrics for `magpie eval` and model selection:
 * accuracy, balanced accuracy, macro P/R/F1, one-vs-rest AUC (exact, ties count 1/2),
 * quadratic-weighted kappa, confusion matrix, class-balanced bootstrap CIs, slide aggregation. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "trainer/trainer.h"

static int argmax(const float *p, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (p[j] > p[b]) b = j;
    return b;
}

/* Per-class sort order of the scores, computed once so each bootstrap resample is O(n). */
typedef struct {
    int n, k;
    int *order; /* k × n: indices sorted by ascending prob[:, c] */
} auc_plan;

/* the column being sorted, passed to the comparator through qsort_r (no global state: eval and
 * training may compute metrics from several threads) */
typedef struct {
    const float *prob;
    int k, c;
} score_col;

static int cmp_score(const void *a, const void *b, void *ctx)
{
    const score_col *s = ctx;
    float x = s->prob[(size_t)*(const int *)a * s->k + s->c], y = s->prob[(size_t)*(const int *)b * s->k + s->c];
    return (x > y) - (x < y);
}

static void auc_plan_init(auc_plan *pl, const float *prob, int n, int k)
{
    pl->n = n;
    pl->k = k;
    pl->order = mp_xmalloc(sizeof(int) * (size_t)n * k + 1);
    for (int c = 0; c < k; c++) {
        int *o = pl->order + (size_t)c * n;
        for (int i = 0; i < n; i++) o[i] = i;
        score_col col = {prob, k, c};
        qsort_r(o, n, sizeof(int), cmp_score, &col);
    }
}

/* Weighted one-vs-rest AUC of class c: P(score_pos > score_neg) + 0.5 P(tie), each sample
 * counted w[i] times (bootstrap multiplicities; w = NULL means 1). NAN when a side is empty. */
static double auc_weighted(const auc_plan *pl, const float *prob, const int *y, const double *w, int c)
{
    const int *o = pl->order + (size_t)c * pl->n;
    int n = pl->n, k = pl->k;
    double neg_below = 0, pos_tot = 0, neg_tot = 0, sum = 0;
    for (int i = 0; i < n;) {
        float s = prob[(size_t)o[i] * k + c];
        double gp = 0, gn = 0;
        int j = i;
        while (j < n && prob[(size_t)o[j] * k + c] == s) {
            double wi = w ? w[o[j]] : 1.0;
            if (y[o[j]] == c) gp += wi;
            else gn += wi;
            j++;
        }
        sum += gp * (neg_below + 0.5 * gn);
        neg_below += gn;
        pos_tot += gp;
        neg_tot += gn;
        i = j;
    }
    if (pos_tot <= 0 || neg_tot <= 0) return NAN;
    return sum / (pos_tot * neg_tot);
}

/* All scalar metrics from a (weighted) confusion matrix; conf is k×k, rows = truth. */
static void from_confusion(const double *conf, int k, tr_metrics *m)
{
    double n = 0, diag = 0, bacc = 0, prec = 0, rec = 0, f1 = 0;
    int present = 0;
    double *row = mp_xcalloc(k, sizeof(double)), *col = mp_xcalloc(k, sizeof(double));
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            row[i] += conf[i * k + j];
            col[j] += conf[i * k + j];
            n += conf[i * k + j];
        }
    for (int c = 0; c < k; c++) {
        double tp = conf[c * k + c];
        diag += tp;
        /* Standard definitions; an undefined ratio counts as 0 (scikit-learn's zero_division=0). */
        double p = col[c] > 0 ? tp / col[c] : 0, r = row[c] > 0 ? tp / row[c] : 0;
        double f = p + r > 0 ? 2 * p * r / (p + r) : 0;
        m->precision_c[c] = p;
        m->recall_c[c] = r;
        m->f1_c[c] = f;
        prec += p;
        rec += r;
        f1 += f;
        if (row[c] > 0) {
            bacc += r;
            present++;
        }
    }
    m->accuracy = n > 0 ? diag / n : NAN;
    m->balanced_accuracy = present ? bacc / present : NAN; /* mean recall over classes present */
    m->macro_precision = prec / k;
    m->macro_recall = rec / k;
    m->macro_f1 = f1 / k;
    /* Quadratic-weighted kappa: 1 − Σ w·O / Σ w·E with E = outer(row, col) / n. */
    double num = 0, den = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double w = k > 1 ? (double)(i - j) * (i - j) / ((double)(k - 1) * (k - 1)) : 0;
            num += w * conf[i * k + j];
            den += w * (n > 0 ? row[i] * col[j] / n : 0);
        }
    m->kappa = den > 0 ? 1.0 - num / den : (num == 0 ? 1.0 : NAN);
    free(row);
    free(col);
}

static void fill(const auc_plan *pl, const int *y, const float *prob, const int *pred, const double *w, int n, int k,
                 double *conf, tr_metrics *m)
{
    memset(conf, 0, sizeof(double) * k * k);
    for (int i = 0; i < n; i++) conf[y[i] * k + pred[i]] += w ? w[i] : 1.0;
    from_confusion(conf, k, m);
    double s = 0;
    int cnt = 0;
    for (int c = 0; c < k; c++) {
        m->auc_c[c] = auc_weighted(pl, prob, y, w, c);
        if (!isnan(m->auc_c[c])) {
            s += m->auc_c[c];
            cnt++;
        }
    }
    m->macro_auc = cnt ? s / cnt : NAN;
}

int tr_metrics_compute(const int *y, const float *prob, int n, int k, tr_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (n <= 0) return mp_err_set("metrics: no samples");
    if (k < 2 || k > TR_MAX_CLASSES) return mp_err_set("metrics: %d classes (2..%d supported)", k, TR_MAX_CLASSES);
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k) return mp_err_set("metrics: label %d of sample %d outside 0..%d", y[i], i, k - 1);
    m->n = n;
    m->k = k;
    int *pred = mp_xmalloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) pred[i] = argmax(prob + (size_t)i * k, k);
    double *conf = mp_xmalloc(sizeof(double) * k * k);
    auc_plan pl;
    auc_plan_init(&pl, prob, n, k);
    fill(&pl, y, prob, pred, NULL, n, k, conf, m);
    for (int i = 0; i < k * k; i++) m->confusion[i] = (int64_t)conf[i];
    for (int i = 0; i < n; i++) m->support[y[i]]++;
    free(pl.order);
    free(conf);
    free(pred);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile (linear interpolation, NaNs dropped) of v[0..n). Sorts v. */
static double percentile(double *v, int n, double q)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) v[m++] = v[i];
    if (!m) return NAN;
    qsort(v, m, sizeof(double), cmp_double);
    double pos = q * (m - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < m ? lo + 1 : lo;
    return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

/* Class-balanced bootstrap over units (slides, patients; each patch its own unit when unit is NULL).
 * Patches of one unit are not independent draws, so a resample takes whole units: units are
 * stratified by their majority label and each stratum is redrawn at its own size, with
 * replacement, so class proportions stay near fixed and every AUC stays defined. A patch counts as
 * many times as its unit was drawn. With unit NULL this is the patch bootstrap, draw for draw. */
int tr_metrics_bootstrap_units(const int *y, const float *prob, int n, int k, const int *unit, int nunits,
                               int resamples, uint64_t seed, tr_metrics_ci *ci)
{
    tr_metrics point;
    if (tr_metrics_compute(y, prob, n, k, &point) < 0) return -1;
    if (unit) {
        if (nunits < 1) return mp_err_set("metrics: %d bootstrap units", nunits);
        for (int i = 0; i < n; i++)
            if (unit[i] < 0 || unit[i] >= nunits)
                return mp_err_set("metrics: unit %d of sample %d outside 0..%d", unit[i], i, nunits - 1);
    } else nunits = n;
    memset(ci, 0, sizeof *ci);
    ci->resamples = resamples;
    /* each unit's stratum: its most common label (the lowest on ties); -1 for a unit without patches */
    int *cnt = mp_xcalloc((size_t)nunits * k + 1, sizeof(int)), *stratum = mp_xmalloc(sizeof(int) * (nunits + 1));
    for (int i = 0; i < n; i++) cnt[(size_t)(unit ? unit[i] : i) * k + y[i]]++;
    int start[TR_MAX_CLASSES + 1] = {0};
    ci->units = 0;
    for (int u = 0; u < nunits; u++) {
        int b = 0;
        for (int c = 1; c < k; c++)
            if (cnt[(size_t)u * k + c] > cnt[(size_t)u * k + b]) b = c;
        stratum[u] = cnt[(size_t)u * k + b] > 0 ? b : -1;
        if (stratum[u] >= 0) start[b + 1]++, ci->units++;
    }
    free(cnt);
    if (resamples <= 0) {
        free(stratum);
        return 0;
    }
    int *pred = mp_xmalloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) pred[i] = argmax(prob + (size_t)i * k, k);
    int *byclass = mp_xmalloc(sizeof(int) * (nunits + 1));
    for (int c = 0; c < k; c++) start[c + 1] += start[c];
    int fillp[TR_MAX_CLASSES];
    memcpy(fillp, start, sizeof(int) * k);
    for (int u = 0; u < nunits; u++)
        if (stratum[u] >= 0) byclass[fillp[stratum[u]]++] = u;
    double *uw = mp_xmalloc(sizeof(double) * (nunits + 1));

    enum { NS = TR_CI_COUNT };
    double *samples = mp_xmalloc(sizeof(double) * (size_t)resamples * NS);
    double *w = mp_xmalloc(sizeof(double) * n), *conf = mp_xmalloc(sizeof(double) * k * k);
    auc_plan pl;
    auc_plan_init(&pl, prob, n, k);
    mp_rng r;
    for (int b = 0; b < resamples; b++) {
        mp_rng_derive(&r, seed, 0xb007, (uint64_t)b, 0);
        memset(uw, 0, sizeof(double) * nunits);
        for (int c = 0; c < k; c++) {
            int nc = start[c + 1] - start[c];
            for (int t = 0; t < nc; t++) uw[byclass[start[c] + mp_rng_below(&r, nc)]] += 1.0;
        }
        for (int i = 0; i < n; i++) w[i] = uw[unit ? unit[i] : i];
        tr_metrics m;
        fill(&pl, y, prob, pred, w, n, k, conf, &m);
        double *s = samples + (size_t)b * NS;
        s[TR_CI_ACCURACY] = m.accuracy;
        s[TR_CI_BALANCED_ACCURACY] = m.balanced_accuracy;
        s[TR_CI_MACRO_PRECISION] = m.macro_precision;
        s[TR_CI_MACRO_RECALL] = m.macro_recall;
        s[TR_CI_MACRO_F1] = m.macro_f1;
        s[TR_CI_MACRO_AUC] = m.macro_auc;
        s[TR_CI_KAPPA] = m.kappa;
    }
    double *col = mp_xmalloc(sizeof(double) * resamples);
    for (int j = 0; j < NS; j++) {
        for (int b = 0; b < resamples; b++) col[b] = samples[(size_t)b * NS + j];
        ci->lo[j] = percentile(col, resamples, 0.025);
        ci->hi[j] = percentile(col, resamples, 0.975);
    }
    free(col);
    free(pl.order);
    free(samples);
    free(w);
    free(conf);
    free(byclass);
    free(pred);
    free(uw);
    free(stratum);
    return 0;
}

int tr_metrics_bootstrap(const int *y, const float *prob, int n, int k, int resamples, uint64_t seed, tr_metrics_ci *ci)
{
    return tr_metrics_bootstrap_units(y, prob, n, k, NULL, 0, resamples, seed, ci);
}

/* ---- slide-level aggregation ---------------------------------------------------------- */

int tr_slide_mean(const float *prob, const int *slide, int n, int k, int nslides, float *out)
{
    int *cnt = mp_xcalloc(nslides, sizeof(int));
    memset(out, 0, sizeof(float) * (size_t)nslides * k);
    for (int i = 0; i < n; i++) {
        assert(slide[i] >= 0 && slide[i] < nslides);
        cnt[slide[i]]++;
        for (int c = 0; c < k; c++) out[(size_t)slide[i] * k + c] += prob[(size_t)i * k + c];
    }
    for (int s = 0; s < nslides; s++)
        for (int c = 0; c < k; c++) out[(size_t)s * k + c] = cnt[s] ? out[(size_t)s * k + c] / cnt[s] : 1.0f / k;
    free(cnt);
    return 0;
}

/* deepslide's vote: count patches whose top-class confidence exceeds the threshold; the slide's
 * output is the share of such patches per class (so argmax is the largest share). A slide with no
 * confident patch falls back to its mean probability. */
int tr_slide_vote(const float *prob, const int *slide, int n, int k, int nslides, double threshold, float *out)
{
    int *cnt = mp_xcalloc(nslides, sizeof(int));
    float *mean = mp_xmalloc(sizeof(float) * (size_t)nslides * k);
    tr_slide_mean(prob, slide, n, k, nslides, mean);
    memset(out, 0, sizeof(float) * (size_t)nslides * k);
    for (int i = 0; i < n; i++) {
        int c = argmax(prob + (size_t)i * k, k);
        if (prob[(size_t)i * k + c] > threshold) {
            out[(size_t)slide[i] * k + c] += 1;
            cnt[slide[i]]++;
        }
    }
    for (int s = 0; s < nslides; s++)
        for (int c = 0; c < k; c++)
            out[(size_t)s * k + c] = cnt[s] ? out[(size_t)s * k + c] / cnt[s] : mean[(size_t)s * k + c];
    free(mean);
    free(cnt);
    return 0;
}

double tr_slide_vote_threshold(const float *prob, const int *slide, int n, int k, int nslides, const int *slide_y)
{
    float *out = mp_xmalloc(sizeof(float) * (size_t)nslides * k);
    double best_t = 0.5, best = -1;
    for (int g = 0; g <= 12; g++) { /* 0.30, 0.35, ..., 0.90 */
        double t = 0.30 + 0.05 * g;
        tr_slide_vote(prob, slide, n, k, nslides, t, out);
        double conf[TR_MAX_CLASSES * TR_MAX_CLASSES] = {0};
        for (int s = 0; s < nslides; s++)
            if (slide_y[s] >= 0) conf[slide_y[s] * k + argmax(out + (size_t)s * k, k)] += 1;
        tr_metrics m;
        from_confusion(conf, k, &m);
        if (!isnan(m.balanced_accuracy) && m.balanced_accuracy > best + 1e-12) {
            best = m.balanced_accuracy;
            best_t = t;
        }
    }
    free(out);
    return best_t;
}

const char *tr_ci_name(int j)
{
    static const char *names[TR_CI_COUNT] = {"accuracy", "balanced_accuracy", "macro_precision", "macro_recall",
                                             "macro_f1", "macro_auc", "kappa"};
    return j >= 0 && j < TR_CI_COUNT ? names[j] : "?";
}

double tr_metric_value(const tr_metrics *m, int j)
{
    switch (j) {
    case TR_CI_ACCURACY: return m->accuracy;
    case TR_CI_BALANCED_ACCURACY: return m->balanced_accuracy;
    case TR_CI_MACRO_PRECISION: return m->macro_precision;
    case TR_CI_MACRO_RECALL: return m->macro_recall;
    case TR_CI_MACRO_F1: return m->macro_f1;
    case TR_CI_MACRO_AUC: return m->macro_auc;
    case TR_CI_KAPPA: return m->kappa;
    }
    return NAN;
}
