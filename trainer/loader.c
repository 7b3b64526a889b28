/* trainer/loader.c — batches of decoded, augmented, normalised patches from a magpie dataset.
 * A worker thread with its own SQLite connection reads and decodes the next batches while the
 * trainer computes on the current one. Every random choice comes from (seed, epoch, patch id),
 * so the batches are identical whatever the thread timing — and after a resume. */
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "db/dataset.h"
#include "trainer/trainer.h"

enum { NSLOT = 3, RNG_SHUFFLE = 0x5f1, RNG_AUG = 0xa06, RNG_TVIEW = 0x7e1, RNG_XDIH = 0xd17 };

struct tr_loader {
    tr_loader_cfg cfg;
    char *db_path;
    db_item *items;
    int n;
    int size[2];          /* pixel size of the primary and paired views */
    int skip_paired;      /* the paired view is not read (its network outputs are cached) */
    int epoch, nbatches;
    uint32_t *order;
    double *cdf;          /* cumulative sampling weights (tr_loader_set_weights), NULL = permutation */
    /* ring of batches filled by the worker */
    tr_batch slot[NSLOT];
    int head, tail, count, consumed, held, stop, failed, running;
    char errmsg[1024];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* ---- decoding ----------------------------------------------------------------------------- */

typedef struct {
    tjhandle tj;
    uint8_t *rgb;
    size_t cap;
} decoder;

static int decode(decoder *d, const uint8_t *data, size_t len, int is_png, int want, int64_t pid, double mag)
{
    int w, h;
    if ((size_t)want * want * 3 > d->cap) {
        d->cap = (size_t)want * want * 3;
        d->rgb = mp_xrealloc(d->rgb, d->cap);
    }
    if (is_png) {
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        if (!png_image_begin_read_from_memory(&im, data, len))
            return mp_err_set("patch %lld at %gx: PNG does not decode (%s)", (long long)pid, mag, im.message);
        im.format = PNG_FORMAT_RGB;
        w = (int)im.width, h = (int)im.height;
        if (w != want || h != want) {
            png_image_free(&im);
            return mp_err_set("patch %lld at %gx: image is %dx%d, expected %dx%d", (long long)pid, mag, w, h, want, want);
        }
        if (!png_image_finish_read(&im, NULL, d->rgb, 0, NULL))
            return mp_err_set("patch %lld at %gx: PNG does not decode (%s)", (long long)pid, mag, im.message);
        return 0;
    }
    int sub, cs;
    if (!d->tj) d->tj = tjInitDecompress();
    if (tjDecompressHeader3(d->tj, data, (unsigned long)len, &w, &h, &sub, &cs) != 0)
        return mp_err_set("patch %lld at %gx: JPEG does not decode (%s)", (long long)pid, mag, tjGetErrorStr2(d->tj));
    if (w != want || h != want)
        return mp_err_set("patch %lld at %gx: image is %dx%d, expected %dx%d", (long long)pid, mag, w, h, want, want);
    if (tjDecompress2(d->tj, data, (unsigned long)len, d->rgb, w, 0, h, TJPF_RGB, TJFLAG_ACCURATEDCT) != 0)
        return mp_err_set("patch %lld at %gx: JPEG does not decode (%s)", (long long)pid, mag, tjGetErrorStr2(d->tj));
    return 0;
}

/* ---- augmentation ------------------------------------------------------------------------- */

void tr_aug_draw(tr_aug *a, mp_rng *r, const tr_loader_cfg *c)
{
    memset(a, 0, sizeof *a);
    a->brightness = a->contrast = a->saturation = 1.0f;
    if (!c->augment) return;
    a->hflip = mp_rng_below(r, 2);
    a->vflip = mp_rng_below(r, 2);
    a->rot90 = c->rot90 ? (int)mp_rng_below(r, 4) : 0;
    /* torchvision ColorJitter: factors uniform in [1-x, 1+x], hue in [-h, h], random op order. */
    a->brightness = mp_rng_uniformf(r, 1 - c->jitter[0], 1 + c->jitter[0]);
    a->contrast = mp_rng_uniformf(r, 1 - c->jitter[1], 1 + c->jitter[1]);
    a->saturation = mp_rng_uniformf(r, 1 - c->jitter[2], 1 + c->jitter[2]);
    a->hue = mp_rng_uniformf(r, -c->jitter[3], c->jitter[3]);
    for (int i = 0; i < 4; i++) a->order[i] = i;
    mp_rng_shuffle_u32(r, (uint32_t *)a->order, 4);
}

static void rgb_to_hsv(float r, float g, float b, float *h, float *s, float *v)
{
    float mx = fmaxf(r, fmaxf(g, b)), mn = fminf(r, fminf(g, b)), d = mx - mn;
    *v = mx;
    *s = mx > 0 ? d / mx : 0;
    if (d <= 0) {
        *h = 0;
        return;
    }
    float hh;
    if (mx == r) hh = (g - b) / d;
    else if (mx == g) hh = 2 + (b - r) / d;
    else hh = 4 + (r - g) / d;
    hh /= 6;
    *h = hh - floorf(hh);
}

static void hsv_to_rgb(float h, float s, float v, float *r, float *g, float *b)
{
    float h6 = h * 6;
    int i = (int)floorf(h6) % 6;
    float f = h6 - floorf(h6), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i) {
    case 0: *r = v, *g = t, *b = p; break;
    case 1: *r = q, *g = v, *b = p; break;
    case 2: *r = p, *g = v, *b = t; break;
    case 3: *r = p, *g = q, *b = v; break;
    case 4: *r = t, *g = p, *b = v; break;
    default: *r = v, *g = p, *b = q; break;
    }
}

static float clamp01(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* Colour jitter on an HWC float image in [0,1] (torchvision's functional definitions). */
static void jitter(float *im, int npx, const tr_aug *a)
{
    for (int oi = 0; oi < 4; oi++) {
        int op = a->order[oi];
        if (op == 0 && a->brightness != 1.0f) {
            for (int i = 0; i < npx * 3; i++) im[i] = clamp01(im[i] * a->brightness);
        } else if (op == 1 && a->contrast != 1.0f) {
            double m = 0;
            for (int i = 0; i < npx; i++) m += 0.299f * im[3 * i] + 0.587f * im[3 * i + 1] + 0.114f * im[3 * i + 2];
            float mean = (float)(m / npx), c = a->contrast;
            for (int i = 0; i < npx * 3; i++) im[i] = clamp01(c * im[i] + (1 - c) * mean);
        } else if (op == 2 && a->saturation != 1.0f) {
            float s = a->saturation;
            for (int i = 0; i < npx; i++) {
                float *p = im + 3 * i, gr = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
                for (int c = 0; c < 3; c++) p[c] = clamp01(s * p[c] + (1 - s) * gr);
            }
        } else if (op == 3 && a->hue != 0.0f) {
            for (int i = 0; i < npx; i++) {
                float *p = im + 3 * i, h, s, v;
                rgb_to_hsv(p[0], p[1], p[2], &h, &s, &v);
                h += a->hue;
                h -= floorf(h);
                hsv_to_rgb(h, s, v, &p[0], &p[1], &p[2]);
            }
        }
    }
}

/* Source pixel of output (x, y) under flips then rot90 (k quarter turns counter-clockwise). */
void tr_dihedral_src(int x, int y, int n, int hflip, int vflip, int rot, int *sx, int *sy)
{
    int u = x, v = y;
    for (int k = 0; k < rot; k++) { /* inverse of one CCW turn: (x,y) ← (n-1-y, x) */
        int t = u;
        u = n - 1 - v;
        v = t;
    }
    if (vflip) v = n - 1 - v;
    if (hflip) u = n - 1 - u;
    *sx = u;
    *sy = v;
}

void tr_turn_map(float *dst, const float *src, int C, int n, uint8_t xd)
{
    int hf = xd & 1, rot = xd >> 1;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            int sx, sy;
            tr_dihedral_src(x, y, n, hf, 0, rot, &sx, &sy);
            for (int c = 0; c < C; c++) dst[((size_t)c * n + y) * n + x] = src[((size_t)c * n + sy) * n + sx];
        }
}

void tr_augment_image(const uint8_t *rgb, int n, const tr_aug *a, int extra_hflip, int extra_rot, const float mean[3],
                      const float std[3], float *out, float *work)
{
    int npx = n * n;
    for (int i = 0; i < npx * 3; i++) work[i] = rgb[i] * (1.0f / 255.0f);
    jitter(work, npx, a);
    int hf = a->hflip, vf = a->vflip, rot = a->rot90;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            int sx, sy, tx = x, ty = y;
            /* the extra (teacher-view) transform is applied after the shared one */
            if (extra_rot || extra_hflip) tr_dihedral_src(x, y, n, extra_hflip, 0, extra_rot, &tx, &ty);
            tr_dihedral_src(tx, ty, n, hf, vf, rot, &sx, &sy);
            const float *p = work + 3 * ((size_t)sy * n + sx);
            for (int c = 0; c < 3; c++) out[(size_t)c * npx + (size_t)y * n + x] = (p[c] - mean[c]) / std[c];
        }
}

/* ---- worker ------------------------------------------------------------------------------- */

static void batch_alloc(tr_batch *b, const tr_loader *L)
{
    int B = L->cfg.batch;
    size_t s0 = (size_t)3 * L->size[0] * L->size[0], s1 = (size_t)3 * L->size[1] * L->size[1];
    b->x = mp_xmalloc(sizeof(float) * B * s0);
    b->xp = L->cfg.mag[1] > 0 ? mp_xmalloc(sizeof(float) * B * s1) : NULL;
    b->xt = L->cfg.teacher_view ? mp_xmalloc(sizeof(float) * B * s0) : NULL;
    b->xd = NULL; /* allocated by the worker while extra_dihedral is on */
    b->y = mp_xmalloc(sizeof(int) * B);
    b->idx = mp_xmalloc(sizeof(int) * B);
    b->slide = mp_xmalloc(sizeof(int) * B);
    b->patch_id = mp_xmalloc(sizeof(int64_t) * B);
}

static void batch_free(tr_batch *b)
{
    free(b->x);
    free(b->xp);
    free(b->xt);
    free(b->xd);
    free(b->y);
    free(b->idx);
    free(b->slide);
    free(b->patch_id);
}

static void *worker(void *arg)
{
    tr_loader *L = arg;
    const tr_loader_cfg *c = &L->cfg;
    mp_db *db = db_open(L->db_path, DB_OPEN_READONLY);
    db_image_reader *rd[2] = {NULL, NULL};
    decoder dec = {0};
    int maxs = L->size[0] > L->size[1] ? L->size[0] : L->size[1];
    float *work = mp_xmalloc(sizeof(float) * 3 * maxs * maxs);
    int err = !db;
    if (!err) {
        rd[0] = db_image_reader_new(db, c->mag[0]);
        err = !rd[0];
        if (!err && c->mag[1] > 0) err = !(rd[1] = db_image_reader_new(db, c->mag[1]));
    }
    for (int bi = 0; !err; bi++) {
        pthread_mutex_lock(&L->mu);
        while (!L->stop && L->count == NSLOT) pthread_cond_wait(&L->cv, &L->mu);
        int stop = L->stop || bi >= L->nbatches;
        int slot = L->head;
        pthread_mutex_unlock(&L->mu);
        if (stop) break;
        tr_batch *b = &L->slot[slot];
        int start = bi * c->batch, n = L->n - start < c->batch ? L->n - start : c->batch;
        b->n = n;
        if (!c->extra_dihedral && b->xd) {
            free(b->xd);
            b->xd = NULL;
        }
        for (int j = 0; j < n && !err; j++) {
            int idx = (int)L->order[start + j];
            const db_item *it = &L->items[idx];
            b->idx[j] = idx;
            b->y[j] = it->label;
            b->slide[j] = it->slide;
            b->patch_id[j] = it->patch_id;
            mp_rng r;
            mp_rng_derive(&r, c->seed, RNG_AUG, (uint64_t)(c->aug_period > 0 ? L->epoch % c->aug_period : L->epoch),
                          (uint64_t)it->patch_id);
            tr_aug a;
            tr_aug_draw(&a, &r, c);
            int xh = 0, xr = 0;
            if (c->extra_dihedral) {
                if (!b->xd) b->xd = mp_xmalloc((size_t)c->batch);
                /* drawn from the real epoch, so every epoch turns a reused draw differently */
                mp_rng r3;
                mp_rng_derive(&r3, c->seed, RNG_XDIH, (uint64_t)L->epoch, (uint64_t)it->patch_id);
                xh = (int)mp_rng_below(&r3, 2), xr = (int)mp_rng_below(&r3, 4);
                b->xd[j] = (uint8_t)(xh | xr << 1);
            }
            for (int v = 0; v < 2 && !err; v++) {
                if (!rd[v] || (v == 1 && L->skip_paired)) continue;
                const uint8_t *data;
                size_t len;
                int png;
                if (db_image_read(rd[v], it->patch_id, &data, &len, &png) < 0 ||
                    decode(&dec, data, len, png, L->size[v], it->patch_id, c->mag[v]) < 0) {
                    err = 1;
                    break;
                }
                size_t sz = (size_t)3 * L->size[v] * L->size[v];
                tr_augment_image(dec.rgb, L->size[v], &a, v ? 0 : xh, v ? 0 : xr, c->mean[v], c->std[v], (v ? b->xp : b->x) + j * sz,
                                 work);
                if (v == 0 && b->xt) {
                    /* CRCKD's teacher view: the same augmented patch with extra rot90 + flip noise. */
                    mp_rng r2;
                    mp_rng_derive(&r2, c->seed, RNG_TVIEW, (uint64_t)L->epoch, (uint64_t)it->patch_id);
                    int hf = (int)mp_rng_below(&r2, 2), rot = (int)mp_rng_below(&r2, 4);
                    tr_augment_image(dec.rgb, L->size[0], &a, hf, rot, c->mean[0], c->std[0], b->xt + j * sz, work);
                }
            }
        }
        pthread_mutex_lock(&L->mu);
        if (err) {
            snprintf(L->errmsg, sizeof L->errmsg, "%s", mp_err());
            L->failed = 1;
        } else {
            L->head = (L->head + 1) % NSLOT;
            L->count++;
        }
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
    }
    if (err) {
        pthread_mutex_lock(&L->mu);
        if (!L->failed) {
            snprintf(L->errmsg, sizeof L->errmsg, "%s", mp_err());
            L->failed = 1;
        }
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
    }
    free(work);
    free(dec.rgb);
    if (dec.tj) tjDestroy(dec.tj);
    db_image_reader_free(rd[0]);
    db_image_reader_free(rd[1]);
    db_close(db);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------------- */

tr_loader *tr_loader_new(mp_db *db, const tr_loader_cfg *cfg, const db_item *items, int n)
{
    if (n <= 0) {
        mp_err_set("%s: no patches to load", db_path(db));
        return NULL;
    }
    if (cfg->batch <= 0) {
        mp_err_set("loader: batch size must be positive");
        return NULL;
    }
    tr_loader *L = mp_xcalloc(1, sizeof *L);
    L->cfg = *cfg;
    L->db_path = mp_xstrdup(db_path(db));
    L->items = mp_xmalloc(sizeof(db_item) * n);
    memcpy(L->items, items, sizeof(db_item) * n);
    L->n = n;
    for (int v = 0; v < 2; v++) {
        if (v == 1 && cfg->mag[1] <= 0) continue;
        if (db_items_image_side(db, items, n, cfg->mag[v], &L->size[v]) < 0) {
            tr_loader_free(L);
            return NULL;
        }
    }
    L->order = mp_xmalloc(sizeof(uint32_t) * n);
    for (int i = 0; i < NSLOT; i++) batch_alloc(&L->slot[i], L);
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    L->epoch = -1;
    return L;
}

int tr_loader_size(const tr_loader *L, int view) { return L->size[view]; }

static void stop_worker(tr_loader *L);

void tr_loader_set_reuse(tr_loader *L, int period, int extra_dihedral)
{
    stop_worker(L); /* takes effect from the next tr_loader_start */
    L->cfg.aug_period = period;
    L->cfg.extra_dihedral = extra_dihedral;
}

void tr_loader_skip_paired(tr_loader *L, int skip)
{
    stop_worker(L); /* takes effect from the next tr_loader_start */
    L->skip_paired = skip;
}
int tr_loader_count(const tr_loader *L) { return L->n; }

void tr_loader_set_weights(tr_loader *L, const double *w)
{
    stop_worker(L); /* takes effect from the next tr_loader_start */
    free(L->cdf);
    L->cdf = NULL;
    if (!w || L->n == 0) return;
    L->cdf = mp_xmalloc(sizeof(double) * L->n);
    double acc = 0;
    for (int i = 0; i < L->n; i++) L->cdf[i] = acc += w[i] > 0 ? w[i] : 0;
    if (!(acc > 0)) { /* nothing to draw from: keep the permutation */
        free(L->cdf);
        L->cdf = NULL;
    }
}
int tr_loader_batches(const tr_loader *L) { return (L->n + L->cfg.batch - 1) / L->cfg.batch; }

static void stop_worker(tr_loader *L)
{
    if (!L->running) return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(L->th, NULL);
    L->running = 0;
}

int tr_loader_start(tr_loader *L, int epoch)
{
    stop_worker(L);
    L->epoch = epoch;
    for (int i = 0; i < L->n; i++) L->order[i] = (uint32_t)i;
    if (L->cdf) {
        /* n draws with replacement: the first item whose cumulative weight passes u */
        mp_rng r;
        mp_rng_derive(&r, L->cfg.seed, RNG_SHUFFLE, (uint64_t)epoch, 1);
        double tot = L->cdf[L->n - 1];
        for (int i = 0; i < L->n; i++) {
            double u = mp_rng_uniform(&r) * tot;
            int lo = 0, hi = L->n - 1;
            while (lo < hi) {
                int mid = lo + (hi - lo) / 2;
                if (L->cdf[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            L->order[i] = (uint32_t)lo;
        }
    } else if (L->cfg.shuffle) {
        mp_rng r;
        mp_rng_derive(&r, L->cfg.seed, RNG_SHUFFLE, (uint64_t)epoch, 0);
        mp_rng_shuffle_u32(&r, L->order, (uint32_t)L->n);
    }
    L->nbatches = tr_loader_batches(L);
    L->head = L->tail = L->count = L->consumed = L->held = 0;
    L->stop = L->failed = 0;
    L->errmsg[0] = 0;
    if (pthread_create(&L->th, NULL, worker, L) != 0) return mp_err_set("loader: cannot start the decoding thread");
    L->running = 1;
    return 0;
}

int tr_loader_next(tr_loader *L, const tr_batch **out)
{
    *out = NULL;
    pthread_mutex_lock(&L->mu);
    if (L->held) { /* release the batch handed out last time */
        L->tail = (L->tail + 1) % NSLOT;
        L->count--;
        L->held = 0;
        pthread_cond_broadcast(&L->cv);
    }
    if (L->consumed >= L->nbatches) {
        pthread_mutex_unlock(&L->mu);
        stop_worker(L);
        return 0;
    }
    while (L->count == 0 && !L->failed) pthread_cond_wait(&L->cv, &L->mu);
    if (L->count == 0 && L->failed) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", L->errmsg);
        L->consumed = L->nbatches;
        pthread_mutex_unlock(&L->mu);
        stop_worker(L);
        return mp_err_set("%s", msg);
    }
    *out = &L->slot[L->tail];
    L->consumed++;
    L->held = 1;
    pthread_mutex_unlock(&L->mu);
    return 1;
}

void tr_loader_free(tr_loader *L)
{
    if (!L) return;
    stop_worker(L);
    if (L->order) {
        for (int i = 0; i < NSLOT; i++) batch_free(&L->slot[i]);
        pthread_mutex_destroy(&L->mu);
        pthread_cond_destroy(&L->cv);
    }
    free(L->order);
    free(L->cdf);
    free(L->items);
    free(L->db_path);
    free(L);
}

/* Channel mean/std of un-augmented images (up to max_images, evenly spaced) in [0,1] units. */
int tr_channel_stats(mp_db *db, const db_item *items, int n, double mag, int max_images, float mean[3], float std[3])
{
    db_image_reader *rd = db_image_reader_new(db, mag);
    if (!rd) return -1;
    decoder dec = {0};
    double s[3] = {0}, ss[3] = {0}, cnt = 0;
    int size = 0, rc = 0;
    if (db_items_image_side(db, items, n < 1 ? 0 : 1, mag, &size) < 0) rc = -1;
    int m = n < max_images ? n : max_images;
    for (int t = 0; t < m && !rc; t++) {
        const db_item *it = &items[(int64_t)t * n / m];
        const uint8_t *data;
        size_t len;
        int png;
        if (db_image_read(rd, it->patch_id, &data, &len, &png) < 0 || decode(&dec, data, len, png, size, it->patch_id, mag) < 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < size * size; i++)
            for (int c = 0; c < 3; c++) {
                double v = dec.rgb[3 * i + c] / 255.0;
                s[c] += v;
                ss[c] += v * v;
            }
        cnt += size * size;
    }
    if (!rc && cnt > 0)
        for (int c = 0; c < 3; c++) {
            mean[c] = (float)(s[c] / cnt);
            double var = ss[c] / cnt - (s[c] / cnt) * (s[c] / cnt);
            std[c] = (float)sqrt(var > 1e-8 ? var : 1e-8);
        }
    free(dec.rgb);
    if (dec.tj) tjDestroy(dec.tj);
    db_image_reader_free(rd);
    return rc;
}
