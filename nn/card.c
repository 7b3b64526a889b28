/* nn/card.c — the model card: checkpoint meta keys <-> a checked description of the network
 * and its input. Every value has bounds; every message names the file. */
#include "nn/card.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "nn/arch.h"

#define MAX_NAME 255

static const char *const presets[] = {"resnet_gn", "resnet18", "resnet18_bn"};

static const char *ck_name(const nn_ckpt *ck) { return ck->path ? ck->path : "checkpoint"; }

static int same_layout(const nn_model_cfg *a, const nn_model_cfg *b)
{
    if (a->in_ch != b->in_ch || a->nstages != b->nstages || a->norm != b->norm ||
        (a->norm == NN_NORM_GROUP && a->groups != b->groups))
        return 0;
    for (int i = 0; i < a->nstages; i++)
        if (a->widths[i] != b->widths[i] || a->blocks[i] != b->blocks[i]) return 0;
    return 1;
}

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

static void default_names(nn_card *c)
{
    c->class_names = mp_xcalloc((size_t)c->cfg.classes, sizeof(char *));
    for (int k = 0; k < c->cfg.classes; k++) {
        char b[32];
        snprintf(b, sizeof b, "class%d", k);
        c->class_names[k] = mp_xstrdup(b);
    }
}

void nn_card_free(nn_card *c)
{
    if (c->class_names)
        for (int k = 0; k < c->cfg.classes; k++) free(c->class_names[k]);
    free(c->class_names);
    memset(c, 0, sizeof *c);
}

void nn_card_from_cfg(nn_card *c, const nn_model_cfg *cfg)
{
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    snprintf(c->arch, sizeof c->arch, "resnet");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        nn_model_cfg p;
        if (nn_arch_preset(presets[i], cfg->classes, &p) == 0 && same_layout(&p, cfg)) {
            snprintf(c->arch, sizeof c->arch, "%s", presets[i]);
            break;
        }
    }
    for (int k = 0; k < 3; k++) c->mean[k] = 0, c->std[k] = 1;
    if (cfg->classes >= 1 && cfg->classes <= NN_CARD_MAX_CLASSES) default_names(c);
}

void nn_card_set_names(nn_card *c, char *const *names, int n)
{
    if (c->class_names)
        for (int k = 0; k < c->cfg.classes; k++) free(c->class_names[k]);
    free(c->class_names);
    c->class_names = mp_xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    for (int k = 0; k < n; k++) c->class_names[k] = mp_xstrdup(names[k]);
}

int nn_card_check(const nn_card *c, const char *name)
{
    const nn_model_cfg *g = &c->cfg;
    if (g->nstages < 1 || g->nstages > NN_MAX_STAGES)
        return mp_err_set("%s: %d stages (1..%d)", name, g->nstages, NN_MAX_STAGES);
    for (int i = 0; i < g->nstages; i++) {
        if (g->widths[i] < 1 || g->widths[i] > NN_MAX_WIDTH)
            return mp_err_set("%s: arch.widths: stage %d width %d is outside 1..%d", name, i, g->widths[i], NN_MAX_WIDTH);
        if (g->blocks[i] < 1 || g->blocks[i] > NN_MAX_BLOCKS)
            return mp_err_set("%s: arch.blocks: stage %d has %d blocks (1..%d)", name, i, g->blocks[i], NN_MAX_BLOCKS);
    }
    if (g->in_ch < 1 || g->in_ch > NN_MAX_IN_CH)
        return mp_err_set("%s: arch.in_ch = %d is outside 1..%d", name, g->in_ch, NN_MAX_IN_CH);
    if (g->classes < 1 || g->classes > NN_CARD_MAX_CLASSES)
        return mp_err_set("%s: classes = %d is outside 1..%d", name, g->classes, NN_CARD_MAX_CLASSES);
    if (!(g->norm_eps > 0 && g->norm_eps <= 0.1f))
        return mp_err_set("%s: arch.norm_eps = %g is outside (0, 0.1]", name, (double)g->norm_eps);
    if (!(g->bn_momentum >= 0 && g->bn_momentum <= 1))
        return mp_err_set("%s: arch.bn_momentum = %g is outside [0, 1]", name, (double)g->bn_momentum);
    if (g->norm == NN_NORM_GROUP && (g->groups < 1 || g->groups > NN_MAX_WIDTH))
        return mp_err_set("%s: arch.groups = %d is outside 1..%d", name, g->groups, NN_MAX_WIDTH);
    if (nn_model_cfg_check(g) != 0) return mp_err_prefix("%s", name);
    int preset = 0;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(c->arch, presets[i])) continue;
        nn_model_cfg p;
        nn_arch_preset(presets[i], g->classes, &p);
        if (!same_layout(&p, g))
            return mp_err_set("%s: arch = %s but the widths, blocks or norm are another network's", name, c->arch);
        preset = 1;
    }
    if (!preset && strcmp(c->arch, "resnet"))
        return mp_err_set("%s: architecture '%s' is not one magpie builds (resnet_gn, resnet18, resnet18_bn, resnet)", name,
                          c->arch);
    if (c->class_names)
        for (int k = 0; k < g->classes; k++) {
            size_t n = c->class_names[k] ? strlen(c->class_names[k]) : 0;
            if (n < 1 || n > MAX_NAME || strchr(c->class_names[k], '\t') || strchr(c->class_names[k], '\n'))
                return mp_err_set("%s: class name %d is empty, longer than %d bytes or holds a tab or newline", name, k,
                                  MAX_NAME);
        }
    if (c->mag != 0 && !(c->mag >= 0.5 && c->mag <= 200))
        return mp_err_set("%s: mag = %g is outside 0.5..200", name, c->mag);
    if (c->size != 0 && (c->size < 2 || c->size > 4096))
        return mp_err_set("%s: input_size = %d is outside 2..4096", name, c->size);
    for (int k = 0; k < 3; k++) {
        if (!(c->mean[k] >= 0 && c->mean[k] <= 1))
            return mp_err_set("%s: norm.mean[%d] = %g is outside [0, 1]", name, k, (double)c->mean[k]);
        if (!(c->std[k] >= 0.001f && c->std[k] <= 10))
            return mp_err_set("%s: norm.std[%d] = %g is outside [0.001, 10]", name, k, (double)c->std[k]);
    }
    return 0;
}

void nn_card_write(const nn_card *c, nn_ckpt *ck)
{
    char b[4096];
    const nn_model_cfg *g = &c->cfg;
    nn_ckpt_set(ck, "arch", c->arch);
    nn_ckpt_setf(ck, "arch.in_ch", "%d", g->in_ch);
    join_ints(b, sizeof b, g->widths, g->nstages);
    nn_ckpt_set(ck, "arch.widths", b);
    join_ints(b, sizeof b, g->blocks, g->nstages);
    nn_ckpt_set(ck, "arch.blocks", b);
    nn_ckpt_set(ck, "arch.norm", g->norm == NN_NORM_BATCH ? "batch" : "group");
    nn_ckpt_setf(ck, "arch.groups", "%d", g->groups);
    fmt_float(b, sizeof b, g->norm_eps);
    nn_ckpt_set(ck, "arch.norm_eps", b);
    fmt_float(b, sizeof b, g->bn_momentum);
    nn_ckpt_set(ck, "arch.bn_momentum", b);
    nn_ckpt_setf(ck, "classes", "%d", g->classes);
    if (c->class_names) {
        size_t at = 0;
        b[0] = 0;
        for (int k = 0; k < g->classes && at < sizeof b; k++)
            at += (size_t)snprintf(b + at, sizeof b - at, "%s%s", k ? "\t" : "", c->class_names[k]);
        nn_ckpt_set(ck, "class_names", b);
    }
    if (c->mag > 0) nn_ckpt_setf(ck, "mag", "%.17g", c->mag);
    if (c->size > 0) nn_ckpt_setf(ck, "input_size", "%d", c->size);
    if (c->has_norm) {
        char v[3][32];
        for (int k = 0; k < 3; k++) fmt_float(v[k], sizeof v[k], c->mean[k]);
        nn_ckpt_setf(ck, "norm.mean", "%s,%s,%s", v[0], v[1], v[2]);
        for (int k = 0; k < 3; k++) fmt_float(v[k], sizeof v[k], c->std[k]);
        nn_ckpt_setf(ck, "norm.std", "%s,%s,%s", v[0], v[1], v[2]);
    }
    if (c->method[0]) nn_ckpt_set(ck, "method", c->method);
}

/* ---- reading: one helper per value kind, each naming the key and the file ---- */

static int get_int(const nn_ckpt *ck, const char *key, int required, int dflt, int lo, int hi, int *out)
{
    const char *s = nn_ckpt_get(ck, key);
    long v;
    if (!s) {
        if (required) return mp_err_set("%s: the model card has no %s", ck_name(ck), key);
        *out = dflt;
        return 0;
    }
    if (mp_parse_long(s, &v) != 0 || v < lo || v > hi)
        return mp_err_set("%s: %s = '%s' is not a whole number in %d..%d", ck_name(ck), key, s, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_double(const nn_ckpt *ck, const char *key, double lo, double hi, double *out)
{
    const char *s = nn_ckpt_get(ck, key);
    if (!s) return 0; /* keep the default */
    if (mp_parse_double(s, out) != 0 || !(*out >= lo && *out <= hi))
        return mp_err_set("%s: %s = '%s' is not a number in [%g, %g]", ck_name(ck), key, s, lo, hi);
    return 0;
}

static int get_list(const nn_ckpt *ck, const char *key, int hi, int *out, int *n)
{
    const char *s = nn_ckpt_get(ck, key);
    double v[NN_MAX_STAGES + 1];
    if (!s) return mp_err_set("%s: the model card has no %s", ck_name(ck), key);
    int k = mp_parse_double_list(s, v, NN_MAX_STAGES + 1);
    if (k < 1 || k > NN_MAX_STAGES)
        return mp_err_set("%s: %s = '%s' is not a list of 1..%d counts", ck_name(ck), key, s, NN_MAX_STAGES);
    for (int i = 0; i < k; i++) {
        if (!(v[i] >= 1 && v[i] <= hi) || v[i] != (int)v[i])
            return mp_err_set("%s: %s = '%s' holds a value outside 1..%d", ck_name(ck), key, s, hi);
        out[i] = (int)v[i];
    }
    *n = k;
    return 0;
}

static int get_triple(const nn_ckpt *ck, const char *key, float out[3])
{
    const char *s = nn_ckpt_get(ck, key);
    double v[4];
    if (mp_parse_double_list(s, v, 4) != 3) return mp_err_set("%s: %s = '%s' is not three numbers", ck_name(ck), key, s);
    for (int k = 0; k < 3; k++) out[k] = (float)v[k];
    return 0;
}

static int read_names(const nn_ckpt *ck, nn_card *c)
{
    const char *s = nn_ckpt_get(ck, "class_names");
    if (!s) {
        default_names(c);
        return 0;
    }
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == '\t';
    if (n != c->cfg.classes)
        return mp_err_set("%s: class_names has %d names for %d classes", ck_name(ck), n, c->cfg.classes);
    c->class_names = mp_xcalloc((size_t)n, sizeof(char *));
    for (int k = 0; k < n; k++) {
        const char *e = strchr(s, '\t');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        c->class_names[k] = mp_xmalloc(len + 1);
        memcpy(c->class_names[k], s, len);
        c->class_names[k][len] = 0;
        s = e ? e + 1 : s + len;
    }
    return 0;
}

static int read_card(const nn_ckpt *ck, int need, nn_card *c)
{
    const char *name = ck_name(ck), *arch = nn_ckpt_get(ck, "arch");
    if (!arch) return mp_err_set("%s: not a magpie model (the model card has no arch)", name);
    if (strlen(arch) >= sizeof c->arch)
        return mp_err_set("%s: architecture '%.40s...' is not one magpie builds", name, arch);
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    nn_model_cfg *g = &c->cfg;
    nn_model_cfg_resnet_gn(g, 1); /* norm_eps and bn_momentum defaults */
    int nb;
    if (get_list(ck, "arch.widths", NN_MAX_WIDTH, g->widths, &g->nstages) ||
        get_list(ck, "arch.blocks", NN_MAX_BLOCKS, g->blocks, &nb))
        return -1;
    if (nb != g->nstages)
        return mp_err_set("%s: arch.widths has %d stages but arch.blocks %d", name, g->nstages, nb);
    const char *norm = nn_ckpt_get(ck, "arch.norm");
    if (!norm) return mp_err_set("%s: the model card has no arch.norm", name);
    if (strcmp(norm, "group") && strcmp(norm, "batch"))
        return mp_err_set("%s: arch.norm = '%s' is neither group nor batch", name, norm);
    g->norm = strcmp(norm, "batch") ? NN_NORM_GROUP : NN_NORM_BATCH;
    double eps = g->norm_eps, mom = g->bn_momentum;
    if (get_int(ck, "classes", 1, 0, 1, NN_CARD_MAX_CLASSES, &g->classes) ||
        get_int(ck, "arch.in_ch", 0, 3, 1, NN_MAX_IN_CH, &g->in_ch) ||
        get_int(ck, "arch.groups", 0, 32, 1, NN_MAX_WIDTH, &g->groups) ||
        get_double(ck, "arch.norm_eps", 1e-12, 0.1, &eps) || get_double(ck, "arch.bn_momentum", 0, 1, &mom))
        return -1;
    g->norm_eps = (float)eps, g->bn_momentum = (float)mom;
    for (int k = 0; k < 3; k++) c->mean[k] = 0, c->std[k] = 1;
    c->mag = 0;
    if (get_double(ck, "mag", 0.5, 200, &c->mag) || get_int(ck, "input_size", 0, 0, 2, 4096, &c->size)) return -1;
    int nm = nn_ckpt_get(ck, "norm.mean") != NULL, ns = nn_ckpt_get(ck, "norm.std") != NULL;
    if (nm != ns) return mp_err_set("%s: the model card has norm.%s without norm.%s", name, nm ? "mean" : "std", nm ? "std" : "mean");
    if (nm && (get_triple(ck, "norm.mean", c->mean) || get_triple(ck, "norm.std", c->std))) return -1;
    c->has_norm = nm;
    const char *method = nn_ckpt_get(ck, "method");
    if (method && strlen(method) >= sizeof c->method)
        return mp_err_set("%s: method '%.40s' is longer than %zu bytes", name, method, sizeof c->method - 1);
    snprintf(c->method, sizeof c->method, "%s", method ? method : "");
    if (read_names(ck, c) || nn_card_check(c, name)) return -1;
    if (need & NN_CARD_PATCHES) {
        const char *miss = !c->mag ? "mag" : !c->size ? "input_size" : !c->has_norm ? "norm.mean/norm.std" : NULL;
        if (miss)
            return mp_err_set("%s: the model card has no %s (a trained model records it; for an imported one use "
                              "magpie model import --mag M --size PX --mean a,b,c --std a,b,c)", name, miss);
        if (g->in_ch != 3) return mp_err_set("%s: the network takes %d input channels, not RGB", name, g->in_ch);
    }
    return 0;
}

int nn_card_read(const nn_ckpt *ck, int need, nn_card *c)
{
    memset(c, 0, sizeof *c);
    if (read_card(ck, need, c) == 0) return 0;
    nn_card_free(c);
    return -1;
}

int nn_card_check_mag(const nn_card *c, const char *name, const double *have, int n, const char *where)
{
    char list[256] = "none";
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (fabs(c->mag - have[i]) <= 0.01 * have[i]) return 0;
        if (at < sizeof list) at += (size_t)snprintf(list + at, sizeof list - at, "%s%gx", i ? ", " : "", have[i]);
    }
    return mp_err_set("%s: the model takes %gx patches; %s has %s", name, c->mag, where, list);
}

void nn_card_input(const nn_card *c, const uint8_t *rgb, int n, int side, float *out)
{
    size_t plane = (size_t)side * side;
    for (int b = 0; b < n; b++) {
        const uint8_t *src = rgb + (size_t)b * plane * 3;
        float *dst = out + (size_t)b * 3 * plane;
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < plane; i++) dst[k * plane + i] = (src[i * 3 + k] * (1.0f / 255.0f) - c->mean[k]) / c->std[k];
    }
}

nn_model *nn_model_from_ckpt(const nn_ckpt *ck, int max_batch, int max_h, int max_w, int with_grad)
{
    nn_card c;
    if (nn_card_read(ck, NN_CARD_NETWORK, &c) != 0) return NULL;
    nn_model *m = nn_model_create(&c.cfg, max_batch, max_h, max_w, with_grad);
    nn_card_free(&c);
    if (!m) {
        mp_err_prefix("%s", ck_name(ck));
        return NULL;
    }
    if (nn_ckpt_load_params(ck, nn_model_params(m)) != 0) {
        nn_model_free(m);
        return NULL;
    }
    nn_model_freeze(m); /* loaded for inference (ignored with gradients): weights fixed from here */
    return m;
}

int nn_card_load(const char *path, int need, int max_batch, int max_side, nn_card *c, nn_model **model)
{
    nn_ckpt ck = {0};
    memset(c, 0, sizeof *c);
    if (model) *model = NULL;
    if (nn_ckpt_load(&ck, path) != 0) return -1;
    int rc = nn_card_read(&ck, need, c);
    if (rc == 0 && model) {
        int side = max_side > 0 ? max_side : c->size > 0 ? c->size : 224;
        if (!(*model = nn_model_from_ckpt(&ck, max_batch, side, side, 0))) {
            nn_card_free(c);
            rc = -1;
        }
    }
    nn_ckpt_free(&ck);
    return rc;
}
