/* trainer/crckd.c — CRCKD (Xing et al. 2021): an EMA mean teacher on a differently augmented view,
 * projection heads on both sides (nn/head.h), memory banks of embeddings, and the class-guided
 * contrastive (CCD) and relation (CRP) terms, plus a class-weighted CE and the mean-teacher KL. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "nn/head.h"
#include "nn/losses.h"
#include "trainer/run.h"

enum { RNG_INIT = 0x1417, RNG_SAMPLE = 0x5a3, RNG_BANK = 0xba4 };

struct tr_crckd {
    nn_model *ema;        /* the mean teacher */
    nn_params hp;         /* both heads' parameters: head_s.*, head_t.* */
    nn_head head[2];      /* [0] student, [1] teacher */
    nn_optim hopt;        /* the heads' optimiser */
    float *dpooled;       /* B × pooled: gradient at the student's pooled features */
    float *bank[2];       /* n × d: [0] student bank M_S, [1] teacher bank M_T */
    float Z[2];           /* NCE normalisers */
    int32_t *row_label;   /* n: class of each bank row (-1 unlabelled) */
    int32_t **byclass;    /* rows of each class */
    int *nbyclass;
    float *cent[2], *gl[2], *dgl[2];
    int32_t *sidx, *ids, *lab;
};

static int crckd_setup(tr_run *R)
{
    const tr_train_opts *o = R->o;
    int B = o->batch, d = o->feat_dim;
    tr_crckd *C = R->crckd = mp_xcalloc(1, sizeof *R->crckd);
    nn_model_cfg c = R->info.cfg;
    C->ema = nn_model_create(&c, B, R->info.size, R->info.size, 0);
    if (!C->ema) return -1;
    nn_params *sp = nn_model_params(R->student), *ep = nn_model_params(C->ema);
    memcpy(ep->data, sp->data, sizeof(float) * sp->total);
    int in = nn_model_feature_dim(R->student);
    nn_head_plan(&C->hp, "head_s", in, d);
    nn_head_plan(&C->hp, "head_t", in, d);
    if (nn_params_alloc(&C->hp) < 0) return -1;
    mp_rng r;
    mp_rng_derive(&r, o->seed, RNG_INIT, 2, 0);
    for (int s = 0; s < 2; s++) {
        nn_head_bind(&C->head[s], &C->hp, 4 * s, in, d, B);
        nn_head_init(&C->head[s], &r);
    }
    C->dpooled = mp_xmalloc(sizeof(float) * B * in);
    nn_optim_cfg oc = nn_optim_defaults(NN_OPT_ADAM);
    oc.lr = o->lr;
    oc.weight_decay = o->wd;
    if (nn_optim_init(&C->hopt, &C->hp, &oc) < 0) return -1;
    mp_rng_derive(&r, o->seed, RNG_BANK, 0, 0);
    for (int s = 0; s < 2; s++) {
        C->bank[s] = mp_xmalloc(sizeof(float) * (size_t)R->n * d);
        nn_membank_init(C->bank[s], R->n, d, &r);
        C->cent[s] = mp_xmalloc(sizeof(float) * R->k * d);
        C->gl[s] = mp_xmalloc(sizeof(float) * B * d);
        C->dgl[s] = mp_xmalloc(sizeof(float) * B * d);
    }
    C->Z[0] = C->Z[1] = 0;
    C->row_label = mp_xmalloc(sizeof(int32_t) * R->n);
    C->byclass = mp_xcalloc(R->k, sizeof(int32_t *));
    C->nbyclass = mp_xcalloc(R->k, sizeof(int));
    for (int i = 0; i < R->n; i++) {
        int y = R->items[i].label;
        C->row_label[i] = y;
        if (y >= 0) {
            C->byclass[y] = mp_xrealloc(C->byclass[y], sizeof(int32_t) * (C->nbyclass[y] + 1));
            C->byclass[y][C->nbyclass[y]++] = i;
        }
    }
    C->sidx = mp_xmalloc(sizeof(int32_t) * B * (o->P + o->K));
    C->ids = mp_xmalloc(sizeof(int32_t) * B);
    C->lab = mp_xmalloc(sizeof(int32_t) * B);
    R->dpooled = C->dpooled;
    return 0;
}

/* Positives and negatives for CCD: row b's own index first, P−1 more of its class, then K of
 * other classes (with replacement, as CRD samples). */
static void sample_contrast(const tr_run *R, const int32_t *ids, const int32_t *lab, int B, int P, int K, mp_rng *r)
{
    const tr_crckd *C = R->crckd;
    for (int b = 0; b < B; b++) {
        int32_t *o = C->sidx + (size_t)b * (P + K);
        int y = lab[b];
        o[0] = ids[b];
        for (int p = 1; p < P; p++) o[p] = C->byclass[y][mp_rng_below(r, (uint32_t)C->nbyclass[y])];
        int nother = R->nlab - C->nbyclass[y];
        for (int q = 0; q < K; q++) {
            /* pick uniformly among rows of other classes */
            uint32_t t = mp_rng_below(r, (uint32_t)nother);
            int c = 0;
            for (;; c++) {
                if (c == y) continue;
                if (t < (uint32_t)C->nbyclass[c]) break;
                t -= (uint32_t)C->nbyclass[c];
            }
            o[P + q] = C->byclass[c][t];
        }
    }
}

static int crckd_targets(tr_run *R, const tr_batch *b, int epoch)
{
    (void)b, (void)epoch;
    nn_sched_apply(&R->sched, &R->crckd->hopt);
    return 0;
}

/* The student forward must be the last forward of R->student; the EMA teacher runs on the teacher
 * view. Adds gradients into R->dz and R->dpooled. Terms: class-weighted CE, mean-teacher KL, CCD, CRP. */
static double crckd_loss(tr_run *R, const tr_batch *b, int epoch, double parts[TR_NTERMS])
{
    const tr_train_opts *o = R->o;
    tr_crckd *C = R->crckd;
    nn_head *H = C->head;
    int B = b->n, S = R->info.size, k = R->k, d = o->feat_dim;
    double cp[4];
    const float *zs = nn_model_logits(R->student);
    /* class-weighted CE on labelled rows */
    cp[0] = nn_cross_entropy(R->dz, zs, b->y, B, k, R->class_w, 0, 1.0f);
    if (nn_model_forward(C->ema, b->xt, B, S, S, 1) < 0) return NAN;
    const float *zt = nn_model_logits(C->ema);
    double w = epoch < o->rampup ? exp(-5.0 * (1.0 - (double)epoch / o->rampup) * (1.0 - (double)epoch / o->rampup)) : 1.0;
    cp[1] = nn_kd_kl(R->dz, NULL, zs, zt, B, k, 1.0f, (float)w);
    cp[1] *= w;
    /* heads on both sides */
    nn_head_forward(&H[0], nn_model_pooled(R->student), B);
    nn_head_forward(&H[1], nn_model_pooled(C->ema), B);
    /* labelled rows only take part in CCD/CRP (classes pick the positives) */
    int nl = 0;
    for (int i = 0; i < B; i++)
        if (b->y[i] >= 0) {
            for (int s = 0; s < 2; s++) memcpy(C->gl[s] + (size_t)nl * d, H[s].g + (size_t)i * d, sizeof(float) * d);
            C->ids[nl] = b->idx[i];
            C->lab[nl] = b->y[i];
            nl++;
        }
    for (int s = 0; s < 2; s++) {
        memset(H[s].dg, 0, sizeof(float) * B * d);
        memset(C->dgl[s], 0, sizeof(float) * B * d);
    }
    cp[2] = cp[3] = 0;
    if (nl > 0) {
        int K = o->K, P = o->P;
        int maxneg = R->nlab;
        for (int c = 0; c < k; c++)
            if (C->nbyclass[c] && R->nlab - C->nbyclass[c] < maxneg) maxneg = R->nlab - C->nbyclass[c];
        if (K > maxneg) K = maxneg; /* K capped by dataset size */
        mp_rng r;
        mp_rng_derive(&r, o->seed, RNG_SAMPLE, (uint64_t)R->step, 0);
        sample_contrast(R, C->ids, C->lab, nl, P, K, &r);
        float lc = (float)o->lambda_ccd;
        cp[2] = nn_ccd_loss(C->dgl[0], C->gl[0], C->bank[1], C->sidx, nl, d, P, K, R->n, (float)o->tau, &C->Z[0], lc) +
                nn_ccd_loss(C->dgl[1], C->gl[1], C->bank[0], C->sidx, nl, d, P, K, R->n, (float)o->tau, &C->Z[1], lc);
        cp[2] *= lc;
        nn_class_centroids(C->cent[0], C->bank[0], C->row_label, R->n, d, k);
        nn_class_centroids(C->cent[1], C->bank[1], C->row_label, R->n, d, k);
        cp[3] = o->lambda_crp * nn_crp_loss(C->dgl[0], NULL, C->gl[0], C->gl[1], C->cent[0], C->cent[1], nl, d, k,
                                            (float)o->tau, (float)o->lambda_crp);
        /* banks move after the loss, with this batch's embeddings */
        nn_membank_update(C->bank[0], C->gl[0], C->ids, nl, d, 0.5f);
        nn_membank_update(C->bank[1], C->gl[1], C->ids, nl, d, 0.5f);
        nl = 0;
        for (int i = 0; i < B; i++)
            if (b->y[i] >= 0) {
                for (int s = 0; s < 2; s++) memcpy(H[s].dg + (size_t)i * d, C->dgl[s] + (size_t)nl * d, sizeof(float) * d);
                nl++;
            }
    }
    memset(C->dpooled, 0, sizeof(float) * B * H[0].in);
    nn_head_backward(&H[0], nn_model_pooled(R->student), B, C->dpooled);
    nn_head_backward(&H[1], nn_model_pooled(C->ema), B, NULL); /* teacher backbone is detached */
    parts[TR_CE] += cp[0];
    parts[TR_MT] = cp[1];
    parts[TR_CCD] = cp[2];
    parts[TR_CRP] = cp[3];
    return cp[0] + cp[1] + cp[2] + cp[3];
}

static void crckd_step(tr_run *R)
{
    nn_optim_step(&R->crckd->hopt);
    nn_ema_update(nn_model_params(R->crckd->ema), nn_model_params(R->student), R->step, R->o->ema);
}

static void crckd_state(tr_run *R, tr_state *st)
{
    tr_crckd *C = R->crckd;
    tr_state_add(st, (tr_st_entry){.name = "ema.", .kind = TR_ST_PARAMS, .ptr = nn_model_params(C->ema)});
    tr_state_add(st, (tr_st_entry){.name = "", .kind = TR_ST_PARAMS, .ptr = &C->hp});
    /* same scalar keys as the model's optimiser (the same values); its own moments */
    tr_state_add(st, (tr_st_entry){.name = "hopt", .kind = TR_ST_OPTIM, .ptr = &C->hopt});
    tr_state_add(st, (tr_st_entry){.name = "bank.s", .kind = TR_ST_TENSOR, .ptr = C->bank[0], .dtype = NN_F32,
                                   .rows = R->n, .cols = R->o->feat_dim});
    tr_state_add(st, (tr_st_entry){.name = "bank.t", .kind = TR_ST_TENSOR, .ptr = C->bank[1], .dtype = NN_F32,
                                   .rows = R->n, .cols = R->o->feat_dim});
    tr_state_add(st, (tr_st_entry){.name = "Z.s", .kind = TR_ST_F32, .ptr = &C->Z[0]});
    tr_state_add(st, (tr_st_entry){.name = "Z.t", .kind = TR_ST_F32, .ptr = &C->Z[1]});
}

static void crckd_free(tr_run *R)
{
    tr_crckd *C = R->crckd;
    if (!C) return;
    nn_model_free(C->ema);
    nn_optim_free(&C->hopt);
    for (int s = 0; s < 2; s++)
        if (C->head[s].g) nn_head_free(&C->head[s]);
    nn_params_free(&C->hp);
    free(C->dpooled);
    for (int s = 0; s < 2; s++) {
        free(C->bank[s]);
        free(C->cent[s]);
        free(C->gl[s]);
        free(C->dgl[s]);
    }
    if (C->byclass)
        for (int c = 0; c < R->k; c++) free(C->byclass[c]);
    free(C->byclass);
    free(C->nbyclass);
    free(C->row_label);
    free(C->sidx);
    free(C->ids);
    free(C->lab);
    free(C);
    R->crckd = NULL;
    R->dpooled = NULL;
}

const tr_method tr_method_crckd = {
    .name = "crckd",
    .setup = crckd_setup,
    .targets = crckd_targets,
    .loss = crckd_loss,
    .step = crckd_step,
    .state = crckd_state,
    .free = crckd_free,
};
