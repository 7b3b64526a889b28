/* common/colormap.h — the heatmap colour maps, shared by infer's writers (heatmap.tif,
 * overlay.png) and the viewer's heatmap tiles and colour bar, so every picture of a probability
 * has the same colour for it. Pure functions over constant tables: any thread, nothing allocated. */
#ifndef MP_COLORMAP_H
#define MP_COLORMAP_H

#include <stdint.h>

typedef enum {
    MP_CMAP_VIRIDIS,   /* sequential, perceptually uniform: one class's probability */
    MP_CMAP_COOLWARM,  /* diverging blue - grey - red around 0.5 (Moreland's): two classes */
} mp_cmap;

/* The map for a model: diverging for two classes (p = 0.5 is the decision), viridis otherwise. */
mp_cmap mp_cmap_for(int nclasses);
/* "viridis" | "coolwarm" */
const char *mp_cmap_name(mp_cmap c);
/* Probability 0..1 (NaN = 0) to RGB, linear between the map's stops. */
void mp_colormap(mp_cmap c, float p, uint8_t rgb[3]);

#endif
