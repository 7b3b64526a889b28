/* view/internal.h — what view/'s files share: the catalog, the tile cache, the renderers. */
#ifndef MP_VIEW_INTERNAL_H
#define MP_VIEW_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tiler/tiler.h"
#include "view/view.h"

/* Past this side the read square of a coarse Deep Zoom level would be a large part of a flat
 * slide's level 0; such tiles are drawn from the slide's thumbnail instead (view/tiles.c).
 * MAGPIE_VIEW_MAX_READ lowers it (tests). */
#define VIEW_MAX_READ_SIDE 4096
/* The thumbnail coarse tiles come from is at most this many pixels a side. */
#define VIEW_THUMB_SIDE 4096

/* A byte array that a renderer returns; data is malloc'd. */
typedef struct {
    unsigned char *data;
    size_t len;
    const char *mime;
    int from_thumb; /* a slide tile drawn from the thumbnail (X-Magpie-Tile: thumbnail) */
} view_bytes;

/* The heatmap of one slide: infer's grid and its probabilities (probability.tif level 0). */
typedef struct {
    int nx, ny, K;
    double ox, oy, cell0, patch0;
    char **classes;   /* K names */
    int klass;        /* the class heatmap.tif shows (prediction.json's params.class) */
    float *prob;      /* ny * nx * K */
    uint8_t *valid;   /* ny * nx */
} view_heat;

typedef struct {
    int id;
    char *path;          /* real path */
    char *name;
    char *from;          /* what brought it into the catalog ("slide", "run DIR", "dataset DB") */
    tiler_slide ts;
    double mpp;          /* 0 = unknown */
    int max_level;       /* Deep Zoom */
    /* readers, one per thread at a time */
    pthread_mutex_t mu;
    tiler_reader **readers;
    int nreaders, cap_readers;
    /* heatmap: the infer output folder's files (NULL = none), loaded on first use */
    char *pred_json, *prob_tif;
    int heat_state;      /* 0 not loaded, 1 loaded, -1 failed */
    char heat_err[512];
    view_heat heat;
    /* the dataset that tiled it (mask, patches): NULL = none */
    char *db_path;
    int64_t db_slide_id;
    /* tissue mask as an RGBA PNG with its placement, made on first use */
    int mask_state;
    char mask_err[512];
    view_bytes mask_png;
    int mask_w, mask_h;
    double mask_ds;
    /* the thumbnail, RGB over white, that Deep Zoom levels too coarse for a read are drawn
     * from: made on first use under thumb_mu */
    pthread_mutex_t thumb_mu;
    int thumb_state;
    char thumb_err[512];
    uint8_t *thumb;
    int thumb_w, thumb_h;
} view_slide;

typedef struct {
    int id;
    char *path; /* real path */
    char *name;
} view_dataset;

/* A `magpie run` (or `magpie report`) folder's report.html, served at /r/ID/report.html with the
 * files under the folder it may reference (thumbs/...), never anything outside it. */
typedef struct {
    int id;
    char *dir;  /* real path of the folder */
    char *name;
} view_report;

typedef struct view_cache view_cache;
view_cache *view_cache_new(size_t budget);
void view_cache_free(view_cache *c);
/* A copy of the entry (malloc'd into *out) if present: 1; else 0. */
int view_cache_get(view_cache *c, const char *key, view_bytes *out);
/* Store a copy (evicting the least recently used past the budget). */
void view_cache_put(view_cache *c, const char *key, const view_bytes *b);
void view_cache_stats(view_cache *c, uint64_t *hits, uint64_t *misses, size_t *bytes);

struct view_server {
    view_opts o;
    view_slide **slides;
    int nslides;
    view_dataset **datasets;
    int ndatasets;
    view_report **reports;
    int nreports;
    view_cache *cache;
    struct MHD_Daemon *mhd;
    int port;
    char **roots; /* real paths of the PATHs given */
    int nroots;
    int max_read; /* VIEW_MAX_READ_SIDE, or MAGPIE_VIEW_MAX_READ's lower limit */
};

/* Renderers (view/tiles.c): 0 + *out, or -1 with a reason in err (HTTP status in *status). */
int view_slide_tile(view_server *v, view_slide *s, int level, int64_t col, int64_t row, int png, view_bytes *out,
                    int *status, char *err, size_t en);
int view_heat_tile(view_server *v, view_slide *s, int klass, int level, int64_t col, int64_t row, view_bytes *out,
                   int *status, char *err, size_t en);
int view_heat_load(view_slide *s);  /* 0 or -1 (heat_err); once */
int view_mask_load(view_server *v, view_slide *s); /* 0 or -1 (mask_err); once */
int view_encode_png(const uint8_t *px, int w, int h, int bands, view_bytes *out, char *err, size_t en);
int view_encode_jpeg(const uint8_t *rgb, int w, int h, int quality, view_bytes *out, char *err, size_t en);

/* Catalog (view/catalog.c). */
int view_catalog_add(view_server *v, const char *path);
/* 1 if real path p is the real path dir or inside it. */
int view_inside(const char *dir, const char *p);
void view_catalog_free(view_server *v);

#endif
