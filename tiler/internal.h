/* tiler/internal.h — shared between the tiler's own files (not part of the door). */
#ifndef MP_TILER_INTERNAL_H
#define MP_TILER_INTERNAL_H

#include <stdint.h>

#include "tiler/tiler.h"

/* tiler_thumbnail (tiler.h), reading through the direct TIFF reader when fast is not NULL
 * (tiler/tiffread.h). */
struct tiff_fast;
int tiler_thumbnail_fast(tiler_slide *s, struct tiff_fast *fast, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                    double *ds);

/* Route libtiff errors to a flag (never to the terminal). */
void tiler_tiff_quiet(void);

#endif
