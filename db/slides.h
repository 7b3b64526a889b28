/* db/slides.h — naming and removing slides (curation). A slide is named by its full path, or
 * by its name (file name without directory and extension) only when no other slide shares it;
 * removing one takes its patches, images, tile errors, labels, annotations, split, fold and
 * predictions with it in one transaction. */
#ifndef DB_SLIDES_H
#define DB_SLIDES_H

#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

/* As db_find_slide (path, else id when allow_id and all digits, else name), but tells "no such
 * slide" apart from an error: 1 + *id found, 0 none, -1 + mp_err (an argument naming several
 * slides — the message lists every candidate — or a SQLite error). */
int db_slide_match(mp_db *db, const char *arg, int allow_id, int64_t *id);

/* Remove slides by id in one transaction (the caller resolves names first). Predictions that
 * pointed at them are deleted too (they were made on the removed slide's file). Returns 0, or
 * -1 + mp_err with nothing removed. *patches_out (may be NULL) gets the patches removed. */
int db_slides_remove(mp_db *db, const int64_t *ids, int n, int64_t *patches_out);

/* A slide as the slides table records it. Strings are borrowed until the callback returns;
 * the ones marked may be NULL. */
typedef struct {
    int64_t id;
    const char *name, *path, *status;
    const char *kind;          /* brightfield | fluorescence; NULL until the slide was read */
    const char *vendor;        /* "-" when unknown */
    int width, height;         /* level 0; 0 until read */
    int has_mpp;
    double mpp;                /* mpp_x, with has_mpp */
    const char *mpp_source;    /* NULL when unknown */
    int64_t patches, bad_tiles;
    const char *error;         /* "" when none */
    const char *label, *patient; /* "" when none */
    const char *images;        /* images per magnification, "10x:120 1.25x:120" (highest first), or "" */
    const char *json;          /* the row as one JSON object (db slides --json) */
} db_slide_row;

/* The slides in id order (id 0, path NULL), or the one with this id or path. Calls fn per row;
 * fn's non-zero return stops the walk and is returned. 0, or -1 + mp_err. */
int db_slides_each(mp_db *db, int64_t id, const char *path, int (*fn)(void *ctx, const db_slide_row *r), void *ctx);

/* The stored tissue mask (a PNG) of the slide with this id, or (id 0) this path: 1 + *png
 * (malloc'd, *len bytes; NULL when the slide has no mask yet), 0 no such slide, -1 + mp_err. */
int db_slide_mask(mp_db *db, int64_t id, const char *path, void **png, size_t *len);
/* The level-0 pixels per mask pixel of that slide's mask (0 when unknown), or -1 + mp_err. */
double db_slide_mask_downsample(mp_db *db, int64_t id);

/* The slides the tiler finished, not patch imports (their "path" is a patch image), in id
 * order: fn(ctx, id, path) per slide, its non-zero return stops the walk and is returned.
 * 0, or -1 + mp_err. */
int db_tiled_slides(mp_db *db, int (*fn)(void *ctx, int64_t id, const char *path), void *ctx);

typedef struct {
    int64_t id, x0, y0;
    double size0, tissue;
} db_patch_place;

/* The first `limit` patches of a slide in id order, where they sit: fn per patch (its non-zero
 * return stops the walk and is returned). 0, or -1 + mp_err. */
int db_slide_patches(mp_db *db, int64_t slide_id, int limit, int (*fn)(void *ctx, const db_patch_place *p), void *ctx);

/* A patch's stored image at mag (within 1e-6), or (mag 0) its finest: 1 + *data (malloc'd, *len
 * bytes) and its codec ("jpeg", "png") in codec, 0 when there is none, -1 + mp_err. */
int db_patch_image(mp_db *db, int64_t patch_id, double mag, char *codec, size_t cap, void **data, size_t *len);

/* The MPP (*has_mpp 0 when unknown) and path of the slide with this id: 1, 0 no such slide, -1. */
int db_slide_mpp_path(mp_db *db, int64_t id, int *has_mpp, double *mpp, char *path, size_t cap);

#endif
