/* synth/synth.h — the synthetic H&E slide generator (the door of synth/).
 * A slide is a pure function of (parameters, seed, slide index): any pixel rectangle can be
 * rendered on its own, in any order, which is what lets libvips stream gigapixel slides.
 * Contract: no vendor header or type here (libvips, libpng and jansson stay in the .c files; the
 * slide as a libvips image is in synth/internal.h, inside). Writes only the paths and OUTDIR it
 * is given, each file whole or not at all. Errors: -1 (or NULL) + mp_err "PATH: reason";
 * synth_run returns an exit code with its messages printed. Memory: slides, scratches and masks
 * come in new/free (make/free) pairs; synth_slide_params is borrowed. Threads: a slide is
 * immutable once made, so renders and lookups may run on several threads at once, each with its
 * own scratch. */
#ifndef MP_SYNTH_H
#define MP_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

/* Nuclear morphologies (SYNTH.md): what a tissue class looks like at 10x. */
typedef enum { SYNTH_LYMPHOCYTE = 0, SYNTH_TUMOR = 1, SYNTH_STROMA = 2, SYNTH_NTYPES = 3 } synth_type;

#define SYNTH_MAX_CLASSES SYNTH_NTYPES
#define SYNTH_NAME_MAX 48

typedef struct {
    int width, height;  /* level-0 pixels */
    double mpp;         /* µm per level-0 pixel; geometry is in µm and scales with it */
    uint64_t seed;
    int nclasses;       /* >= 2; class k (0-based) is mask value k+1, 0 is background */
    synth_type types[SYNTH_MAX_CLASSES];
    char names[SYNTH_MAX_CLASSES][SYNTH_NAME_MAX];
    /* nuisance (SYNTH.md): share of nuclei of other classes' types, log-sd of per-region
     * density, stain jitter strength (stain vectors, amounts, brightness). */
    double mix, density_jitter, stain_jitter;
    double region_um;   /* class regions: Voronoi cell spacing in µm */
    double purity;      /* share of regions given the slide's dominant class */
    double pen_prob;    /* probability that a slide carries pen strokes */
    double dust_per_mm2;
    /* tissue everywhere (no glass, pen or dust: patch datasets, bench/distill, tests) */
    int full_tissue;
    int uniform_class;  /* -1: off; else every region is this class (tests) */
} synth_params;

/* Defaults: 16384x12288 at 0.25 µm/px, classes lymphocyte,tumor,stroma, "mild" nuisance. */
void synth_params_default(synth_params *p);
/* "none", "mild" (mix 0.10, density 0.2, stain 0.5), "strong" (0.15, 0.3, 1.0). -1 if unknown. */
int synth_nuisance_preset(synth_params *p, const char *name);
/* Parse "lymphocyte,tumor:Carcinoma,stroma" (TYPE[:NAME], comma separated) into p. */
int synth_parse_classes(synth_params *p, const char *list);
/* Check ranges; -1 with a one-line message naming the option. */
int synth_params_check(const synth_params *p);
const char *synth_type_name(synth_type t);   /* "lymphocyte", "tumor", "stroma" */
void synth_type_color(synth_type t, int rgb[3]); /* QuPath-like class colour */

typedef struct synth_slide synth_slide;
/* The layout of slide `index` (islands, class regions, artifacts), with `dominant` the class
 * that gets --purity of the regions (-1: drawn from the seed). Cheap: no pixels yet. */
synth_slide *synth_slide_new(const synth_params *p, int index, int dominant);
void synth_slide_free(synth_slide *s);
const synth_params *synth_slide_params(const synth_slide *s);

/* Per-thread scratch for rendering. */
typedef struct synth_scratch synth_scratch;
synth_scratch *synth_scratch_new(void);
void synth_scratch_free(synth_scratch *sc);

/* Render RGB (3 bytes per pixel, rows `stride` bytes apart) of the level-0 rectangle
 * (x, y, w, h). Thread-safe on a shared slide with one scratch per thread; the bytes of a
 * pixel do not depend on the rectangle it was rendered in. */
void synth_render(const synth_slide *s, synth_scratch *sc, int x, int y, int w, int h, uint8_t *rgb,
                  size_t stride);

/* Ground-truth class at level-0 point (x, y) in pixels: 0 glass, k+1 class k. */
int synth_label_at(const synth_slide *s, double x, double y);

/* Artifact at level-0 point (x, y): 0 none, 1 pen ink, 2 dust (dust wins where both). */
int synth_artifact_at(const synth_slide *s, double x, double y);

/* The label mask: class value per pixel at `downsample` level-0 pixels per mask pixel,
 * sampled at mask pixel centres. */
typedef struct {
    int width, height, downsample;
    uint8_t *data;
} synth_mask;
int synth_mask_make(const synth_slide *s, int downsample, synth_mask *m);
void synth_mask_free(synth_mask *m);
/* Default downsample: the power of two closest to 8 µm mask pixels (1.25x), doubled while the
 * mask would exceed 16 Mpx. */
int synth_mask_default_downsample(int width, int height, double mpp);
int synth_mask_write_png(const synth_slide *s, const synth_mask *m, const char *path);
/* Artifact mask on the same grid (values of synth_artifact_at), PNG with text chunks. */
int synth_artifact_mask_make(const synth_slide *s, int downsample, synth_mask *m);
int synth_artifact_mask_write_png(const synth_slide *s, const synth_mask *m, const char *path);
/* QuPath-style GeoJSON: one Polygon Feature per 4-connected region of a class, level-0 pixel
 * coordinates, exactly the mask's pixel boundaries. */
int synth_geojson_write(const synth_slide *s, const synth_mask *m, const char *path);

/* Stream the slide into a tiled pyramidal JPEG TIFF (libvips), MPP in the resolution tags. */
int synth_tiff_write(const synth_slide *s, const char *path, int tile, int quality, mp_progress *prog);

/* A whole run: OUTDIR/<prefix>_NNN.tiff, _NNN_mask.png, _NNN_artifacts.png, _NNN.geojson,
 * _NNN.json, plus OUTDIR/slides.csv and OUTDIR/synth.json. */
typedef struct {
    synth_params p;
    const char *outdir;
    const char *prefix;
    int slides, patients;
    int tile, quality;
    int mask_downsample; /* 0: default */
    int jobs;            /* libvips threads, 0: libvips' default (all cores) */
    mp_progress_mode progress;
} synth_run_opts;
/* Returns an MP_EXIT_* code; messages already printed. */
int synth_run(const synth_run_opts *o);

#endif
