/* trainer/train.c — `magpie train`: supervised, RBD (frozen higher-magnification teacher on the
 * paired image), CRCKD (EMA mean teacher, projection heads, memory banks, CCD + CRP) and both,
 * with per-epoch checkpoints carrying the full training state so --resume continues exactly. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/util.h"
#include "db/sampling.h"
#include "db/split.h"
#include "nn/arch.h"
#include "nn/gemm.h"
#include "nn/losses.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "trainer/trainer.h"

enum { RNG_INIT = 0x1417, RNG_SAMPLE = 0x5a3, RNG_BANK = 0xba4 };

void tr_train_defaults(tr_train_opts *o, int method)
{
    memset(o, 0, sizeof *o);
    o->method = method;
    o->arch = NULL; /* resnet_gn, or the teacher's for rbd */
    o->epochs = 0;   /* auto: see tr_auto_schedule() */
    o->batch = 32;
    o->patience = -1; /* auto */
    o->threads = mp_cpu_count(); /* what the affinity mask / cgroup allows */
    o->use_unlabeled = (method & TR_RBD) != 0;
    o->lr = 1e-3; /* RBD / supervised: Adam 1e-3, wd 1e-4, no decay */
    o->wd = 1e-4;
    o->temperature = 1;
    o->beta = 1;
    o->lambda_ccd = 0.1;
    o->lambda_crp = 1;
    o->ema = 0.99;
    o->tau = 0.07f;
    o->max_lr = 3e-4;
    o->P = 20;
    o->K = 4096;
    o->feat_dim = 128;
    o->rampup = 30;
    if (method & TR_CRCKD && !(method & TR_RBD)) {
        o->lr = 1e-4; /* CRCKD: Adam 1e-4, wd 5e-4, one-cycle to 3e-4 */
        o->wd = 5e-4;
    }
    o->augment = 1;
    o->extra_flips = 1;
    o->teacher_views = -1; /* auto: 4 cached draws when they fit in 2 GiB */
    o->avg_epochs = method & TR_RBD ? 2 : 0; /* weight average for validation and the kept model */
    o->jitter[0] = o->jitter[1] = o->jitter[2] = 0.5f;
    o->jitter[3] = 0.2f;
    o->log_every = 10;
}

void tr_side_path(char *buf, size_t cap, const char *out, const char *suffix)
{
    const char *slash = strrchr(out, '/'), *dot = strrchr(out, '.');
    int stem = (int)(dot && (!slash || dot > slash) ? dot - out : (long)strlen(out));
    snprintf(buf, cap, "%.*s%s", stem, out, suffix);
}

/* ---- CRCKD projection heads: g = L2norm(W2 · (W1 · pooled + b1) + b2), one per side ---- */

typedef struct {
    int in, d;           /* pooled dim, embedding dim */
    nn_param *w1[2], *b1[2], *w2[2], *b2[2]; /* [0] student, [1] teacher */
    float *f[2], *h[2], *g[2], *norm[2], *df, *dh, *dg[2], *dpooled;
} heads;

static void heads_plan(heads *H, nn_params *ps, int in, int d)
{
    static const char *side[2] = {"head_s", "head_t"};
    H->in = in;
    H->d = d;
    for (int s = 0; s < 2; s++) {
        char n[64];
        int64_t sw1[2] = {d, in}, sb[1] = {d}, sw2[2] = {d, d};
        snprintf(n, sizeof n, "%s.0.weight", side[s]);
        nn_params_add(ps, n, 2, sw1, 1);
        snprintf(n, sizeof n, "%s.0.bias", side[s]);
        nn_params_add(ps, n, 1, sb, 1);
        snprintf(n, sizeof n, "%s.1.weight", side[s]);
        nn_params_add(ps, n, 2, sw2, 1);
        snprintf(n, sizeof n, "%s.1.bias", side[s]);
        nn_params_add(ps, n, 1, sb, 1);
    }
}

static void heads_bind(heads *H, nn_params *ps, int B, uint64_t seed)
{
    for (int s = 0; s < 2; s++) {
        H->w1[s] = &ps->p[4 * s + 0];
        H->b1[s] = &ps->p[4 * s + 1];
        H->w2[s] = &ps->p[4 * s + 2];
        H->b2[s] = &ps->p[4 * s + 3];
        H->f[s] = mp_xmalloc(sizeof(float) * B * H->d);
        H->h[s] = mp_xmalloc(sizeof(float) * B * H->d);
        H->g[s] = mp_xmalloc(sizeof(float) * B * H->d);
        H->norm[s] = mp_xmalloc(sizeof(float) * B);
        H->dg[s] = mp_xmalloc(sizeof(float) * B * H->d);
    }
    H->df = mp_xmalloc(sizeof(float) * B * H->d);
    H->dh = mp_xmalloc(sizeof(float) * B * H->d);
    H->dpooled = mp_xmalloc(sizeof(float) * B * H->in);
    /* PyTorch's nn.Linear init: U(±1/sqrt(fan_in)) for weights and biases. */
    mp_rng r;
    mp_rng_derive(&r, seed, RNG_INIT, 2, 0);
    for (int k = 0; k < ps->n; k++) {
        nn_param *p = &ps->p[k];
        float bound = 1.0f / sqrtf((float)(k % 4 < 2 ? H->in : H->d)); /* fan_in of w1/b1, w2/b2 */
        for (size_t i = 0; i < p->numel; i++) p->data[i] = mp_rng_uniformf(&r, -bound, bound);
    }
}

static void heads_free(heads *H)
{
    for (int s = 0; s < 2; s++) {
        free(H->f[s]);
        free(H->h[s]);
        free(H->g[s]);
        free(H->norm[s]);
        free(H->dg[s]);
    }
    free(H->df);
    free(H->dh);
    free(H->dpooled);
}

static void heads_forward(heads *H, int s, const float *pooled, int B)
{
    nn_linear_forward(H->f[s], pooled, H->w1[s]->data, H->b1[s]->data, B, H->in, H->d);
    nn_linear_forward(H->h[s], H->f[s], H->w2[s]->data, H->b2[s]->data, B, H->d, H->d);
    nn_l2norm_forward(H->g[s], H->norm[s], H->h[s], B, H->d, 1e-12f);
}

/* Backward of side s from H->dg[s]; dpooled (if non-NULL) receives the gradient at the input. */
static void heads_backward(heads *H, int s, const float *pooled, int B, float *dpooled)
{
    memset(H->dh, 0, sizeof(float) * B * H->d);
    nn_l2norm_backward(H->dh, H->dg[s], H->g[s], H->norm[s], B, H->d, 1e-12f);
    memset(H->df, 0, sizeof(float) * B * H->d);
    nn_linear_backward(H->df, H->w2[s]->grad, H->b2[s]->grad, H->dh, H->f[s], H->w2[s]->data, B, H->d, H->d);
    nn_linear_backward(dpooled, H->w1[s]->grad, H->b1[s]->grad, H->df, pooled, H->w1[s]->data, B, H->in, H->d);
}

/* ---- the training run ---- */

typedef struct {
    const tr_train_opts *o;
    mp_db *db;
    db_itemset train, val, unl;
    db_item *items;       /* training items (train [+ unlabeled]) */
    int n, nlab, k;
    nn_card info, tinfo;    /* the student's card (written with every checkpoint) and the teacher's */
    nn_model *student, *teacher, *ema, *avg; /* avg: running average of the student's weights */
    tr_loader *loader, *vloader;
    nn_optim opt, hopt;
    nn_sched sched;
    nn_params hp;         /* CRCKD heads */
    heads H;
    float *bank[2];       /* n × d: [0] student bank M_S, [1] teacher bank M_T */
    float Z[2];
    int32_t *row_label;   /* n: class of each bank row (-1 unlabelled) */
    int32_t **byclass;    /* rows of each class */
    int *nbyclass;
    float *class_w;
    double *sample_w;     /* n: --sampling weights of the training items (NULL without) */
    /* scratch */
    float *dz, *dF, *work, *zt, *Ft, *cent[2];
    float *cz, *cf;       /* cached teacher logits / pooled maps: views × n × ... */
    int cC, cH, cW;
    double avg_decay;
    int32_t *sidx, *ids, *lab;
    float *gl[2], *dgl[2];
    int64_t step;
    int epoch0, best_epoch, bad_epochs;
    double best_val;
    double *hist;         /* per epoch: train loss, val balanced accuracy */
    int nhist;
    int auto_epochs;      /* the epochs came from tr_auto_schedule (for messages) */
} run;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* --sampling FILE: a weight per training item from the file (db/sampling.h). Every listed patch
 * must be a training item; items the file does not list get weight 0 (never drawn). The sampling
 * already balances the classes, so the class-weighted loss terms are made unweighted. */
static int load_sampling(run *R)
{
    const tr_train_opts *o = R->o;
    if (o->method & TR_RBD)
        return mp_err_set("--sampling is for the supervised and crckd methods (rbd computes its teacher over every "
                          "patch)");
    db_sampling s;
    if (db_sampling_read(o->sampling, &s) < 0) return -1;
    /* items sorted by patch id, to find each listed patch */
    int64_t *key = mp_xmalloc(sizeof(int64_t) * 2 * (R->n ? R->n : 1));
    for (int i = 0; i < R->n; i++) key[2 * i] = R->items[i].patch_id, key[2 * i + 1] = i;
    qsort(key, (size_t)R->n, 2 * sizeof(int64_t), cmp_i64);
    R->sample_w = mp_xcalloc(R->n ? R->n : 1, sizeof(double));
    int rc = 0;
    for (int j = 0; j < s.n && !rc; j++) {
        int lo = 0, hi = R->n - 1, at = -1;
        while (lo <= hi) {
            int mid = lo + (hi - lo) / 2;
            if (key[2 * mid] == s.patch_id[j]) {
                at = (int)key[2 * mid + 1];
                break;
            }
            if (key[2 * mid] < s.patch_id[j]) lo = mid + 1;
            else hi = mid - 1;
        }
        if (at < 0)
            rc = mp_err_set("%s: patch %lld is not a labelled patch of %s's train split (a list made for another "
                            "dataset or split? make it again with `magpie db DB balance`)", o->sampling,
                            (long long)s.patch_id[j], o->db_path);
        else R->sample_w[at] = s.weight[j];
    }
    int unlisted = 0;
    for (int i = 0; i < R->n; i++) unlisted += R->sample_w[i] == 0;
    free(key);
    db_sampling_free(&s);
    if (rc) return -1;
    if (unlisted) mp_warn("%s: %d of the %d training patches have no weight and are not drawn", o->sampling, unlisted, R->n);
    for (int c = 0; c < R->k; c++) R->class_w[c] = 1.0f;
    return 0;
}

static int load_sets(run *R)
{
    const tr_train_opts *o = R->o;
    if (db_split_check(R->db) < 0) return -1;
    if (db_items_load(R->db, "train", 0, &R->train) < 0 || db_items_load(R->db, "val", 0, &R->val) < 0) return -1;
    if (o->use_unlabeled && db_items_load(R->db, "unlabeled", 1, &R->unl) < 0) return -1;
    R->k = R->train.nclasses;
    int cnt[TR_MAX_CLASSES + 1] = {0};
    if (R->k > TR_MAX_CLASSES) return mp_err_set("%s: %d classes (at most %d)", o->db_path, R->k, TR_MAX_CLASSES);
    R->items = mp_xmalloc(sizeof(db_item) * (R->train.n + R->unl.n + 1));
    for (int i = 0; i < R->train.n; i++)
        if (R->train.items[i].label >= 0 || o->method & TR_RBD) {
            R->items[R->n++] = R->train.items[i];
            if (R->train.items[i].label >= 0) {
                cnt[R->train.items[i].label]++;
                R->nlab++;
            }
        }
    if (R->n == 0 || (!(o->method & TR_RBD) && R->nlab == 0)) {
        /* say which step is missing: labels first, then the split */
        int64_t nlabels = db_query_int(R->db, "SELECT (SELECT count(*) FROM slides WHERE label IS NOT NULL) + "
                                              "(SELECT count(*) FROM patch_labels)");
        if (nlabels == 0 && !(o->method & TR_RBD))
            return mp_err_set("%s: no labels (run `magpie db DB labels import FILE` first: a CSV of slide labels or "
                              "GeoJSON region annotations)", o->db_path);
        if (db_query_int(R->db, "SELECT count(*) FROM splits") == 0)
            return mp_err_set("%s: no split yet (run `magpie db DB split` first)", o->db_path);
        return mp_err_set("%s: the train split has no %spatches (run `magpie db DB split` first)", o->db_path,
                          o->method & TR_RBD ? "" : "labelled ");
    }
    int present = 0, only = -1;
    for (int c = 0; c < R->k; c++)
        if (cnt[c]) present++, only = c;
    if (present < 2 && !(o->method & TR_RBD))
        return mp_err_set("%s: the train split has one class only (%s); training needs at least two",
                          o->db_path, only >= 0 ? R->train.class_names[only] : "none");
    for (int i = 0; i < R->unl.n; i++) {
        R->items[R->n] = R->unl.items[i];
        R->items[R->n].slide += R->train.nslides; /* keep slide ids distinct */
        R->n++;
    }
    if (o->max_train > 0 && R->n > o->max_train) R->n = o->max_train;
    R->class_w = mp_xmalloc(sizeof(float) * R->k);
    for (int c = 0; c < R->k; c++) R->class_w[c] = cnt[c] ? (float)R->nlab / cnt[c] : 0.0f; /* N_total / N_class */
    return o->sampling ? load_sampling(R) : 0;
}

static int setup_teacher(run *R)
{
    const tr_train_opts *o = R->o;
    if (!o->teacher) return mp_err_set("--teacher CKPT is required for --method %s", o->method & TR_CRCKD ? "rbd+crckd" : "rbd");
    nn_model *t;
    if (nn_card_load(o->teacher, NN_CARD_PATCHES, o->batch, 0, &R->tinfo, &t) < 0) return -1;
    R->teacher = t;
    if (R->tinfo.mag <= o->mag)
        return mp_err_set("%s: teacher was trained at %gx; rbd needs a teacher at a higher magnification than the "
                          "student's %gx", o->teacher, R->tinfo.mag, o->mag);
    if (R->tinfo.cfg.classes != R->k)
        return mp_err_set("%s: teacher has %d classes, the dataset %d", o->teacher, R->tinfo.cfg.classes, R->k);
    return 0;
}

/* a model's parameters stored in the training state under a name prefix ("avg.", "ema."); read
 * back by load_prefixed */
static int save_prefixed(nn_ckpt *ck, const char *prefix, nn_model *m)
{
    nn_params *ps = nn_model_params(m);
    int rc = 0;
    for (int i = 0; i < ps->n && !rc; i++) {
        char name[NN_NAME_MAX + 8];
        snprintf(name, sizeof name, "%s%s", prefix, ps->p[i].name);
        rc = nn_ckpt_add(ck, NN_CKPT_TRAIN, name, NN_F32, ps->p[i].ndim, ps->p[i].shape, ps->p[i].data, 0);
    }
    return rc;
}

static int save_ckpt(run *R, const char *path, int with_state, int epoch, const double *hist)
{
    nn_ckpt ck = {0};
    nn_card_write(&R->info, &ck);
    nn_ckpt_setf(&ck, "trained.epoch", "%d", epoch + 1); /* 1-based, as in the log and the messages */
    nn_ckpt_setf(&ck, "val.balanced_accuracy", "%.6f", R->best_val);
    if (R->o->teacher) nn_ckpt_set(&ck, "teacher", R->o->teacher);
    /* the best checkpoint holds the weights that were validated (the average when there is one);
     * the training state holds the student's own, and the average apart */
    int rc = nn_ckpt_add_params(&ck, nn_model_params(R->avg && !with_state ? R->avg : R->student));
    if (!rc && with_state && R->avg) rc = save_prefixed(&ck, "avg.", R->avg);
    if (!rc && with_state) {
        nn_ckpt_train_set_i64(&ck, "epoch", epoch + 1); /* next epoch to run */
        nn_ckpt_train_set_i64(&ck, "step", R->step);
        nn_ckpt_train_set_i64(&ck, "best_epoch", R->best_epoch);
        nn_ckpt_train_set_i64(&ck, "bad_epochs", R->bad_epochs);
        nn_ckpt_train_set_f64(&ck, "best_val", R->best_val);
        nn_ckpt_train_set_i64(&ck, "seed", (int64_t)R->o->seed);
        nn_ckpt_train_set_i64(&ck, "n_items", R->n);
        rc = nn_optim_save(&R->opt, &ck);
        int64_t hs[2] = {epoch + 1, 2};
        if (!rc && epoch >= 0) rc = nn_ckpt_add(&ck, NN_CKPT_TRAIN, "history", NN_F64, 2, hs, hist, 0);
        if (!rc && R->ema) {
            rc = save_prefixed(&ck, "ema.", R->ema);
            for (int i = 0; i < R->hp.n && !rc; i++)
                rc = nn_ckpt_add(&ck, NN_CKPT_TRAIN, R->hp.p[i].name, NN_F32, R->hp.p[i].ndim, R->hp.p[i].shape,
                                 R->hp.p[i].data, 0);
            if (!rc) rc = nn_optim_save(&R->hopt, &ck); /* same scalars as the model's; own moments */
            int64_t bs[2] = {R->n, R->H.d};
            if (!rc) rc = nn_ckpt_add(&ck, NN_CKPT_TRAIN, "bank.s", NN_F32, 2, bs, R->bank[0], 0);
            if (!rc) rc = nn_ckpt_add(&ck, NN_CKPT_TRAIN, "bank.t", NN_F32, 2, bs, R->bank[1], 0);
            nn_ckpt_train_set_f64(&ck, "Z.s", R->Z[0]);
            nn_ckpt_train_set_f64(&ck, "Z.t", R->Z[1]);
        }
    }
    if (!rc) rc = nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    return rc;
}

static int copy_tensor(const nn_ckpt *ck, const char *name, float *dst, size_t n, const char *path)
{
    const nn_ckpt_tensor *t = nn_ckpt_find(ck, NN_CKPT_TRAIN, name);
    if (!t || t->dtype != NN_F32 || t->numel != n) return mp_err_set("%s: training state lacks %s", path, name);
    memcpy(dst, t->data, sizeof(float) * n);
    return 0;
}

/* the other half of save_prefixed */
static int load_prefixed(const nn_ckpt *ck, const char *prefix, nn_model *m, const char *path)
{
    nn_params *ps = nn_model_params(m);
    int rc = 0;
    for (int i = 0; i < ps->n && !rc; i++) {
        char name[NN_NAME_MAX + 8];
        snprintf(name, sizeof name, "%s%s", prefix, ps->p[i].name);
        rc = copy_tensor(ck, name, ps->p[i].data, ps->p[i].numel, path);
    }
    return rc;
}

/* Continue from a training state. Its CRC proves it is what was written, not that it fits this
 * run: every value is checked against the run before it is used (sizes, counters, the history). */
static int resume(run *R, const char *path)
{
    nn_ckpt ck = {0};
    if (nn_ckpt_load(&ck, path) < 0) return -1;
    int64_t ep, st, be, bad, nitems;
    double bv;
    int rc = nn_ckpt_load_params(&ck, nn_model_params(R->student));
    if (!rc) rc = nn_ckpt_train_get_i64(&ck, "epoch", &ep) || nn_ckpt_train_get_i64(&ck, "step", &st) ||
                  nn_ckpt_train_get_i64(&ck, "best_epoch", &be) || nn_ckpt_train_get_i64(&ck, "bad_epochs", &bad) ||
                  nn_ckpt_train_get_f64(&ck, "best_val", &bv) || nn_ckpt_train_get_i64(&ck, "n_items", &nitems)
                      ? -1 : 0;
    if (!rc && nitems != R->n)
        rc = mp_err_set("%s: the checkpoint was trained on %lld patches, the dataset now gives %d", path,
                        (long long)nitems, R->n);
    if (rc) goto out;
    if (ep < 0 || ep > TR_MAX_EPOCHS) {
        rc = mp_err_set("%s: corrupt training state: epoch %lld (0..%d)", path, (long long)ep, TR_MAX_EPOCHS);
        goto out;
    }
    if (ep > R->o->epochs) {
        rc = mp_err_set("%s: %lld epochs already run, more than the %d %s; resume with --epochs %lld or more", path,
                        (long long)ep, R->o->epochs, R->auto_epochs ? "of the automatic schedule" : "asked for (--epochs)",
                        (long long)ep);
        goto out;
    }
    /* a step per batch, a batch holds at least one patch; best_epoch is -1 until an epoch is kept */
    if (st < 0 || st > ep * (int64_t)R->n)
        rc = mp_err_set("%s: corrupt training state: step %lld after %lld epochs of %d patches", path, (long long)st,
                        (long long)ep, R->n);
    else if (be < -1 || be >= ep)
        rc = mp_err_set("%s: corrupt training state: best_epoch %lld after %lld epochs", path, (long long)be, (long long)ep);
    else if (bad < 0 || bad > ep)
        rc = mp_err_set("%s: corrupt training state: bad_epochs %lld after %lld epochs", path, (long long)bad, (long long)ep);
    else if (!(bv >= -1 && bv <= 1))
        rc = mp_err_set("%s: corrupt training state: best_val %g (a balanced accuracy, or -1)", path, bv);
    if (rc) goto out;
    const nn_ckpt_tensor *h = nn_ckpt_find(&ck, NN_CKPT_TRAIN, "history");
    if (ep > 0 && !(h && h->dtype == NN_F64 && h->ndim == 2 && h->shape[0] == ep && h->shape[1] == 2)) {
        rc = mp_err_set("%s: corrupt training state: the history does not hold its %lld epochs", path, (long long)ep);
        goto out;
    }
    rc = nn_optim_load(&R->opt, &ck);
    if (!rc && R->avg) rc = load_prefixed(&ck, "avg.", R->avg, path);
    if (!rc && R->ema) {
        rc = load_prefixed(&ck, "ema.", R->ema, path);
        for (int i = 0; i < R->hp.n && !rc; i++) rc = copy_tensor(&ck, R->hp.p[i].name, R->hp.p[i].data, R->hp.p[i].numel, path);
        if (!rc) rc = nn_optim_load(&R->hopt, &ck);
        if (!rc) rc = copy_tensor(&ck, "bank.s", R->bank[0], (size_t)R->n * R->H.d, path);
        if (!rc) rc = copy_tensor(&ck, "bank.t", R->bank[1], (size_t)R->n * R->H.d, path);
        double z0, z1;
        if (!rc) rc = nn_ckpt_train_get_f64(&ck, "Z.s", &z0) || nn_ckpt_train_get_f64(&ck, "Z.t", &z1) ? -1 : 0;
        if (!rc && !(isfinite(z0) && isfinite(z1) && fabs(z0) < 1e30 && fabs(z1) < 1e30))
            rc = mp_err_set("%s: corrupt training state: Z.s %g, Z.t %g", path, z0, z1);
        if (!rc) R->Z[0] = (float)z0, R->Z[1] = (float)z1;
    }
    if (!rc) {
        if (ep > 0) memcpy(R->hist, h->data, sizeof(double) * 2 * (size_t)ep); /* hist holds epochs + 1 rows */
        R->nhist = (int)ep;
        R->epoch0 = (int)ep;
        R->step = st;
        R->best_epoch = (int)be;
        R->bad_epochs = (int)bad;
        R->best_val = bv;
    }
out:
    nn_ckpt_free(&ck);
    return rc;
}

/* The training log rewritten (atomically) to the epochs 1..done that the training state holds, in
 * order, each once: a kill between appending an epoch's line and saving the state would otherwise
 * leave that epoch twice after the resume (and a kill inside a write, half a line). */
static int trim_log(const char *logp, int done)
{
    if (!mp_file_exists(logp)) return 0;
    uint8_t *buf;
    size_t len;
    if (mp_read_file(logp, &buf, &len) < 0) return -1;
    char *out = mp_xmalloc(len + 1);
    size_t n = 0;
    int next = 1;
    for (size_t i = 0; i < len && next <= done;) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        if (j < len) { /* complete lines only */
            json_t *o = json_loadb((const char *)buf + i, j - i, 0, NULL);
            json_t *e = json_object_get(o, "epoch");
            if (json_is_integer(e) && json_integer_value(e) == next) {
                memcpy(out + n, buf + i, j - i + 1);
                n += j - i + 1;
                next++;
            }
            json_decref(o);
        }
        i = j + 1;
    }
    free(buf);
    int rc = mp_write_file_atomic(logp, out, n);
    free(out);
    return rc;
}

/* Positives and negatives for CCD: row b's own index first, P−1 more of its class, then K of
 * other classes (with replacement, as CRD samples). */
static void sample_contrast(run *R, const int32_t *ids, const int32_t *lab, int B, int P, int K, mp_rng *r)
{
    for (int b = 0; b < B; b++) {
        int32_t *o = R->sidx + (size_t)b * (P + K);
        int y = lab[b];
        o[0] = ids[b];
        for (int p = 1; p < P; p++) o[p] = R->byclass[y][mp_rng_below(r, (uint32_t)R->nbyclass[y])];
        int nother = R->nlab - R->nbyclass[y];
        for (int q = 0; q < K; q++) {
            /* pick uniformly among rows of other classes */
            uint32_t t = mp_rng_below(r, (uint32_t)nother);
            int c = 0;
            for (;; c++) {
                if (c == y) continue;
                if (t < (uint32_t)R->nbyclass[c]) break;
                t -= (uint32_t)R->nbyclass[c];
            }
            o[P + q] = R->byclass[c][t];
        }
    }
}

static int setup_crckd(run *R)
{
    const tr_train_opts *o = R->o;
    int B = o->batch, d = o->feat_dim;
    nn_model_cfg c = R->info.cfg;
    R->ema = nn_model_create(&c, B, R->info.size, R->info.size, 0);
    if (!R->ema) return -1;
    nn_params *sp = nn_model_params(R->student), *ep = nn_model_params(R->ema);
    memcpy(ep->data, sp->data, sizeof(float) * sp->total);
    heads_plan(&R->H, &R->hp, nn_model_feature_dim(R->student), d);
    if (nn_params_alloc(&R->hp) < 0) return -1;
    heads_bind(&R->H, &R->hp, B, o->seed);
    nn_optim_cfg oc = nn_optim_defaults(NN_OPT_ADAM);
    oc.lr = o->lr;
    oc.weight_decay = o->wd;
    if (nn_optim_init(&R->hopt, &R->hp, &oc) < 0) return -1;
    mp_rng r;
    mp_rng_derive(&r, o->seed, RNG_BANK, 0, 0);
    for (int s = 0; s < 2; s++) {
        R->bank[s] = mp_xmalloc(sizeof(float) * (size_t)R->n * d);
        nn_membank_init(R->bank[s], R->n, d, &r);
        R->cent[s] = mp_xmalloc(sizeof(float) * R->k * d);
        R->gl[s] = mp_xmalloc(sizeof(float) * B * d);
        R->dgl[s] = mp_xmalloc(sizeof(float) * B * d);
    }
    R->Z[0] = R->Z[1] = 0;
    R->row_label = mp_xmalloc(sizeof(int32_t) * R->n);
    R->byclass = mp_xcalloc(R->k, sizeof(int32_t *));
    R->nbyclass = mp_xcalloc(R->k, sizeof(int));
    for (int i = 0; i < R->n; i++) {
        int y = R->items[i].label;
        R->row_label[i] = y;
        if (y >= 0) {
            R->byclass[y] = mp_xrealloc(R->byclass[y], sizeof(int32_t) * (R->nbyclass[y] + 1));
            R->byclass[y][R->nbyclass[y]++] = i;
        }
    }
    R->sidx = mp_xmalloc(sizeof(int32_t) * B * (o->P + o->K));
    R->ids = mp_xmalloc(sizeof(int32_t) * B);
    R->lab = mp_xmalloc(sizeof(int32_t) * B);
    return 0;
}

/* One RBD step's loss on the current batch: T²·KL + β·feature term of the student (logits of its
 * last forward, map Fs of C×FH×FW) against the teacher's R->zt / R->Ft (tH×tW, max-pooled to the
 * student's size), plus the optional CE on labelled patches. Gradients go into R->dz and R->dF
 * (zeroed here). Returns the loss, parts[] = {kd, feat, ce}. */
static double rbd_terms(run *R, const tr_batch *b, const float *Fs, int C, int FH, int FW, int tH, int tW,
                        double parts[3])
{
    const tr_train_opts *o = R->o;
    int n = b->n, k = R->k;
    const float *zs = nn_model_logits(R->student);
    memset(R->dF, 0, sizeof(float) * (size_t)n * C * FH * FW);
    double rp[2];
    double loss = nn_rbd_loss(R->dz, R->dF, R->work, zs, R->zt, Fs, R->Ft, n, k, C, FH, FW, tH, tW,
                              (float)o->temperature, (float)o->beta, o->l1, 1.0f, rp);
    parts[0] = rp[0];
    parts[1] = rp[1];
    if (o->ce_weight > 0) {
        parts[2] = o->ce_weight * nn_cross_entropy(R->dz, zs, b->y, n, k, NULL, 0, (float)o->ce_weight);
        loss += parts[2];
    }
    return loss;
}

/* One CRCKD step's extra terms on the current batch. The student forward must be the last
 * forward of R->student; the EMA teacher runs on the teacher view. Adds gradients into R->dz and
 * H->dpooled. Returns the loss contribution, parts[] = {wce, mt, ccd, crp}. */
static double crckd_terms(run *R, const tr_batch *b, int epoch, double parts[4])
{
    const tr_train_opts *o = R->o;
    int B = b->n, S = R->info.size, k = R->k, d = R->H.d;
    const float *zs = nn_model_logits(R->student);
    /* class-weighted CE on labelled rows */
    parts[0] = nn_cross_entropy(R->dz, zs, b->y, B, k, R->class_w, 0, 1.0f);
    if (nn_model_forward(R->ema, b->xt, B, S, S, 1) < 0) return NAN;
    const float *zt = nn_model_logits(R->ema);
    double w = epoch < o->rampup ? exp(-5.0 * (1.0 - (double)epoch / o->rampup) * (1.0 - (double)epoch / o->rampup)) : 1.0;
    parts[1] = nn_kd_kl(R->dz, NULL, zs, zt, B, k, 1.0f, (float)w);
    parts[1] *= w;
    /* heads on both sides */
    heads_forward(&R->H, 0, nn_model_pooled(R->student), B);
    heads_forward(&R->H, 1, nn_model_pooled(R->ema), B);
    /* labelled rows only take part in CCD/CRP (classes pick the positives) */
    int nl = 0;
    for (int i = 0; i < B; i++)
        if (b->y[i] >= 0) {
            for (int s = 0; s < 2; s++) memcpy(R->gl[s] + (size_t)nl * d, R->H.g[s] + (size_t)i * d, sizeof(float) * d);
            R->ids[nl] = b->idx[i];
            R->lab[nl] = b->y[i];
            nl++;
        }
    for (int s = 0; s < 2; s++) {
        memset(R->H.dg[s], 0, sizeof(float) * B * d);
        memset(R->dgl[s], 0, sizeof(float) * B * d);
    }
    parts[2] = parts[3] = 0;
    if (nl > 0) {
        int K = o->K, P = o->P;
        int maxneg = R->nlab;
        for (int c = 0; c < k; c++)
            if (R->nbyclass[c] && R->nlab - R->nbyclass[c] < maxneg) maxneg = R->nlab - R->nbyclass[c];
        if (K > maxneg) K = maxneg; /* K capped by dataset size */
        mp_rng r;
        mp_rng_derive(&r, o->seed, RNG_SAMPLE, (uint64_t)R->step, 0);
        sample_contrast(R, R->ids, R->lab, nl, P, K, &r);
        float lc = (float)o->lambda_ccd;
        parts[2] = nn_ccd_loss(R->dgl[0], R->gl[0], R->bank[1], R->sidx, nl, d, P, K, R->n, (float)o->tau, &R->Z[0], lc) +
                   nn_ccd_loss(R->dgl[1], R->gl[1], R->bank[0], R->sidx, nl, d, P, K, R->n, (float)o->tau, &R->Z[1], lc);
        parts[2] *= lc;
        nn_class_centroids(R->cent[0], R->bank[0], R->row_label, R->n, d, k);
        nn_class_centroids(R->cent[1], R->bank[1], R->row_label, R->n, d, k);
        parts[3] = o->lambda_crp * nn_crp_loss(R->dgl[0], NULL, R->gl[0], R->gl[1], R->cent[0], R->cent[1], nl, d, k,
                                               (float)o->tau, (float)o->lambda_crp);
        /* banks move after the loss, with this batch's embeddings */
        nn_membank_update(R->bank[0], R->gl[0], R->ids, nl, d, 0.5f);
        nn_membank_update(R->bank[1], R->gl[1], R->ids, nl, d, 0.5f);
        nl = 0;
        for (int i = 0; i < B; i++)
            if (b->y[i] >= 0) {
                for (int s = 0; s < 2; s++) memcpy(R->H.dg[s] + (size_t)i * d, R->dgl[s] + (size_t)nl * d, sizeof(float) * d);
                nl++;
            }
    }
    memset(R->H.dpooled, 0, sizeof(float) * B * R->H.in);
    heads_backward(&R->H, 0, nn_model_pooled(R->student), B, R->H.dpooled);
    heads_backward(&R->H, 1, nn_model_pooled(R->ema), B, NULL); /* teacher backbone is detached */
    return parts[0] + parts[1] + parts[2] + parts[3];
}

/* The student's feature-map shape (what the cached teacher maps are pooled to). */
static int student_map(run *R)
{
    int S = R->info.size;
    float *zero = mp_xcalloc((size_t)3 * S * S, sizeof(float));
    int rc = nn_model_forward(R->student, zero, 1, S, S, 0);
    free(zero);
    if (rc < 0) return -1;
    nn_model_feature_map(R->student, &R->cC, &R->cH, &R->cW);
    return 0;
}

/* Teacher outputs for `teacher_views` augmentation draws of every pair, computed once: the
 * 10x teacher is the expensive part of RBD, and the loader makes epoch e reuse draw e mod N,
 * so both views still share one augmentation. Maps are stored max-pooled to the student's
 * map size (what the loss compares). */
static int cache_teacher(run *R)
{
    const tr_train_opts *o = R->o;
    int k = R->k, A = o->teacher_views, TS = R->tinfo.size, rc = 0;
    size_t fs = (size_t)R->cC * R->cH * R->cW;
    R->cz = mp_xmalloc(sizeof(float) * (size_t)A * R->n * k);
    R->cf = mp_xmalloc(sizeof(float) * (size_t)A * R->n * fs);
    R->zt = mp_xmalloc(sizeof(float) * o->batch * k);
    R->Ft = mp_xmalloc(sizeof(float) * o->batch * fs);
    R->dF = mp_xmalloc(sizeof(float) * o->batch * fs);
    R->work = mp_xmalloc(sizeof(float) * o->batch * fs);
    /* A cache file made for the same teacher, seed, pairs and draws is reused (rbd, then rbd+crckd). */
    /* The teacher is identified by its content (a retrained teacher at the same path and size must
     * not reuse the old outputs), the pairs by their count and the draws by seed and augmentation. */
    uint8_t *tbytes = NULL;
    size_t tlen = 0;
    if (mp_read_file(o->teacher, &tbytes, &tlen) < 0) return -1;
    uint32_t tcrc = mp_crc32(0, tbytes, tlen), pcrc = 0;
    free(tbytes);
    for (int i = 0; i < R->n; i++) pcrc = mp_crc32(pcrc, &R->items[i].patch_id, sizeof R->items[i].patch_id);
    char key[512];
    snprintf(key, sizeof key, "teacher crc32 %08x, %zu bytes|seed %llu|pairs %d crc32 %08x|draws %d|map %dx%dx%d|aug %d", tcrc,
             tlen, (unsigned long long)o->seed, R->n, pcrc, A, R->cC, R->cH, R->cW, o->augment);
    if (o->teacher_cache && mp_file_exists(o->teacher_cache)) {
        nn_ckpt ck = {0};
        if (nn_ckpt_load(&ck, o->teacher_cache) == 0) {
            const char *k2 = nn_ckpt_get(&ck, "teacher_cache.key");
            const nn_ckpt_tensor *tz = nn_ckpt_find(&ck, NN_CKPT_MODEL, "cz"), *tf = nn_ckpt_find(&ck, NN_CKPT_MODEL, "cf");
            if (k2 && !strcmp(k2, key) && tz && tf && tz->numel == (size_t)A * R->n * k && tf->numel == (size_t)A * R->n * fs) {
                memcpy(R->cz, tz->data, sizeof(float) * tz->numel);
                memcpy(R->cf, tf->data, sizeof(float) * tf->numel);
                nn_ckpt_free(&ck);
                mp_info("teacher outputs from %s", o->teacher_cache);
                return 0;
            }
            mp_warn("%s: made for another run; recomputing", o->teacher_cache);
        }
        nn_ckpt_free(&ck);
    }
    int32_t *am = mp_xmalloc(sizeof(int32_t) * o->batch * fs);
    double t0 = mp_now();
    for (int a = 0; a < A && !rc; a++) {
        if (tr_loader_start(R->loader, a) < 0) rc = -1;
        const tr_batch *b;
        int got;
        while (!rc && (got = tr_loader_next(R->loader, &b)) == 1) {
            if (nn_model_forward(R->teacher, b->xp, b->n, TS, TS, 0) < 0) {
                rc = -1;
                break;
            }
            int tC, tH, tW;
            const float *Ft = nn_model_feature_map(R->teacher, &tC, &tH, &tW);
            if (tC != R->cC) {
                rc = mp_err_set("%s: teacher map has %d channels, the student's %d", o->teacher, tC, R->cC);
                break;
            }
            nn_adaptive_maxpool_forward(R->Ft, am, Ft, b->n, tC, tH, tW, R->cH, R->cW);
            const float *z = nn_model_logits(R->teacher);
            for (int i = 0; i < b->n; i++) {
                size_t row = (size_t)a * R->n + b->idx[i];
                memcpy(R->cz + row * k, z + (size_t)i * k, sizeof(float) * k);
                memcpy(R->cf + row * fs, R->Ft + (size_t)i * fs, sizeof(float) * fs);
            }
        }
        if (!rc && got < 0) rc = -1;
    }
    free(am);
    if (!rc)
        mp_info("teacher outputs cached: %d draws x %d pairs in %.1f s", A, R->n, mp_now() - t0);
    if (!rc && o->teacher_cache) {
        nn_ckpt ck = {0};
        nn_ckpt_set(&ck, "teacher_cache.key", key);
        int64_t sz[2] = {(int64_t)A * R->n, k}, sf[2] = {(int64_t)A * R->n, (int64_t)fs};
        rc = nn_ckpt_add(&ck, NN_CKPT_MODEL, "cz", NN_F32, 2, sz, R->cz, 0) ||
             nn_ckpt_add(&ck, NN_CKPT_MODEL, "cf", NN_F32, 2, sf, R->cf, 0) || nn_ckpt_save(&ck, o->teacher_cache) ? -1 : 0;
        nn_ckpt_free(&ck);
    }
    return rc;
}

static void append_log(FILE *f, int epoch, int64_t step, double loss, const double *parts, double val, double ips,
                       double secs, const int64_t *drawn, int k)
{
    if (!f) return;
    /* without labelled validation patches val is NaN: JSON null (a bare nan made every line
     * unparsable, so a resume cut the whole log away) */
    char vs[32];
    if (isfinite(val)) snprintf(vs, sizeof vs, "%.6f", val);
    else snprintf(vs, sizeof vs, "null");
    fprintf(f, "{\"epoch\":%d,\"step\":%lld,\"loss\":%.6g,\"kd\":%.6g,\"feat\":%.6g,\"ce\":%.6g,\"mt\":%.6g,\"ccd\":%.6g,"
               "\"crp\":%.6g,\"val_balanced_accuracy\":%s,\"img_per_s\":%.1f,\"seconds\":%.2f",
            epoch, (long long)step, loss, parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], vs, ips, secs);
    if (drawn) { /* --sampling: the patches drawn per class this epoch */
        fprintf(f, ",\"drawn_per_class\":[");
        for (int c = 0; c < k; c++) fprintf(f, "%s%lld", c ? "," : "", (long long)drawn[c]);
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    fflush(f);
}

static void run_free(run *R)
{
    tr_loader_free(R->loader);
    tr_loader_free(R->vloader);
    nn_model_free(R->student);
    nn_model_free(R->teacher);
    nn_model_free(R->ema);
    nn_model_free(R->avg);
    nn_optim_free(&R->opt);
    nn_optim_free(&R->hopt);
    if (R->H.g[0]) heads_free(&R->H);
    nn_params_free(&R->hp);
    for (int s = 0; s < 2; s++) {
        free(R->bank[s]);
        free(R->cent[s]);
        free(R->gl[s]);
        free(R->dgl[s]);
    }
    if (R->byclass)
        for (int c = 0; c < R->k; c++) free(R->byclass[c]);
    free(R->byclass);
    free(R->nbyclass);
    free(R->row_label);
    free(R->sidx);
    free(R->ids);
    free(R->lab);
    free(R->class_w);
    free(R->sample_w);
    free(R->dz);
    free(R->dF);
    free(R->work);
    free(R->zt);
    free(R->cz);
    free(R->cf);
    free(R->Ft);
    free(R->hist);
    free(R->items);
    nn_card_free(&R->info);
    nn_card_free(&R->tinfo);
    db_itemset_free(&R->train);
    db_itemset_free(&R->val);
    db_itemset_free(&R->unl);
    db_close(R->db);
}

/* Steps during which the learning rate is still rising: epochs that end inside it do not count
 * towards early stopping (with one-cycle, a flat validation curve while the LR is still tiny
 * stopped CRCKD at chance before it had started to learn). */
static int64_t warmup_steps(const nn_sched *s)
{
    return s->kind == NN_SCHED_ONECYCLE ? (int64_t)(s->pct_start * (double)s->total_steps) : 0;
}

/* Patience does not count inside a one-cycle warm-up, nor while the best validation is still the
 * first epoch's and at chance (balanced accuracy 1/k): such a network has not started, it is not on
 * a plateau. A fresh-seed 10x teacher (bench/distill, data seed 45223) sat at exactly 1/3 for its
 * first 8 epochs while its loss had only begun to fall; patience 8 would have stopped it at chance
 * one epoch later (it rose to 0.44 at epoch 9). Such a run is bounded by --epochs. */
int tr_patience_counts(int64_t step, int64_t warmup_steps, int best_epoch, double best_val, int k)
{
    if (step <= warmup_steps) return 0;
    return best_epoch > 0 || best_val > 1.0 / k + 1e-6;
}

/* Epochs and patience left at 0 / -1 follow the training set: label-only training on a few hundred
 * patches needs far more than 30 epochs (about 1000 steps to converge on 221 labels, bench/distill),
 * while 30 epochs of a large set are plenty. So: enough epochs for 1000 steps, at least 30 and at
 * most 200, with patience a quarter of that (at least 8). RBD keeps the paper's 100 epochs and a
 * patience of 25: its distillation curve improves after long flat stretches. */
void tr_auto_schedule(tr_train_opts *o, int n)
{
    int nb = (n + o->batch - 1) / o->batch, rbd = (o->method & TR_RBD) != 0;
    int e = nb > 0 ? (1000 + nb - 1) / nb : 30;
    if (e < 30) e = 30;
    if (e > 200) e = 200;
    if (o->epochs == 0) o->epochs = rbd ? 100 : e;
    if (o->patience < 0) o->patience = rbd ? 25 : (o->epochs / 4 > 8 ? o->epochs / 4 : 8);
}

int tr_train(const tr_train_opts *oin, tr_train_result *res)
{
    memset(res, 0, sizeof *res);
    run Rs, *R = &Rs;
    memset(R, 0, sizeof *R);
    tr_train_opts ov = *oin;
    const tr_train_opts *o = &ov;
    R->o = o;
    int rc = -1;
    char last[1024], logp[1024], pngp[1024], svgp[1024];
    tr_side_path(last, sizeof last, o->out, ".last.mpk");
    tr_side_path(logp, sizeof logp, o->out, ".log.jsonl");
    tr_side_path(pngp, sizeof pngp, o->out, ".png");
    tr_side_path(svgp, sizeof svgp, o->out, ".svg");
    FILE *logf = NULL;
    mp_progress *pg = NULL;
    nn_set_threads(o->threads);
    if (o->epochs < 0 || o->epochs > TR_MAX_EPOCHS || o->batch < 1 || o->batch > TR_MAX_BATCH) {
        mp_err_set("train: --epochs must be 1..%d and --batch 1..%d", TR_MAX_EPOCHS, TR_MAX_BATCH);
        goto out;
    }
    if (!(R->db = db_open(o->db_path, DB_OPEN_READONLY))) goto out;
    if (load_sets(R) < 0) goto out;
    R->auto_epochs = o->epochs == 0;
    if (o->epochs == 0 || o->patience < 0) {
        tr_auto_schedule(&ov, R->n);
        mp_info("%d training patches: %d epochs, patience %d (set --epochs / --patience to override)", R->n, o->epochs,
                o->patience);
    }
    if (o->method & TR_RBD && setup_teacher(R) < 0) goto out;

    /* student: architecture from --arch, or the teacher's (RBD: the same network) */
    nn_model_cfg scfg;
    if (R->teacher && !o->arch) scfg = R->tinfo.cfg;
    else {
        if (nn_arch_preset(o->arch ? o->arch : "resnet_gn", R->k, &scfg) < 0) goto out;
        char ts[256], ss[256];
        nn_arch_describe(&R->tinfo.cfg, ts, sizeof ts);
        nn_arch_describe(&scfg, ss, sizeof ss);
        if (R->teacher && strcmp(ss, ts) != 0) {
            mp_err_set("%s: teacher architecture %s (%s) differs from the student's %s (%s); rbd distils into the same network",
                       o->teacher, R->tinfo.arch, ts, o->arch, ss);
            goto out;
        }
    }
    nn_card_from_cfg(&R->info, &scfg);
    nn_card_set_names(&R->info, R->train.class_names, R->k);
    snprintf(R->info.method, sizeof R->info.method, "%s",
             o->method == 0 ? "supervised" : o->method == TR_RBD ? "rbd" : o->method == TR_CRCKD ? "crckd" : "rbd+crckd");
    R->info.mag = o->mag;

    /* loaders: the training one (paired view at the teacher's magnification for RBD) and validation */
    tr_loader_cfg lc = {.mag = {o->mag, R->teacher ? R->tinfo.mag : 0}, .batch = o->batch, .shuffle = 1,
                        .augment = o->augment, .rot90 = 1, .teacher_view = (o->method & TR_CRCKD) != 0, .seed = o->seed,
                        .aug_period = 0, .extra_dihedral = 0}; /* set below once the teacher's outputs are cached */
    memcpy(lc.jitter, o->jitter, sizeof lc.jitter);
    if (tr_channel_stats(R->db, R->items, R->n, o->mag, 512, R->info.mean, R->info.std) < 0) goto out;
    R->info.has_norm = 1;
    memcpy(lc.mean[0], R->info.mean, sizeof R->info.mean);
    memcpy(lc.std[0], R->info.std, sizeof R->info.std);
    if (R->teacher) {
        memcpy(lc.mean[1], R->tinfo.mean, sizeof R->tinfo.mean);
        memcpy(lc.std[1], R->tinfo.std, sizeof R->tinfo.std);
    }
    if (!(R->loader = tr_loader_new(R->db, &lc, R->items, R->n))) goto out;
    if (R->sample_w) tr_loader_set_weights(R->loader, R->sample_w);
    R->info.size = tr_loader_size(R->loader, 0);
    if (R->teacher && tr_loader_size(R->loader, 1) != R->tinfo.size) {
        mp_err_set("%s: teacher input is %d px, the dataset's %gx images are %d px", o->teacher, R->tinfo.size, R->tinfo.mag,
                   tr_loader_size(R->loader, 1));
        goto out;
    }
    int nval = 0;
    for (int i = 0; i < R->val.n; i++) nval += R->val.items[i].label >= 0;
    if (nval) {
        tr_loader_cfg vc = lc;
        vc.mag[1] = 0;
        vc.shuffle = vc.augment = vc.teacher_view = 0;
        if (!(R->vloader = tr_loader_new(R->db, &vc, R->val.items, R->val.n))) goto out;
    } else mp_warn("%s: no labelled validation patches; the last epoch is kept as best", o->db_path);

    int S = R->info.size, B = o->batch, k = R->k;
    if (!(R->student = nn_model_create(&R->info.cfg, B, S, S, 1))) goto out;
    nn_model_init(R->student, o->seed);
    nn_optim_cfg oc = nn_optim_defaults(NN_OPT_ADAM);
    oc.lr = o->lr;
    oc.weight_decay = o->wd;
    if (nn_optim_init(&R->opt, nn_model_params(R->student), &oc) < 0) goto out;
    int nb = tr_loader_batches(R->loader);
    R->sched = o->method & TR_CRCKD && !(o->method & TR_RBD) ? nn_sched_onecycle(o->max_lr, (int64_t)o->epochs * nb)
                                                             : nn_sched_constant(o->lr);
    if (o->method & TR_CRCKD && setup_crckd(R) < 0) goto out;
    if (o->avg_epochs > 0) {
        /* validate and keep an exponential average of the weights over about avg_epochs epochs:
         * at a constant learning rate (RBD's) the raw weights' validation accuracy swings by
         * several points from one epoch to the next, and the best epoch is a noisy pick */
        if (!(R->avg = nn_model_create(&R->info.cfg, B, S, S, 0))) goto out;
        nn_params *sp = nn_model_params(R->student), *ap = nn_model_params(R->avg);
        memcpy(ap->data, sp->data, sizeof(float) * sp->total);
        R->avg_decay = o->avg_epochs * nb > 1 ? 1.0 - 1.0 / (o->avg_epochs * nb) : 0; /* under one step: no average */
    }
    R->dz = mp_xmalloc(sizeof(float) * B * k);
    if (R->teacher) {
        if (student_map(R) < 0) goto out;
        if (ov.teacher_views < 0) {
            /* auto: cache 4 draws unless that would take more than 2 GiB (a large set at 5x, whose
             * maps are 4x4), in which case the teacher runs on every step */
            double bytes = 4.0 * R->n * ((double)R->k + (double)R->cC * R->cH * R->cW) * sizeof(float);
            ov.teacher_views = bytes <= 2.0 * (1 << 30) ? 4 : 0;
            if (!ov.teacher_views)
                mp_info("teacher outputs for 4 draws would take %.1f GiB: running the teacher on every step instead",
                        bytes / (1 << 30));
        }
        if (o->teacher_views > 0) {
            tr_loader_set_reuse(R->loader, o->teacher_views, o->augment && o->extra_flips);
            if (cache_teacher(R) < 0) goto out;
            tr_loader_skip_paired(R->loader, 1);
        }
    }
    R->hist = mp_xcalloc((size_t)o->epochs * 2 + 2, sizeof(double));
    R->best_val = -1;
    R->best_epoch = -1;
    if (o->resume) {
        if (!mp_file_exists(last)) {
            mp_err_set("%s: nothing to resume (no checkpoint from an earlier run)", last);
            goto out;
        }
        if (resume(R, last) < 0) goto out;
        if (trim_log(logp, R->epoch0) < 0) goto out;
        if (R->epoch0 == o->epochs) mp_info("%s: all %d epochs already run; nothing to do", last, o->epochs);
        else mp_info("resuming %s at epoch %d (step %lld)", last, R->epoch0 + 1, (long long)R->step);
    }
    logf = fopen(logp, o->resume ? "a" : "w");
    if (!logf) {
        mp_err_set("%s: cannot write the training log", logp);
        goto out;
    }
    float *prob = NULL;
    int *vy = NULL;
    if (R->vloader) {
        prob = mp_xmalloc(sizeof(float) * R->val.n * k);
        vy = mp_xmalloc(sizeof(int) * R->val.n);
    }
    double t0 = mp_now();
    pg = mp_progress_new((mp_progress_mode)o->progress, "train", (uint64_t)(o->epochs - R->epoch0) * nb, "step");
    int64_t steps_done = 0;
    rc = 0;
    for (int epoch = R->epoch0; epoch < o->epochs && !rc; epoch++) {
        double te = mp_now(), lsum = 0, psum[6] = {0};
        int nsteps = 0, nimg = 0;
        int64_t drawn[TR_MAX_CLASSES] = {0};
        if (tr_loader_start(R->loader, epoch) < 0) {
            rc = -1;
            break;
        }
        const tr_batch *b;
        int got;
        while ((got = tr_loader_next(R->loader, &b)) == 1) {
            int n = b->n;
            for (int i = 0; i < n; i++)
                if (b->y[i] >= 0 && b->y[i] < TR_MAX_CLASSES) drawn[b->y[i]]++;
            nn_sched_apply(&R->sched, &R->opt);
            if (R->ema) nn_sched_apply(&R->sched, &R->hopt);
            memset(R->dz, 0, sizeof(float) * n * k);
            double loss = 0, parts[6] = {0};
            int C, FH, FW;
            if (R->teacher && R->cz) {
                /* cached teacher outputs for this epoch's augmentation draw */
                int a = epoch % o->teacher_views;
                size_t fs = (size_t)R->cC * R->cH * R->cW;
                if (nn_model_forward(R->student, b->x, n, S, S, 1) < 0) {
                    rc = -1;
                    break;
                }
                const float *Fs = nn_model_feature_map(R->student, &C, &FH, &FW);
                for (int i = 0; i < n; i++) {
                    size_t row = (size_t)a * R->n + b->idx[i];
                    memcpy(R->zt + (size_t)i * k, R->cz + row * k, sizeof(float) * k);
                    if (b->xd) tr_turn_map(R->Ft + (size_t)i * fs, R->cf + row * fs, R->cC, R->cH, b->xd[i]);
                    else memcpy(R->Ft + (size_t)i * fs, R->cf + row * fs, sizeof(float) * fs);
                }
                loss += rbd_terms(R, b, Fs, C, FH, FW, FH, FW, parts);
            } else if (R->teacher) {
                /* frozen teacher on the paired view at its own magnification */
                int TS = R->tinfo.size;
                if (nn_model_forward(R->teacher, b->xp, n, TS, TS, 0) < 0) {
                    rc = -1;
                    break;
                }
                int tC, tH, tW;
                const float *Ft = nn_model_feature_map(R->teacher, &tC, &tH, &tW);
                if (!R->zt) {
                    R->zt = mp_xmalloc(sizeof(float) * B * k);
                    R->Ft = mp_xmalloc(sizeof(float) * (size_t)B * tC * tH * tW);
                }
                memcpy(R->zt, nn_model_logits(R->teacher), sizeof(float) * n * k);
                memcpy(R->Ft, Ft, sizeof(float) * (size_t)n * tC * tH * tW);
                if (nn_model_forward(R->student, b->x, n, S, S, 1) < 0) {
                    rc = -1;
                    break;
                }
                const float *Fs = nn_model_feature_map(R->student, &C, &FH, &FW);
                if (!R->dF) {
                    R->dF = mp_xmalloc(sizeof(float) * (size_t)B * C * FH * FW);
                    R->work = mp_xmalloc(sizeof(float) * (size_t)B * C * FH * FW);
                }
                loss += rbd_terms(R, b, Fs, C, FH, FW, tH, tW, parts);
            } else if (nn_model_forward(R->student, b->x, n, S, S, 1) < 0) {
                rc = -1;
                break;
            }
            if (R->ema) {
                double cp[4] = {0};
                loss += crckd_terms(R, b, epoch, cp);
                parts[2] += cp[0];
                for (int j = 0; j < 3; j++) parts[3 + j] = cp[1 + j];
            } else if (!R->teacher) {
                parts[2] = nn_cross_entropy(R->dz, nn_model_logits(R->student), b->y, n, k, NULL, 0, 1.0f);
                loss += parts[2];
            }
            if (!isfinite(loss)) {
                rc = mp_err_set("training diverged: loss is %s at epoch %d, step %lld; the last good checkpoint is %s",
                                isnan(loss) ? "NaN" : "Inf", epoch + 1, (long long)R->step + 1,
                                mp_file_exists(last) ? last : "(none yet)");
                break;
            }
            if (nn_model_backward_ex(R->student, R->dz, R->ema ? R->H.dpooled : NULL, R->teacher ? R->dF : NULL) < 0) {
                rc = -1;
                break;
            }
            nn_optim_step(&R->opt);
            if (R->avg) nn_ema_update(nn_model_params(R->avg), nn_model_params(R->student), R->step, R->avg_decay);
            if (R->ema) {
                nn_optim_step(&R->hopt);
                nn_ema_update(nn_model_params(R->ema), nn_model_params(R->student), R->step, o->ema);
            }
            R->step++;
            steps_done++;
            nsteps++;
            nimg += n;
            lsum += loss;
            for (int j = 0; j < 6; j++) psum[j] += parts[j];
            if (pg && (steps_done % (o->log_every > 0 ? o->log_every : 1) == 0 || nsteps == nb)) {
                char extra[256];
                /* loss terms that are active in this method, as running means over the epoch; in JSON
                 * mode the extra text is a JSON fragment appended to the progress object */
                static const char *tn[6] = {"kd", "feat", "ce", "mt", "ccd", "crp"};
                int js = o->progress == MP_PROGRESS_JSON;
                int off = snprintf(extra, sizeof extra, js ? "\"epoch\":%d,\"epochs\":%d,\"step\":%lld,\"loss\":%.5g"
                                                           : "epoch %d/%d step %lld loss %.4f",
                                   epoch + 1, o->epochs, (long long)R->step, lsum / nsteps);
                for (int j = 0; j < 6 && off < (int)sizeof extra; j++)
                    if (psum[j] != 0)
                        off += snprintf(extra + off, sizeof extra - off, js ? ",\"%s\":%.5g" : " %s %.4f", tn[j], psum[j] / nsteps);
                if (off < (int)sizeof extra)
                    snprintf(extra + off, sizeof extra - off, js ? ",\"img_per_s\":%.1f" : " %.0f img/s", nimg / (mp_now() - te));
                mp_progress_update(pg, (uint64_t)steps_done, extra);
            }
        }
        if (rc) break;
        if (got < 0) {
            rc = -1;
            break;
        }
        double secs = mp_now() - te, val = NAN;
        if (R->avg) { /* buffers (BatchNorm's running statistics) are the student's, not averaged; the
                       * average is validated and, with or without validation, saved as best */
            nn_params *sp = nn_model_params(R->student), *ap = nn_model_params(R->avg);
            for (int i = 0; i < ap->n; i++)
                if (!ap->p[i].trainable) memcpy(ap->p[i].data, sp->p[i].data, sizeof(float) * ap->p[i].numel);
        }
        if (R->vloader) {
            int nv = tr_predict(R->avg ? R->avg : R->student, R->vloader, prob, vy, NULL);
            if (nv < 0) {
                rc = -1;
                break;
            }
            /* patch-level balanced accuracy on labelled validation patches */
            int m = 0;
            for (int i = 0; i < nv; i++)
                if (vy[i] >= 0) {
                    vy[m] = vy[i];
                    memmove(prob + (size_t)m * k, prob + (size_t)i * k, sizeof(float) * k);
                    m++;
                }
            tr_metrics mt;
            if (tr_metrics_compute(vy, prob, m, k, &mt) < 0) {
                rc = -1;
                break;
            }
            val = mt.balanced_accuracy;
        }
        double l = lsum / (nsteps ? nsteps : 1);
        R->hist[2 * epoch] = l;
        R->hist[2 * epoch + 1] = val;
        R->nhist = epoch + 1;
        for (int j = 0; j < 6; j++) psum[j] /= nsteps ? nsteps : 1;
        append_log(logf, epoch + 1, R->step, l, psum, val, nimg / secs, secs, R->sample_w ? drawn : NULL, k);
        int improved = R->vloader ? val > R->best_val + 1e-9 : 1;
        if (improved) {
            R->best_val = R->vloader ? val : R->best_val;
            R->best_epoch = epoch;
            R->bad_epochs = 0;
        } else if (tr_patience_counts(R->step, warmup_steps(&R->sched), R->best_epoch, R->best_val, R->k)) R->bad_epochs++;
        int stop = o->patience > 0 && R->bad_epochs >= o->patience;
        if (improved && save_ckpt(R, o->out, 0, epoch, NULL) < 0) {
            rc = -1;
            break;
        }
        if (save_ckpt(R, last, 1, epoch, R->hist) < 0) {
            rc = -1;
            break;
        }
        {
            /* the curve is a picture for people: a failure to draw it is said, not fatal */
            const char *base = strrchr(o->out, '/');
            char title[1400];
            snprintf(title, sizeof title, "training curve: %s @ %gx, %s", R->info.method[0] ? R->info.method : "supervised",
                     R->info.mag, base ? base + 1 : o->out);
            if (tr_curve_write(logp, svgp, pngp, title) < 0) mp_warn("training curve not drawn: %s", mp_err());
        }
        if (pg) {
            char extra[256];
            snprintf(extra, sizeof extra,
                     o->progress == MP_PROGRESS_JSON ? "\"epoch\":%d,\"epochs\":%d,\"loss\":%.5g,\"val_balanced_accuracy\":%.5g,\"best\":%s"
                                                     : "epoch %d/%d loss %.4f val bacc %.4f%s",
                     epoch + 1, o->epochs, l, isnan(val) ? -1.0 : val,
                     o->progress == MP_PROGRESS_JSON ? (improved ? "true" : "false") : improved ? " (best)" : "");
            mp_progress_update(pg, (uint64_t)steps_done, extra);
        }
        if (o->progress != MP_PROGRESS_JSON)
            mp_info("epoch %d/%d: loss %.4f, val balanced accuracy %.4f%s, %.0f img/s", epoch + 1, o->epochs, l, val,
                    improved ? " (best)" : "", nimg / secs);
        res->epochs_run++;
        res->last_loss = l;
        if (o->stop_after > 0 && res->epochs_run >= o->stop_after) break;
        if (stop) {
            mp_info("early stop: no validation improvement for %d epochs (best epoch %d)", o->patience, R->best_epoch + 1);
            break;
        }
    }
    if (pg) mp_progress_finish(pg, NULL);
    free(prob);
    free(vy);
    res->best_epoch = R->best_epoch + 1;
    res->best_val = R->best_val;
    res->steps = R->step;
    res->train_seconds = mp_now() - t0;
out:
    if (pg) mp_progress_free(pg);
    if (logf) fclose(logf);
    if (rc < 0 || !R->db) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        run_free(R);
        mp_err_set("%s", msg);
        return -1;
    }
    run_free(R);
    return rc;
}
