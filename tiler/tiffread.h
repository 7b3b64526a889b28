/* tiler/tiffread.h — direct tile reader for plain pyramidal JPEG TIFFs (internal to tiler/).
 * One per worker thread (libtiff handles are not shared). */
#ifndef MP_TILER_TIFFREAD_H
#define MP_TILER_TIFFREAD_H

#include "tiler/internal.h"

typedef struct tiff_fast tiff_fast;

/* NULL when the slide is not a generic-tiff whose every level is a tiled 8-bit RGB JPEG
 * directory (or MAGPIE_TILER_NO_FAST is set): use OpenSlide then. */
tiff_fast *tiff_fast_open(const char *path, const tiler_slide *s);
void tiff_fast_close(tiff_fast *f); /* accepts NULL */
/* RGB of the w x h region at level coordinates (lx, ly). -1 + err on a bad tile. */
int tiff_fast_read(tiff_fast *f, int level, int64_t lx, int64_t ly, int w, int h, uint8_t *rgb, char *err, size_t en);

/* The decoded tile (col, row) of a level, RGB rows of *tw pixels (*tw x *th; edge tiles are
 * full-size, their pixels past the level's edge undefined), from the reader's cache. Valid until
 * the next call on f. NULL + err on a bad tile. */
const uint8_t *tiff_fast_tile(tiff_fast *f, int level, uint32_t col, uint32_t row, int *tw, int *th, char *err,
                              size_t en);
/* The level's tile size in pixels. */
void tiff_fast_tile_size(const tiff_fast *f, int level, int *tw, int *th);

#endif
