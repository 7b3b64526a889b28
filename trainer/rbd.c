/* trainer/rbd.c — resolution-based distillation (DiPalma et al. 2021): a frozen teacher trained at
 * a higher magnification sees the paired image; the student learns its softened logits (T²·KL) and
 * its feature map max-pooled to the student's size (β·MSE or L1), optionally plus a CE term on
 * labelled patches. The teacher runs live, or once for a few augmentation draws (teacher_cache.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "nn/losses.h"
#include "trainer/run.h"

struct tr_rbd {
    float *zt, *Ft;   /* this batch's teacher logits and map */
    float *work;      /* the loss's scratch */
    float *cz, *cf;   /* cached teacher logits / pooled maps: views × n × ... (NULL: live teacher) */
    int cC, cH, cW;   /* the student's map shape (what cached maps are pooled to) */
    int tH, tW;       /* this batch's teacher map size */
};

static int rbd_open(tr_run *R)
{
    const tr_train_opts *o = R->o;
    if (!o->teacher) return mp_err_set("--teacher CKPT is required for --method %s", o->method & TR_CRCKD ? "rbd+crckd" : "rbd");
    R->rbd = mp_xcalloc(1, sizeof *R->rbd);
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

/* The student's feature-map shape (what the cached teacher maps are pooled to). */
static int student_map(tr_run *R)
{
    int S = R->info.size;
    float *zero = mp_xcalloc((size_t)3 * S * S, sizeof(float));
    int rc = nn_model_forward(R->student, zero, 1, S, S, 0);
    free(zero);
    if (rc < 0) return -1;
    nn_model_feature_map(R->student, &R->rbd->cC, &R->rbd->cH, &R->rbd->cW);
    return 0;
}

static int rbd_setup(tr_run *R)
{
    const tr_train_opts *o = R->o;
    tr_rbd *D = R->rbd;
    if (student_map(R) < 0) return -1;
    if (o->teacher_views < 0) {
        /* auto: cache 4 draws unless that would take more than 2 GiB (a large set at 5x, whose
         * maps are 4x4), in which case the teacher runs on every step */
        double bytes = 4.0 * R->n * ((double)R->k + (double)D->cC * D->cH * D->cW) * sizeof(float);
        R->ov->teacher_views = bytes <= 2.0 * (1 << 30) ? 4 : 0;
        if (!o->teacher_views)
            mp_info("teacher outputs for 4 draws would take %.1f GiB: running the teacher on every step instead",
                    bytes / (1 << 30));
    }
    if (o->teacher_views <= 0) return 0; /* live: buffers sized at the first step */
    int A = o->teacher_views, k = R->k;
    size_t fs = (size_t)D->cC * D->cH * D->cW;
    tr_loader_set_reuse(R->loader, A, o->augment && o->extra_flips);
    D->cz = mp_xmalloc(sizeof(float) * (size_t)A * R->n * k);
    D->cf = mp_xmalloc(sizeof(float) * (size_t)A * R->n * fs);
    D->zt = mp_xmalloc(sizeof(float) * o->batch * k);
    D->Ft = mp_xmalloc(sizeof(float) * o->batch * fs);
    R->dF = mp_xmalloc(sizeof(float) * o->batch * fs);
    D->work = mp_xmalloc(sizeof(float) * o->batch * fs);
    D->tH = D->cH;
    D->tW = D->cW;
    if (tr_teacher_cache(R, A, D->cC, D->cH, D->cW, D->cz, D->cf, D->Ft) < 0) return -1;
    tr_loader_skip_paired(R->loader, 1);
    return 0;
}

/* the teacher's outputs for this batch: this epoch's cached draw (turned with the student's extra
 * flip and rotation), or the frozen teacher on the paired view at its own magnification */
static int rbd_targets(tr_run *R, const tr_batch *b, int epoch)
{
    tr_rbd *D = R->rbd;
    int n = b->n, k = R->k;
    if (D->cz) {
        int a = epoch % R->o->teacher_views;
        size_t fs = (size_t)D->cC * D->cH * D->cW;
        for (int i = 0; i < n; i++) {
            size_t row = (size_t)a * R->n + b->idx[i];
            memcpy(D->zt + (size_t)i * k, D->cz + row * k, sizeof(float) * k);
            if (b->xd) tr_turn_map(D->Ft + (size_t)i * fs, D->cf + row * fs, D->cC, D->cH, b->xd[i]);
            else memcpy(D->Ft + (size_t)i * fs, D->cf + row * fs, sizeof(float) * fs);
        }
        return 0;
    }
    int TS = R->tinfo.size, B = R->o->batch;
    if (nn_model_forward(R->teacher, b->xp, n, TS, TS, 0) < 0) return -1;
    int tC;
    const float *Ft = nn_model_feature_map(R->teacher, &tC, &D->tH, &D->tW);
    if (!D->zt) {
        D->zt = mp_xmalloc(sizeof(float) * B * k);
        D->Ft = mp_xmalloc(sizeof(float) * (size_t)B * tC * D->tH * D->tW);
    }
    memcpy(D->zt, nn_model_logits(R->teacher), sizeof(float) * n * k);
    memcpy(D->Ft, Ft, sizeof(float) * (size_t)n * tC * D->tH * D->tW);
    return 0;
}

/* T²·KL + β·feature term of the student's last forward against the teacher's outputs, plus the
 * optional CE on labelled patches; gradients into R->dz and R->dF (zeroed here). */
static double rbd_loss(tr_run *R, const tr_batch *b, int epoch, double parts[TR_NTERMS])
{
    (void)epoch;
    const tr_train_opts *o = R->o;
    tr_rbd *D = R->rbd;
    int n = b->n, k = R->k, C, FH, FW;
    const float *Fs = nn_model_feature_map(R->student, &C, &FH, &FW);
    const float *zs = nn_model_logits(R->student);
    if (!R->dF) {
        R->dF = mp_xmalloc(sizeof(float) * (size_t)o->batch * C * FH * FW);
        D->work = mp_xmalloc(sizeof(float) * (size_t)o->batch * C * FH * FW);
    }
    memset(R->dF, 0, sizeof(float) * (size_t)n * C * FH * FW);
    double rp[2];
    double loss = nn_rbd_loss(R->dz, R->dF, D->work, zs, D->zt, Fs, D->Ft, n, k, C, FH, FW, D->tH, D->tW,
                              (float)o->temperature, (float)o->beta, o->l1, 1.0f, rp);
    parts[TR_KD] = rp[0];
    parts[TR_FEAT] = rp[1];
    if (o->ce_weight > 0) {
        parts[TR_CE] = o->ce_weight * nn_cross_entropy(R->dz, zs, b->y, n, k, NULL, 0, (float)o->ce_weight);
        loss += parts[TR_CE];
    }
    return loss;
}

static void rbd_free(tr_run *R)
{
    tr_rbd *D = R->rbd;
    if (!D) return;
    free(D->zt);
    free(D->Ft);
    free(D->work);
    free(D->cz);
    free(D->cf);
    free(D);
    R->rbd = NULL;
}

const tr_method tr_method_rbd = {
    .name = "rbd",
    .open = rbd_open,
    .setup = rbd_setup,
    .targets = rbd_targets,
    .loss = rbd_loss,
    .free = rbd_free,
};
