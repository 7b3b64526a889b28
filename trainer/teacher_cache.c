/* trainer/teacher_cache.c — RBD's teacher outputs computed once for a few augmentation draws of
 * every pair, and kept in a file (a checkpoint with a key and two tensors) for a later run with
 * the same teacher, seed, pairs and draws (rbd, then rbd+crckd). The 10x teacher is the expensive
 * part of RBD; the loader makes epoch e reuse draw e mod N so both views still share one draw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "nn/ops.h"
#include "trainer/run.h"

/* The cache's identity: the teacher by its content (a retrained teacher at the same path and size
 * must not reuse old outputs), the pairs by count and ids, the draws by seed and augmentation. */
static int cache_key(tr_run *R, int views, int C, int H, int W, char *key, size_t cap)
{
    const tr_train_opts *o = R->o;
    uint8_t *tbytes = NULL;
    size_t tlen = 0;
    if (mp_read_file(o->teacher, &tbytes, &tlen) < 0) return -1;
    uint32_t tcrc = mp_crc32(0, tbytes, tlen), pcrc = 0;
    free(tbytes);
    for (int i = 0; i < R->n; i++) pcrc = mp_crc32(pcrc, &R->items[i].patch_id, sizeof R->items[i].patch_id);
    snprintf(key, cap, "teacher crc32 %08x, %zu bytes|seed %llu|pairs %d crc32 %08x|draws %d|map %dx%dx%d|aug %d", tcrc,
             tlen, (unsigned long long)o->seed, R->n, pcrc, views, C, H, W, o->augment);
    return 0;
}

/* 1 when the file holds outputs for this key (copied into cz, cf), 0 otherwise */
static int cache_read(const char *path, const char *key, float *cz, size_t nz, float *cf, size_t nf)
{
    if (!mp_file_exists(path)) return 0;
    nn_ckpt ck = {0};
    int hit = 0;
    if (nn_ckpt_load(&ck, path) == 0) {
        const char *k2 = nn_ckpt_get(&ck, "teacher_cache.key");
        const nn_ckpt_tensor *tz = nn_ckpt_find(&ck, NN_CKPT_MODEL, "cz"), *tf = nn_ckpt_find(&ck, NN_CKPT_MODEL, "cf");
        if (k2 && !strcmp(k2, key) && tz && tf && tz->numel == nz && tf->numel == nf) {
            memcpy(cz, tz->data, sizeof(float) * nz);
            memcpy(cf, tf->data, sizeof(float) * nf);
            hit = 1;
        } else mp_warn("%s: made for another run; recomputing", path);
    }
    nn_ckpt_free(&ck);
    return hit;
}

static int cache_write(const char *path, const char *key, const float *cz, int64_t rows, int k, const float *cf,
                       int64_t fs)
{
    nn_ckpt ck = {0};
    nn_ckpt_set(&ck, "teacher_cache.key", key);
    int64_t sz[2] = {rows, k}, sf[2] = {rows, fs};
    int rc = nn_ckpt_add(&ck, NN_CKPT_MODEL, "cz", NN_F32, 2, sz, cz, 0) ||
             nn_ckpt_add(&ck, NN_CKPT_MODEL, "cf", NN_F32, 2, sf, cf, 0) || nn_ckpt_save(&ck, path) ? -1 : 0;
    nn_ckpt_free(&ck);
    return rc;
}

int tr_teacher_cache(tr_run *R, int views, int C, int H, int W, float *cz, float *cf, float *Ft)
{
    const tr_train_opts *o = R->o;
    int k = R->k, TS = R->tinfo.size, rc = 0;
    size_t fs = (size_t)C * H * W;
    char key[512];
    if (cache_key(R, views, C, H, W, key, sizeof key) < 0) return -1;
    if (o->teacher_cache && cache_read(o->teacher_cache, key, cz, (size_t)views * R->n * k, cf, (size_t)views * R->n * fs)) {
        mp_info("teacher outputs from %s", o->teacher_cache);
        return 0;
    }
    int32_t *am = mp_xmalloc(sizeof(int32_t) * o->batch * fs);
    double t0 = mp_now();
    for (int a = 0; a < views && !rc; a++) {
        if (tr_loader_start(R->loader, a) < 0) rc = -1;
        const tr_batch *b;
        int got;
        while (!rc && (got = tr_loader_next(R->loader, &b)) == 1) {
            if (nn_model_forward(R->teacher, b->xp, b->n, TS, TS, 0) < 0) {
                rc = -1;
                break;
            }
            int tC, tH, tW;
            const float *Fmap = nn_model_feature_map(R->teacher, &tC, &tH, &tW);
            if (tC != C) {
                rc = mp_err_set("%s: teacher map has %d channels, the student's %d", o->teacher, tC, C);
                break;
            }
            nn_adaptive_maxpool_forward(Ft, am, Fmap, b->n, tC, tH, tW, H, W);
            const float *z = nn_model_logits(R->teacher);
            for (int i = 0; i < b->n; i++) {
                size_t row = (size_t)a * R->n + b->idx[i];
                memcpy(cz + row * k, z + (size_t)i * k, sizeof(float) * k);
                memcpy(cf + row * fs, Ft + (size_t)i * fs, sizeof(float) * fs);
            }
        }
        if (!rc && got < 0) rc = -1;
    }
    free(am);
    if (!rc) mp_info("teacher outputs cached: %d draws x %d pairs in %.1f s", views, R->n, mp_now() - t0);
    if (!rc && o->teacher_cache) rc = cache_write(o->teacher_cache, key, cz, (int64_t)views * R->n, k, cf, (int64_t)fs);
    return rc;
}
