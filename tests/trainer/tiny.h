/* tests/trainer/tiny.h — a tiny synthetic dataset written straight into a magpie DB (SQLite +
 * JPEG/PNG blobs), so trainer tests need neither slides nor the tiler. Class 0 is a fine
 * checkerboard, class 1 coarse blobs, class 2 a medium grid, all of about the same mean colour,
 * so the classes separate at the high magnification and blur together at the low one. */
#ifndef TESTS_TINY_H
#define TESTS_TINY_H

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/rng.h"
#include "db/db.h"
#include "db/sql.h"

typedef struct {
    int slides, per_slide, classes;
    int hi, lo;           /* pixel sizes at mag 10 and 1.25 (lo = hi / 8) */
    int png;              /* store PNG (lossless) instead of JPEG */
    int unlabeled_slides; /* extra slides without labels, split 'unlabeled' */
    uint64_t seed;
} tiny_cfg;

static void tiny_pattern(uint8_t *rgb, int n, int cls, mp_rng *r)
{
    int period = cls == 0 ? 2 : cls == 1 ? 16 : 6;
    int ox = (int)mp_rng_below(r, 16), oy = (int)mp_rng_below(r, 16);
    float tint = mp_rng_uniformf(r, -20, 20);
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            int on = (((x + ox) / period) + ((y + oy) / period)) & 1;
            float v = on ? 90 : 200;
            v += tint + (float)(mp_rng_uniform(r) * 20 - 10);
            uint8_t *p = rgb + 3 * (y * n + x);
            p[0] = (uint8_t)(v * 0.9f + 20);
            p[1] = (uint8_t)(v * 0.6f);
            p[2] = (uint8_t)(v * 0.8f + 30);
        }
}

/* 8×8 (or f×f) box average, rounded. */
static void tiny_down(const uint8_t *in, int n, int f, uint8_t *out)
{
    int m = n / f;
    for (int y = 0; y < m; y++)
        for (int x = 0; x < m; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int j = 0; j < f; j++)
                    for (int i = 0; i < f; i++) s += in[3 * ((y * f + j) * n + x * f + i) + c];
                out[3 * (y * m + x) + c] = (uint8_t)((s + f * f / 2) / (f * f));
            }
}

static int tiny_encode(const uint8_t *rgb, int n, int png, unsigned char **buf, unsigned long *len)
{
    if (png) {
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        im.width = n;
        im.height = n;
        im.format = PNG_FORMAT_RGB;
        png_alloc_size_t sz = 0;
        png_image_write_to_memory(&im, NULL, &sz, 0, rgb, 0, NULL);
        *buf = malloc(sz);
        if (!png_image_write_to_memory(&im, *buf, &sz, 0, rgb, 0, NULL)) return -1;
        *len = sz;
        return 0;
    }
    tjhandle tj = tjInitCompress();
    *buf = NULL;
    *len = 0;
    int rc = tjCompress2(tj, rgb, n, 0, n, TJPF_RGB, buf, len, TJSAMP_444, 95, 0);
    tjDestroy(tj);
    return rc;
}

/* Writes the dataset: slides s00.. with patient = slide, labels round-robin over classes;
 * splits: slide i % 5 == 3 → val, == 4 → test, else train; then unlabeled slides. */
static int tiny_make(const char *path, const tiny_cfg *c)
{
    unlink(path);
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    if (!db) return -1;
    int bad = db_exec(db, "BEGIN") != 0; /* any failed step fails the whole dataset (a test fails, never skips) */
    for (int k = 0; k < c->classes; k++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO classes VALUES (%d, 'class%d')", k, k);
        bad |= db_exec(db, sql) != 0;
    }
    sqlite3_stmt *ins = db_prepare(db, "INSERT INTO images(patch_id, mag, width, height, level, scale, codec, data) "
                                       "VALUES (?, ?, ?, ?, 0, 1, ?, ?)");
    uint8_t *hi = malloc(3 * c->hi * c->hi), *lo = malloc(3 * c->lo * c->lo);
    int total = c->slides + c->unlabeled_slides;
    int64_t pid = 0;
    for (int s = 0; s < total; s++) {
        int cls = s % c->classes, unl = s >= c->slides;
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO slides(id, path, name, patient, fingerprint, label) VALUES (%d, '/t/s%02d', 's%02d', 'p%02d', 'f', %s)",
                 s + 1, s, s, s, "NULL");
        bad |= db_exec(db, sql) != 0;
        if (!unl) {
            snprintf(sql, sizeof sql, "UPDATE slides SET label = 'class%d' WHERE id = %d", cls, s + 1);
            bad |= db_exec(db, sql) != 0;
        }
        snprintf(sql, sizeof sql, "INSERT INTO splits VALUES (%d, '%s')", s + 1,
                 unl ? "unlabeled" : s % 5 == 3 ? "val" : s % 5 == 4 ? "test" : "train");
        bad |= db_exec(db, sql) != 0;
        for (int p = 0; p < c->per_slide; p++) {
            pid++;
            snprintf(sql, sizeof sql, "INSERT INTO patches(id, slide_id, gx, gy, x0, y0, size0, tissue) VALUES (%lld, %d, %d, 0, %d, 0, %d, 1)",
                     (long long)pid, s + 1, p, p * c->hi, c->hi);
            bad |= db_exec(db, sql) != 0;
            mp_rng r;
            mp_rng_derive(&r, c->seed, (uint64_t)s, (uint64_t)p, 77);
            tiny_pattern(hi, c->hi, cls, &r);
            tiny_down(hi, c->hi, c->hi / c->lo, lo);
            for (int v = 0; v < 2; v++) {
                unsigned char *buf;
                unsigned long len = 0;
                bad |= tiny_encode(v ? lo : hi, v ? c->lo : c->hi, c->png, &buf, &len) != 0;
                sqlite3_reset(ins);
                sqlite3_bind_int64(ins, 1, pid);
                sqlite3_bind_double(ins, 2, v ? 1.25 : 10.0);
                sqlite3_bind_int(ins, 3, v ? c->lo : c->hi);
                sqlite3_bind_int(ins, 4, v ? c->lo : c->hi);
                sqlite3_bind_text(ins, 5, c->png ? "png" : "jpeg", -1, SQLITE_STATIC);
                sqlite3_bind_blob(ins, 6, buf, (int)len, SQLITE_TRANSIENT);
                bad |= sqlite3_step(ins) != SQLITE_DONE;
                if (c->png) free(buf);
                else tjFree(buf);
            }
        }
    }
    sqlite3_finalize(ins);
    free(hi);
    free(lo);
    int rc = bad ? -1 : db_exec(db, "COMMIT");
    db_close(db);
    return rc;
}

#endif
