/* trainer/modelio.c — what a trained checkpoint says about itself: architecture, classes,
 * magnification, input size and normalisation, as checkpoint metadata keys; and the prediction
 * loop shared by validation during training and `magpie eval`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "trainer/trainer.h"

static const char *arch_name(const nn_model_cfg *c)
{
    static char buf[160];
    int n = snprintf(buf, sizeof buf, "%s", c->norm == NN_NORM_GROUP ? "gn" : "bn");
    if (c->norm == NN_NORM_GROUP) n += snprintf(buf + n, sizeof buf - n, "%d", c->groups);
    n += snprintf(buf + n, sizeof buf - n, ":w");
    for (int i = 0; i < c->nstages; i++) n += snprintf(buf + n, sizeof buf - n, "%s%d", i ? "/" : "", c->widths[i]);
    n += snprintf(buf + n, sizeof buf - n, ":b");
    for (int i = 0; i < c->nstages; i++) n += snprintf(buf + n, sizeof buf - n, "%s%d", i ? "/" : "", c->blocks[i]);
    return buf;
}

const char *tr_arch_string(const nn_model_cfg *c) { return arch_name(c); }

int tr_arch_cfg(const char *arch, int classes, nn_model_cfg *cfg)
{
    if (!strcmp(arch, "resnet_gn")) nn_model_cfg_resnet_gn(cfg, classes);
    else if (!strcmp(arch, "resnet18")) nn_model_cfg_resnet18(cfg, classes, NN_NORM_GROUP);
    else if (!strcmp(arch, "resnet18_bn")) nn_model_cfg_resnet18(cfg, classes, NN_NORM_BATCH);
    else return mp_err_set("unknown architecture '%s' (resnet_gn, resnet18, resnet18_bn)", arch);
    return 0;
}

void tr_info_write(nn_ckpt *ck, const tr_model_info *mi)
{
    const nn_model_cfg *c = &mi->cfg;
    nn_ckpt_set(ck, "arch", mi->arch);
    nn_ckpt_set(ck, "arch.layout", arch_name(c));
    nn_ckpt_setf(ck, "arch.norm", "%s", c->norm == NN_NORM_GROUP ? "group" : "batch");
    nn_ckpt_setf(ck, "arch.groups", "%d", c->groups);
    nn_ckpt_setf(ck, "arch.nstages", "%d", c->nstages);
    char w[128] = "", b[128] = "";
    for (int i = 0; i < c->nstages; i++) {
        snprintf(w + strlen(w), sizeof w - strlen(w), "%s%d", i ? "," : "", c->widths[i]);
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%d", i ? "," : "", c->blocks[i]);
    }
    nn_ckpt_set(ck, "arch.widths", w);
    nn_ckpt_set(ck, "arch.blocks", b);
    nn_ckpt_setf(ck, "classes", "%d", c->classes);
    char names[2048] = "";
    for (int i = 0; i < mi->nclasses; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? "\t" : "", mi->class_names[i]);
    nn_ckpt_set(ck, "class_names", names);
    nn_ckpt_setf(ck, "mag", "%.17g", mi->mag);
    nn_ckpt_setf(ck, "input_size", "%d", mi->size);
    nn_ckpt_setf(ck, "norm.mean", "%.9g,%.9g,%.9g", mi->mean[0], mi->mean[1], mi->mean[2]);
    nn_ckpt_setf(ck, "norm.std", "%.9g,%.9g,%.9g", mi->std[0], mi->std[1], mi->std[2]);
    nn_ckpt_set(ck, "method", mi->method);
}

void tr_info_free(tr_model_info *mi)
{
    for (int i = 0; i < mi->nclasses; i++) free(mi->class_names[i]);
    free(mi->class_names);
    memset(mi, 0, sizeof *mi);
}

int tr_info_read(const nn_ckpt *ck, const char *path, tr_model_info *mi)
{
    memset(mi, 0, sizeof *mi);
    const char *arch = nn_ckpt_get(ck, "arch"), *cls = nn_ckpt_get(ck, "classes"), *mag = nn_ckpt_get(ck, "mag"),
               *size = nn_ckpt_get(ck, "input_size"), *mean = nn_ckpt_get(ck, "norm.mean"),
               *std = nn_ckpt_get(ck, "norm.std"), *w = nn_ckpt_get(ck, "arch.widths"), *b = nn_ckpt_get(ck, "arch.blocks"),
               *norm = nn_ckpt_get(ck, "arch.norm"), *groups = nn_ckpt_get(ck, "arch.groups");
    if (!arch || !cls || !mag || !size || !mean || !std || !w || !b || !norm || !groups)
        return mp_err_set("%s: not a magpie trainer checkpoint (no architecture/magnification metadata)", path);
    long nc, sz, g;
    double m3[3], s3[3], wd[NN_MAX_STAGES], bd[NN_MAX_STAGES];
    if (mp_parse_long(cls, &nc) < 0 || nc < 1 || nc > TR_MAX_CLASSES || mp_parse_double(mag, &mi->mag) < 0 ||
        mp_parse_long(size, &sz) < 0 || mp_parse_double_list(mean, m3, 3) != 3 || mp_parse_double_list(std, s3, 3) != 3 ||
        mp_parse_long(groups, &g) < 0)
        return mp_err_set("%s: bad trainer metadata", path);
    int nw = mp_parse_double_list(w, wd, NN_MAX_STAGES), nb = mp_parse_double_list(b, bd, NN_MAX_STAGES);
    if (nw < 1 || nw != nb) return mp_err_set("%s: bad architecture metadata", path);
    nn_model_cfg_resnet_gn(&mi->cfg, (int)nc);
    mi->cfg.nstages = nw;
    for (int i = 0; i < nw; i++) {
        mi->cfg.widths[i] = (int)wd[i];
        mi->cfg.blocks[i] = (int)bd[i];
    }
    mi->cfg.norm = !strcmp(norm, "batch") ? NN_NORM_BATCH : NN_NORM_GROUP;
    mi->cfg.groups = (int)g;
    if (nn_model_cfg_check(&mi->cfg) < 0) return mp_err_prefix("%s", path);
    snprintf(mi->arch, sizeof mi->arch, "%s", arch);
    mi->size = (int)sz;
    for (int c = 0; c < 3; c++) {
        mi->mean[c] = (float)m3[c];
        mi->std[c] = (float)s3[c];
    }
    const char *method = nn_ckpt_get(ck, "method");
    snprintf(mi->method, sizeof mi->method, "%s", method ? method : "");
    mi->nclasses = (int)nc;
    mi->class_names = mp_xcalloc(nc, sizeof(char *));
    const char *names = nn_ckpt_get(ck, "class_names");
    for (int i = 0; i < nc; i++) {
        const char *e = names ? strchr(names, '\t') : NULL;
        char buf[256];
        if (names && *names) snprintf(buf, sizeof buf, "%.*s", (int)(e ? e - names : (long)strlen(names)), names);
        else snprintf(buf, sizeof buf, "class%d", i);
        mi->class_names[i] = mp_xstrdup(buf);
        names = e ? e + 1 : NULL;
    }
    return 0;
}

int tr_model_load(const char *path, tr_model_info *mi, nn_model **model, int max_batch)
{
    nn_ckpt ck = {0};
    *model = NULL;
    if (nn_ckpt_load(&ck, path) < 0) return -1;
    int rc = tr_info_read(&ck, path, mi);
    if (!rc) {
        *model = nn_model_create(&mi->cfg, max_batch, mi->size, mi->size, 0);
        if (!*model || nn_ckpt_load_params(&ck, nn_model_params(*model)) < 0) {
            nn_model_free(*model);
            *model = NULL;
            tr_info_free(mi);
            rc = -1;
        }
    }
    nn_ckpt_free(&ck);
    return rc;
}

void tr_softmax_rows(float *p, const float *z, int n, int k)
{
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        float mx = zi[0];
        for (int c = 1; c < k; c++) mx = zi[c] > mx ? zi[c] : mx;
        double s = 0;
        for (int c = 0; c < k; c++) s += exp((double)zi[c] - mx);
        for (int c = 0; c < k; c++) p[(size_t)i * k + c] = (float)(exp((double)zi[c] - mx) / s);
    }
}

int tr_predict(nn_model *m, tr_loader *L, float *prob, int *y, int *slide)
{
    if (tr_loader_start(L, 0) < 0) return -1;
    const tr_batch *b;
    int k = nn_model_config(m)->classes, S = tr_loader_size(L, 0), off = 0, rc;
    while ((rc = tr_loader_next(L, &b)) == 1) {
        if (nn_model_forward(m, b->x, b->n, S, S, 0) < 0) return -1;
        tr_softmax_rows(prob + (size_t)off * k, nn_model_logits(m), b->n, k);
        for (int i = 0; i < b->n; i++) {
            if (y) y[off + i] = b->y[i];
            if (slide) slide[off + i] = b->slide[i];
        }
        off += b->n;
    }
    return rc < 0 ? -1 : off;
}
