/* infer/model.c — a checkpoint as an inference function: the network in eval mode plus what
 * the checkpoint says about its input (magnification, patch size, normalisation) and classes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "infer/infer.h"
#include "infer/internal.h"
#include "nn/arch.h"

struct infer_model {
    nn_model *net;
    int classes, size, max_batch;
    double mag;
    float mean[3], std[3];
    char **names;
    float *x; /* max_batch x 3 x size x size */
};

static int parse3(const char *s, float out[3])
{
    double d[3];
    if (mp_parse_double_list(s, d, 3) != 3) return -1;
    for (int c = 0; c < 3; c++) out[c] = (float)d[c];
    return 0;
}

infer_model *infer_model_load(const char *path, int max_batch)
{
    nn_ckpt ck = {0};
    if (nn_ckpt_load(&ck, path)) return NULL; /* message names the file */
    infer_model *m = mp_xcalloc(1, sizeof *m);
    const char *mag = nn_ckpt_get(&ck, "mag"), *size = nn_ckpt_get(&ck, "input_size");
    const char *mean = nn_ckpt_get(&ck, "norm.mean"), *std = nn_ckpt_get(&ck, "norm.std");
    long sz;
    if (!mag || mp_parse_double(mag, &m->mag) || !(m->mag > 0)) {
        mp_err_set("%s: checkpoint has no usable 'mag' (a trained checkpoint records it; for others use "
                   "magpie model import --mag)", path);
        goto fail;
    }
    if (!size || mp_parse_long(size, &sz) || sz < 8 || sz > 4096) {
        mp_err_set("%s: checkpoint has no usable 'input_size' (a trained checkpoint records it; for others use "
                   "magpie model import --size)", path);
        goto fail;
    }
    m->size = (int)sz;
    for (int c = 0; c < 3; c++) m->mean[c] = 0, m->std[c] = 1;
    if ((mean && parse3(mean, m->mean)) || (std && parse3(std, m->std)) || !(m->std[0] > 0 && m->std[1] > 0 && m->std[2] > 0)) {
        mp_err_set("%s: bad norm.mean/norm.std ('%s' / '%s')", path, mean ? mean : "", std ? std : "");
        goto fail;
    }
    m->max_batch = max_batch < 1 ? infer_auto_batch(m->size) : max_batch;
    m->net = nn_model_from_ckpt(&ck, m->max_batch, m->size, m->size, 0);
    if (!m->net) goto fail;
    const nn_model_cfg *cfg = nn_model_config(m->net);
    if (cfg->in_ch != 3) {
        mp_err_set("%s: the network takes %d input channels, not RGB", path, cfg->in_ch);
        goto fail;
    }
    m->classes = cfg->classes;
    if (m->classes < 1 || m->classes > INFER_MAX_CLASSES) {
        mp_err_set("%s: %d classes (1..%d supported)", path, m->classes, INFER_MAX_CLASSES);
        goto fail;
    }
    m->names = mp_xcalloc(m->classes, sizeof(char *));
    const char *names = nn_ckpt_get(&ck, "class_names"); /* tab-separated (trainer/modelio.c) */
    for (int k = 0; k < m->classes; k++) {
        const char *e = names ? strchr(names, '\t') : NULL;
        char buf[256];
        if (names && *names) snprintf(buf, sizeof buf, "%.*s", (int)(e ? e - names : (long)strlen(names)), names);
        else snprintf(buf, sizeof buf, "class%d", k);
        m->names[k] = mp_xstrdup(buf);
        names = e ? e + 1 : NULL;
    }
    m->x = mp_xmalloc(sizeof(float) * (size_t)m->max_batch * 3 * m->size * m->size);
    nn_ckpt_free(&ck);
    return m;
fail:
    nn_ckpt_free(&ck);
    infer_model_free(m);
    return NULL;
}

void infer_model_free(infer_model *m)
{
    if (!m) return;
    nn_model_free(m->net);
    if (m->names)
        for (int k = 0; k < m->classes; k++) free(m->names[k]);
    free(m->names);
    free(m->x);
    free(m);
}

int infer_model_classes(const infer_model *m) { return m->classes; }
double infer_model_mag(const infer_model *m) { return m->mag; }
int infer_model_size(const infer_model *m) { return m->size; }
char *const *infer_model_names(const infer_model *m) { return m->names; }

int infer_model_predict(infer_model *m, const uint8_t *rgb, int n, float *prob)
{
    int S = m->size, K = m->classes;
    size_t plane = (size_t)S * S;
    for (int b0 = 0; b0 < n; b0 += m->max_batch) {
        int nb = n - b0 < m->max_batch ? n - b0 : m->max_batch;
        for (int b = 0; b < nb; b++) {
            const uint8_t *src = rgb + (size_t)(b0 + b) * plane * 3;
            float *dst = m->x + (size_t)b * 3 * plane;
            for (int c = 0; c < 3; c++) {
                float a = 1.0f / (255.0f * m->std[c]), o = m->mean[c] / m->std[c];
                float *d = dst + c * plane;
                for (size_t i = 0; i < plane; i++) d[i] = src[i * 3 + c] * a - o;
            }
        }
        if (nn_model_forward(m->net, m->x, nb, S, S, 0)) return -1;
        const float *z = nn_model_logits(m->net);
        for (int b = 0; b < nb; b++) {
            const float *l = z + (size_t)b * K;
            float mx = l[0], s = 0;
            for (int k = 1; k < K; k++) mx = fmaxf(mx, l[k]);
            float *p = prob + (size_t)(b0 + b) * K;
            for (int k = 0; k < K; k++) s += p[k] = expf(l[k] - mx);
            for (int k = 0; k < K; k++) p[k] /= s;
        }
    }
    return 0;
}
