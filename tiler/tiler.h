/* tiler/tiler.h — the tiler's door: open a slide through OpenSlide, resolve its MPP, build a
 * tissue mask, lay a grid in level-0 coordinates and write multi-magnification patches into the
 * dataset (db/tiling.h), resumably and in parallel. The small pure functions below are public so
 * unit tests can pin them down.
 * Contract: the one way from a slide file to pixels (the patch reader) for the tiler, infer and
 * the viewer; OpenSlide and libtiff stay inside tiler/ (a slide's handle is opaque here, and no
 * call outside tiler/ takes it: tiler_resolve_mpp takes the tiler_slide); writes
 * only the dataset it is given; functions return -1 (or NULL) with mp_err "PATH: reason".
 * Memory: what a function hands back is the caller's, freed by its pair (tiler_slide_close,
 * tiler_reader_close, tiler_mask_free; pixel buffers from libvips with tiler_free, the others with
 * free) as each declaration says; pointers kept inside a struct are borrowed from the caller.
 * Threads: call tiler_global_init once before anything else; tiler_tile_slide runs its own
 * workers; an open tiler_slide may be shared by threads through the calls taking it const (each
 * thread reads pixels through its own tiler_reader), its other calls are one thread's.
 * tiffread.h and plan.h are inside (internal.h too); nothing here includes a vendor header. */
#ifndef MP_TILER_H
#define MP_TILER_H

#include <stdint.h>
#include <stdio.h>

#include "common/log.h"
#include "db/db.h"

#define TILER_MAX_MAGS 8
#define TILER_MPP_MIN 0.05 /* µm/px outside [MIN, MAX] is not trusted (DESIGN.md) */
#define TILER_MPP_MAX 20.0
#define TILER_LEVEL_TOL 0.01 /* a level up to 1% coarser than asked still counts (4.0003 ~ 4) */

typedef struct {
    double mags[TILER_MAX_MAGS]; /* requested magnifications; mag m <-> 10/m µm/px */
    int n_mags;
    int size;           /* patch side in px at the highest requested magnification */
    int stride;         /* grid step in px at that magnification; 0 = size (no overlap) */
    double min_tissue;  /* keep cells whose mask coverage is >= this */
    double mpp;         /* > 0: overrides the file's MPP */
    int jobs;           /* worker threads */
    int quality;        /* JPEG quality */
    int png;            /* store PNG instead of JPEG */
    int allow_upsample; /* permit a magnification finer than level 0 */
    int allow_fluorescence; /* tile slides classed fluorescence (refused by default: magpie's
                               models are bright-field H&E models) */
    mp_progress_mode progress;
    /* Called on the writer (calling) thread after each committed batch with the patches it
     * added (magpie run's overall progress); NULL = none. */
    void (*on_batch)(void *arg, int64_t patches);
    void *on_batch_arg;
} tiler_opts;

void tiler_opts_default(tiler_opts *o);
/* Once per process, before any other tiler call: libvips, libtiff message handlers. */
int tiler_global_init(const char *argv0);
/* The same, but libvips (~20 ms: it dlopens its loader modules) initialises on a helper thread
 * while the caller goes on; tiler_tile_slide and tiler_dry_run wait for it before their first
 * libvips call, and its failure is reported there. The caller must call tiler_global_wait()
 * before it uses libvips itself or returns from main. */
int tiler_global_init_async(const char *argv0);
/* tiler_global_init without libvips' loadable modules (ImageMagick, Poppler, HEIF, JPEG XL and
 * libvips' own OpenSlide loader: ~40 ms of CPU to dlopen with their libraries), for commands
 * whose libvips calls are all built in (PNG, JPEG, TIFF, WebP, SVG, text): magpie infer, which
 * reads slides through OpenSlide and the tiler's TIFF path. Synchronous. */
int tiler_global_init_lean(const char *argv0);
/* Wait for libvips' initialisation (no-op once done): 0, or -1 + mp_err if it failed. */
int tiler_global_wait(void);

/* Bright-field or fluorescence, decided on the mask's thumbnail (about 8 µm/px) from the
 * brightness v = max(R, G, B) of every scanned pixel (alpha >= 128):
 *   background = the centre of the most populated 16-level band of v (the slide's commonest
 *                brightness: glass in bright-field, which transmits the lamp, 220-250; the
 *                unlit background in fluorescence, 0-20);
 *   dark       = the share of pixels with v < TILER_DARK_V: an 8 µm bright-field pixel is that
 *                dark only under ink, a fold or a scanner's black border, while a fluorescence
 *                slide is that dark wherever nothing emits (between nuclei too).
 * Fluorescence when background < TILER_DARK_V and dark >= TILER_DARK_SHARE: both must agree,
 * so neither a bright-field slide with a black border or heavy ink (dark share high, glass
 * still the commonest brightness) nor one whose tissue is dense and dark (background at the
 * tissue's 100-200) is refused, and a fluorescence slide whose tissue fills the field still has
 * its gaps below 64. Measured (background, dark share): the DAPI NDPI (8, 0.77-0.81 by
 * thumbnail scale); CMU-1 .svs/.tiff (248, 0.003); TCGA frozen (248, 0.000); synthetic H&E
 * (248, 0.000); a synthetic H&E slide inverted (8, 0.66). */
#define TILER_DARK_V 64
#define TILER_DARK_SHARE 0.30
typedef enum { TILER_BRIGHTFIELD = 0, TILER_FLUORESCENCE = 1 } tiler_kind;
typedef struct {
    tiler_kind kind;
    int background;      /* the commonest brightness band's centre, 0..255 */
    double dark;         /* share of scanned pixels darker than TILER_DARK_V */
} tiler_kind_info;
/* Straight RGBA pixels; no scanned pixel at all counts as bright-field (nothing to refuse). */
void tiler_kind_classify(const uint8_t *rgba, int w, int h, tiler_kind_info *k);
/* "brightfield" | "fluorescence" (the dataset's slides.kind values) */
const char *tiler_kind_name(tiler_kind k);
/* The evidence, for messages: "dark background: commonest brightness 8/255, 81% of it below 64". */
void tiler_kind_describe(const tiler_kind_info *k, char *out, size_t cap);

/* Outcome of one slide. */
typedef enum { TILER_DONE, TILER_SKIPPED, TILER_FAILED } tiler_outcome;

typedef struct {
    tiler_outcome outcome;
    int64_t n_patches;   /* patches of the slide in the dataset at the end */
    int64_t n_new;       /* written by this run */
    int64_t n_errors;    /* unreadable cells recorded in tile_errors */
    double seconds;
    tiler_kind_info kind; /* bright-field or fluorescence (not set when skipped) */
    int kind_known;
} tiler_result;

/* Tile one slide into db. Returns 0 when done or skipped, -1 + mp_err when the slide failed
 * (the failure is also recorded in the slide's row when the file could be fingerprinted). */
int tiler_tile_slide(mp_db *db, const char *path, const tiler_opts *o, tiler_result *res);

/* The tiling parameters that change a slide's patches, as JSON and its hash (what the dataset's
 * slides.params / params_hash hold): a slide done with another hash is redone. */
void tiler_params(const tiler_opts *o, char *json, size_t n, char hash[64]);

/* --dry-run: print what tiling `path` would do to `out`; db may be NULL. -1 + mp_err if the
 * slide would fail. */
int tiler_dry_run(mp_db *db, const char *path, const tiler_opts *o, FILE *out);

/* ---- pieces with unit tests ---- */

/* MPP from a TIFF resolution: res pixels per unit, unit as TIFF ResolutionUnit (2 inch, 3 cm).
 * Returns 0 and *mpp, or -1 when the unit is none/unknown or res <= 0. Range is not checked. */
int tiler_mpp_from_resolution(double res, int unit, double *mpp);
/* 1 if v is a plausible microscope MPP. */
int tiler_mpp_plausible(double v);

typedef struct {
    double mpp_x, mpp_y;
    char source[32];     /* openslide.mpp | aperio.MPP | tiff.XResolution | --mpp */
    char rejected[256];  /* values seen and not trusted, "" if none */
} tiler_mpp;

typedef struct tiler_slide tiler_slide;
/* Resolve the MPP of an opened slide in DESIGN.md's order; PATH names it in messages. -1 + mp_err
 * "PATH: no usable MPP (...); pass --mpp". */
int tiler_resolve_mpp(const char *path, const tiler_slide *s, double override, tiler_mpp *out);

/* Index of the coarsest level whose downsample is <= want * (1 + tol); level 0 if none. */
int tiler_choose_level(const double *downsamples, int n, double want, double tol);

/* Otsu's threshold over a 256-bin histogram: foreground is value > threshold. */
int tiler_otsu(const uint64_t hist[256]);

/* 1 if the file starts like DICOM Part 10 ("DICM" at offset 128). */
int tiler_is_dicom(const char *path);

/* Content fingerprint: "xxh3:<16 hex>" over size + sampled blocks (whole file if small). */
int tiler_fingerprint(const char *path, char out[64]);

/* Patch grid in level-0 pixels. */
typedef struct {
    double size0, stride0; /* level-0 extent of a patch and of a grid step */
    int nx, ny;            /* cells that fit entirely inside the slide */
} tiler_grid;

int tiler_grid_make(int64_t width, int64_t height, double mpp, double mag_top, int size, int stride,
                    tiler_grid *g);
int64_t tiler_grid_pos(const tiler_grid *g, int i); /* level-0 coordinate of cell index i */
/* Side in px of the image at magnification mag when size is the side at mag_top. */
int tiler_mag_size(int size, double mag, double mag_top);


/* Tissue mask over a thumbnail. */
typedef struct {
    int w, h;
    double ds;        /* level-0 pixels per mask pixel */
    uint8_t *tissue;  /* w*h, 255 = tissue */
    uint8_t *pen;     /* w*h, 1 = pen mark */
    int dark;         /* 1: dark background (fluorescence): foreground by intensity */
    tiler_kind_info kind; /* what decided `dark` (tiler_kind_classify) */
    int threshold;    /* Otsu threshold used (saturation or intensity) */
    double fraction;  /* tissue fraction of the mask */
} tiler_mask;

/* Build the mask from straight (not premultiplied) RGBA thumbnail pixels at mask_mpp µm/px.
 * Takes no ownership of rgba. Returns 0, or -1 + mp_err when its buffers (a few bytes per
 * thumbnail pixel) cannot be had; the caller names the slide. */
int tiler_mask_compute(const uint8_t *rgba, int w, int h, double mask_mpp, tiler_mask *m);
void tiler_mask_free(tiler_mask *m);
/* Area-weighted coverage of a level-0 square by the mask (tissue) or pen map, 0..1. */
double tiler_mask_cover(const tiler_mask *m, const uint8_t *map, int one, double x0, double y0, double size0);
/* PNG of the tissue map (malloc'd via g_malloc: free with tiler_free). */
int tiler_mask_png(const tiler_mask *m, void **png, size_t *len);
void tiler_free(void *p);

/* Area-average downsampling of a wl x wl RGB square to t x t (t < wl); g_malloc'd result
 * (free with tiler_free). */
uint8_t *tiler_area_resample(const uint8_t *src, int wl, int t);

/* Per-patch QC on an RGB image: variance of the Laplacian of the luminance, mean luminance. */
void tiler_qc(const uint8_t *rgb, int w, int h, double *blur, double *brightness);
/* The same on rows `pitch` pixels apart (a square inside a wider row buffer). */
void tiler_qc_pitch(const uint8_t *rgb, int w, int h, int pitch, double *blur, double *brightness);

/* ---- an opened slide, for the tiler and for infer ---- */

#define TILER_MAX_LEVELS 32
/* Sizes a slide may declare; past them it is refused before any pixel is read (a header is
 * untrusted input: a TileWidth of 2^30 once asked for a 768 GB buffer). 2^22 px is a metre of
 * tissue at 0.25 µm/px; real tiles are 256-1024 px, and 2^24 px is a 64 MiB ARGB buffer. */
#define TILER_MAX_SIDE (1 << 22)
#define TILER_MAX_TILE_SIDE (1 << 16)
#define TILER_MAX_TILE_PX (1 << 24)

struct tiler_slide {
    const char *path;        /* borrowed: as the user gave it */
    struct _openslide *osr;  /* OpenSlide's handle, for tiler/ only */
    char vendor[64];
    int64_t width, height;
    int levels;
    int64_t lw[TILER_MAX_LEVELS], lh[TILER_MAX_LEVELS];
    double ds[TILER_MAX_LEVELS];
};

/* Open with the checks of the anomaly tests: missing, not a regular file, empty, DICOM, not a
 * slide, unreadable, sizes past the limits above (checked with libtiff before OpenSlide opens a
 * TIFF, and on OpenSlide's level sizes for every format). */
int tiler_slide_open(const char *path, tiler_slide *s);
void tiler_slide_close(tiler_slide *s);
/* The slide's non-empty region as the file declares it (openslide.bounds-*), checked to lie
 * inside level 0: 1 and b = {x, y, w, h}, or 0 when it declares none (or a bad one). */
int tiler_slide_bounds(const tiler_slide *s, int64_t b[4]);

/* Thumbnail as straight RGBA at about target_mpp µm/px (never finer than level 0): bounded
 * memory, read in bands from the coarsest suitable level. *rgba is malloc'd. */
int tiler_thumbnail(tiler_slide *s, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                    double *ds);
/* ---- the patch reader (tiler/read.c): the one path from a slide to a model's pixels ----
 * The tiler's dataset images, infer's patches and the viewer's tiles all come through here, so
 * a model sees at inference the pixels it was trained on: the level is the coarsest one at
 * least as fine as needed (TILER_LEVEL_TOL), the read is a wl x wl square of that level's
 * pixels starting at the level-0 corner (x0, y0), transparent areas are white, and resampling
 * to the target side is an area average down and libvips lanczos3 up (tiler_resample). */
typedef struct {
    int level;    /* pyramid level read */
    int wl;       /* the square's side in that level's pixels: round(size0 / downsample) */
    int target;   /* output side */
    double scale; /* target / wl */
} tiler_patch_geom;

/* want: level-0 px per output px (the level choice); size0: the square's level-0 side. */
void tiler_patch_geom_make(const tiler_slide *s, double want, double size0, int target, tiler_patch_geom *g);

typedef struct tiler_reader tiler_reader;
/* A reader of s (borrowed; it must outlive the reader), with its own OpenSlide handle and
 * direct TIFF reader: one per thread. A handle that cannot be opened is reported by the reads. */
tiler_reader *tiler_reader_open(const tiler_slide *s);
void tiler_reader_close(tiler_reader *r); /* accepts NULL */
/* RGB (w x h x 3 bytes into rgb) of the level-`level` region whose corner is level-0 (x0, y0).
 * -1 + a one-line reason in err (the OpenSlide handle is reopened after an error). */
int tiler_reader_region(tiler_reader *r, int level, int64_t x0, int64_t y0, int w, int h, uint8_t *rgb, char *err,
                        size_t en);
/* The patch of geometry g at level-0 corner (x0, y0): g->target^2 x 3 bytes into out. */
int tiler_read_patch(tiler_reader *r, const tiler_patch_geom *g, int64_t x0, int64_t y0, uint8_t *out, char *err,
                     size_t en);
/* tiler_thumbnail through the reader: its own OpenSlide handle, and the direct TIFF path when
 * the slide has one (the tiler's mask is read that way; OpenSlide's compositing costs more than
 * the JPEG decoding on a large level). */
int tiler_reader_thumbnail(tiler_reader *r, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                           double *ds);
/* The resampling policy: the wl x wl square at src (rows pitch px apart) to t x t into out. */
int tiler_resample(const uint8_t *src, int wl, int pitch, int t, uint8_t *out, char *err, size_t en);

/* ---- patch-set import (tiler/import.c): `magpie db DB import-patches DIR` ---- */
typedef struct {
    double mpp;                  /* µm per pixel of the files */
    double mags[TILER_MAX_MAGS]; /* magnifications to store, each derived by area average */
    int n_mags;
    int label_from_folder;       /* the class is the first folder under DIR */
    const char *patient_regex;   /* POSIX ERE on the file name: group 1 (or the match) is the patient */
    int png, quality;            /* encoding as the tiler's */
    mp_progress_mode progress;
} tiler_import_opts;

typedef struct {
    int files, imported, kept; /* kept: already in the dataset as they are */
    int skipped;               /* files without an image extension */
    int size;                  /* the files' side in px */
    int classes;               /* classes in the dataset afterwards */
} tiler_import_report;

/* A magnification finer than the files' own (10 / mpp) is refused (no upsampling), and so is a
 * --patient-from regex that does not compile: -1 + err. */
int tiler_import_check(const tiler_import_opts *o, char *err, size_t en);
/* Every image file under dir (sorted; hidden entries and symlinks skipped) as one slide + one
 * patch + its images, in one transaction: on any bad file (unreadable, not square, another size
 * than the first) nothing is written and the error names the file. -1 + mp_err. Test hook:
 * MAGPIE_IMPORT_KILL=N sends SIGKILL after N files (before the commit). */
int tiler_import_patches(mp_db *db, const char *dir, const tiler_import_opts *o, tiler_import_report *rep);

/* Test hooks (environment, read once per slide):
 *   MAGPIE_TILER_FAIL="gx,gy;gx,gy"  reads of these cells fail (recorded in tile_errors)
 *   MAGPIE_TILER_KILL="after-start" | "batch:N" | "in-batch:N" | "before-finish"
 *                                    SIGKILL the process at that point (crash tests)
 *   MAGPIE_TILER_CHUNK_COLS=K        cells per row read (default from geometry; bench/tiler)
 *   MAGPIE_TILER_NO_FAST=1           read pixels through OpenSlide only (no direct TIFF reader) */

#endif
