/* infer/infer.h — the door of infer/: slide -> patch batches -> class probabilities on a grid
 * of cells -> heatmap.tif (pyramidal, registered to the slide), overlay.png, heatmap.geojson and
 * prediction.json. The grid geometry and the writers are public so tests can pin them down.
 * Contract: reads slides only through the tiler's patch reader (tiler/tiler.h) and the model
 * only through nn's card, so no vendor header is needed here (libvips, libtiff and jansson stay
 * in the .c files; infer/internal.h is inside); writes only under the output folder it is given,
 * each file whole or not at all, and the predictions table of --db. Errors: -1 (or NULL) + mp_err
 * "PATH: reason" (a slide's failure is its own). Memory: an infer_model is loaded and freed in
 * pairs (infer_model_load/infer_model_free); names it returns are borrowed; arrays are the
 * caller's. Threads: infer_global_init once first; an infer_model is one thread's (magpie run
 * loads one per worker), so several slides may be inferred at once with a model each. */
#ifndef MP_INFER_H
#define MP_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

#define INFER_MAX_CLASSES 64

/* ---- grid geometry ----
 * The grid is anchored at the slide's bounds origin (openslide.bounds-x/y; 0,0 when absent) in
 * OpenSlide level-0 pixels. Cell (i, j) owns the level-0 square
 *     [ox + i*cell0, ox + (i+1)*cell0) x [oy + j*cell0, oy + (j+1)*cell0)
 * and its patch (patch0 level-0 px a side) is centred on that square, so a heatmap pixel sits
 * exactly over the tissue that produced it whatever the stride. Cells cover the bounds
 * rectangle: nx = ceil(bw / cell0); patches reaching past the slide are padded with white. */
typedef struct {
    double ox, oy;        /* level-0 corner of cell (0,0) = bounds offset */
    double cell0;         /* level-0 px per cell (the stride) */
    double patch0;        /* level-0 px per patch side */
    int64_t bw, bh;       /* level-0 extent covered (bounds width/height) */
    int nx, ny;
} infer_grid;

/* target µm/px = 10 / mag (DESIGN.md). stride is in px at the model's magnification (0 = size).
 * -1 + mp_err if a value is out of range or the grid would be empty or huge. */
int infer_grid_make(int64_t bx, int64_t by, int64_t bw, int64_t bh, double mpp, double mag, int size, int stride,
                    infer_grid *g);
/* Level-0 top-left corner of cell (i, j)'s square. */
void infer_grid_cell_origin(const infer_grid *g, int i, int j, double *x0, double *y0);
/* Level-0 top-left of the patch of cell (i, j), rounded to whole pixels. */
void infer_grid_patch_origin(const infer_grid *g, int i, int j, int64_t *x0, int64_t *y0);
/* Cell containing level-0 point (x, y); -1 when outside the grid. */
int infer_grid_cell_at(const infer_grid *g, double x, double y, int *i, int *j);

/* ---- colour maps ---- */
typedef enum {
    INFER_CMAP_VIRIDIS,   /* sequential, perceptually uniform: one class's probability */
    INFER_CMAP_DIVERGING, /* blue - grey - red around 0.5 (Moreland's cool-warm): two classes */
} infer_cmap;

/* The map for a model: diverging for two classes (p = 0.5 is the decision), viridis otherwise. */
infer_cmap infer_cmap_for(int nclasses);
/* Probability 0..1 (NaN = 0) to RGB. */
void infer_colormap(infer_cmap c, float p, uint8_t rgb[3]);
const char *infer_cmap_name(infer_cmap c);

/* ---- overlap averaging ----
 * With --stride below the patch size the windows overlap: the window of cell a spans cells
 * [a - h, a - h + r) along each axis (r = patch0 / cell0, h = (r - 1) / 2, centred). A heatmap
 * cell's value is the mean of the evaluated windows that cover it, each weighted by the share of
 * the cell it covers: sum_w area(w ∩ cell) p_w / sum_w area(w ∩ cell). With stride = patch
 * each cell is covered by its own window only and keeps its value exactly. */
#define INFER_MAX_REACH 256
/* Weight of the window d cells away on a cell, w[d + R] for d in [-R, R]; returns R, -1 if
 * 2R + 1 > cap. */
int infer_grid_kernel(const infer_grid *g, double *w, int cap);
/* out (ny * nx * K): the average above for cells whose own window was evaluated (valid), 0
 * elsewhere. -1 + mp_err when a patch spans more than 2 * INFER_MAX_REACH + 1 cells. */
int infer_grid_average(const infer_grid *g, const float *prob, const uint8_t *valid, int K, float *out);

/* ---- heatmap TIFFs ----
 * Both are tiled and deflate-compressed, level 0 one pixel per cell, then reduced levels
 * halving (ceil) down to one tile, each a NewSubfileType=1 IFD after the first. Resolution in
 * pixels/cm = 1e4 / (mpp * cell0) at level 0 (doubling per level), XPosition/YPosition = bounds
 * offset in cm (from the OpenSlide frame's origin), ImageDescription = desc. Reduced levels
 * average the valid cells of each 2x2 block (glass never dilutes tissue).
 *  - rgba = 0 (probability.tif, for analysis): one sample per class, uint8 = round(255 p) or
 *    float32 raw; Photometric MinIsBlack, the classes after the first declared as ExtraSamples
 *    "unspecified" (data, not alpha); cells never evaluated are 0 in every band.
 *  - rgba = 1 (heatmap.tif, for viewers): 8-bit RGBA, Photometric RGB + ExtraSamples
 *    unassociated alpha; RGB = the colour map of class `klass`, alpha 255 where evaluated and
 *    0 (with RGB 0) where not, so OpenSlide, QuPath, PIL and libvips show it the same. Its
 *    levels are padded with transparent pixels to whole tiles and exact halvings (level 0
 *    infer_tiff_padded() wide and high): OpenSlide 3.4.1 misplaces partial bottom tiles. */
typedef struct {
    int nx, ny, nclasses;
    const float *prob;     /* ny * nx * nclasses, row-major, class fastest */
    const uint8_t *valid;  /* ny * nx; 0 = not evaluated (never averaged into reduced levels) */
    double mpp_x, mpp_y;   /* µm per slide level-0 pixel */
    double cell0;          /* level-0 px per cell */
    double ox, oy;         /* level-0 offset of the grid */
    int float32;           /* probability: 1 float32 samples, 0 uint8 */
    int tile;              /* tile side (multiple of 16); 0 = 128 */
    const char *desc;      /* ImageDescription (may be NULL) */
    int rgba;              /* 1: the colour-mapped viewer pyramid of class klass */
    int klass;
    infer_cmap cmap;
} infer_tiff_spec;

int infer_tiff_write(const char *path, const infer_tiff_spec *s);
/* Number of levels infer_tiff_write produces for a w x h raster and tile size. */
int infer_tiff_levels(int w, int h, int tile);
/* Level-0 side of the RGBA heatmap for a raster side n (n rounded up to tile << (levels - 1)). */
int64_t infer_tiff_padded(int n, int levels, int tile);

/* ---- overlay.png ----
 * The slide picture (longest side `size` px, covering the grid's bounds rectangle) with class
 * klass's probability blended over the evaluated cells at `opacity`, a title (slide name,
 * class, map), a colour bar with ticks, the slide-level call, a note and a scale bar in µm.
 * Text through vips_text (Pango), lines through SVG (librsvg). */
typedef struct {
    const uint8_t *bg;     /* straight RGBA picture of the bounds rectangle, bgw x bgh (any scale) */
    int bgw, bgh;
    int bg_stride;         /* pixels from one bg row to the next; 0 = bgw */
    const infer_grid *g;
    const float *prob;
    const uint8_t *valid;
    int nclasses, klass;
    infer_cmap cmap;
    double mpp;            /* µm per level-0 px */
    int size;              /* longest side of the picture in px */
    double opacity;        /* of the colours over the slide, 0..1 */
    const char *slide_name, *class_name;
    const char *call;      /* the slide-level call, plain text */
    const char *note;      /* smaller text under it (may be NULL) */
} infer_overlay_spec;

int infer_overlay_write(const char *path, const infer_overlay_spec *s);
/* Where things go: the picture (longest side = size, the bounds' aspect ratio), the colour bar
 * (p = 1 at its top row), the canvas. */
typedef struct {
    int pic_x, pic_y, pic_w, pic_h;
    int bar_x, bar_y, bar_w, bar_h;
    int canvas_w, canvas_h;
    int margin, font, panel_w;
} infer_overlay_geom;
void infer_overlay_layout(const infer_overlay_spec *s, infer_overlay_geom *o);
/* Scale bar for a picture width: 1, 2 or 5 x 10^k µm, about a fifth of the width; -1 if none fits. */
int infer_overlay_scalebar(double um_per_px, int width_px, double *um, int *px);

/* ---- GeoJSON ----
 * QuPath layout: a FeatureCollection with one Feature per class that has cells >= threshold, a
 * MultiPolygon of row runs of such cells in level-0 px relative to the bounds origin (QuPath's
 * frame; add bounds-x/y for OpenSlide's), properties.objectType "annotation",
 * properties.classification {name, color}, measurements {cells, mean_probability}. */
int infer_geojson_write(const char *path, const infer_grid *g, const float *prob, const uint8_t *valid,
                        int nclasses, char *const *names, double threshold);

/* ---- the cascade ----
 * A cheap student (e.g. 1.25x) runs on every cell; the teacher (e.g. 10x) runs again on the
 * cells where the student is unsure: its highest class probability is below `threshold`. The
 * teacher reads the same level-0 square as the student for each cell (through the tiler's patch
 * reader, at its own magnification), and its probabilities replace the student's there. So
 * threshold 0 is the student alone, and a threshold above 1 the teacher on every cell. */
typedef struct infer_model infer_model;
typedef struct {
    infer_model *teacher;
    const char *path;    /* the teacher's checkpoint */
    double threshold;    /* cells whose student max-probability is below it go to the teacher */
    char source[700];    /* how the threshold was chosen, for prediction.json */
} infer_cascade;

/* The two must name the same classes in the same order (case-insensitive) and see the same
 * square: the teacher's input side in µm (size x 10 / mag) within 1% of the student's.
 * -1 + mp_err "TEACHER: reason". */
int infer_cascade_check(const infer_model *student, const char *student_path, const infer_model *teacher,
                        const char *teacher_path);
/* The cells to send, in cell order, into out: valid ones whose max probability is below
 * threshold. Returns how many. */
int64_t infer_cascade_select(const float *prob, const uint8_t *valid, int64_t ncell, int K, double threshold, int *out);

/* Calibration on labelled patches: p_student and p_teacher (n x K), labels 0..K-1. A cell goes
 * to the teacher when the student's max-probability is below the threshold; the cascade's
 * balanced accuracy (mean recall over the classes present) is computed for every threshold
 * between distinct student confidences, and the threshold chosen is the lowest (so the fewest
 * teacher calls) whose balanced accuracy is at least the teacher's minus `tol` (0.01 = one
 * point). Sending every patch always qualifies (threshold INFER_CASCADE_ALL). */
#define INFER_CASCADE_ALL 1.5 /* above any probability: every cell to the teacher */
typedef struct {
    double threshold;
    int64_t n;                  /* labelled patches */
    double bacc_student, bacc_teacher, bacc_cascade;
    double fraction;            /* share of the patches the threshold sends to the teacher */
} infer_calibration;
int infer_cascade_choose(const float *p_student, const float *p_teacher, const int *labels, int64_t n, int K,
                         double tol, infer_calibration *cal);
/* The same on a dataset's split: the student and teacher run on its labelled patches' stored
 * images at their magnifications. split must be "val": the test split would make the test
 * figures no longer held out, and the models were fit on train (their confidence there is
 * optimistic). -1 + mp_err "DB: reason". */
int infer_cascade_calibrate(infer_model *student, infer_model *teacher, const char *db_path, const char *split,
                            double tol, infer_calibration *cal);
/* That rule alone (for the command line, before any model is loaded): 0, or -1 + mp_err. */
int infer_cascade_split_ok(const char *db_path, const char *split);

/* ---- the run ---- */
typedef struct {
    int stride;          /* px at the model's magnification; 0 = the input size */
    int klass;           /* --class: the class shown in heatmap.tif and overlay.png (-1 = last class) */
    int overlay_size;    /* longest side of overlay.png's slide picture, px */
    const char *db;      /* --db: dataset whose predictions table gets the patches (NULL = none) */
    int batch;           /* patches per forward; 0 = infer_auto_batch(input size) */
    int threads;         /* BLAS threads for the model; the reader is one more thread */
    double mpp;          /* > 0 overrides the slide's MPP */
    double min_tissue;   /* a cell is evaluated when its patch is at least this share tissue */
    double threshold;    /* GeoJSON and majority vote confidence threshold */
    int float32;         /* heatmap.tif samples as float32 */
    int force;           /* recompute even when outputs are complete and current */
    const char *name;    /* output folder under outdir (NULL = infer_slide_name(slide)): magpie run
                          * gives slides whose names collide distinct folders */
    int allow_fluorescence; /* infer slides the tiler classes fluorescence (refused by default:
                               magpie's models are bright-field H&E models) */
    const infer_cascade *cascade; /* NULL: the model alone */
    mp_progress_mode progress;
    /* Called after each model batch with the patches it evaluated (magpie run's overall
     * progress); NULL = none. */
    void (*on_batch)(void *arg, int64_t patches);
    void *on_batch_arg;
    const char *ckpt_fingerprint; /* tiler_fingerprint of ckpt_path when the caller has it (magpie
                                   * run, once per run), NULL: computed per slide */
    /* Calibration (infer_cascade_calibrate_slides): when set, the slide writes no outputs; the
     * per-cell probabilities of the model (before any cascade pass) and the final ones (after
     * it) are handed to capture, with the cells evaluated. Its non-zero return fails the slide. */
    int (*capture)(void *arg, const float *first, const float *final, const uint8_t *valid, int64_t ncell, int K);
    void *capture_arg;
} infer_opts;

/* The cascade's threshold chosen on slides, with no labels: the student and the teacher (cas)
 * run on every tissue cell of the calibration slides (the options' stride and tissue rules,
 * no outputs written), the teacher's class is each cell's reference, and the rule is
 * infer_cascade_choose's: the lowest threshold whose cascade agrees with the teacher within
 * tol (balanced over the teacher's classes). The cells a user's slides have, boundaries and
 * all, rather than a dataset's patches. cal's bacc_* are agreements with the teacher
 * (bacc_teacher = 1). -1 + mp_err naming the slide that failed. */
int infer_cascade_calibrate_slides(infer_model *student, const char *student_path, const infer_cascade *cas,
                                   char *const *slides, int nslides, const infer_opts *base, double tol,
                                   infer_calibration *cal);

void infer_opts_default(infer_opts *o);
/* Default batch for a patch side: 8 at >= 112 px (memory), 64 below (GEMM efficiency). */
int infer_auto_batch(int size);
/* Once per process: libvips without its loadable modules (tiler_global_init_lean) and libtiff
 * handlers. */
int infer_global_init(const char *argv0);

/* Load a checkpoint for inference: architecture, weights, mag, input_size, norm.mean/std,
 * class names; max_batch 0 = infer_auto_batch(input size). NULL + mp_err "CKPT: reason". */
infer_model *infer_model_load(const char *path, int max_batch);
void infer_model_free(infer_model *m);
int infer_model_classes(const infer_model *m);
double infer_model_mag(const infer_model *m);
int infer_model_size(const infer_model *m);
char *const *infer_model_names(const infer_model *m); /* classes entries, borrowed */
/* --class's argument: a class name of the checkpoint (case-insensitive) or a 0-based index.
 * -1 + mp_err "CKPT: ..." listing the names when it is neither. */
int infer_class_index(const infer_model *m, const char *ckpt_path, const char *arg);
/* Probabilities (softmax, eval mode) of n RGB patches (size x size x 3, uint8, row-major) into
 * prob (n x classes). Normalises with the checkpoint's mean/std. -1 + mp_err on failure. */
int infer_model_predict(infer_model *m, const uint8_t *rgb, int n, float *prob);

typedef enum { INFER_DONE, INFER_SKIPPED, INFER_FAILED } infer_outcome;

typedef struct {
    infer_outcome outcome;
    int64_t n_cells, n_tissue, n_evaluated, n_read_errors;
    int level;
    double seconds;
    const char *kind;    /* "brightfield" | "fluorescence" once the slide's thumbnail was read, else NULL */
    char outdir[4096];
} infer_result;

/* Infer one slide into outdir/<slide name>/ (or outdir/<o->name>/). Returns 0 when done or skipped; -1 + mp_err
 * "SLIDE: reason" when the slide failed (nothing half-written is left). */
int infer_slide(infer_model *m, const char *ckpt_path, const char *slide, const char *outdir, const infer_opts *o,
                infer_result *res);

/* The directory name used for a slide: its basename without the last extension, made safe by
 * mp_safe_name (common/util.h: no '/', never "." or "..", no control characters, bounded). */
void infer_slide_name(const char *path, char *out, size_t cap);

#endif
