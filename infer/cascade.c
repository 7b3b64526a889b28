/* infer/cascade.c — the student -> teacher cascade's pieces that are not the slide run: whether
 * two models can form one (same classes, same square), which cells go to the teacher, and the
 * threshold chosen on a dataset's validation split. The pass itself is in run.c, through the
 * same patch loop as the student's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/dataset.h"
#include "infer/infer.h"

int infer_cascade_check(const infer_model *student, const char *student_path, const infer_model *teacher,
                        const char *teacher_path)
{
    int K = infer_model_classes(student);
    if (infer_model_classes(teacher) != K)
        return mp_err_set("%s: %d classes, the student %s has %d; a cascade needs the same classes", teacher_path,
                          infer_model_classes(teacher), student_path, K);
    char *const *a = infer_model_names(student), *const *b = infer_model_names(teacher);
    for (int k = 0; k < K; k++)
        if (strcasecmp(a[k], b[k]))
            return mp_err_set("%s: class %d is '%s', the student %s's is '%s'; a cascade needs the same classes in "
                              "the same order",
                              teacher_path, k, b[k], student_path, a[k]);
    /* the teacher replaces the student's answer for a cell, so it must look at the same square */
    double us = infer_model_size(student) * 10.0 / infer_model_mag(student);
    double ut = infer_model_size(teacher) * 10.0 / infer_model_mag(teacher);
    if (fabs(ut / us - 1) > 0.01)
        return mp_err_set("%s: its %d px at %gx cover %.4g µm, the student's %d px at %gx %.4g µm; a cascade needs "
                          "the same square",
                          teacher_path, infer_model_size(teacher), infer_model_mag(teacher), ut,
                          infer_model_size(student), infer_model_mag(student), us);
    return 0;
}

static float max_of(const float *p, int K)
{
    float m = p[0];
    for (int k = 1; k < K; k++) m = p[k] > m ? p[k] : m;
    return m;
}

static int argmax_of(const float *p, int K)
{
    int b = 0;
    for (int k = 1; k < K; k++)
        if (p[k] > p[b]) b = k;
    return b;
}

int64_t infer_cascade_select(const float *prob, const uint8_t *valid, int64_t ncell, int K, double threshold, int *out)
{
    int64_t n = 0;
    for (int64_t c = 0; c < ncell; c++)
        if (valid[c] && max_of(prob + (size_t)c * K, K) < threshold) out[n++] = (int)c;
    return n;
}

/* Balanced accuracy from per-class correct and total counts (classes without patches skipped). */
static double bacc(const int64_t *ok, const int64_t *tot, int K)
{
    double s = 0;
    int m = 0;
    for (int k = 0; k < K; k++)
        if (tot[k]) s += (double)ok[k] / tot[k], m++;
    return m ? s / m : 0;
}

static const float *g_conf; /* qsort's comparator has no argument */
static int by_conf(const void *a, const void *b)
{
    float x = g_conf[*(const int64_t *)a], y = g_conf[*(const int64_t *)b];
    if (x != y) return x < y ? -1 : 1;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return i < j ? -1 : i > j;
}

int infer_cascade_choose(const float *ps, const float *pt, const int *labels, int64_t n, int K, double tol,
                         infer_calibration *cal)
{
    memset(cal, 0, sizeof *cal);
    if (n <= 0) return mp_err_set("calibration: no labelled patches");
    if (K < 1 || K > INFER_MAX_CLASSES) return mp_err_set("calibration: %d classes", K);
    float *conf = mp_xmalloc(sizeof(float) * (size_t)n);
    int64_t *ord = mp_xmalloc(sizeof(int64_t) * (size_t)n);
    int64_t tot[INFER_MAX_CLASSES] = {0}, ok_s[INFER_MAX_CLASSES] = {0}, ok_t[INFER_MAX_CLASSES] = {0};
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= K) {
            free(conf);
            free(ord);
            return mp_err_set("calibration: label %d outside 0..%d", labels[i], K - 1);
        }
        conf[i] = max_of(ps + (size_t)i * K, K);
        ord[i] = i;
        tot[labels[i]]++;
        ok_s[labels[i]] += argmax_of(ps + (size_t)i * K, K) == labels[i];
        ok_t[labels[i]] += argmax_of(pt + (size_t)i * K, K) == labels[i];
    }
    cal->n = n;
    cal->bacc_student = bacc(ok_s, tot, K);
    cal->bacc_teacher = bacc(ok_t, tot, K);
    g_conf = conf;
    qsort(ord, (size_t)n, sizeof *ord, by_conf);
    /* walk the thresholds upwards: at each boundary between distinct confidences every patch
     * below it is the teacher's; the first boundary that is good enough sends the fewest */
    int64_t cur[INFER_MAX_CLASSES];
    memcpy(cur, ok_s, sizeof cur);
    double want = cal->bacc_teacher - tol - 1e-12;
    int64_t k = 0;
    double b = bacc(cur, tot, K);
    while (b < want && k < n) {
        float v = conf[ord[k]];
        for (; k < n && conf[ord[k]] == v; k++) { /* a tie goes to the teacher together */
            int64_t i = ord[k];
            int y = labels[i];
            cur[y] += (argmax_of(pt + (size_t)i * K, K) == y) - (argmax_of(ps + (size_t)i * K, K) == y);
        }
        b = bacc(cur, tot, K);
    }
    /* halfway between the last confidence sent and the next one kept */
    cal->threshold = k == 0 ? 0 : k == n ? INFER_CASCADE_ALL : 0.5 * ((double)conf[ord[k - 1]] + conf[ord[k]]);
    cal->bacc_cascade = b;
    cal->fraction = (double)k / n;
    free(conf);
    free(ord);
    return 0;
}

/* One stored image as side x side RGB: the dataset's JPEG or PNG through libvips. */
static int decode(const uint8_t *data, size_t len, int side, uint8_t *out, const char *db, int64_t pid, double mag,
                  const char *who)
{
    VipsImage *im = vips_image_new_from_buffer(data, len, "", NULL);
    if (!im) {
        free(mp_vips_err_take(NULL)); /* take it (the buffer is the process's): not clear() */
        return mp_err_set("%s: patch %lld's %gx image does not decode", db, (long long)pid, mag);
    }
    int w = vips_image_get_width(im), h = vips_image_get_height(im), bands = vips_image_get_bands(im);
    if (w != side || h != side || bands != 3 || vips_image_get_format(im) != VIPS_FORMAT_UCHAR) {
        g_object_unref(im);
        return mp_err_set("%s: patch %lld's %gx image is %dx%d px with %d bands, the %s takes %dx%d RGB; tile the "
                          "dataset at its size",
                          db, (long long)pid, mag, w, h, bands, who, side, side);
    }
    size_t n = 0;
    void *px = vips_image_write_to_memory(im, &n);
    g_object_unref(im);
    if (!px || n != (size_t)side * side * 3) {
        g_free(px);
        free(mp_vips_err_take(NULL)); /* take it (the buffer is the process's): not clear() */
        return mp_err_set("%s: patch %lld's %gx image does not decode", db, (long long)pid, mag);
    }
    memcpy(out, px, n);
    g_free(px);
    return 0;
}

/* Probabilities of model m for the items' images at its magnification, in chunks. */
static int predict_items(infer_model *m, mp_db *db, const char *db_path, const int64_t *pids, int64_t n, float *prob,
                         const char *who)
{
    double mag = infer_model_mag(m);
    int S = infer_model_size(m), K = infer_model_classes(m);
    db_image_reader *r = db_image_reader_new(db, mag);
    if (!r) return -1;
    enum { CHUNK = 32 };
    uint8_t *rgb = mp_xmalloc((size_t)CHUNK * S * S * 3);
    int rc = 0;
    for (int64_t i0 = 0; i0 < n && !rc; i0 += CHUNK) {
        int nb = (int)(n - i0 < CHUNK ? n - i0 : CHUNK);
        for (int b = 0; b < nb && !rc; b++) {
            const uint8_t *data;
            size_t len;
            int png;
            if (db_image_read(r, pids[i0 + b], &data, &len, &png) ||
                decode(data, len, S, rgb + (size_t)b * S * S * 3, db_path, pids[i0 + b], mag, who))
                rc = -1;
        }
        if (!rc && infer_model_predict(m, rgb, nb, prob + (size_t)i0 * K)) rc = mp_err_prefix("%s", who);
    }
    free(rgb);
    db_image_reader_free(r);
    return rc;
}

int infer_cascade_split_ok(const char *db_path, const char *split)
{
    if (!strcmp(split, "test"))
        return mp_err_set("%s: the cascade threshold is chosen on the val split, never on test (the test figures "
                          "would no longer be held out)",
                          db_path);
    if (strcmp(split, "val"))
        return mp_err_set("%s: the cascade threshold is chosen on the val split, not '%s'%s", db_path, split,
                          !strcmp(split, "train") ? " (the models were fit on it: their confidence there is optimistic)"
                                                  : "");
    return 0;
}

int infer_cascade_calibrate(infer_model *student, infer_model *teacher, const char *db_path, const char *split,
                            double tol, infer_calibration *cal)
{
    memset(cal, 0, sizeof *cal);
    if (infer_cascade_split_ok(db_path, split)) return -1;
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) return -1;
    db_itemset set;
    memset(&set, 0, sizeof set);
    int rc = db_items_load(db, split, 0, &set);
    int K = infer_model_classes(student);
    char *const *names = infer_model_names(student);
    if (!rc && set.nclasses != K) rc = mp_err_set("%s: %d classes, the models %d", db_path, set.nclasses, K);
    for (int k = 0; !rc && k < K; k++)
        if (strcasecmp(set.class_names[k], names[k]))
            rc = mp_err_set("%s: class %d is '%s', the models' is '%s'", db_path, k, set.class_names[k], names[k]);
    int64_t *pids = mp_xmalloc(sizeof(int64_t) * (size_t)(set.n + 1));
    int *labels = mp_xmalloc(sizeof(int) * (size_t)(set.n + 1));
    int64_t n = 0;
    for (int i = 0; !rc && i < set.n; i++)
        if (set.items[i].label >= 0) {
            pids[n] = set.items[i].patch_id;
            labels[n++] = set.items[i].label;
        }
    if (!rc && n == 0)
        rc = mp_err_set("%s: the %s split has no labelled patches (magpie db %s split ..., or give "
                        "--cascade-threshold)",
                        db_path, split, db_path);
    float *ps = mp_xmalloc(sizeof(float) * (size_t)(n + 1) * K), *pt = mp_xmalloc(sizeof(float) * (size_t)(n + 1) * K);
    if (!rc && (predict_items(student, db, db_path, pids, n, ps, "student") ||
                predict_items(teacher, db, db_path, pids, n, pt, "teacher")))
        rc = -1;
    if (!rc && infer_cascade_choose(ps, pt, labels, n, K, tol, cal)) rc = mp_err_prefix("%s", db_path);
    free(ps);
    free(pt);
    free(pids);
    free(labels);
    db_itemset_free(&set);
    db_close(db);
    return rc;
}

/* ---- calibration on slides, against the teacher ---- */

typedef struct {
    float *ps, *pt;
    int64_t n, cap;
    int K;
} cal_cells;

static int take_cells(void *arg, const float *first, const float *final, const uint8_t *valid, int64_t ncell, int K)
{
    cal_cells *c = arg;
    c->K = K;
    for (int64_t i = 0; i < ncell; i++) {
        if (!valid[i]) continue;
        if (c->n == c->cap) {
            int64_t cap = c->cap ? 2 * c->cap : 4096;
            float *a = realloc(c->ps, sizeof(float) * (size_t)cap * K), *b = a ? realloc(c->pt, sizeof(float) * (size_t)cap * K) : NULL;
            if (a) c->ps = a;
            if (b) c->pt = b;
            if (!a || !b) return mp_err_set("out of memory for %lld calibration cells", (long long)cap);
            c->cap = cap;
        }
        memcpy(c->ps + (size_t)c->n * K, first + (size_t)i * K, sizeof(float) * K);
        memcpy(c->pt + (size_t)c->n * K, final + (size_t)i * K, sizeof(float) * K);
        c->n++;
    }
    return 0;
}

int infer_cascade_calibrate_slides(infer_model *student, const char *student_path, const infer_cascade *cas,
                                   char *const *slides, int nslides, const infer_opts *base, double tol,
                                   infer_calibration *cal)
{
    memset(cal, 0, sizeof *cal);
    if (nslides < 1) return mp_err_set("calibration: no slides");
    cal_cells c = {0};
    infer_cascade all = *cas;
    all.threshold = INFER_CASCADE_ALL; /* the teacher on every cell: its answer is the reference */
    infer_opts o = *base;
    o.cascade = &all;
    o.capture = take_cells, o.capture_arg = &c;
    o.db = NULL, o.name = NULL, o.force = 1, o.on_batch = NULL;
    o.progress = MP_PROGRESS_NONE;
    int rc = 0;
    for (int i = 0; i < nslides && !rc; i++) {
        infer_result res;
        if (infer_slide(student, student_path, slides[i], "", &o, &res)) rc = mp_err_prefix("calibration slide");
    }
    if (!rc && c.n == 0)
        rc = mp_err_set("calibration: no tissue cell on the %d calibration slide%s", nslides, nslides == 1 ? "" : "s");
    int *labels = rc ? NULL : mp_xmalloc(sizeof(int) * (size_t)c.n);
    for (int64_t i = 0; !rc && i < c.n; i++) labels[i] = argmax_of(c.pt + (size_t)i * c.K, c.K);
    if (!rc && infer_cascade_choose(c.ps, c.pt, labels, c.n, c.K, tol, cal)) rc = mp_err_prefix("calibration");
    free(labels);
    free(c.ps);
    free(c.pt);
    return rc;
}
