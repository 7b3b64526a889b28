/* common/colormap.c — viridis and cool-warm as interpolated stop tables. */
#include "common/colormap.h"

#include <math.h>

/* viridis (matplotlib's, sampled at ten even steps) and Moreland's cool-warm (nine steps):
 * both are smooth enough that linear interpolation between the stops keeps them perceptual */
static const uint8_t viridis[10][3] = {{68, 1, 84},    {72, 40, 120},  {62, 73, 137},  {49, 104, 142},
                                       {38, 130, 142}, {31, 158, 137}, {53, 183, 121}, {110, 206, 88},
                                       {181, 222, 43}, {253, 231, 37}};
static const uint8_t coolwarm[9][3] = {{59, 76, 192},   {98, 130, 234}, {141, 176, 254},
                                       {184, 208, 249}, {221, 221, 221}, {245, 196, 173},
                                       {244, 154, 123}, {222, 96, 77},   {180, 4, 38}};

mp_cmap mp_cmap_for(int nclasses) { return nclasses == 2 ? MP_CMAP_COOLWARM : MP_CMAP_VIRIDIS; }

const char *mp_cmap_name(mp_cmap c) { return c == MP_CMAP_COOLWARM ? "coolwarm" : "viridis"; }

void mp_colormap(mp_cmap c, float p, uint8_t rgb[3])
{
    const uint8_t(*stop)[3] = c == MP_CMAP_COOLWARM ? coolwarm : viridis;
    int n = c == MP_CMAP_COOLWARM ? 9 : 10;
    if (!(p >= 0)) p = 0;
    if (p > 1) p = 1;
    float x = p * (n - 1);
    int i = (int)x;
    if (i > n - 2) i = n - 2;
    float t = x - i;
    for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)lrintf(stop[i][k] + t * (stop[i + 1][k] - stop[i][k]));
}
