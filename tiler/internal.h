/* tiler/internal.h — shared between the tiler's own files (not part of the door). */
#ifndef MP_TILER_INTERNAL_H
#define MP_TILER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openslide.h>

#include "tiler/tiler.h"

/* tiler_thumbnail (tiler.h), reading through the direct TIFF reader when fast is not NULL
 * (tiler/tiffread.h). */
struct tiff_fast;
int tiler_thumbnail_fast(tiler_slide *s, struct tiff_fast *fast, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                    double *ds);

/* Route libtiff errors to a flag (never to the terminal). */
void tiler_tiff_quiet(void);

/* "what: <libvips' message>" into err. libvips keeps one error buffer for the whole process and
 * the workers share it: reading it and then clearing it would race with the other workers'
 * appends, so this takes and clears it in one step under libvips' lock (tiler/read.c). */
void tiler_vips_error_take(char *err, size_t en, const char *what);

#endif
