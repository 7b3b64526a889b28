/* trainer/train.c — `magpie train`'s loop. A method is a list of parts (trainer/run.h: supervised.c,
 * rbd.c, crckd.c; rbd+crckd runs rbd's then crckd's); this file loads the training set, builds the
 * student, loaders and optimiser, and runs epochs of steps through the parts' hooks, validating,
 * keeping the best checkpoint and writing the training state (state.c) after every epoch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/sampling.h"
#include "db/split.h"
#include "nn/arch.h"
#include "nn/gemm.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "trainer/run.h"

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

void tr_method_parts(int method, const tr_method *parts[2], int *n)
{
    *n = 0;
    if (method & TR_RBD) parts[(*n)++] = &tr_method_rbd;
    if (method & TR_CRCKD) parts[(*n)++] = &tr_method_crckd;
    if (*n == 0) parts[(*n)++] = &tr_method_supervised;
}

const char *tr_method_name(int method)
{
    return method == 0 ? "supervised" : method == TR_RBD ? "rbd" : method == TR_CRCKD ? "crckd" : "rbd+crckd";
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* --sampling FILE: a weight per training item from the file (db/sampling.h). Every listed patch
 * must be a training item; items the file does not list get weight 0 (never drawn). The sampling
 * already balances the classes, so the class-weighted loss terms are made unweighted. */
static int load_sampling(tr_run *R)
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

static int load_sets(tr_run *R)
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
        int64_t nlabels = db_count_labels(R->db);
        if (nlabels == 0 && !(o->method & TR_RBD))
            return mp_err_set("%s: no labels (run `magpie db DB labels import FILE` first: a CSV of slide labels or "
                              "GeoJSON region annotations)", o->db_path);
        if (db_count_split_rows(R->db) == 0)
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

/* Steps during which the learning rate is still rising: epochs that end inside it do not count
 * towards early stopping (with one-cycle, a flat validation curve while the LR is still tiny
 * stopped CRCKD at chance before it had started to learn). */
static int64_t warmup_steps(const nn_sched *s)
{
    return s->kind == NN_SCHED_ONECYCLE ? (int64_t)(s->pct_start * (double)s->total_steps) : s->warmup;
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

static void run_free(tr_run *R)
{
    for (int i = 0; i < R->nparts; i++)
        if (R->part[i]->free) R->part[i]->free(R);
    tr_loader_free(R->loader);
    tr_loader_free(R->vloader);
    nn_model_free(R->student);
    nn_model_free(R->teacher);
    nn_model_free(R->avg);
    nn_optim_free(&R->opt);
    free(R->class_w);
    free(R->sample_w);
    free(R->dz);
    free(R->dF);
    free(R->hist);
    free(R->items);
    nn_card_free(&R->info);
    nn_card_free(&R->tinfo);
    db_itemset_free(&R->train);
    db_itemset_free(&R->val);
    db_itemset_free(&R->unl);
    db_close(R->db);
}

/* The student's card: the teacher's architecture for rbd (the same network), else --arch. */
static int student_card(tr_run *R)
{
    const tr_train_opts *o = R->o;
    nn_model_cfg scfg;
    if (R->teacher && !o->arch) scfg = R->tinfo.cfg;
    else {
        if (nn_arch_preset(o->arch ? o->arch : "resnet_gn", R->k, &scfg) < 0) return -1;
        char ts[256], ss[256];
        nn_arch_describe(&R->tinfo.cfg, ts, sizeof ts);
        nn_arch_describe(&scfg, ss, sizeof ss);
        if (R->teacher && strcmp(ss, ts) != 0)
            return mp_err_set("%s: teacher architecture %s (%s) differs from the student's %s (%s); rbd distils into the "
                              "same network", o->teacher, R->tinfo.arch, ts, o->arch, ss);
    }
    nn_card_from_cfg(&R->info, &scfg);
    nn_card_set_names(&R->info, R->train.class_names, R->k);
    snprintf(R->info.method, sizeof R->info.method, "%s", tr_method_name(o->method));
    R->info.mag = o->mag;
    return 0;
}

/* The training loader (with the paired view at the teacher's magnification for rbd) and the
 * validation one (none without labelled validation patches). */
static int open_loaders(tr_run *R)
{
    const tr_train_opts *o = R->o;
    tr_loader_cfg lc = {.mag = {o->mag, R->teacher ? R->tinfo.mag : 0}, .batch = o->batch, .shuffle = 1,
                        .augment = o->augment, .rot90 = 1, .teacher_view = (o->method & TR_CRCKD) != 0, .seed = o->seed,
                        .aug_period = 0, .extra_dihedral = 0}; /* rbd sets these once the teacher's outputs are cached */
    memcpy(lc.jitter, o->jitter, sizeof lc.jitter);
    if (tr_channel_stats(R->db, R->items, R->n, o->mag, 512, R->info.mean, R->info.std) < 0) return -1;
    R->info.has_norm = 1;
    memcpy(lc.mean[0], R->info.mean, sizeof R->info.mean);
    memcpy(lc.std[0], R->info.std, sizeof R->info.std);
    if (R->teacher) {
        memcpy(lc.mean[1], R->tinfo.mean, sizeof R->tinfo.mean);
        memcpy(lc.std[1], R->tinfo.std, sizeof R->tinfo.std);
    }
    if (!(R->loader = tr_loader_new(R->db, &lc, R->items, R->n))) return -1;
    if (R->sample_w) tr_loader_set_weights(R->loader, R->sample_w);
    R->info.size = tr_loader_size(R->loader, 0);
    if (R->teacher && tr_loader_size(R->loader, 1) != R->tinfo.size)
        return mp_err_set("%s: teacher input is %d px, the dataset's %gx images are %d px", o->teacher, R->tinfo.size,
                          R->tinfo.mag, tr_loader_size(R->loader, 1));
    int nval = 0;
    for (int i = 0; i < R->val.n; i++) nval += R->val.items[i].label >= 0;
    if (nval) {
        tr_loader_cfg vc = lc;
        vc.mag[1] = 0;
        vc.shuffle = vc.augment = vc.teacher_view = 0;
        if (!(R->vloader = tr_loader_new(R->db, &vc, R->val.items, R->val.n))) return -1;
    } else mp_warn("%s: no labelled validation patches; the last epoch is kept as best", o->db_path);
    return 0;
}

/* Everything before the first epoch: sets, parts, student, loaders, optimiser, schedule, weight
 * average, the parts' setup, and the training state when resuming. */
static int run_open(tr_run *R, const char *last, const char *logp)
{
    const tr_train_opts *o = R->o;
    if (o->epochs < 0 || o->epochs > TR_MAX_EPOCHS || o->batch < 1 || o->batch > TR_MAX_BATCH)
        return mp_err_set("train: --epochs must be 1..%d and --batch 1..%d", TR_MAX_EPOCHS, TR_MAX_BATCH);
    if (!(R->db = db_open(o->db_path, DB_OPEN_READONLY))) return -1;
    if (load_sets(R) < 0) return -1;
    R->auto_epochs = o->epochs == 0;
    if (o->epochs == 0 || o->patience < 0) {
        tr_auto_schedule(R->ov, R->n);
        mp_info("%d training patches: %d epochs, patience %d (set --epochs / --patience to override)", R->n, o->epochs,
                o->patience);
    }
    tr_method_parts(o->method, R->part, &R->nparts);
    for (int i = 0; i < R->nparts; i++)
        if (R->part[i]->open && R->part[i]->open(R) < 0) return -1;
    if (student_card(R) < 0 || open_loaders(R) < 0) return -1;

    int S = R->info.size, B = o->batch;
    if (!(R->student = nn_model_create(&R->info.cfg, B, S, S, 1))) return -1;
    nn_model_init(R->student, o->seed);
    nn_optim_cfg oc = nn_optim_defaults(NN_OPT_ADAM);
    oc.lr = o->lr;
    oc.weight_decay = o->wd;
    if (nn_optim_init(&R->opt, nn_model_params(R->student), &oc) < 0) return -1;
    int nb = tr_loader_batches(R->loader);
    R->sched = o->method & TR_CRCKD && !(o->method & TR_RBD) ? nn_sched_onecycle(o->max_lr, (int64_t)o->epochs * nb)
                                                             : nn_sched_constant(o->lr);
    if (R->sched.kind != NN_SCHED_ONECYCLE) R->sched.warmup = o->warmup;
    if (o->avg_epochs > 0) {
        /* validate and keep an exponential average of the weights over about avg_epochs epochs:
         * at a constant learning rate (RBD's) the raw weights' validation accuracy swings by
         * several points from one epoch to the next, and the best epoch is a noisy pick */
        if (!(R->avg = nn_model_create(&R->info.cfg, B, S, S, 0))) return -1;
        nn_params *sp = nn_model_params(R->student), *ap = nn_model_params(R->avg);
        memcpy(ap->data, sp->data, sizeof(float) * sp->total);
        R->avg_decay = o->avg_epochs * nb > 1 ? 1.0 - 1.0 / (o->avg_epochs * nb) : 0; /* under one step: no average */
    }
    R->dz = mp_xmalloc(sizeof(float) * B * R->k);
    for (int i = 0; i < R->nparts; i++)
        if (R->part[i]->setup && R->part[i]->setup(R) < 0) return -1;
    R->hist = mp_xcalloc((size_t)o->epochs * 2 + 2, sizeof(double));
    R->best_val = -1;
    R->best_epoch = -1;
    if (o->resume) {
        if (!mp_file_exists(last)) return mp_err_set("%s: nothing to resume (no checkpoint from an earlier run)", last);
        if (tr_state_load(R, last) < 0) return -1;
        if (tr_log_trim(logp, R->epoch0) < 0) return -1;
        if (R->epoch0 == o->epochs) mp_info("%s: all %d epochs already run; nothing to do", last, o->epochs);
        else mp_info("resuming %s at epoch %d (step %lld)", last, R->epoch0 + 1, (long long)R->step);
    }
    return 0;
}

/* One step on batch b: the parts' targets, the student's forward, the parts' losses, one backward
 * and the optimisers. *loss and parts[] get the step's loss and terms. */
static int train_step(tr_run *R, const tr_batch *b, int epoch, const char *last, double *loss, double parts[TR_NTERMS])
{
    int n = b->n, S = R->info.size;
    nn_sched_apply(&R->sched, &R->opt);
    memset(R->dz, 0, sizeof(float) * n * R->k);
    *loss = 0;
    for (int i = 0; i < R->nparts; i++)
        if (R->part[i]->targets && R->part[i]->targets(R, b, epoch) < 0) return -1;
    if (nn_model_forward(R->student, b->x, n, S, S, 1) < 0) return -1;
    for (int i = 0; i < R->nparts; i++) *loss += R->part[i]->loss(R, b, epoch, parts);
    if (!isfinite(*loss))
        return mp_err_set("training diverged: loss is %s at epoch %d, step %lld; the last good checkpoint is %s",
                          isnan(*loss) ? "NaN" : "Inf", epoch + 1, (long long)R->step + 1,
                          mp_file_exists(last) ? last : "(none yet)");
    if (nn_model_backward_ex(R->student, R->dz, R->dpooled, R->dF) < 0) return -1;
    nn_optim_step(&R->opt);
    if (R->avg) nn_ema_update(nn_model_params(R->avg), nn_model_params(R->student), R->step, R->avg_decay);
    for (int i = 0; i < R->nparts; i++)
        if (R->part[i]->step) R->part[i]->step(R);
    R->step++;
    return 0;
}

/* The step's line on the progress bar: the loss and the terms active in this method as running
 * means over the epoch; in JSON mode a JSON fragment appended to the progress object. */
static void show_step(const tr_run *R, mp_progress *pg, int64_t steps_done, int epoch, int nsteps, double lsum,
                      const double psum[TR_NTERMS], int nimg, double te)
{
    const tr_train_opts *o = R->o;
    static const char *tn[TR_NTERMS] = {"kd", "feat", "ce", "mt", "ccd", "crp"};
    char extra[256];
    int js = o->progress == MP_PROGRESS_JSON;
    int off = snprintf(extra, sizeof extra, js ? "\"epoch\":%d,\"epochs\":%d,\"step\":%lld,\"loss\":%.5g"
                                               : "epoch %d/%d step %lld loss %.4f",
                       epoch + 1, o->epochs, (long long)R->step, lsum / nsteps);
    for (int j = 0; j < TR_NTERMS && off < (int)sizeof extra; j++)
        if (psum[j] != 0)
            off += snprintf(extra + off, sizeof extra - off, js ? ",\"%s\":%.5g" : " %s %.4f", tn[j], psum[j] / nsteps);
    if (off < (int)sizeof extra)
        snprintf(extra + off, sizeof extra - off, js ? ",\"img_per_s\":%.1f" : " %.0f img/s", nimg / (mp_now() - te));
    mp_progress_update(pg, (uint64_t)steps_done, extra);
}

/* Patch-level balanced accuracy of the validated weights (the average when there is one) on the
 * labelled validation patches; NAN without any. */
static int validate(tr_run *R, float *prob, int *vy, double *val)
{
    *val = NAN;
    if (R->avg) { /* buffers (BatchNorm's running statistics) are the student's, not averaged; the
                   * average is validated and, with or without validation, saved as best */
        nn_params *sp = nn_model_params(R->student), *ap = nn_model_params(R->avg);
        for (int i = 0; i < ap->n; i++)
            if (!ap->p[i].trainable) memcpy(ap->p[i].data, sp->p[i].data, sizeof(float) * ap->p[i].numel);
    }
    if (!R->vloader) return 0;
    int k = R->k, nv = tr_predict(R->avg ? R->avg : R->student, R->vloader, prob, vy, NULL);
    if (nv < 0) return -1;
    int m = 0;
    for (int i = 0; i < nv; i++)
        if (vy[i] >= 0) {
            vy[m] = vy[i];
            memmove(prob + (size_t)m * k, prob + (size_t)i * k, sizeof(float) * k);
            m++;
        }
    tr_metrics mt;
    if (tr_metrics_compute(vy, prob, m, k, &mt) < 0) return -1;
    *val = mt.balanced_accuracy;
    return 0;
}

int tr_train(const tr_train_opts *oin, tr_train_result *res)
{
    memset(res, 0, sizeof *res);
    tr_run Rs, *R = &Rs;
    memset(R, 0, sizeof *R);
    tr_train_opts ov = *oin;
    const tr_train_opts *o = &ov;
    R->o = o;
    R->ov = &ov;
    int rc = -1;
    char last[1024], logp[1024], pngp[1024], svgp[1024];
    tr_side_path(last, sizeof last, o->out, ".last.mpk");
    tr_side_path(logp, sizeof logp, o->out, ".log.jsonl");
    tr_side_path(pngp, sizeof pngp, o->out, ".png");
    tr_side_path(svgp, sizeof svgp, o->out, ".svg");
    FILE *logf = NULL;
    mp_progress *pg = NULL;
    float *prob = NULL;
    int *vy = NULL;
    nn_set_threads(o->threads);
    if (run_open(R, last, logp) < 0) goto out;
    logf = fopen(logp, o->resume ? "a" : "w");
    if (!logf) {
        mp_err_set("%s: cannot write the training log", logp);
        goto out;
    }
    int k = R->k, nb = tr_loader_batches(R->loader);
    if (R->vloader) {
        prob = mp_xmalloc(sizeof(float) * R->val.n * k);
        vy = mp_xmalloc(sizeof(int) * R->val.n);
    }
    double t0 = mp_now();
    pg = mp_progress_new((mp_progress_mode)o->progress, "train", (uint64_t)(o->epochs - R->epoch0) * nb, "step");
    int64_t steps_done = 0;
    rc = 0;
    for (int epoch = R->epoch0; epoch < o->epochs && !rc; epoch++) {
        double te = mp_now(), lsum = 0, psum[TR_NTERMS] = {0};
        int nsteps = 0, nimg = 0;
        int64_t drawn[TR_MAX_CLASSES] = {0};
        if (tr_loader_start(R->loader, epoch) < 0) {
            rc = -1;
            break;
        }
        const tr_batch *b;
        int got;
        while ((got = tr_loader_next(R->loader, &b)) == 1) {
            for (int i = 0; i < b->n; i++)
                if (b->y[i] >= 0 && b->y[i] < TR_MAX_CLASSES) drawn[b->y[i]]++;
            double loss, parts[TR_NTERMS] = {0};
            if (train_step(R, b, epoch, last, &loss, parts) < 0) {
                rc = -1;
                break;
            }
            steps_done++;
            nsteps++;
            nimg += b->n;
            lsum += loss;
            for (int j = 0; j < TR_NTERMS; j++) psum[j] += parts[j];
            if (pg && (steps_done % (o->log_every > 0 ? o->log_every : 1) == 0 || nsteps == nb))
                show_step(R, pg, steps_done, epoch, nsteps, lsum, psum, nimg, te);
        }
        if (rc) break;
        if (got < 0) {
            rc = -1;
            break;
        }
        double secs = mp_now() - te, val;
        if (validate(R, prob, vy, &val) < 0) {
            rc = -1;
            break;
        }
        double l = lsum / (nsteps ? nsteps : 1);
        R->hist[2 * epoch] = l;
        R->hist[2 * epoch + 1] = val;
        R->nhist = epoch + 1;
        for (int j = 0; j < TR_NTERMS; j++) psum[j] /= nsteps ? nsteps : 1;
        tr_log_append(logf, epoch + 1, R->step, l, psum, val, nimg / secs, secs, R->sample_w ? drawn : NULL, k);
        int improved = R->vloader ? val > R->best_val + 1e-9 : 1;
        if (improved) {
            R->best_val = R->vloader ? val : R->best_val;
            R->best_epoch = epoch;
            R->bad_epochs = 0;
        } else if (tr_patience_counts(R->step, warmup_steps(&R->sched), R->best_epoch, R->best_val, R->k)) R->bad_epochs++;
        int stop = o->patience > 0 && R->bad_epochs >= o->patience;
        if ((improved && tr_state_save(R, o->out, 0, epoch) < 0) || tr_state_save(R, last, 1, epoch) < 0) {
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
    res->best_epoch = R->best_epoch + 1;
    res->best_val = R->best_val;
    res->steps = R->step;
    res->train_seconds = mp_now() - t0;
out:
    free(prob);
    free(vy);
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
