/* nn/arch.c — named layouts, inference from state_dict names and shapes, and loading
 * parameters with exact name/shape checks. */
#include "nn/arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

static void join_ints(char *buf, size_t cap, const int *v, int n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at < cap; i++) at += (size_t)snprintf(buf + at, cap - at, "%s%d", i ? "," : "", v[i]);
}

int nn_arch_preset(const char *name, int classes, nn_model_cfg *cfg)
{
    if (!strcmp(name, "resnet_gn")) nn_model_cfg_resnet_gn(cfg, classes);
    else if (!strcmp(name, "resnet18") || !strcmp(name, "resnet18_gn")) nn_model_cfg_resnet18(cfg, classes, NN_NORM_GROUP);
    else if (!strcmp(name, "resnet18_bn")) nn_model_cfg_resnet18(cfg, classes, NN_NORM_BATCH);
    else return mp_err_set("unknown architecture '%s' (resnet_gn, resnet18, resnet18_bn)", name);
    return 0;
}

static const nn_st_tensor *need(const nn_st_file *f, const char *name, const char *t, int ndim)
{
    const nn_st_tensor *x = nn_st_find(f, t);
    if (!x) {
        mp_err_set("%s: no tensor %s (not a ResNet state_dict with torch_resnet_gn.py names?)", name, t);
        return NULL;
    }
    if (x->ndim != ndim) {
        mp_err_set("%s: tensor %s has %d dimensions, expected %d", name, t, x->ndim, ndim);
        return NULL;
    }
    return x;
}

int nn_arch_infer(const nn_st_file *f, const char *name, int groups, nn_model_cfg *cfg)
{
    nn_model_cfg_resnet_gn(cfg, 1);
    cfg->groups = groups;
    const nn_st_tensor *stem = need(f, name, "stem.0.weight", 4);
    if (!stem) return -1;
    cfg->in_ch = (int)stem->shape[1];
    cfg->norm = nn_st_find(f, "stem.1.running_mean") ? NN_NORM_BATCH : NN_NORM_GROUP;
    cfg->nstages = 0;
    char t[128];
    int k = 0;
    for (;; k++) {
        snprintf(t, sizeof t, "layers.%d.c1.weight", k);
        const nn_st_tensor *c1 = nn_st_find(f, t);
        if (!c1) break;
        if (c1->ndim != 4) return mp_err_set("%s: tensor %s has %d dimensions, expected 4", name, t, c1->ndim);
        snprintf(t, sizeof t, "layers.%d.sc.0.weight", k);
        /* stages after the first open with a stride-2 block, which always has a shortcut conv */
        if (k == 0 || nn_st_find(f, t)) {
            if (cfg->nstages == NN_MAX_STAGES) return mp_err_set("%s: more than %d stages", name, NN_MAX_STAGES);
            cfg->widths[cfg->nstages] = (int)c1->shape[0];
            cfg->blocks[cfg->nstages] = 0;
            cfg->nstages++;
        }
        cfg->blocks[cfg->nstages - 1]++;
    }
    if (k == 0) return mp_err_set("%s: no tensor layers.0.c1.weight (not a ResNet state_dict with torch_resnet_gn.py names?)", name);
    const nn_st_tensor *fc = need(f, name, "fc.weight", 2);
    if (!fc) return -1;
    cfg->classes = (int)fc->shape[0];
    if (nn_model_cfg_check(cfg) != 0) return mp_err_prefix("%s", name);
    return 0;
}

void nn_arch_describe(const nn_model_cfg *cfg, char *buf, size_t cap)
{
    char w[128], b[128], n[32];
    join_ints(w, sizeof w, cfg->widths, cfg->nstages);
    join_ints(b, sizeof b, cfg->blocks, cfg->nstages);
    if (cfg->norm == NN_NORM_GROUP) snprintf(n, sizeof n, "GroupNorm(%d)", cfg->groups);
    else snprintf(n, sizeof n, "BatchNorm");
    snprintf(buf, cap, "resnet %d stages widths %s blocks %s %s %d classes in_ch %d", cfg->nstages, w, b, n,
             cfg->classes, cfg->in_ch);
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

int nn_arch_load_st(const nn_st_file *f, const char *name, nn_params *ps)
{
    for (int i = 0; i < ps->n; i++) {
        nn_param *p = &ps->p[i];
        const nn_st_tensor *t = nn_st_find(f, p->name);
        if (!t) return mp_err_set("%s: missing tensor %s", name, p->name);
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char a[160], b[160];
            fmt_shape(a, sizeof a, t->ndim, t->shape);
            fmt_shape(b, sizeof b, p->ndim, p->shape);
            return mp_err_set("%s: tensor %s has shape %s, the model expects %s", name, p->name, a, b);
        }
        nn_st_to_f32(t, p->data);
    }
    for (int i = 0; i < f->n; i++)
        if (!nn_params_find(ps, f->t[i].name))
            return mp_err_set("%s: unexpected tensor %s (not in the model)", name, f->t[i].name);
    return 0;
}
