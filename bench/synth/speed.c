/* bench/synth/speed.c — generator throughput: render-only (libvips custom image drained by
 * vips_avg on all worker threads) versus the full tiled pyramidal JPEG TIFF write.
 * usage: speed W H MPP [OUT.tiff] */
#include <stdio.h>
#include <stdlib.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "synth/internal.h" /* synth_image_new */

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: speed W H MPP [OUT.tiff]\n");
        return 1;
    }
    synth_params p;
    synth_params_default(&p);
    p.width = atoi(argv[1]);
    p.height = atoi(argv[2]);
    p.mpp = atof(argv[3]);
    synth_slide *s = synth_slide_new(&p, 0, -1);
    double mpx = (double)p.width * p.height / 1e6, avg;
    VipsImage *im = synth_image_new(s);
    double t0 = mp_now();
    if (!im || vips_avg(im, &avg, NULL)) return 2;
    double t1 = mp_now();
    g_object_unref(im);
    printf("render only: %.1f Mpx in %.2f s = %.1f Mpx/s (%d threads)\n", mpx, t1 - t0, mpx / (t1 - t0),
           vips_concurrency_get());
    if (argc > 4) {
        t0 = mp_now();
        if (synth_tiff_write(s, argv[4], 256, 90, NULL)) {
            fprintf(stderr, "%s\n", mp_err());
            return 2;
        }
        t1 = mp_now();
        printf("tiff write:  %.1f Mpx in %.2f s = %.1f Mpx/s, peak RSS %.0f MiB\n", mpx, t1 - t0, mpx / (t1 - t0),
               mp_peak_rss() / 1048576.0);
    }
    synth_slide_free(s);
    return 0;
}
