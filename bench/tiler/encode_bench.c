/* bench/tiler/encode_bench.c — per-call cost of encoding one 224x224 patch as JPEG Q90:
 * libturbojpeg (what the tiler uses) vs libvips jpegsave_buffer (the alternative), and of a
 * libvips 449->224 resize, on real pixels read from a slide. One thread.
 * Built by meson as build/bench/encode_bench.
 * Usage: encode_bench SLIDE [N] */
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <turbojpeg.h>
#include <vips/vips.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || VIPS_INIT(argv[0])) return 1;
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    openslide_t *o = openslide_open(argv[1]);
    if (!o) return 1;
    int64_t w, h;
    openslide_get_level_dimensions(o, 0, &w, &h);
    int s = 449;
    uint32_t *argb = malloc((size_t)s * s * 4);
    openslide_read_region(o, argb, w / 2, h / 2, 0, s, s);
    uint8_t *big = malloc((size_t)s * s * 3), *rgb = malloc(224 * 224 * 3);
    for (int i = 0; i < s * s; i++) {
        big[3 * i] = (argb[i] >> 16) & 255;
        big[3 * i + 1] = (argb[i] >> 8) & 255;
        big[3 * i + 2] = argb[i] & 255;
    }
    for (int y = 0; y < 224; y++)
        for (int x = 0; x < 224 * 3; x++) rgb[y * 224 * 3 + x] = big[y * s * 3 + x];
    tjhandle tj = tjInitCompress();
    size_t bytes = 0;
    double t = now();
    for (int i = 0; i < n; i++) {
        unsigned char *buf = NULL;
        unsigned long len = 0;
        tjCompress2(tj, rgb, 224, 0, 224, TJPF_RGB, &buf, &len, TJSAMP_444, 90, TJFLAG_ACCURATEDCT);
        bytes += len;
        tjFree(buf);
    }
    double tt = (now() - t) / n;
    printf("turbojpeg 224px Q90 4:4:4: %.1f us/patch, %zu bytes\n", tt * 1e6, bytes / n);
    bytes = 0;
    t = now();
    for (int i = 0; i < n; i++) {
        VipsImage *im = vips_image_new_from_memory(rgb, 224 * 224 * 3, 224, 224, 3, VIPS_FORMAT_UCHAR);
        void *buf;
        size_t len;
        vips_jpegsave_buffer(im, &buf, &len, "Q", 90, NULL);
        bytes += len;
        g_free(buf);
        g_object_unref(im);
    }
    double tv = (now() - t) / n;
    printf("vips jpegsave_buffer 224px Q90: %.1f us/patch, %zu bytes (turbojpeg is %.2fx faster)\n", tv * 1e6,
           bytes / n, tv / tt);
    t = now();
    for (int i = 0; i < n; i++) {
        VipsImage *im = vips_image_new_from_memory(big, (size_t)s * s * 3, s, s, 3, VIPS_FORMAT_UCHAR), *out;
        vips_resize(im, &out, 224.0 / s, NULL);
        size_t len;
        void *px = vips_image_write_to_memory(out, &len);
        g_free(px);
        g_object_unref(out);
        g_object_unref(im);
    }
    printf("vips_resize 449->224 (lanczos3): %.1f us/patch\n", (now() - t) / n * 1e6);
    tjDestroy(tj);
    openslide_close(o);
    return 0;
}
