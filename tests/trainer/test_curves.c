/* tests/trainer/test_curves.c — the training curve: from a run's log, an SVG with a title, axis
 * labels with units, tick labels, a legend naming the loss terms and the validation metric, and a
 * PNG rendered from it through libvips that really shows the curves (coloured pixels where the
 * series are, text in black). Also common/plot's tick choice and bar chart. */
#include "tests/test.h"

#include <png.h>

#include "common/error.h"
#include "common/plot.h"
#include "common/util.h"
#include "trainer/trainer.h"

TEST(ticks)
{
    double t[16], lo = 0.03, hi = 0.97;
    int n = mp_plot_ticks(&lo, &hi, 5, t, 16);
    CHECK_INT(n, 6); /* step 0.2: 0, .2, ..., 1 */
    CHECK_NEAR(lo, 0, 1e-12);
    CHECK_NEAR(hi, 1, 1e-12);
    CHECK_NEAR(t[3], 0.6, 1e-12);
    lo = 1.2, hi = 7.9;
    n = mp_plot_ticks(&lo, &hi, 5, t, 16);
    CHECK_NEAR(t[1] - t[0], 2, 1e-12); /* raw step 1.34 → 2 */
    CHECK_NEAR(lo, 0, 1e-12);
    CHECK_NEAR(hi, 8, 1e-12);
}

/* counts of pixels near a colour (within 60 per channel) in an RGB image */
static int count_near(const uint8_t *im, int w, int h, int r, int g, int b)
{
    int c = 0;
    for (int i = 0; i < w * h; i++)
        if (abs(im[3 * i] - r) < 60 && abs(im[3 * i + 1] - g) < 60 && abs(im[3 * i + 2] - b) < 60) c++;
    return c;
}

TEST(curve_from_log)
{
    /* an RBD-like log: KD and feature terms, 12 epochs, validation rising to its best at epoch 10 */
    const char *log = tmp("run.log.jsonl");
    FILE *f = fopen(log, "w");
    for (int e = 1; e <= 12; e++)
        fprintf(f, "{\"epoch\":%d,\"step\":%d,\"loss\":%g,\"kd\":%g,\"feat\":%g,\"ce\":0,\"mt\":0,\"ccd\":0,\"crp\":0,"
                   "\"val_balanced_accuracy\":%f,\"img_per_s\":100,\"seconds\":1}\n",
                e, e * 10, 2.0 / e + 0.5, 1.5 / e, 0.5 / e + 0.5, e == 10 ? 0.93 : 0.5 + 0.03 * e);
    fprintf(f, "{\"epoch\":13,\"ste"); /* a torn last line, as a kill leaves it: skipped */
    fclose(f);
    CHECK_INT(tr_curve_write(log, tmp("run.svg"), tmp("run.png"), "training curve: rbd @ 1.25x, run.mpk"), 0);
    uint8_t *svg;
    size_t len;
    CHECK_INT(mp_read_file(tmp("run.svg"), &svg, &len), 0);
    const char *want[] = {"training curve: rbd @ 1.25x, run.mpk", "epoch (1-based)", "loss (mean per step over the epoch)",
                          "validation balanced accuracy (0-1)", "training loss (total, left)", "KD term (T²·KL)",
                          "feature term (β·MSE)", "validation balanced accuracy (right)",
                          "best validation balanced accuracy 0.9300 at epoch 10 of 12", ">12</text>", ">0.8</text>"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr((char *)svg, want[i])) {
            printf("  SVG lacks \"%s\"\n", want[i]);
            CHECK(0);
        }
    CHECK(strstr((char *)svg, "cross-entropy") == NULL); /* an inactive term has no legend entry */
    free(svg);
    /* five epochs: ticks on whole epochs only (1.5, 2.5... were drawn before) */
    f = fopen(log, "w");
    for (int e = 1; e <= 5; e++)
        fprintf(f, "{\"epoch\":%d,\"loss\":%g,\"ce\":%g,\"val_balanced_accuracy\":null}\n", e, 1.0 / e, 1.0 / e);
    fclose(f);
    CHECK_INT(tr_curve_write(log, tmp("five.svg"), NULL, "five"), 0);
    CHECK_INT(mp_read_file(tmp("five.svg"), &svg, &len), 0);
    CHECK(strstr((char *)svg, ">1.5</text>") == NULL);
    CHECK(strstr((char *)svg, ">4</text>") != NULL);
    CHECK(strstr((char *)svg, "5 epochs; no labelled validation patches") != NULL);
    free(svg);
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    CHECK(png_image_begin_read_from_file(&pi, tmp("run.png")) != 0);
    pi.format = PNG_FORMAT_RGB;
    uint8_t *im = malloc(PNG_IMAGE_SIZE(pi));
    CHECK(png_image_finish_read(&pi, NULL, im, 0, NULL) != 0);
    CHECK_INT(pi.width, 760);
    CHECK_INT(pi.height, 440);
    int red = count_near(im, pi.width, pi.height, 0xd6, 0x27, 0x28), blue = count_near(im, pi.width, pi.height, 0x1f, 0x77, 0xb4),
        dark = count_near(im, pi.width, pi.height, 0, 0, 0), white = count_near(im, pi.width, pi.height, 255, 255, 255);
    printf("  PNG pixels: %d red (loss), %d blue (validation), %d dark (text, axes), %d white\n", red, blue, dark, white);
    CHECK(red > 300);   /* a 2 px line across ~650 px */
    CHECK(blue > 300);
    CHECK(dark > 2000); /* title, labels and ticks were rendered as glyphs */
    CHECK(white > pi.width * pi.height / 2);
    free(im);
}

TEST(bad_log)
{
    CHECK_INT(tr_curve_write(tmp("absent.jsonl"), tmp("a.svg"), tmp("a.png"), "t"), -1);
    CHECK(strstr(mp_err(), "absent.jsonl") != NULL);
}

TEST(bars)
{
    const char *groups[] = {"mild", "strong"}, *bars[] = {"teacher @10x", "RBD @1.25x"};
    double v[] = {99.5, 97.0, 99.0, NAN}, e[] = {0.3, 1.2, 0.5, NAN};
    mp_bars b = {.title = "T & <x>", .ylabel = "y", .ymin = 0, .ymax = 100, .ngroups = 2, .nbars = 2, .groups = groups,
                 .bars = bars, .val = v, .err = e};
    char *s = mp_bars_svg(&b);
    CHECK(strstr(s, "T &amp; &lt;x&gt;") != NULL); /* escaped */
    CHECK(strstr(s, ">97.0</text>") != NULL);
    int rects = 0;
    for (const char *p = s; (p = strstr(p, "<rect x=")); p++) rects++;
    CHECK_INT(rects, 3); /* the NaN bar is left out */
    CHECK_INT(tr_svg_to_png(s, tmp("bars.png")), 0);
    CHECK(mp_file_size(tmp("bars.png")) > 1000);
    free(s);
}

int main(void)
{
    if (t_tmpdir("curves") < 0) return 1;
    RUN(ticks);
    RUN(curve_from_log);
    RUN(bad_log);
    RUN(bars);
    t_rmdir();
    return test_done();
}
