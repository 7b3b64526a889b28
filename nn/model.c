/* nn/model.c — a ResNet as a flat list of layer descriptors over a tensor table (darknet
 * style): a planning pass sizes every tensor for the maximum batch and input, one arena holds
 * them all, and forward/backward walk the list. Residual adds refer back by tensor index. */
#include "nn/model.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "nn/gemm.h"
#include "nn/pool.h"
#include "nn/ops.h"

#define NN_MAX_WORKERS 16

enum { L_CONV, L_NORM, L_MAXPOOL, L_ADD, L_GAP, L_FC };

typedef struct {
    int kind;
    int in, in2, out;     /* tensor indices (in2: the residual input of an add) */
    int relu;             /* fused ReLU (norm, add) */
    int k, s, p;          /* conv / maxpool geometry */
    int w, b;             /* param indices (conv weight; norm gamma/beta; fc weight/bias) */
    int rm, rv, nbt;      /* BatchNorm buffers */
    size_t stats;         /* float offset of mean/rstd (2 × max_batch × stat_count) */
    size_t argmax;        /* int32 offset for max-pool */
} layer;

typedef struct {
    int C, H, W;          /* H, W: of the current call */
    size_t off, goff;     /* float offsets of data and gradient in the arena */
    size_t cap;           /* floats planned */
    int gset;             /* gradient written (not accumulated) by its one consumer: never cleared */
} tensor;

struct nn_model {
    nn_model_cfg cfg;
    nn_params params;
    layer *L;
    int nl;
    tensor *T;
    int nt;
    int t_feat, t_pool, t_logits;
    int max_batch, max_h, max_w, with_grad;
    float *arena;         /* activations, gradients, stats, workspace */
    int32_t *iarena;      /* max-pool argmax */
    size_t arena_floats, iarena_n, ws_off, ws_cap;
    const float *x;       /* borrowed input of the last forward */
    int N, H, W, train, ready;
    /* data-parallel workers over the batch: worker 0 uses the arena's workspace and the
     * parameter table's grad; worker k > 0 has its own workspace and gradient buffer */
    int workers;
    float *wws[NN_MAX_WORKERS], *wgrad[NN_MAX_WORKERS];
    /* nn_model_freeze: per layer, the conv's small-map prep for the input size prep_h × prep_w */
    int frozen, prep_h, prep_w;
    nn_conv_prep **prep;
};

/* ------------------------------------------------------------------ config */

void nn_model_cfg_resnet_gn(nn_model_cfg *cfg, int classes)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->in_ch = 3;
    cfg->nstages = 4;
    for (int i = 0; i < 4; i++) cfg->widths[i] = 32 << i, cfg->blocks[i] = 1;
    cfg->norm = NN_NORM_GROUP;
    cfg->groups = 32;
    cfg->classes = classes;
    cfg->norm_eps = 1e-5f;
    cfg->bn_momentum = 0.1f;
}

void nn_model_cfg_resnet18(nn_model_cfg *cfg, int classes, nn_norm_kind norm)
{
    nn_model_cfg_resnet_gn(cfg, classes);
    for (int i = 0; i < 4; i++) cfg->widths[i] = 64 << i, cfg->blocks[i] = 2;
    cfg->norm = norm;
}

int nn_model_cfg_check(const nn_model_cfg *c)
{
    /* Bounds: a model file declares its architecture, and a 28 KB file asking for 100000 blocks
     * kept `model info` planning for minutes; these are far above any ResNet in use. */
    if (c->in_ch < 1 || c->in_ch > NN_MAX_IN_CH)
        return mp_err_set("model config: in_ch must be 1..%d (got %d)", NN_MAX_IN_CH, c->in_ch);
    if (c->nstages < 1 || c->nstages > NN_MAX_STAGES)
        return mp_err_set("model config: nstages must be 1..%d (got %d)", NN_MAX_STAGES, c->nstages);
    if (c->classes < 1 || c->classes > NN_MAX_CLASSES)
        return mp_err_set("model config: classes must be 1..%d (got %d)", NN_MAX_CLASSES, c->classes);
    if (c->norm != NN_NORM_GROUP && c->norm != NN_NORM_BATCH) return mp_err_set("model config: unknown norm %d", c->norm);
    double weights = 9.0 * c->in_ch * c->widths[0];
    for (int i = 0; i < c->nstages; i++) {
        if (c->widths[i] < 1 || c->blocks[i] < 1)
            return mp_err_set("model config: stage %d needs width and blocks >= 1", i);
        if (c->widths[i] > NN_MAX_WIDTH || c->blocks[i] > NN_MAX_BLOCKS)
            return mp_err_set("model config: stage %d has width %d and %d blocks (at most %d and %d)", i, c->widths[i],
                              c->blocks[i], NN_MAX_WIDTH, NN_MAX_BLOCKS);
        weights += 18.0 * c->blocks[i] * c->widths[i] * c->widths[i];
        if (i) weights += (double)c->widths[i - 1] * c->widths[i]; /* the 1x1 shortcut */
        if (c->norm == NN_NORM_GROUP && (c->groups < 1 || c->widths[i] % c->groups))
            return mp_err_set("model config: width %d of stage %d is not divisible by %d groups", c->widths[i], i,
                              c->groups);
    }
    weights += (double)c->widths[c->nstages - 1] * c->classes;
    if (weights > NN_MAX_PARAMS)
        return mp_err_set("model config: about %.3g weights (at most %.3g)", weights, (double)NN_MAX_PARAMS);
    if (!(c->norm_eps > 0)) return mp_err_set("model config: norm_eps must be > 0");
    return 0;
}

/* ------------------------------------------------------------------ planning */

typedef struct {
    nn_model *m;
    int ncap_l, ncap_t;
} builder;

static int add_tensor(builder *b, int C)
{
    nn_model *m = b->m;
    if (m->nt == b->ncap_t) {
        b->ncap_t = b->ncap_t ? 2 * b->ncap_t : 32;
        m->T = mp_xrealloc(m->T, sizeof(tensor) * b->ncap_t);
    }
    memset(&m->T[m->nt], 0, sizeof(tensor));
    m->T[m->nt].C = C;
    return m->nt++;
}

static layer *add_layer(builder *b, int kind, int in, int out)
{
    nn_model *m = b->m;
    if (m->nl == b->ncap_l) {
        b->ncap_l = b->ncap_l ? 2 * b->ncap_l : 32;
        m->L = mp_xrealloc(m->L, sizeof(layer) * b->ncap_l);
    }
    layer *l = &m->L[m->nl++];
    memset(l, 0, sizeof *l);
    l->kind = kind, l->in = in, l->out = out, l->in2 = -1, l->w = l->b = l->rm = l->rv = l->nbt = -1;
    return l;
}

static int param(nn_model *m, const char *prefix, const char *suffix, int ndim, int64_t a, int64_t b2, int64_t c,
                 int64_t d, int trainable)
{
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    int64_t shape[4] = {a, b2, c, d};
    return nn_params_add(&m->params, name, ndim, shape, trainable);
}

static int conv(builder *b, const char *name, int in, int cout, int k, int s, int p)
{
    nn_model *m = b->m;
    int cin = m->T[in].C, out = add_tensor(b, cout);
    int w = param(m, name, "weight", 4, cout, cin, k, k, 1);
    if (w < 0) return -1;
    layer *l = add_layer(b, L_CONV, in, out);
    l->k = k, l->s = s, l->p = p, l->w = w;
    return out;
}

static int norm(builder *b, const char *name, int in, int relu)
{
    nn_model *m = b->m;
    int C = m->T[in].C, out = add_tensor(b, C);
    int g = param(m, name, "weight", 1, C, 0, 0, 0, 1), be = param(m, name, "bias", 1, C, 0, 0, 0, 1);
    if (g < 0 || be < 0) return -1;
    layer *l = add_layer(b, L_NORM, in, out);
    l->w = g, l->b = be, l->relu = relu;
    if (m->cfg.norm == NN_NORM_BATCH) {
        l->rm = param(m, name, "running_mean", 1, C, 0, 0, 0, 0);
        l->rv = param(m, name, "running_var", 1, C, 0, 0, 0, 0);
        l->nbt = param(m, name, "num_batches_tracked", 0, 0, 0, 0, 0, 0);
        if (l->rm < 0 || l->rv < 0 || l->nbt < 0) return -1;
    }
    return out;
}

static int block(builder *b, int idx, int in, int cout, int stride)
{
    char p[64], q[80];
    int cin = b->m->T[in].C;
    snprintf(p, sizeof p, "layers.%d", idx);
    snprintf(q, sizeof q, "%s.c1", p);
    int t = conv(b, q, in, cout, 3, stride, 1);
    snprintf(q, sizeof q, "%s.n1", p);
    if (t >= 0) t = norm(b, q, t, 1);
    snprintf(q, sizeof q, "%s.c2", p);
    if (t >= 0) t = conv(b, q, t, cout, 3, 1, 1);
    snprintf(q, sizeof q, "%s.n2", p);
    if (t >= 0) t = norm(b, q, t, 0);
    if (t < 0) return -1;
    int sc = in;
    if (stride != 1 || cin != cout) {
        snprintf(q, sizeof q, "%s.sc.0", p);
        sc = conv(b, q, in, cout, 1, stride, 0);
        snprintf(q, sizeof q, "%s.sc.1", p);
        if (sc >= 0) sc = norm(b, q, sc, 0);
        if (sc < 0) return -1;
    }
    int out = add_tensor(b, cout);
    layer *l = add_layer(b, L_ADD, t, out);
    l->in2 = sc, l->relu = 1;
    return out;
}

/* Spatial sizes of every tensor for an H×W input; -1 if a map collapses to nothing. */
static int shapes(nn_model *m, int H, int W)
{
    m->T[0].H = H, m->T[0].W = W;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        tensor *a = &m->T[l->in], *o = &m->T[l->out];
        switch (l->kind) {
        case L_CONV:
        case L_MAXPOOL:
            o->H = nn_conv_out(a->H, l->k, l->s, l->p), o->W = nn_conv_out(a->W, l->k, l->s, l->p);
            if (a->H + 2 * l->p < l->k || a->W + 2 * l->p < l->k || o->H < 1 || o->W < 1)
                return mp_err_set("model: input %dx%d is too small (a map collapses)", H, W);
            break;
        case L_GAP:
        case L_FC: o->H = o->W = 1; break;
        default: o->H = a->H, o->W = a->W;
        }
    }
    return 0;
}

static size_t stat_count(const nn_model *m, const layer *l)
{
    return m->cfg.norm == NN_NORM_GROUP ? (size_t)m->cfg.groups : (size_t)m->T[l->in].C;
}

static nn_conv_dims conv_dims(const nn_model *m, const layer *l, int N)
{
    const tensor *a = &m->T[l->in], *o = &m->T[l->out];
    return (nn_conv_dims){N, a->C, a->H, a->W, o->C, l->k, l->k, l->s, l->s, l->p, l->p};
}

static size_t al16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The arena and the workers' buffers come from mp_alloc_big (common/util.h): first touched
 * inside the step, 4 KiB pages cost 28,600 page faults on a 256 x 28 px `model grad` (a third
 * of its time). */

nn_model *nn_model_create(const nn_model_cfg *cfg, int max_batch, int max_h, int max_w, int with_grad)
{
    if (nn_model_cfg_check(cfg)) return NULL;
    if (max_batch < 1 || max_h < 1 || max_w < 1) {
        mp_err_set("model: bad plan (batch %d, %dx%d)", max_batch, max_h, max_w);
        return NULL;
    }
    nn_model *m = mp_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->max_batch = max_batch, m->max_h = max_h, m->max_w = max_w, m->with_grad = with_grad;
    builder b = {m, 0, 0};
    int t = add_tensor(&b, cfg->in_ch);
    t = conv(&b, "stem.0", t, cfg->widths[0], 7, 2, 3);
    if (t >= 0) t = norm(&b, "stem.1", t, 1);
    if (t < 0) goto fail;
    {
        int o = add_tensor(&b, cfg->widths[0]);
        layer *l = add_layer(&b, L_MAXPOOL, t, o);
        l->k = 3, l->s = 2, l->p = 1;
        t = o;
    }
    for (int s = 0, bi = 0; s < cfg->nstages; s++)
        for (int j = 0; j < cfg->blocks[s]; j++, bi++) {
            t = block(&b, bi, t, cfg->widths[s], (s > 0 && j == 0) ? 2 : 1);
            if (t < 0) goto fail;
        }
    m->t_feat = t;
    m->t_pool = add_tensor(&b, m->T[t].C);
    add_layer(&b, L_GAP, t, m->t_pool);
    m->t_logits = add_tensor(&b, cfg->classes);
    {
        int w = param(m, "fc", "weight", 2, cfg->classes, m->T[t].C, 0, 0, 1);
        int bb = param(m, "fc", "bias", 1, cfg->classes, 0, 0, 0, 1);
        if (w < 0 || bb < 0) goto fail;
        layer *l = add_layer(&b, L_FC, m->t_pool, m->t_logits);
        l->w = w, l->b = bb;
    }
    if (nn_params_alloc_ex(&m->params, with_grad)) goto fail;
    if (shapes(m, max_h, max_w)) goto fail;
    /* a tensor read only by a GroupNorm or a residual add gets its gradient written by that
     * layer's backward, so backward need not clear it first */
    for (int t = 1; t < m->nt; t++) {
        int uses = 0, setter = 0;
        for (int i = 0; i < m->nl; i++) {
            const layer *l = &m->L[i];
            int u = (l->in == t) + (l->in2 == t);
            if (!u) continue;
            uses += u;
            setter = (l->kind == L_NORM && cfg->norm == NN_NORM_GROUP) || l->kind == L_ADD;
        }
        m->T[t].gset = uses == 1 && setter && t != m->t_feat && t != m->t_pool && t != m->t_logits;
    }

    /* arena layout: tensors, then their gradients, then norm stats, then the conv workspace */
    size_t off = 0;
    for (int i = 0; i < m->nt; i++) {
        tensor *x = &m->T[i];
        x->cap = (size_t)max_batch * x->C * x->H * x->W;
        x->off = off;
        if (i > 0) off += al16(x->cap); /* tensor 0 is the borrowed input */
    }
    if (with_grad)
        for (int i = 1; i < m->nt; i++) {
            m->T[i].goff = off;
            off += al16(m->T[i].cap);
        }
    size_t ioff = 0, ws = 0;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        if (l->kind == L_NORM) {
            l->stats = off;
            off += al16(2 * (size_t)max_batch * stat_count(m, l));
        } else if (l->kind == L_MAXPOOL) {
            l->argmax = ioff;
            ioff += al16(m->T[l->out].cap);
        } else if (l->kind == L_CONV) {
            /* the model may run smaller inputs than planned: the op says what any of them needs */
            nn_conv_dims d = conv_dims(m, l, max_batch);
            size_t need = nn_conv2d_workspace_max(&d);
            if (need > ws) ws = need;
        }
    }
    m->ws_off = off, m->ws_cap = ws;
    off += al16(ws);
    m->arena_floats = off, m->iarena_n = ioff;
    m->arena = mp_alloc_big((off ? off : 16) * sizeof(float));
    m->iarena = mp_alloc_big((ioff ? ioff : 16) * sizeof(int32_t));
    if (!m->arena || !m->iarena) {
        mp_err_set("model: out of memory for a %.1f MiB activation arena (batch %d, %dx%d)",
                   (double)off * 4 / 1048576.0, max_batch, max_h, max_w);
        goto fail;
    }
    m->workers = 1;
    if (nn_model_set_workers(m, nn_get_threads())) goto fail;
    return m;
fail:
    nn_model_free(m);
    return NULL;
}

static void free_workers(nn_model *m)
{
    for (int k = 1; k < NN_MAX_WORKERS; k++) {
        free(m->wws[k]), free(m->wgrad[k]);
        m->wws[k] = m->wgrad[k] = NULL;
    }
    m->workers = 1;
}

int nn_model_set_workers(nn_model *m, int n)
{
    if (n < 1) n = 1;
    if (n > NN_MAX_WORKERS) n = NN_MAX_WORKERS;
    if (n == m->workers) return 0;
    free_workers(m);
    for (int k = 1; k < n; k++) {
        m->wws[k] = mp_alloc_big(al16(m->ws_cap ? m->ws_cap : 16) * sizeof(float));
        m->wgrad[k] = m->with_grad ? mp_alloc_big(al16(m->params.total ? m->params.total : 16) * sizeof(float)) : NULL;
        if (!m->wws[k] || (m->with_grad && !m->wgrad[k])) {
            free_workers(m);
            return mp_err_set("model: out of memory for %d workers", n);
        }
    }
    m->workers = n;
    return 0;
}

int nn_model_workers(const nn_model *m) { return m->workers; }

static void drop_preps(nn_model *m)
{
    if (m->prep)
        for (int i = 0; i < m->nl; i++) nn_conv2d_prep_free(m->prep[i]);
    free(m->prep);
    m->prep = NULL, m->prep_h = m->prep_w = 0;
}

void nn_model_freeze(nn_model *m)
{
    if (!m->with_grad) m->frozen = 1;
}

static void unfreeze(nn_model *m)
{
    m->frozen = 0;
    drop_preps(m);
}

/* Called before the shares run, in the calling thread: the shares only read the preps. */
static void refresh_preps(nn_model *m, int H, int W)
{
    if (!m->frozen || (m->prep && m->prep_h == H && m->prep_w == W)) return;
    drop_preps(m);
    if (!(m->prep = calloc((size_t)m->nl, sizeof *m->prep))) return; /* no prep: built per call, as unfrozen */
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_CONV) {
            nn_conv_dims d = conv_dims(m, &m->L[i], 1);
            m->prep[i] = nn_conv2d_prepare(m->params.p[m->L[i].w].data, &d);
        }
    m->prep_h = H, m->prep_w = W;
}

void nn_model_free(nn_model *m)
{
    if (!m) return;
    drop_preps(m);
    free_workers(m);
    nn_params_free(&m->params);
    free(m->L);
    free(m->T);
    free(m->arena);
    free(m->iarena);
    free(m);
}

void nn_model_init(nn_model *m, uint64_t seed)
{
    unfreeze(m);
    mp_rng r;
    mp_rng_seed(&r, seed);
    for (int i = 0; i < m->params.n; i++) {
        nn_param *p = &m->params.p[i];
        const char *dot = strrchr(p->name, '.');
        const char *leaf = dot ? dot + 1 : p->name;
        int is_fc = !strncmp(p->name, "fc.", 3);
        if (!strcmp(leaf, "weight") && (p->ndim == 4 || is_fc)) {
            size_t fan_in = p->numel / (size_t)p->shape[0];
            float bound = (float)(1.0 / sqrt((double)fan_in));
            for (size_t j = 0; j < p->numel; j++) p->data[j] = mp_rng_uniformf(&r, -bound, bound);
        } else if (is_fc && !strcmp(leaf, "bias")) {
            nn_param *w = nn_params_find(&m->params, "fc.weight");
            float bound = (float)(1.0 / sqrt((double)w->shape[1]));
            for (size_t j = 0; j < p->numel; j++) p->data[j] = mp_rng_uniformf(&r, -bound, bound);
        } else {
            float v = (!strcmp(leaf, "weight") || !strcmp(leaf, "running_var")) ? 1.0f : 0.0f;
            for (size_t j = 0; j < p->numel; j++) p->data[j] = v;
        }
    }
}

nn_params *nn_model_params(nn_model *m)
{
    unfreeze(m); /* the caller may change the weights */
    return &m->params;
}
const nn_model_cfg *nn_model_config(const nn_model *m) { return &m->cfg; }
size_t nn_model_param_count(const nn_model *m) { return nn_params_count_trainable(&m->params); }
size_t nn_model_arena_bytes(const nn_model *m) { return m->arena_floats * 4 + m->iarena_n * 4; }
int nn_model_feature_dim(const nn_model *m) { return m->T[m->t_feat].C; }

int64_t nn_model_flops(const nn_model_cfg *cfg, int H, int W)
{
    nn_model_cfg c = *cfg;
    /* plan a throwaway 1-image model to walk the same layer list (cheap: parameters only) */
    nn_model *m = nn_model_create(&c, 1, H, W, 0);
    if (!m) return -1;
    int64_t f = 0;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        tensor *a = &m->T[l->in], *o = &m->T[l->out];
        if (l->kind == L_CONV) f += 2LL * o->C * o->H * o->W * a->C * l->k * l->k;
        if (l->kind == L_FC) f += 2LL * o->C * a->C;
    }
    nn_model_free(m);
    return f;
}

/* ------------------------------------------------------------------ forward / backward */

/* One worker's share: images [n0, n0 + cnt) of the batch. NCHW keeps every image's slice of a
 * tensor contiguous, so a share is a pointer offset; per-image norm statistics and argmaxes
 * likewise. Only the conv workspace and the parameter gradients are private to a worker. */
typedef struct {
    nn_model *m;
    int n0, cnt, k, backward;
    float *ws, *pgrad;
    const float *dlogits, *dpooled, *dF;
} share;

static size_t per_image(const nn_model *m, int t) { return (size_t)m->T[t].C * m->T[t].H * m->T[t].W; }
static float *T_(const share *s, int t)
{
    const nn_model *m = s->m;
    float *base = t == 0 ? (float *)m->x : m->arena + m->T[t].off;
    return base + (size_t)s->n0 * per_image(m, t);
}
static float *G_(const share *s, int t)
{
    return t == 0 ? NULL : s->m->arena + s->m->T[t].goff + (size_t)s->n0 * per_image(s->m, t);
}
static float *P_(const nn_model *m, int i) { return i < 0 ? NULL : m->params.p[i].data; }
static float *PG_(const share *s, int i) { return i < 0 ? NULL : s->pgrad + s->m->params.p[i].offset; }
static float *stats_(const share *s, const layer *l, int rstd)
{
    size_t sc = stat_count(s->m, l);
    float *mean = s->m->arena + l->stats;
    if (s->m->cfg.norm == NN_NORM_GROUP) mean += (size_t)s->n0 * sc; /* BN never splits the batch */
    return rstd ? mean + (size_t)s->m->max_batch * sc : mean;
}

/* Without gradients, a GroupNorm whose only reader is the next layer's 3x3/2/1 max-pool (the
 * stem's pair) runs fused with it: its map, the largest of the network, is never written. Only
 * on maps of 1024 pixels or more: a smaller map stays in cache anyway, and the per-group calls
 * would cost more than they save. */
static int norm_pool_fused(const nn_model *m, int i)
{
    const layer *l = &m->L[i], *p = i + 1 < m->nl ? &m->L[i + 1] : NULL;
    if (m->with_grad || m->cfg.norm != NN_NORM_GROUP || !p || p->kind != L_MAXPOOL || p->in != l->out || p->k != 3 ||
        p->s != 2 || p->p != 1 || l->out == m->t_feat)
        return 0;
    for (int j = 0; j < m->nl; j++)
        if (j != i + 1 && (m->L[j].in == l->out || m->L[j].in2 == l->out)) return 0;
    const tensor *a = &m->T[l->in];
    return a->H * a->W >= 1024 && (size_t)(a->C / m->cfg.groups) * a->H * a->W <= m->ws_cap;
}

static void forward_share(share *s)
{
    nn_model *m = s->m;
    int N = s->cnt;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->L[i];
        tensor *a = &m->T[l->in], *o = &m->T[l->out];
        float *in = T_(s, l->in), *out = T_(s, l->out);
        int HW = a->H * a->W;
        switch (l->kind) {
        case L_CONV: {
            nn_conv_dims d = conv_dims(m, l, N);
            nn_conv2d_forward_prep(out, s->ws, in, P_(m, l->w), NULL, &d, m->prep ? m->prep[i] : NULL);
            break;
        }
        case L_NORM:
            if (norm_pool_fused(m, i)) {
                i++; /* the pool's output is written here */
                nn_groupnorm_maxpool_forward(T_(s, m->L[i].out), stats_(s, l, 0), stats_(s, l, 1), s->ws, in, P_(m, l->w),
                                             P_(m, l->b), N, a->C, a->H, a->W, m->cfg.groups, m->cfg.norm_eps, l->relu);
            } else if (m->cfg.norm == NN_NORM_GROUP)
                nn_groupnorm_forward(out, stats_(s, l, 0), stats_(s, l, 1), in, P_(m, l->w), P_(m, l->b), N, a->C, HW,
                                     m->cfg.groups, m->cfg.norm_eps, l->relu);
            else
                nn_batchnorm_forward(out, stats_(s, l, 0), stats_(s, l, 1), P_(m, l->rm), P_(m, l->rv), P_(m, l->nbt),
                                     in, P_(m, l->w), P_(m, l->b), N, a->C, HW, m->cfg.bn_momentum, m->cfg.norm_eps,
                                     m->train, l->relu);
            break;
        case L_MAXPOOL:
            nn_maxpool_forward(out, m->with_grad ? m->iarena + l->argmax + (size_t)s->n0 * per_image(m, l->out) : NULL,
                               in, N, a->C, a->H, a->W, l->k, l->s, l->p);
            break;
        case L_ADD: nn_add_forward(out, in, T_(s, l->in2), (size_t)N * per_image(m, l->out), l->relu); break;
        case L_GAP: nn_avgpool_global_forward(out, in, N, a->C, HW); break;
        case L_FC: nn_linear_forward(out, in, P_(m, l->w), P_(m, l->b), N, a->C, o->C); break;
        }
    }
}

static void backward_share(share *s)
{
    nn_model *m = s->m;
    int N = s->cnt;
    /* gradients accumulate: clear this share of every activation gradient first */
    for (int t = 1; t < m->nt; t++)
        if (!m->T[t].gset) memset(G_(s, t), 0, (size_t)N * per_image(m, t) * sizeof(float));
    if (s->dlogits) memcpy(G_(s, m->t_logits), s->dlogits + (size_t)s->n0 * per_image(m, m->t_logits),
                           (size_t)N * per_image(m, m->t_logits) * sizeof(float));
    if (s->dpooled) memcpy(G_(s, m->t_pool), s->dpooled + (size_t)s->n0 * per_image(m, m->t_pool),
                           (size_t)N * per_image(m, m->t_pool) * sizeof(float));
    if (s->dF) memcpy(G_(s, m->t_feat), s->dF + (size_t)s->n0 * per_image(m, m->t_feat),
                      (size_t)N * per_image(m, m->t_feat) * sizeof(float));
    for (int i = m->nl - 1; i >= 0; i--) {
        layer *l = &m->L[i];
        tensor *a = &m->T[l->in], *o = &m->T[l->out];
        float *in = T_(s, l->in), *out = T_(s, l->out), *din = G_(s, l->in), *dout = G_(s, l->out);
        int HW = a->H * a->W;
        switch (l->kind) {
        case L_CONV: {
            nn_conv_dims d = conv_dims(m, l, N);
            nn_conv2d_backward(din, PG_(s, l->w), NULL, s->ws, dout, in, P_(m, l->w), &d);
            break;
        }
        case L_NORM:
            if (m->cfg.norm == NN_NORM_GROUP)
                (a->gset ? nn_groupnorm_backward_set : nn_groupnorm_backward)(
                    din, PG_(s, l->w), PG_(s, l->b), dout, in, l->relu ? out : NULL, stats_(s, l, 0), stats_(s, l, 1),
                    P_(m, l->w), N, a->C, HW, m->cfg.groups);
            else
                nn_batchnorm_backward(din, PG_(s, l->w), PG_(s, l->b), dout, in, l->relu ? out : NULL, stats_(s, l, 0),
                                      stats_(s, l, 1), P_(m, l->w), N, a->C, HW, m->train);
            break;
        case L_MAXPOOL:
            nn_maxpool_backward(din, dout, m->iarena + l->argmax + (size_t)s->n0 * per_image(m, l->out), N, a->C, a->H,
                                a->W, o->H, o->W);
            break;
        case L_ADD:
            nn_add_backward_set(din, G_(s, l->in2), dout, out, (size_t)N * per_image(m, l->out), l->relu, a->gset,
                                m->T[l->in2].gset);
            break;
        case L_GAP: nn_avgpool_global_backward(din, dout, N, a->C, HW); break;
        case L_FC: nn_linear_backward(din, PG_(s, l->w), PG_(s, l->b), dout, in, P_(m, l->w), N, a->C, o->C); break;
        }
    }
}

static void run_share(void *arg, int k)
{
    share *sh = arg;
    nn_gemm_in_share(1);
    if (sh[k].backward) backward_share(&sh[k]);
    else forward_share(&sh[k]);
    nn_gemm_in_share(0);
}

/* Split the batch over the workers (BatchNorm needs the whole batch: one worker, BLAS threads
 * instead), one BLAS thread each while they run. Contiguous equal shares keep the split, and so
 * the results, fixed for a given worker count. */
static int run_shares(nn_model *m, int backward, const float *dl, const float *dp, const float *dF)
{
    int W = m->cfg.norm == NN_NORM_BATCH ? 1 : m->workers;
    if (W > m->N) W = m->N;
    share sh[NN_MAX_WORKERS];
    for (int k = 0, n0 = 0; k < W; k++) {
        int cnt = m->N / W + (k < m->N % W);
        sh[k] = (share){m, n0, cnt, k, backward, k ? m->wws[k] : m->arena + m->ws_off, k ? m->wgrad[k] : m->params.grad, dl, dp, dF};
        n0 += cnt;
        if (backward && k) memset(m->wgrad[k], 0, m->params.total * sizeof(float));
    }
    if (W == 1) {
        if (backward) backward_share(&sh[0]);
        else forward_share(&sh[0]);
        return 0;
    }
    nn_gemm_blas_threads(1); /* stays 1 until a GEMM outside the shares needs more */
    nn_pool_run(W, run_share, sh);
    if (backward) /* fixed order of the partial sums: deterministic for a given worker count */
        for (int k = 1; k < W; k++) {
            float *g = m->params.grad, *h = m->wgrad[k];
            for (size_t i = 0; i < m->params.total; i++) g[i] += h[i];
        }
    return 0;
}

int nn_model_forward(nn_model *m, const float *x, int N, int H, int W, int train)
{
    m->ready = 0;
    if (N < 1 || N > m->max_batch || H > m->max_h || W > m->max_w || H < 1 || W < 1)
        return mp_err_set("model: batch %dx%dx%d exceeds the plan (batch %d, %dx%d)", N, H, W, m->max_batch,
                          m->max_h, m->max_w);
    if (shapes(m, H, W)) return -1;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_CONV) {
            nn_conv_dims d = conv_dims(m, &m->L[i], N);
            if (nn_conv2d_workspace(&d) > m->ws_cap) /* cannot happen with the planning bound */
                return mp_err_set("model: conv workspace exceeds the plan");
        }
    m->x = x, m->N = N, m->H = H, m->W = W, m->train = train;
    refresh_preps(m, H, W);
    run_shares(m, 0, NULL, NULL, NULL);
    m->ready = 1;
    return 0;
}

const float *nn_model_logits(const nn_model *m) { return m->arena + m->T[m->t_logits].off; }
const float *nn_model_pooled(const nn_model *m) { return m->arena + m->T[m->t_pool].off; }
const float *nn_model_feature_map(const nn_model *m, int *C, int *FH, int *FW)
{
    const tensor *t = &m->T[m->t_feat];
    if (C) *C = t->C;
    if (FH) *FH = t->H;
    if (FW) *FW = t->W;
    return m->arena + t->off;
}

int nn_model_backward_ex(nn_model *m, const float *dlogits, const float *dpooled, const float *dF)
{
    if (!m->with_grad) return mp_err_set("model: created without gradients (inference only)");
    if (!m->ready) return mp_err_set("model: backward without a forward");
    return run_shares(m, 1, dlogits, dpooled, dF);
}
