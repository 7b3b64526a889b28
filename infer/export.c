/* infer/export.c — the small outputs next to heatmap.tif: the colour map, QuPath GeoJSON of the
 * cells above a threshold. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/colormap.h"
#include "common/error.h"
#include "common/util.h"
#include "infer/infer.h"
#include "infer/internal.h"

/* the maps live in common/colormap.c (the viewer draws with them too) */
infer_cmap infer_cmap_for(int nclasses) { return nclasses == 2 ? INFER_CMAP_DIVERGING : INFER_CMAP_VIRIDIS; }

static mp_cmap common_map(infer_cmap c) { return c == INFER_CMAP_DIVERGING ? MP_CMAP_COOLWARM : MP_CMAP_VIRIDIS; }

const char *infer_cmap_name(infer_cmap c) { return mp_cmap_name(common_map(c)); }

void infer_colormap(infer_cmap c, float p, uint8_t rgb[3]) { mp_colormap(common_map(c), p, rgb); }

static void class_color(int k, int rgb[3])
{
    static const int pal[8][3] = {{200, 0, 0},   {0, 150, 0},   {0, 80, 220},  {220, 160, 0},
                                  {150, 0, 180}, {0, 170, 170}, {120, 70, 20}, {90, 90, 90}};
    memcpy(rgb, pal[k % 8], sizeof pal[0]);
}

int infer_geojson_write(const char *path, const infer_grid *g, const float *prob, const uint8_t *valid,
                        int K, char *const *names, double threshold)
{
    json_t *fc = json_object(), *feats = json_array();
    json_object_set_new(fc, "type", json_string("FeatureCollection"));
    for (int k = 0; k < K; k++) {
        json_t *polys = json_array();
        int64_t n = 0;
        double sum = 0;
        for (int j = 0; j < g->ny; j++) {
            int i = 0;
            while (i < g->nx) {
                size_t c = (size_t)j * g->nx + i;
                if (!valid[c] || prob[c * K + k] < threshold) {
                    i++;
                    continue;
                }
                int a = i;
                while (i < g->nx && valid[(size_t)j * g->nx + i] && prob[((size_t)j * g->nx + i) * K + k] >= threshold) {
                    sum += prob[((size_t)j * g->nx + i) * K + k];
                    n++;
                    i++;
                }
                /* QuPath's frame starts at the bounds origin: cell edges are multiples of cell0 */
                double x0 = a * g->cell0, x1 = i * g->cell0, y0 = j * g->cell0, y1 = (j + 1) * g->cell0;
                json_t *ring = json_pack("[[f,f],[f,f],[f,f],[f,f],[f,f]]", x0, y0, x1, y0, x1, y1, x0, y1, x0, y0);
                json_array_append_new(polys, json_pack("[o]", ring));
            }
        }
        if (n == 0) {
            json_decref(polys);
            continue;
        }
        int c[3];
        class_color(k, c);
        json_t *f = json_pack("{s:s, s:{s:s, s:o}, s:{s:s, s:{s:s, s:[i,i,i]}, s:{s:I, s:f}}}", "type", "Feature",
                              "geometry", "type", "MultiPolygon", "coordinates", polys, "properties", "objectType",
                              "annotation", "classification", "name", names[k], "color", c[0], c[1], c[2],
                              "measurements", "cells", (json_int_t)n, "mean_probability", sum / n);
        if (!f) {
            json_decref(fc);
            json_decref(feats);
            return mp_err_set("%s: cannot build GeoJSON", path);
        }
        json_array_append_new(feats, f);
    }
    json_object_set_new(fc, "features", feats);
    char *txt = json_dumps(fc, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(fc);
    if (!txt) return mp_err_set("%s: cannot serialise GeoJSON", path);
    int r = mp_write_file_atomic(path, txt, strlen(txt));
    free(txt);
    return r;
}
