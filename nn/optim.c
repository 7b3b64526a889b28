/* nn/optim.c — SGD/Adam/AdamW updates in float32 in the same operation order as PyTorch's
 * single-tensor implementations (torch/optim/{sgd,adam,adamw}.py), so goldens match to a
 * few ulps; schedules are the closed forms of torch.optim.lr_scheduler. */
#include "nn/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

static const char *kind_names[] = {"sgd", "adam", "adamw"};

nn_optim_cfg nn_optim_defaults(nn_optim_kind kind)
{
    nn_optim_cfg c = {.kind = kind, .lr = kind == NN_OPT_SGD ? 0.01 : 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                      .eps = 1e-8, .weight_decay = kind == NN_OPT_ADAMW ? 1e-2 : 0, .accum_steps = 1};
    return c;
}

static float *alloc_like(const nn_params *ps)
{
    size_t bytes = (ps->total ? ps->total : 16) * sizeof(float);
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

int nn_optim_init(nn_optim *o, nn_params *ps, const nn_optim_cfg *cfg)
{
    memset(o, 0, sizeof *o);
    if ((unsigned)cfg->kind > NN_OPT_ADAMW) return mp_err_set("optim: unknown optimiser %d", (int)cfg->kind);
    if (!(cfg->lr >= 0) || !(cfg->weight_decay >= 0)) return mp_err_set("optim: lr and weight decay must be >= 0");
    if (cfg->kind == NN_OPT_SGD && (cfg->momentum < 0 || (cfg->nesterov && cfg->momentum <= 0)))
        return mp_err_set("optim: nesterov needs a positive momentum");
    if (cfg->kind != NN_OPT_SGD && (!(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
                                    !(cfg->eps >= 0)))
        return mp_err_set("optim: betas must be in [0, 1) and eps >= 0");
    if (!ps->data) return mp_err_set("optim: parameter table not allocated");
    o->cfg = *cfg;
    if (o->cfg.accum_steps < 1) o->cfg.accum_steps = 1;
    o->ps = ps;
    o->m = alloc_like(ps);
    if (cfg->kind != NN_OPT_SGD) o->v = alloc_like(ps);
    if (!o->m || (cfg->kind != NN_OPT_SGD && !o->v)) {
        nn_optim_free(o);
        return mp_err_set("optim: out of memory");
    }
    o->lr = cfg->lr;
    o->momentum = cfg->momentum;
    o->beta1 = cfg->beta1;
    return 0;
}

void nn_optim_free(nn_optim *o)
{
    if (!o) return;
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

static void sgd_update(nn_optim *o, nn_param *p)
{
    const float lr = (float)o->lr, wd = (float)o->cfg.weight_decay, mom = (float)o->momentum;
    const int first = o->step == 0, nesterov = o->cfg.nesterov;
    float *w = p->data, *g = p->grad, *buf = o->m + p->offset;
    for (size_t i = 0; i < p->numel; i++) {
        float d = g[i];
        if (wd != 0) d = d + wd * w[i];
        if (mom != 0) {
            /* torch clones d_p into the buffer on the first step instead of decaying zeros */
            buf[i] = first ? d : buf[i] * mom + d;
            d = nesterov ? d + mom * buf[i] : buf[i];
        }
        w[i] = w[i] + -lr * d;
    }
}

static void adam_update(nn_optim *o, nn_param *p)
{
    const int adamw = o->cfg.kind == NN_OPT_ADAMW;
    const double b1 = o->beta1, b2 = o->cfg.beta2, step = (double)(o->step + 1);
    const double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
    const float step_size = (float)(o->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float wd = (float)o->cfg.weight_decay, eps = (float)o->cfg.eps;
    const float fb1 = (float)b1, fb2 = (float)b2, ob1 = (float)(1 - b1), ob2 = (float)(1 - b2);
    const float decay = (float)(1 - o->lr * o->cfg.weight_decay);
    float *w = p->data, *g = p->grad, *m = o->m + p->offset, *v = o->v + p->offset;
    for (size_t i = 0; i < p->numel; i++) {
        float gi = g[i];
        if (adamw) {
            w[i] = w[i] * decay; /* decoupled: before the moment update, as torch does */
        } else if (wd != 0) {
            gi = gi + wd * w[i];
        }
        m[i] = m[i] * fb1 + ob1 * gi;
        v[i] = v[i] * fb2 + ob2 * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        w[i] = w[i] + -step_size * (m[i] / denom);
    }
}

int nn_optim_step(nn_optim *o)
{
    nn_params *ps = o->ps;
    if (++o->micro < o->cfg.accum_steps) return 0;
    if (o->cfg.accum_steps > 1) {
        const float scale = 1.0f / (float)o->cfg.accum_steps;
        for (int k = 0; k < ps->n; k++)
            if (ps->p[k].trainable)
                for (size_t i = 0; i < ps->p[k].numel; i++) ps->p[k].grad[i] *= scale;
    }
    for (int k = 0; k < ps->n; k++) {
        nn_param *p = &ps->p[k];
        if (!p->trainable) continue;
        if (o->cfg.kind == NN_OPT_SGD) sgd_update(o, p);
        else adam_update(o, p);
    }
    o->step++;
    o->micro = 0;
    nn_params_zero_grad(ps);
    return 1;
}

/* ---- state in checkpoints ---- */

static int moment_name(char *buf, const char *which, const char *name)
{
    if ((size_t)snprintf(buf, NN_NAME_MAX, "optim.%s.%s", which, name) >= NN_NAME_MAX)
        return mp_err_set("optim: parameter name too long for the checkpoint: %s", name);
    return 0;
}

int nn_optim_save(const nn_optim *o, nn_ckpt *ck)
{
    const nn_params *ps = o->ps;
    nn_ckpt_train_set(ck, "optim.kind", kind_names[o->cfg.kind]);
    nn_ckpt_train_set_i64(ck, "optim.step", o->step);
    nn_ckpt_train_set_i64(ck, "optim.micro", o->micro);
    nn_ckpt_train_set_i64(ck, "optim.accum_steps", o->cfg.accum_steps);
    nn_ckpt_train_set_i64(ck, "optim.nesterov", o->cfg.nesterov);
    nn_ckpt_train_set_f64(ck, "optim.base_lr", o->cfg.lr);
    nn_ckpt_train_set_f64(ck, "optim.weight_decay", o->cfg.weight_decay);
    nn_ckpt_train_set_f64(ck, "optim.base_momentum", o->cfg.momentum);
    nn_ckpt_train_set_f64(ck, "optim.base_beta1", o->cfg.beta1);
    nn_ckpt_train_set_f64(ck, "optim.beta2", o->cfg.beta2);
    nn_ckpt_train_set_f64(ck, "optim.eps", o->cfg.eps);
    nn_ckpt_train_set_f64(ck, "optim.lr", o->lr);
    nn_ckpt_train_set_f64(ck, "optim.momentum", o->momentum);
    nn_ckpt_train_set_f64(ck, "optim.beta1", o->beta1);
    for (int k = 0; k < ps->n; k++) {
        const nn_param *p = &ps->p[k];
        if (!p->trainable) continue;
        char name[NN_NAME_MAX];
        if (moment_name(name, "m", p->name) ||
            nn_ckpt_add(ck, NN_CKPT_TRAIN, name, NN_F32, p->ndim, p->shape, o->m + p->offset, 0))
            return -1;
        if (o->v && (moment_name(name, "v", p->name) ||
                     nn_ckpt_add(ck, NN_CKPT_TRAIN, name, NN_F32, p->ndim, p->shape, o->v + p->offset, 0)))
            return -1;
    }
    return 0;
}

static int load_moment(const nn_ckpt *ck, const char *which, const nn_param *p, float *dst)
{
    char name[NN_NAME_MAX];
    if (moment_name(name, which, p->name)) return -1;
    const nn_ckpt_tensor *t = nn_ckpt_find(ck, NN_CKPT_TRAIN, name);
    const char *path = ck->path ? ck->path : "checkpoint";
    if (!t) return mp_err_set("%s: optimiser state has no %s", path, name);
    if (t->dtype != NN_F32 || t->numel != p->numel || t->ndim != p->ndim)
        return mp_err_set("%s: optimiser state %s does not match the parameter's shape", path, name);
    memcpy(dst, t->data, p->numel * sizeof(float));
    return 0;
}

int nn_optim_load(nn_optim *o, const nn_ckpt *ck)
{
    const char *path = ck->path ? ck->path : "checkpoint";
    const char *kind = nn_ckpt_train_get(ck, "optim.kind");
    if (!kind) return mp_err_set("%s: no optimiser state", path);
    if (strcmp(kind, kind_names[o->cfg.kind]) != 0)
        return mp_err_set("%s: optimiser state is %s, this run uses %s", path, kind, kind_names[o->cfg.kind]);
    int64_t step, micro;
    double lr, mom, b1;
    if (nn_ckpt_train_get_i64(ck, "optim.step", &step) || nn_ckpt_train_get_i64(ck, "optim.micro", &micro) ||
        nn_ckpt_train_get_f64(ck, "optim.lr", &lr) || nn_ckpt_train_get_f64(ck, "optim.momentum", &mom) ||
        nn_ckpt_train_get_f64(ck, "optim.beta1", &b1))
        return -1;
    if (step < 0 || micro < 0) return mp_err_set("%s: negative optimiser step", path);
    for (int k = 0; k < o->ps->n; k++) {
        const nn_param *p = &o->ps->p[k];
        if (!p->trainable) continue;
        if (load_moment(ck, "m", p, o->m + p->offset)) return -1;
        if (o->v && load_moment(ck, "v", p, o->v + p->offset)) return -1;
    }
    o->step = step;
    o->micro = (int)(micro < o->cfg.accum_steps ? micro : 0);
    o->lr = lr;
    o->momentum = mom;
    o->beta1 = b1;
    return 0;
}

/* ---- schedules ---- */

nn_sched nn_sched_constant(double lr) { return (nn_sched){.kind = NN_SCHED_CONSTANT, .base_lr = lr}; }

nn_sched nn_sched_step(double lr, int64_t step_size, double gamma)
{
    return (nn_sched){.kind = NN_SCHED_STEP, .base_lr = lr, .step_size = step_size > 0 ? step_size : 1, .gamma = gamma};
}

nn_sched nn_sched_cosine(double lr, int64_t t_max, double eta_min)
{
    return (nn_sched){.kind = NN_SCHED_COSINE, .base_lr = lr, .t_max = t_max > 0 ? t_max : 1, .eta_min = eta_min};
}

nn_sched nn_sched_onecycle(double max_lr, int64_t total_steps)
{
    return (nn_sched){.kind = NN_SCHED_ONECYCLE, .max_lr = max_lr, .total_steps = total_steps > 0 ? total_steps : 1,
                      .pct_start = 0.3, .div_factor = 25, .final_div_factor = 1e4, .cycle_momentum = 1,
                      .base_momentum = 0.85, .max_momentum = 0.95};
}

static double anneal_cos(double start, double end, double pct)
{
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1);
}

/* One-cycle phase at step t: which of the two phases, and the fraction through it. */
static void onecycle_phase(const nn_sched *s, int64_t t, int *phase, double *pct)
{
    double end1 = s->pct_start * (double)s->total_steps - 1, end2 = (double)s->total_steps - 1;
    if ((double)t <= end1) {
        *phase = 0;
        *pct = (double)t / end1;
    } else {
        *phase = 1;
        *pct = ((double)t - end1) / (end2 - end1);
    }
}

double nn_sched_lr(const nn_sched *s, int64_t t)
{
    double w = s->kind != NN_SCHED_ONECYCLE && s->warmup > 0 && t < s->warmup ? (double)(t + 1) / (double)s->warmup : 1.0;
    switch (s->kind) {
    case NN_SCHED_STEP: return w * s->base_lr * pow(s->gamma, (double)(t / s->step_size));
    case NN_SCHED_COSINE:
        return w * (s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(M_PI * (double)t / (double)s->t_max)) / 2);
    case NN_SCHED_ONECYCLE: {
        double initial = s->max_lr / s->div_factor, min_lr = initial / s->final_div_factor, pct;
        int phase;
        onecycle_phase(s, t, &phase, &pct);
        return phase == 0 ? anneal_cos(initial, s->max_lr, pct) : anneal_cos(s->max_lr, min_lr, pct);
    }
    default: return w * s->base_lr;
    }
}

double nn_sched_momentum(const nn_sched *s, int64_t t, double dflt)
{
    if (s->kind != NN_SCHED_ONECYCLE || !s->cycle_momentum) return dflt;
    double pct;
    int phase;
    onecycle_phase(s, t, &phase, &pct);
    return phase == 0 ? anneal_cos(s->max_momentum, s->base_momentum, pct)
                      : anneal_cos(s->base_momentum, s->max_momentum, pct);
}

void nn_sched_apply(const nn_sched *s, nn_optim *o)
{
    o->lr = nn_sched_lr(s, o->step);
    if (o->cfg.kind == NN_OPT_SGD) o->momentum = nn_sched_momentum(s, o->step, o->cfg.momentum);
    else o->beta1 = nn_sched_momentum(s, o->step, o->cfg.beta1);
}

/* ---- EMA and clipping ---- */

int nn_ema_update(nn_params *teacher, const nn_params *student, int64_t step, double decay)
{
    if (teacher->n != student->n || teacher->total != student->total)
        return mp_err_set("ema: teacher and student have different parameter tables");
    double a = 1.0 - 1.0 / (double)(step + 1);
    if (a > decay) a = decay;
    const float fa = (float)a, fb = (float)(1 - a);
    for (int k = 0; k < teacher->n; k++) {
        nn_param *t = &teacher->p[k];
        const nn_param *s = &student->p[k];
        if (t->numel != s->numel || strcmp(t->name, s->name) != 0)
            return mp_err_set("ema: teacher %s does not match student %s", t->name, s->name);
        if (!t->trainable) continue;
        for (size_t i = 0; i < t->numel; i++) t->data[i] = t->data[i] * fa + fb * s->data[i];
    }
    return 0;
}

double nn_clip_grad_norm(nn_params *ps, double max_norm)
{
    double ss = 0;
    for (int k = 0; k < ps->n; k++)
        if (ps->p[k].trainable)
            for (size_t i = 0; i < ps->p[k].numel; i++) ss += (double)ps->p[k].grad[i] * ps->p[k].grad[i];
    double norm = sqrt(ss), coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
        const float c = (float)coef;
        for (int k = 0; k < ps->n; k++)
            if (ps->p[k].trainable)
                for (size_t i = 0; i < ps->p[k].numel; i++) ps->p[k].grad[i] *= c;
    }
    return norm;
}
