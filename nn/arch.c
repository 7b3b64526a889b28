/* nn/arch.c — architecture <-> checkpoint key/values, inference from state_dict names and
 * shapes, and loading parameters with exact name/shape checks. */
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

/* Shortest decimal that reads back as the same float ("1e-05", not "9.99999975e-06"). */
static void fmt_float(char *buf, size_t cap, float v)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static int same_cfg(const nn_model_cfg *a, const nn_model_cfg *b)
{
    if (a->in_ch != b->in_ch || a->nstages != b->nstages || a->norm != b->norm ||
        (a->norm == NN_NORM_GROUP && a->groups != b->groups))
        return 0;
    for (int i = 0; i < a->nstages; i++)
        if (a->widths[i] != b->widths[i] || a->blocks[i] != b->blocks[i]) return 0;
    return 1;
}

static const char *const presets[] = {"resnet_gn", "resnet18", "resnet18_bn"};

void nn_arch_to_ckpt(const nn_model_cfg *cfg, nn_ckpt *ck)
{
    char b[256];
    const char *name = "resnet";
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        nn_model_cfg p;
        if (nn_arch_preset(presets[i], cfg->classes, &p) == 0 && same_cfg(&p, cfg)) name = presets[i];
    }
    nn_ckpt_set(ck, "arch", name);
    nn_ckpt_setf(ck, "arch.in_ch", "%d", cfg->in_ch);
    join_ints(b, sizeof b, cfg->widths, cfg->nstages);
    nn_ckpt_set(ck, "arch.widths", b);
    join_ints(b, sizeof b, cfg->blocks, cfg->nstages);
    nn_ckpt_set(ck, "arch.blocks", b);
    nn_ckpt_set(ck, "arch.norm", cfg->norm == NN_NORM_BATCH ? "batch" : "group");
    nn_ckpt_setf(ck, "arch.groups", "%d", cfg->groups);
    fmt_float(b, sizeof b, cfg->norm_eps);
    nn_ckpt_set(ck, "arch.norm_eps", b);
    fmt_float(b, sizeof b, cfg->bn_momentum);
    nn_ckpt_set(ck, "arch.bn_momentum", b);
    nn_ckpt_setf(ck, "classes", "%d", cfg->classes);
}

static const char *ck_name(const nn_ckpt *ck) { return ck->path ? ck->path : "checkpoint"; }

static int get_int(const nn_ckpt *ck, const char *key, int dflt, int *out)
{
    const char *s = nn_ckpt_get(ck, key);
    long v;
    if (!s && dflt >= 0) {
        *out = dflt;
        return 0;
    }
    if (!s) return mp_err_set("%s: architecture has no %s", ck_name(ck), key);
    if (mp_parse_long(s, &v) != 0 || v < 0 || v > 1 << 24)
        return mp_err_set("%s: architecture %s = '%s' is not a count", ck_name(ck), key, s);
    *out = (int)v;
    return 0;
}

static int get_list(const nn_ckpt *ck, const char *key, int *out, int *n)
{
    const char *s = nn_ckpt_get(ck, key);
    double v[NN_MAX_STAGES + 1];
    if (!s) return mp_err_set("%s: architecture has no %s", ck_name(ck), key);
    int k = mp_parse_double_list(s, v, NN_MAX_STAGES + 1);
    if (k < 1 || k > NN_MAX_STAGES)
        return mp_err_set("%s: architecture %s = '%s' is not a list of 1..%d counts", ck_name(ck), key, s, NN_MAX_STAGES);
    for (int i = 0; i < k; i++) {
        if (v[i] < 1 || v[i] > 1 << 20 || v[i] != (int)v[i])
            return mp_err_set("%s: architecture %s = '%s' is not a list of counts", ck_name(ck), key, s);
        out[i] = (int)v[i];
    }
    *n = k;
    return 0;
}

int nn_arch_from_ckpt(const nn_ckpt *ck, nn_model_cfg *cfg)
{
    if (!nn_ckpt_get(ck, "arch") || !nn_ckpt_get(ck, "arch.widths"))
        return mp_err_set("%s: no architecture in the checkpoint (meta keys arch, arch.widths, ...)", ck_name(ck));
    nn_model_cfg_resnet_gn(cfg, 1);
    int nb;
    if (get_int(ck, "arch.in_ch", 3, &cfg->in_ch) || get_int(ck, "classes", -1, &cfg->classes) ||
        get_int(ck, "arch.groups", 32, &cfg->groups) || get_list(ck, "arch.widths", cfg->widths, &cfg->nstages) ||
        get_list(ck, "arch.blocks", cfg->blocks, &nb))
        return -1;
    if (nb != cfg->nstages)
        return mp_err_set("%s: architecture has %d widths but %d block counts", ck_name(ck), cfg->nstages, nb);
    const char *norm = nn_ckpt_get(ck, "arch.norm");
    if (!norm || (strcmp(norm, "group") && strcmp(norm, "batch")))
        return mp_err_set("%s: architecture arch.norm must be group or batch", ck_name(ck));
    cfg->norm = strcmp(norm, "batch") ? NN_NORM_GROUP : NN_NORM_BATCH;
    double d;
    const char *s = nn_ckpt_get(ck, "arch.norm_eps");
    if (s && mp_parse_double(s, &d) == 0) cfg->norm_eps = (float)d;
    s = nn_ckpt_get(ck, "arch.bn_momentum");
    if (s && mp_parse_double(s, &d) == 0) cfg->bn_momentum = (float)d;
    if (nn_model_cfg_check(cfg) != 0) return mp_err_prefix("%s", ck_name(ck));
    return 0;
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

nn_model *nn_model_from_ckpt(const nn_ckpt *ck, int max_batch, int max_h, int max_w, int with_grad)
{
    nn_model_cfg cfg;
    if (nn_arch_from_ckpt(ck, &cfg) != 0) return NULL;
    nn_model *m = nn_model_create(&cfg, max_batch, max_h, max_w, with_grad);
    if (!m) {
        mp_err_prefix("%s", ck_name(ck));
        return NULL;
    }
    if (nn_ckpt_load_params(ck, nn_model_params(m)) != 0) {
        nn_model_free(m);
        return NULL;
    }
    return m;
}
