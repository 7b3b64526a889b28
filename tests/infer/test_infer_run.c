/* tests/infer/test_infer_run.c — registration and values on a synthetic slide whose truth is
 * known: a constructed checkpoint whose tissue probability is a known monotone function of the
 * patch's brightness against a threshold (glass is bright, tissue dark), run through the whole
 * pipeline; the heatmap must agree with the synthetic label mask within a cell, its values must
 * equal the model's probabilities on the same patches, and reruns must be skipped. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

#include "common/error.h"
#include "infer/infer.h"
#include "infer/internal.h"
#include "nn/arch.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "synth/synth.h"
#include "tests/test.h"

static char tmpdir[256], slide_path[512], ckpt_path[512];
static synth_slide *slide;

#define MAG 2.5   /* 4 µm per model px */
#define SIZE 16   /* 64 µm patches */
#define STRIDE 8  /* 32 µm cells */
#define MPP 0.5

static void set(nn_params *ps, const char *name, const float *v, size_t n)
{
    nn_param *p = nn_params_find(ps, name);
    if (!p || p->numel != n) {
        fprintf(stderr, "constructed model: %s missing or %zu != %zu\n", name, p ? p->numel : 0, n);
        exit(1);
    }
    memcpy(p->data, v, n * sizeof(float));
}

/* Width 4, GroupNorm over one group. Stem: local mean m of (pixel - t) as (m, -m, -m, m); GN
 * keeps the signs (zero group mean), ReLU leaves P = relu(m) (bright) and Q = relu(-m) (dark).
 * Residual branches are zeroed (norm gamma 0), so blocks pass their shortcut; the downsampling
 * shortcuts map (P, ., Q, .) to (P, -P, Q, -Q), which GN again only scales. The fc compares the
 * pooled P and Q: logit(tissue) - logit(glass) = 12 (mean Q - mean P) / scale. */
static int make_ckpt(const char *path, double t)
{
    nn_model_cfg cfg;
    nn_model_cfg_resnet_gn(&cfg, 2);
    for (int s = 0; s < 4; s++) cfg.widths[s] = 4, cfg.blocks[s] = 1;
    cfg.groups = 1;
    nn_model *m = nn_model_create(&cfg, 1, SIZE, SIZE, 0);
    if (!m) return -1;
    nn_params *ps = nn_model_params(m);
    for (int i = 0; i < ps->n; i++) memset(ps->p[i].data, 0, ps->p[i].numel * sizeof(float));
    float stem[4 * 3 * 49];
    const float sign[4] = {1, -1, -1, 1};
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 3 * 49; i++) stem[o * 147 + i] = sign[o] / 147.0f;
    set(ps, "stem.0.weight", stem, 4 * 147);
    const float one[4] = {1, 1, 1, 1};
    set(ps, "stem.1.weight", one, 4);
    for (int b = 1; b < 4; b++) {
        char n[64];
        float sc[16] = {0};
        sc[0 * 4 + 0] = 1, sc[1 * 4 + 0] = -1, sc[2 * 4 + 2] = 1, sc[3 * 4 + 2] = -1;
        snprintf(n, sizeof n, "layers.%d.sc.0.weight", b);
        set(ps, n, sc, 16);
        snprintf(n, sizeof n, "layers.%d.sc.1.weight", b);
        set(ps, n, one, 4);
    }
    float fc[8] = {12, 0, 0, 0, 0, 0, 12, 0}; /* class 0 glass <- P, class 1 tissue <- Q */
    set(ps, "fc.weight", fc, 8);
    nn_ckpt ck = {0};
    nn_card card;
    nn_card_from_cfg(&card, &cfg);
    nn_card_write(&card, &ck);
    nn_card_free(&card);
    nn_ckpt_add_params(&ck, ps);
    nn_ckpt_set(&ck, "mag", "2.5");
    nn_ckpt_setf(&ck, "input_size", "%d", SIZE);
    nn_ckpt_setf(&ck, "norm.mean", "%g,%g,%g", t, t, t);
    nn_ckpt_set(&ck, "norm.std", "1,1,1");
    nn_ckpt_set(&ck, "class_names", "Glass\tTissue");
    int r = nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    nn_model_free(m);
    return r;
}

/* uint8 or float raster of level 0 of probability.tif, as floats 0..1, nx*ny*K */
static float *read_tif(const char *path, int *w, int *h, int *K)
{
    TIFF *t = TIFFOpen(path, "r");
    if (!t) return NULL;
    uint32_t W, H, tw, th;
    uint16_t spp, bps;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &W);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &H);
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
    TIFFGetField(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetField(t, TIFFTAG_BITSPERSAMPLE, &bps);
    float *out = calloc((size_t)W * H * spp, sizeof(float));
    uint8_t *tile = malloc(TIFFTileSize(t));
    for (uint32_t ty = 0; ty < H; ty += th)
        for (uint32_t tx = 0; tx < W; tx += tw) {
            TIFFReadTile(t, tile, tx, ty, 0, 0);
            for (uint32_t y = ty; y < ty + th && y < H; y++)
                for (uint32_t x = tx; x < tx + tw && x < W; x++)
                    for (int k = 0; k < spp; k++) {
                        size_t o = ((size_t)(y - ty) * tw + (x - tx)) * spp + k;
                        out[((size_t)y * W + x) * spp + k] = bps == 32 ? ((float *)tile)[o] : tile[o] / 255.0f;
                    }
        }
    free(tile);
    TIFFClose(t);
    *w = (int)W, *h = (int)H, *K = spp;
    return out;
}

static json_t *prediction(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/prediction.json", dir);
    return json_load_file(p, 0, NULL);
}

/* truth label of a cell's neighbourhood: 1 all tissue, 0 all glass, -1 mixed */
static int truth(const infer_grid *g, int i, int j, int reach)
{
    int seen[2] = {0, 0};
    for (double y = (j - reach) * g->cell0; y <= (j + 1 + reach) * g->cell0; y += g->cell0 / 4)
        for (double x = (i - reach) * g->cell0; x <= (i + 1 + reach) * g->cell0; x += g->cell0 / 4) {
            if (x < 0 || y < 0 || x >= g->bw || y >= g->bh) continue;
            seen[synth_label_at(slide, x, y) > 0] = 1;
        }
    return seen[0] && seen[1] ? -1 : seen[1];
}

TEST(registration)
{
    infer_model *m = infer_model_load(ckpt_path, 16);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "%s\n", mp_err());
        return;
    }
    infer_opts o;
    infer_opts_default(&o);
    o.stride = STRIDE;
    o.min_tissue = 0;
    o.float32 = 1;
    o.threads = 1;
    o.batch = 16;
    o.progress = MP_PROGRESS_NONE;
    infer_result r;
    int rc = infer_slide(m, ckpt_path, slide_path, tmpdir, &o, &r);
    if (rc) fprintf(stderr, "%s\n", mp_err());
    CHECK_INT(rc, 0);
    CHECK_INT(r.outcome, INFER_DONE);
    infer_grid g;
    CHECK_INT(infer_grid_make(0, 0, 4096, 3072, MPP, MAG, SIZE, STRIDE, &g), 0);
    char tif[4200];
    snprintf(tif, sizeof tif, "%s/probability.tif", r.outdir);
    int w = 0, h = 0, K = 0;
    float *p = read_tif(tif, &w, &h, &K);
    CHECK(p != NULL);
    if (!p) return;
    CHECK_INT(w, g.nx);
    CHECK_INT(h, g.ny);
    CHECK_INT(K, 2);

    /* registration: wherever the truth is uniform one cell around, the heatmap must say the same */
    int n_sure = 0, n_bad = 0, n_tissue = 0, n_shift_bad = 0, n_shift = 0;
    for (int j = 0; j < g.ny; j++)
        for (int i = 0; i < g.nx; i++) {
            const float *q = p + ((size_t)j * w + i) * K;
            int pred = q[0] + q[1] > 0.5f && q[1] >= 0.5f;
            int t1 = truth(&g, i, j, 1);
            if (t1 >= 0) {
                n_sure++;
                n_tissue += t1;
                if (pred != t1) {
                    if (n_bad < 5) fprintf(stderr, "cell %d,%d: heatmap %d (p %.3f) truth %d\n", i, j, pred, q[1], t1);
                    n_bad++;
                }
            }
            /* the same comparison against truth shifted by 3 cells must fail often: the test can see
             * a misregistration */
            if (i + 3 < g.nx) {
                int ts = truth(&g, i + 3, j, 0);
                if (ts >= 0) {
                    n_shift++;
                    n_shift_bad += pred != ts;
                }
            }
        }
    fprintf(stderr, "registration: %d sure cells (%d tissue), %d disagree; shifted by 3 cells: %d of %d\n", n_sure,
            n_tissue, n_bad, n_shift_bad, n_shift);
    CHECK(n_sure > 1000);
    CHECK(n_tissue > 300 && n_sure - n_tissue > 300);
    CHECK(n_bad <= n_sure / 200); /* <= 0.5 % */
    CHECK(n_shift_bad > 10 * (n_bad + 1));

    /* values: each cell of the raster is the overlap average of the model's probabilities on
     * the patches of the windows covering it (stride = half a patch: the own window whole, the
     * 8 neighbours' by the share of the cell they cover), recomputed here patch by patch */
    infer_src src;
    CHECK_INT(infer_src_open(slide_path, 0, &src), 0);
    tiler_patch_geom geom;
    infer_src_geom(&src, MAG, g.patch0, SIZE, &geom);
    tiler_reader *rd = tiler_reader_open(&src.s);
    char rerr[512];
    uint8_t *rgb = malloc(SIZE * SIZE * 3);
    double kw[3];
    CHECK_INT(infer_grid_kernel(&g, kw, 3), 1);
    CHECK_NEAR(kw[0], 0.5, 1e-12);
    int checked = 0, off = 0;
    for (int c = 0; c < g.nx * g.ny; c += 97) {
        const float *q = p + (size_t)c * K;
        if (q[0] + q[1] == 0) continue; /* not evaluated */
        int ci = c % g.nx, cj = c / g.nx;
        double num[2] = {0, 0}, den = 0;
        for (int b = cj - 1; b <= cj + 1; b++)
            for (int a = ci - 1; a <= ci + 1; a++) {
                if (a < 0 || b < 0 || a >= g.nx || b >= g.ny) continue;
                const float *qa = p + ((size_t)b * g.nx + a) * K;
                if (qa[0] + qa[1] == 0) continue; /* that window was not evaluated */
                int64_t x0, y0;
                infer_grid_patch_origin(&g, a, b, &x0, &y0);
                float pp[2];
                CHECK_INT(tiler_read_patch(rd, &geom, x0, y0, rgb, rerr, sizeof rerr), 0);
                CHECK_INT(infer_model_predict(m, rgb, 1, pp), 0);
                double wgt = kw[a - ci + 1] * kw[b - cj + 1];
                num[0] += wgt * pp[0], num[1] += wgt * pp[1], den += wgt;
            }
        off += fabs(num[0] / den - q[0]) > 1e-5 || fabs(num[1] / den - q[1]) > 1e-5;
        checked++;
    }
    CHECK(checked > 10);
    CHECK_INT(off, 0);
    /* the slide-level mean is over the patches themselves, not the averaged cells */
    double patch_mean1 = 0;
    int64_t npatch = 0;
    for (int c = 0; c < g.nx * g.ny; c++) {
        if (p[c * K] + p[c * K + 1] == 0) continue;
        int64_t x0, y0;
        infer_grid_patch_origin(&g, c % g.nx, c / g.nx, &x0, &y0);
        float pp[2] = {0, 0};
        if (tiler_read_patch(rd, &geom, x0, y0, rgb, rerr, sizeof rerr) || infer_model_predict(m, rgb, 1, pp)) off++;
        patch_mean1 += pp[1];
        npatch++;
    }
    CHECK_INT(off, 0);
    free(rgb);
    tiler_reader_close(rd);
    infer_src_close(&src);

    /* prediction.json: counts and slide-level predictions agree with the raster */
    json_t *j = prediction(r.outdir);
    CHECK(j != NULL);
    if (j) {
        int64_t nval = 0;
        double mean1 = 0;
        for (int c = 0; c < g.nx * g.ny; c++)
            if (p[c * K] + p[c * K + 1] > 0) nval++, mean1 += p[c * K + 1];
        CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "patches"), "evaluated")), nval);
        CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "patches"), "cells")), g.nx * g.ny);
        json_t *pm = json_object_get(json_object_get(j, "prediction_mean"), "probabilities");
        CHECK_NEAR(json_real_value(json_array_get(pm, 1)), patch_mean1 / npatch, 1e-6);
        CHECK(fabs(mean1 / nval - patch_mean1 / npatch) < 0.05); /* and close to the cells' mean */
        CHECK_STR(json_string_value(json_object_get(json_object_get(j, "mpp"), "source")), "tiff.XResolution");
        CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "read"), "level")), geom.level);
        json_decref(j);
    }

    /* GeoJSON: the Tissue feature covers exactly the raster's cells >= 0.5, QuPath layout */
    char gj[4200];
    snprintf(gj, sizeof gj, "%s/heatmap.geojson", r.outdir);
    json_t *fc = json_load_file(gj, 0, NULL);
    CHECK(fc != NULL);
    if (fc) {
        int want = 0;
        for (int c = 0; c < g.nx * g.ny; c++) want += p[c * K] + p[c * K + 1] > 0 && p[c * K + 1] >= 0.5f;
        size_t idx;
        json_t *f;
        int got = -1;
        json_array_foreach(json_object_get(fc, "features"), idx, f)
        {
            json_t *pr = json_object_get(f, "properties");
            if (!strcmp(json_string_value(json_object_get(json_object_get(pr, "classification"), "name")), "Tissue"))
                got = (int)json_integer_value(json_object_get(json_object_get(pr, "measurements"), "cells"));
        }
        CHECK_INT(got, want);
        json_decref(fc);
    }
    free(p);

    /* rerun: skipped; a changed parameter recomputes */
    CHECK_INT(infer_slide(m, ckpt_path, slide_path, tmpdir, &o, &r), 0);
    CHECK_INT(r.outcome, INFER_SKIPPED);
    o.threshold = 0.6;
    CHECK_INT(infer_slide(m, ckpt_path, slide_path, tmpdir, &o, &r), 0);
    CHECK_INT(r.outcome, INFER_DONE);
    /* nothing temporary left behind */
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp >/dev/null", r.outdir);
    CHECK(system(cmd) != 0);
    infer_model_free(m);
}

int main(void)
{
    TIFFSetWarningHandler(NULL);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mp_infer_run_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    if (infer_global_init("test_infer_run")) {
        fprintf(stderr, "%s\n", mp_err());
        return 1;
    }
    synth_params sp;
    synth_params_default(&sp);
    sp.width = 4096, sp.height = 3072, sp.mpp = MPP, sp.seed = 7;
    sp.pen_prob = 0, sp.dust_per_mm2 = 0;
    slide = synth_slide_new(&sp, 0, -1);
    snprintf(slide_path, sizeof slide_path, "%s/reg.tiff", tmpdir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/bright.mpk", tmpdir);
    double t = getenv("MAGPIE_INFER_T") ? atof(getenv("MAGPIE_INFER_T")) : 0.82;
    if (!slide || synth_tiff_write(slide, slide_path, 256, 90, NULL) || make_ckpt(ckpt_path, t)) {
        fprintf(stderr, "setup: %s\n", mp_err());
        return 1;
    }
    RUN(registration);
    synth_slide_free(slide);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 1;
    return test_done();
}
