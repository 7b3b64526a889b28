/* tiler/internal.h — shared between the tiler's own files (not part of the door). */
#ifndef MP_TILER_INTERNAL_H
#define MP_TILER_INTERNAL_H

#include <openslide.h>
#include <stdint.h>

#include "tiler/tiler.h"

#define TILER_MAX_LEVELS 32

typedef struct {
    const char *path;        /* borrowed: as the user gave it */
    openslide_t *osr;
    char vendor[64];
    int64_t width, height;
    int levels;
    int64_t lw[TILER_MAX_LEVELS], lh[TILER_MAX_LEVELS];
    double ds[TILER_MAX_LEVELS];
} tiler_slide;

/* Open with the checks of the anomaly tests: missing, empty, DICOM, not a slide, unreadable. */
int tiler_slide_open(const char *path, tiler_slide *s);
void tiler_slide_close(tiler_slide *s);

/* Thumbnail as straight RGBA at about target_mpp µm/px (never finer than level 0): bounded
 * memory, read in bands from the coarsest suitable level. *rgba is malloc'd. */
int tiler_thumbnail(tiler_slide *s, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                    double *ds);
/* The same, reading through the direct TIFF reader when fast is not NULL (tiler/tiffread.h). */
struct tiff_fast;
int tiler_thumbnail_fast(tiler_slide *s, struct tiff_fast *fast, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                    double *ds);

/* Route libtiff errors to a flag (never to the terminal). */
void tiler_tiff_quiet(void);

#endif
