/* pipelines/cmd_eval.c — `magpie eval DB CKPT [--split test] [--json]`: patch-level metrics with
 * 95% bootstrap CIs that resample slides (or patients; patches only beside them, on request),
 * per-class AUC, confusion matrix, and slide-level accuracy by mean probability and by
 * thresholded vote (threshold chosen on the validation split; the output says where it came from). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "db/dataset.h"
#include "db/split.h"
#include "infer/infer.h"
#include "nn/gemm.h"
#include "pipelines/cmds.h"
#include "trainer/trainer.h"

typedef struct {
    int n, nslides;
    float *prob;
    int *y, *slide, *slide_y;
    int npatients;
    int *patient; /* per patch: patient index (a slide without a patient id is its own patient) */
} preds;

static void preds_free(preds *p)
{
    free(p->patient);
    free(p->prob);
    free(p->y);
    free(p->slide);
    free(p->slide_y);
}

/* Patient index per slide of the item set, then per patch (out->slide must be filled). Slides
 * whose patient is not recorded count as a patient each. */
static int patients_of(mp_db *db, const db_itemset *is, preds *out)
{
    char **names = mp_xcalloc(is->nslides + 1, sizeof(char *));
    int *of_slide = mp_xmalloc(sizeof(int) * (is->nslides + 1)), np = 0;
    for (int s = 0; s < is->nslides; s++) {
        char key[1100], patient[sizeof key - 2];
        if (db_slide_patient(db, is->slide_names[s], patient, sizeof patient) == 1) snprintf(key, sizeof key, "p:%s", patient);
        else snprintf(key, sizeof key, "s:%s", is->slide_names[s]);
        int j = 0;
        while (j < np && strcmp(names[j], key)) j++; /* slides per split: hundreds, a scan is fine */
        if (j == np) names[np++] = mp_xstrdup(key);
        of_slide[s] = j;
    }
    for (int j = 0; j < np; j++) free(names[j]);
    free(names);
    out->npatients = np;
    out->patient = mp_xmalloc(sizeof(int) * (out->n + 1));
    for (int i = 0; i < out->n; i++) out->patient[i] = of_slide[out->slide[i]];
    free(of_slide);
    return 0;
}

static int predict_split(mp_db *db, nn_model *m, const nn_card *mi, const char *split, int batch, preds *out)
{
    memset(out, 0, sizeof *out);
    db_itemset is;
    if (db_items_load(db, split, 0, &is) < 0) return -1;
    int k = mi->cfg.classes;
    if (is.nclasses != k) {
        mp_err_set("%s: the dataset has %d classes, the model %d", db_path(db), is.nclasses, k); /* before the free */
        db_itemset_free(&is);
        return -1;
    }
    /* keep labelled patches only */
    int n = 0;
    for (int i = 0; i < is.n; i++)
        if (is.items[i].label >= 0) is.items[n++] = is.items[i];
    if (!n) {
        db_itemset_free(&is);
        return mp_err_set("%s: split '%s' has no labelled patches", db_path(db), split);
    }
    tr_loader_cfg c = {.mag = {mi->mag, 0}, .batch = batch, .seed = 0};
    memcpy(c.mean[0], mi->mean, sizeof mi->mean);
    memcpy(c.std[0], mi->std, sizeof mi->std);
    tr_loader *L = tr_loader_new(db, &c, is.items, n);
    if (!L) {
        db_itemset_free(&is);
        return -1;
    }
    int px = tr_loader_size(L, 0);
    if (px != mi->size) {
        tr_loader_free(L);
        db_itemset_free(&is);
        return mp_err_set("%s: the model takes %d px at %gx, the dataset's images are %d px", db_path(db), mi->size, mi->mag, px);
    }
    out->prob = mp_xmalloc(sizeof(float) * n * k);
    out->y = mp_xmalloc(sizeof(int) * n);
    out->slide = mp_xmalloc(sizeof(int) * n);
    int got = tr_predict(m, L, out->prob, out->y, out->slide);
    tr_loader_free(L);
    out->n = n;
    out->nslides = is.nslides;
    out->slide_y = mp_xmalloc(sizeof(int) * (is.nslides + 1));
    memcpy(out->slide_y, is.slide_label, sizeof(int) * is.nslides);
    int prc = got < 0 ? 0 : patients_of(db, &is, out);
    db_itemset_free(&is);
    if (got < 0 || prc < 0) {
        preds_free(out);
        return -1;
    }
    return 0;
}

/* The dataset must hold images at the model's magnification (the tiler writes every
 * magnification of a run for each patch, so the first patch's are the dataset's; a PK lookup). */
static int check_mag(mp_db *db, const nn_card *mi, const char *ck)
{
    double mags[16];
    int n = db_image_mags(db, mags, 16);
    if (n < 0) return -1;
    return nn_card_check_mag(mi, ck, mags, n, db_path(db));
}

/* A JSON number, or null for NaN (a metric undefined on this split, e.g. AUC with one class). */
static void jnum(double v)
{
    if (isfinite(v)) printf("%.6f", v);
    else printf("null");
}

static double slide_bacc(const float *sp, const int *sy, int ns, int k, int *nused)
{
    int *y = mp_xmalloc(sizeof(int) * (ns + 1));
    float *p = mp_xmalloc(sizeof(float) * (ns + 1) * k);
    int m = 0;
    for (int s = 0; s < ns; s++)
        if (sy[s] >= 0) {
            y[m] = sy[s];
            memcpy(p + (size_t)m * k, sp + (size_t)s * k, sizeof(float) * k);
            m++;
        }
    tr_metrics mt;
    double r = m && tr_metrics_compute(y, p, m, k, &mt) == 0 ? mt.balanced_accuracy : NAN;
    *nused = m;
    free(y);
    free(p);
    return r;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: magpie eval DB CKPT [--split test|val|train] [--json] [--batch N] [--threads N] [--bootstrap N]\n"
           "                  [--ci-by slide|patient[,patch]]\n\n"
           "Patch-level accuracy, balanced accuracy, macro precision/recall/F1, one-vs-rest AUC per class,\n"
           "quadratic-weighted kappa and the confusion matrix, with 95%% CIs from N (10000) class-balanced\n"
           "bootstrap resamples of whole slides (--ci-by patient: whole patients), since patches of one\n"
           "slide are not independent; --ci-by patch (or slide,patch / patient,patch) also prints the\n"
           "patch-level interval beside it, for comparison only. Slide-level balanced accuracy by mean\n"
           "probability and by thresholded majority vote: the threshold is grid-searched 0.3-0.9 on the\n"
           "validation split and applied to the evaluated split (on val itself the output says so; without\n"
           "a validation split it is 0.5), and the output says where it came from.\n"
           "--batch defaults to infer's (64 below 112 px, else 8), so both give the same probabilities.\n"
           "--threads: compute threads (default: the CPUs this process may use, here %d).\n", mp_cpu_count());
}

int cmd_eval(int argc, char **argv)
{
    const char *dbp = NULL, *ck = NULL, *split = "test", *ci_by = "slide";
    int json = 0, batch = 0, threads = mp_cpu_count(), resamples = 10000;
    enum { O_JSON = 256, O_SPLIT, O_CIBY, O_BATCH, O_THREADS, O_BOOT };
    static const struct option lo[] = {{"help", no_argument, 0, 'h'},           {"json", no_argument, 0, O_JSON},
                                       {"split", required_argument, 0, O_SPLIT},  {"ci-by", required_argument, 0, O_CIBY},
                                       {"batch", required_argument, 0, O_BATCH},  {"threads", required_argument, 0, O_THREADS},
                                       {"bootstrap", required_argument, 0, O_BOOT}, {0, 0, 0, 0}};
    optind = 1;
    int ch, li;
    while ((ch = mp_getopt_long(argc, argv, "h", lo, &li)) != -1) {
        const char *v = optarg;
        long lv = 0;
        int bad = 0;
        switch (ch) {
        case 'h': usage(stdout); return MP_EXIT_OK;
        case O_JSON: json = 1; break;
        case O_SPLIT:
            split = v;
            if (!db_split_known(v)) {
                mp_error("eval: unknown split '%s' (known: %s)", v, DB_SPLIT_NAMES);
                return MP_EXIT_USAGE;
            }
            break;
        case O_CIBY: ci_by = v; break;
        case O_BATCH: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 4096, batch = (int)lv; break;
        case O_THREADS: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 1024, threads = (int)lv; break;
        case O_BOOT: bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > 10000000, resamples = (int)lv; break;
        default: return mp_usage_error("eval", NULL, "%s", mp_err());
        }
        if (bad) return mp_usage_error("eval", NULL, "bad value for --%s: '%s'", lo[li].name, v);
    }
    for (int i = optind; i < argc; i++) {
        if (!dbp) dbp = argv[i];
        else if (!ck) ck = argv[i];
        else return mp_usage_error("eval", NULL, "unexpected argument '%s'", argv[i]);
    }
    if (!dbp || !ck) {
        usage(stderr);
        return mp_usage_error("eval", NULL, "DB and CKPT are required");
    }
    /* --ci-by: the clustered unit (slide unless patient is named), plus patch beside it if named */
    int by_patient = 0, with_patch = 0;
    {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", ci_by);
        int bad = strlen(ci_by) >= sizeof buf || !*ci_by, nunit = 0;
        for (char *sv, *t = strtok_r(buf, ",", &sv); t && !bad; t = strtok_r(NULL, ",", &sv)) {
            if (!strcmp(t, "patch")) with_patch = 1;
            else if (!strcmp(t, "slide")) nunit++;
            else if (!strcmp(t, "patient")) by_patient = 1, nunit++;
            else bad = 1;
        }
        if (bad || nunit > 1) {
            mp_error("eval: bad value for --ci-by: '%s' (slide, patient, optionally with ,patch)", ci_by);
            return MP_EXIT_USAGE;
        }
    }
    const char *unit_name = by_patient ? "patient" : "slide";
    nn_set_threads(threads);
    nn_card mi;
    nn_model *m;
    /* infer's default batch: the engine's sums depend slightly on how a batch is grouped, so equal
     * batches are what makes eval's and infer's probabilities equal to the bit */
    if (!batch && nn_card_load(ck, NN_CARD_PATCHES, 1, 0, &mi, NULL) == 0) {
        batch = infer_auto_batch(mi.size);
        nn_card_free(&mi);
    }
    if (nn_card_load(ck, NN_CARD_PATCHES, batch > 0 ? batch : 1, 0, &mi, &m) < 0) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_db *db = db_open(dbp, DB_OPEN_READONLY);
    preds P = {0}, V = {0};
    int have_val = 0, rcode = MP_EXIT_FAIL, k = mi.cfg.classes;
    double t0 = mp_now();
    if (!db || check_mag(db, &mi, ck) < 0 || predict_split(db, m, &mi, split, batch, &P) < 0) {
        mp_error("%s", mp_err());
        goto out;
    }
    double infer_s = mp_now() - t0;
    tr_metrics mt;
    tr_metrics_ci ci, cip = {0};
    if (tr_metrics_compute(P.y, P.prob, P.n, k, &mt) < 0 ||
        tr_metrics_bootstrap_units(P.y, P.prob, P.n, k, by_patient ? P.patient : P.slide,
                                   by_patient ? P.npatients : P.nslides, resamples, 12345, &ci) < 0 ||
        (with_patch && tr_metrics_bootstrap(P.y, P.prob, P.n, k, resamples, 12345, &cip) < 0)) {
        mp_error("%s", mp_err());
        goto out;
    }
    /* The vote threshold is chosen on the validation split and applied to the evaluated one; on val
     * itself it is tuned on the data it is scored on, which the output states. */
    double thr = 0.5;
    const char *thr_src = "default", *thr_why = "default 0.5: the dataset has no labelled validation split";
    int is_val = !strcmp(split, "val");
    if (!is_val && predict_split(db, m, &mi, "val", batch, &V) == 0) have_val = 1;
    if (have_val) {
        thr = tr_slide_vote_threshold(V.prob, V.slide, V.n, k, V.nslides, V.slide_y);
        thr_src = "val";
        thr_why = "chosen on the validation split";
    } else if (is_val) {
        thr = tr_slide_vote_threshold(P.prob, P.slide, P.n, k, P.nslides, P.slide_y);
        thr_src = "val (the evaluated split)";
        thr_why = "chosen on val, the split evaluated here: optimistic";
    }
    float *sp = mp_xmalloc(sizeof(float) * (P.nslides + 1) * k);
    int ns;
    tr_slide_mean(P.prob, P.slide, P.n, k, P.nslides, sp);
    double s_mean = slide_bacc(sp, P.slide_y, P.nslides, k, &ns);
    tr_slide_vote(P.prob, P.slide, P.n, k, P.nslides, thr, sp);
    double s_vote = slide_bacc(sp, P.slide_y, P.nslides, k, &ns);
    free(sp);
    int64_t flops = nn_model_flops(&mi.cfg, mi.size, mi.size);

    if (json) {
        printf("{\"checkpoint\":\"%s\",\"split\":\"%s\",\"method\":\"%s\",\"mag\":%g,\"input_size\":%d,\"patches\":%d,"
               "\"flops_per_patch\":%lld,\"inference_seconds\":%.3f,\"bootstrap\":%d,\"ci_unit\":\"%s\",\"ci_units\":%d",
               ck, split, mi.method, mi.mag, mi.size, P.n, (long long)flops, infer_s, resamples, unit_name, ci.units);
        for (int j = 0; j < TR_CI_COUNT; j++) {
            printf(",\"%s\":{\"value\":", tr_ci_name(j));
            jnum(tr_metric_value(&mt, j));
            printf(",\"ci\":[");
            jnum(ci.lo[j]);
            printf(",");
            jnum(ci.hi[j]);
            printf("]");
            if (with_patch) {
                printf(",\"ci_patch\":[");
                jnum(cip.lo[j]);
                printf(",");
                jnum(cip.hi[j]);
                printf("]");
            }
            printf("}");
        }
        printf(",\"classes\":[");
        for (int c = 0; c < k; c++)
            printf("%s{\"name\":\"%s\",\"support\":%lld,\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f,\"auc\":%.6f}",
                   c ? "," : "", mi.class_names[c], (long long)mt.support[c], mt.precision_c[c], mt.recall_c[c], mt.f1_c[c],
                   isnan(mt.auc_c[c]) ? -1.0 : mt.auc_c[c]);
        printf("],\"confusion\":[");
        for (int i = 0; i < k; i++) {
            printf("%s[", i ? "," : "");
            for (int j = 0; j < k; j++) printf("%s%lld", j ? "," : "", (long long)mt.confusion[i * k + j]);
            printf("]");
        }
        printf("],\"slides\":%d,\"slide_mean_balanced_accuracy\":%.6f,\"slide_vote_balanced_accuracy\":%.6f,"
               "\"vote_threshold\":%.2f,\"vote_threshold_source\":\"%s\"}\n",
               ns, isnan(s_mean) ? -1.0 : s_mean, isnan(s_vote) ? -1.0 : s_vote, thr, thr_src);
    } else {
        printf("%s on split '%s': %d patches, %d slides, %s @ %gx (%d px), %.3f GFLOPs/patch\n\n", ck, split, P.n, ns, mi.method,
               mi.mag, mi.size, flops / 1e9);
        printf("95%% CIs from %d class-balanced bootstrap resamples of whole %ss (%d %ss)%s\n", resamples, unit_name,
               ci.units, unit_name, with_patch ? "; the patch-level one beside it treats patches as independent, which "
                                                  "they are not" : "");
        char h1[32], h2[32];
        snprintf(h1, sizeof h1, "95%% CI by %s", unit_name);
        snprintf(h2, sizeof h2, "95%% CI by patch");
        printf("%-20s %8s   %-18s%s%s\n", "metric", "value", h1, with_patch ? "   " : "", with_patch ? h2 : "");
        for (int j = 0; j < TR_CI_COUNT; j++) {
            printf("%-20s %8.4f   [%.4f, %.4f]", tr_ci_name(j), tr_metric_value(&mt, j), ci.lo[j], ci.hi[j]);
            if (with_patch) printf("   [%.4f, %.4f]", cip.lo[j], cip.hi[j]);
            printf("\n");
        }
        printf("\n%-16s %8s %9s %8s %8s %8s\n", "class", "support", "precision", "recall", "f1", "auc");
        for (int c = 0; c < k; c++)
            printf("%-16s %8lld %9.4f %8.4f %8.4f %8.4f\n", mi.class_names[c], (long long)mt.support[c], mt.precision_c[c],
                   mt.recall_c[c], mt.f1_c[c], mt.auc_c[c]);
        printf("\nconfusion (rows = truth, columns = prediction)\n%-16s", "");
        for (int j = 0; j < k; j++) printf(" %8.8s", mi.class_names[j]);
        printf("\n");
        for (int i = 0; i < k; i++) {
            printf("%-16s", mi.class_names[i]);
            for (int j = 0; j < k; j++) printf(" %8lld", (long long)mt.confusion[i * k + j]);
            printf("\n");
        }
        printf("\nslide level (%d slides): balanced accuracy %.4f by mean probability, %.4f by vote at threshold %.2f (%s)\n",
               ns, s_mean, s_vote, thr, thr_why);
        printf("inference: %.2f s (%.0f patches/s)\n", infer_s, P.n / (infer_s > 0 ? infer_s : 1e-9));
    }
    rcode = MP_EXIT_OK;
out:
    preds_free(&P);
    preds_free(&V);
    db_close(db);
    nn_model_free(m);
    nn_card_free(&mi);
    return rcode;
}
