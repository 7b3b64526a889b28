/* db/tiling.h — typed writes and reads of the tiling tables (slides, patches, images,
 * tile_errors) used by the tiler. Every function is one statement or one transaction, so a
 * crash leaves the dataset at a transaction boundary: a slide is 'done' only after all of
 * its patches are committed. Errors: -1 + mp_err ("DB: reason"). */
#ifndef MP_DB_TILING_H
#define MP_DB_TILING_H

#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

/* One tiler per dataset at a time. Two locks, both released by the kernel when the process ends
 * however it ends (kill -9 included), so resuming needs no clean-up:
 *  - an exclusive flock on a lock file beside the dataset, named after its real path (symlinks
 *    resolved, also when the dataset does not exist yet) plus ".tile-lock": it covers creating
 *    the dataset, and is what an outside `flock DB.tile-lock` meets;
 *  - an OFD lock on the dataset file itself (created empty when new), which every name of the
 *    file meets, hard links included.
 * A lock held elsewhere is waited for up to wait_s seconds, then refused with a one-line error
 * naming the dataset. Returns a handle to keep while tiling (until exit, or db_tile_unlock) or
 * -1 + mp_err. */
int db_tile_lock(const char *db_path, double wait_s);
/* The same; create 0 leaves a new dataset uncreated (db merge renames a complete one into
 * place, and a kill must not leave an empty one). Only the path lock covers it until then. */
int db_tile_lock_new(const char *db_path, double wait_s, int create);
/* Releases both locks (a handle < 0 is ignored). Not close(): see db_tile_lock's descriptors. */
void db_tile_unlock(int lock);
/* 1 when a tiler holds either lock now, 0 when not, -1 + mp_err when it cannot be told. */
int db_tile_lock_held(const char *db_path);
/* The lock file's path for a dataset path (what db_tile_lock locks). 0, or -1 + mp_err. */
int db_tile_lock_path(const char *db_path, char *out, size_t cap);

/* What the dataset remembers of a slide (for skip / redo / resume decisions). */
typedef struct {
    int64_t id;
    char fingerprint[64];
    char params_hash[64];
    char status[16]; /* pending | tiling | done | failed */
} db_slide_state;

/* Look a slide up by its absolute path: 1 found (*st filled), 0 absent, -1 error. */
int db_tiling_find(mp_db *db, const char *path, db_slide_state *st);

/* Insert a new slide row (status pending) or, when the row exists with another fingerprint or
 * params hash, delete its patches, images and tile errors and reset it to pending — one
 * transaction. Sets *id. */
int db_tiling_prepare(mp_db *db, const char *path, const char *name, const char *fingerprint,
                      const char *params_json, const char *params_hash, int64_t *id);

/* Slide metadata written when tiling starts (status -> tiling). */
typedef struct {
    const char *vendor;
    int64_t width, height;
    int level_count;
    double mpp_x, mpp_y;
    const char *mpp_source;
    const void *mask_png;
    size_t mask_len;
    int mask_width, mask_height;
    double mask_downsample;
    const char *kind; /* "brightfield" | "fluorescence" (slides.kind) */
} db_slide_meta;

int db_tiling_start(mp_db *db, int64_t id, const db_slide_meta *m);
/* slides.kind alone: for a slide refused before tiling started (its own statement). */
int db_tiling_set_kind(mp_db *db, int64_t id, const char *kind);
/* Status failed with a one-line reason (its own transaction). */
int db_tiling_fail(mp_db *db, int64_t id, const char *error);
/* Status done, counts refreshed from the tables, finished_at set, and the slide's stored region
 * annotations applied to its patches (db_labels_apply) — one transaction. */
int db_tiling_finish(mp_db *db, int64_t id);

/* A slide's patches and unreadable cells: as recorded when it was finished (stored, 0 = the
 * slide row says so), or counted in the tables now (stored = 0). -1 + mp_err on failure. */
int db_tiling_counts(mp_db *db, int64_t id, int stored, int64_t *patches, int64_t *errors);

/* Cells already written for a slide (patches and tile errors): calls fn(gx, gy, arg) for each. */
int db_tiling_done_cells(mp_db *db, int64_t id, void (*fn)(int gx, int gy, void *arg), void *arg);

/* One patch with its images, as the writer receives it from a worker. */
typedef struct {
    double mag;
    int width, height, level;
    double scale;
    const char *codec; /* "jpeg" | "png" */
    const void *data;
    size_t len;
} db_image_rec;

typedef struct {
    int gx, gy;
    int64_t x0, y0;
    double size0, tissue, blur, pen, brightness;
    const char *error; /* non-NULL: the cell could not be read; goes to tile_errors */
    int n_images;
    const db_image_rec *images;
} db_patch_rec;

/* Batch writer: prepared statements held across batches of one slide. */
typedef struct db_tile_writer db_tile_writer;
db_tile_writer *db_tile_writer_new(mp_db *db, int64_t slide_id);
void db_tile_writer_free(db_tile_writer *w); /* accepts NULL */
/* Test hook: fn(arg) runs inside each batch's transaction, just before COMMIT. */
void db_tile_writer_set_hook(db_tile_writer *w, void (*fn)(void *), void *arg);
/* Write n records (patches + images, or tile errors) in one transaction. */
int db_tile_writer_batch(db_tile_writer *w, const db_patch_rec *recs, int n);

#endif
