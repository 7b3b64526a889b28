/* tests/tiler/mkslide.h — small synthetic slides for the tiler tests: glass with noise, pink
 * tissue blobs with purple "nuclei", optional green pen stroke, saved as a tiled pyramidal JPEG
 * TIFF with the MPP in the resolution tags (libvips). Deterministic for a seed. */
#ifndef MP_TEST_MKSLIDE_H
#define MP_TEST_MKSLIDE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <vips/vips.h>

enum { MK_PEN = 1, MK_NO_RES = 2, MK_FLAT = 4 /* no pyramid */ };

static uint32_t mk_rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

/* Returns 0 on success. mpp in µm/px (written as px/mm in XResolution with unit cm). */
static int mkslide(const char *path, int w, int h, double mpp, uint64_t seed, int flags)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) return -1;
    uint64_t s = seed * 2654435761ULL + 1;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        int n = (int)(mk_rng(&s) % 9) - 4;
        px[3 * i] = (uint8_t)(236 + n);
        px[3 * i + 1] = (uint8_t)(234 + n);
        px[3 * i + 2] = (uint8_t)(240 + n);
    }
    /* Tissue: a few big ellipses covering ~40% of the slide. */
    int nb = 3;
    for (int b = 0; b < nb; b++) {
        double cx = w * (0.25 + 0.25 * b), cy = h * (0.35 + 0.15 * (b % 2)), rx = w * 0.16, ry = h * 0.3;
        for (int y = (int)fmax(0, cy - ry); y < (int)fmin(h, cy + ry); y++)
            for (int x = (int)fmax(0, cx - rx); x < (int)fmin(w, cx + rx); x++) {
                double dx = (x - cx) / rx, dy = (y - cy) / ry;
                if (dx * dx + dy * dy > 1) continue;
                uint8_t *p = px + ((size_t)y * w + x) * 3;
                int n = (int)(mk_rng(&s) % 21) - 10;
                p[0] = (uint8_t)(220 + n);
                p[1] = (uint8_t)(140 + n);
                p[2] = (uint8_t)(185 + n);
            }
    }
    /* Nuclei: dark purple dots (~4 µm) inside tissue, so patches have texture. */
    int nn = (int)((double)w * h / 400);
    for (int k = 0; k < nn; k++) {
        int x = (int)(mk_rng(&s) % (uint32_t)w), y = (int)(mk_rng(&s) % (uint32_t)h);
        uint8_t *c = px + ((size_t)y * w + x) * 3;
        if (c[1] > 200) continue; /* glass */
        int r = 2 + (int)(mk_rng(&s) % 3);
        for (int yy = y - r; yy <= y + r; yy++)
            for (int xx = x - r; xx <= x + r; xx++) {
                if (xx < 0 || yy < 0 || xx >= w || yy >= h || (xx - x) * (xx - x) + (yy - y) * (yy - y) > r * r) continue;
                uint8_t *p = px + ((size_t)yy * w + xx) * 3;
                p[0] = 90;
                p[1] = 50;
                p[2] = 140;
            }
    }
    if (flags & MK_PEN) /* a thick green stroke across the lower part, over glass and tissue */
        for (int y = (int)(h * 0.8); y < (int)(h * 0.8) + h / 20; y++)
            for (int x = w / 10; x < w * 9 / 10; x++) {
                uint8_t *p = px + ((size_t)y * w + x) * 3;
                p[0] = 40;
                p[1] = 150;
                p[2] = 70;
            }
    VipsImage *im = vips_image_new_from_memory(px, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
    int rc;
    if (flags & MK_NO_RES)
        rc = vips_tiffsave(im, path, "tile", TRUE, "pyramid", !(flags & MK_FLAT), "compression",
                           VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, "Q", 90, "tile_width", 256, "tile_height", 256,
                           "xres", 1.0, "yres", 1.0, "resunit", VIPS_FOREIGN_TIFF_RESUNIT_INCH, NULL);
    else
        rc = vips_tiffsave(im, path, "tile", TRUE, "pyramid", !(flags & MK_FLAT), "compression",
                           VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, "Q", 90, "tile_width", 256, "tile_height", 256,
                           "xres", 1000.0 / mpp, "yres", 1000.0 / mpp, NULL);
    g_object_unref(im);
    free(px);
    return rc;
}

#endif
