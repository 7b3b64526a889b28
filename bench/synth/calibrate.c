/* bench/synth/calibrate.c — measures what the class calibration in synth/layout.c rests on:
 * the mean RGB of each class (full tissue, one class, no nuisance) against the stroma-only
 * background, so per-type nucleus counts can be solved for equal means at 1.25x.
 * usage: calibrate [MPP] [SIZE_PX] [count_L count_T count_S eu_L eu_T eu_S h_L h_T h_S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/internal.h"

static void mean_rgb(synth_slide *s, int size, int x0, double m[3])
{
    synth_scratch *sc = synth_scratch_new();
    int tile = 512;
    uint8_t *buf = malloc((size_t)tile * tile * 3);
    double acc[3] = {0};
    for (int y = 0; y < size; y += tile)
        for (int x = 0; x < size; x += tile) {
            synth_render(s, sc, x0 + x, x0 + y, tile, tile, buf, (size_t)tile * 3);
            for (size_t i = 0; i < (size_t)tile * tile; i++)
                for (int c = 0; c < 3; c++) acc[c] += buf[3 * i + c];
        }
    double n = (double)size * size;
    for (int c = 0; c < 3; c++) m[c] = acc[c] / n;
    free(buf);
    synth_scratch_free(sc);
}

int main(int argc, char **argv)
{
    double mpp = argc > 1 ? atof(argv[1]) : 1.0;
    int size = argc > 2 ? atoi(argv[2]) : 3072;
    float cnt[3], eu[3], hn[3];
    for (int t = 0; t < 3; t++) {
        cnt[t] = argc > 3 + t ? (float)atof(argv[3 + t]) : syn_type_count[t];
        eu[t] = argc > 6 + t ? (float)atof(argv[6 + t]) : syn_type_e_under[t];
        hn[t] = argc > 9 + t ? (float)atof(argv[9 + t]) : syn_type_h[t];
    }
    synth_params p;
    synth_params_default(&p);
    synth_nuisance_preset(&p, "none");
    p.mpp = mpp;
    p.width = p.height = 1000000;
    p.full_tissue = 1;
    double ref[3], m[3][3];
    p.uniform_class = 0;
    synth_slide *s = synth_slide_new(&p, 0, 0);
    for (int t = 0; t < 3; t++) s->lambda[t] = 0;
    mean_rgb(s, size, 1000, ref);
    synth_slide_free(s);
    printf("stroma-only  %7.2f %7.2f %7.2f\n", ref[0], ref[1], ref[2]);
    for (int k = 0; k < 3; k++) {
        p.uniform_class = k;
        s = synth_slide_new(&p, 0, 0);
        for (int t = 0; t < 3; t++) s->lambda[t] = cnt[t] / (224.0f * 224.0f), s->e_under[t] = eu[t], s->h_nuc[t] = hn[t];
        mean_rgb(s, size, 1000, m[k]);
        synth_slide_free(s);
        printf("%-11s  %7.2f %7.2f %7.2f   delta %6.2f %6.2f %6.2f  ratio %.3f %.3f  count %.1f eu %.2f h %.2f\n",
               synth_type_name(p.types[k]), m[k][0], m[k][1], m[k][2], m[k][0] - ref[0], m[k][1] - ref[1],
               m[k][2] - ref[2], (m[k][1] - ref[1]) / (m[k][0] - ref[0]), (m[k][2] - ref[2]) / (m[k][0] - ref[0]), cnt[k],
               eu[k], hn[k]);
    }
    double worst = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < a; b++)
            for (int c = 0; c < 3; c++) {
                double d = m[a][c] - m[b][c];
                if (d < 0) d = -d;
                if (d > worst) worst = d;
            }
    printf("largest class mean difference: %.2f / 255\n", worst);
    return 0;
}
