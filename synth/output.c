/* synth/output.c — a whole `magpie synth` run: stream each slide through a libvips custom
 * image into a tiled pyramidal JPEG TIFF, write its ground truth and sidecar, then the run's
 * slides.csv (slide,patient,label) and synth.json (the parameters). */
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "synth/internal.h"

static int vips_ready(void)
{
    static int done;
    if (done) return 0;
    char why[400];
    if (VIPS_INIT("magpie")) return mp_err_set("libvips: %s", mp_vips_err_take_into(why, sizeof why, NULL));
    done = 1;
    return 0;
}

/* Rendering context owned by the image: freed when libvips closes it. */
typedef struct {
    const synth_slide *s;
    mp_progress *prog;
    _Atomic uint64_t px;
    uint64_t base; /* Mpx already done before this slide */
} gen_ctx;

static void *gen_start(VipsImage *out, void *a, void *b) { return synth_scratch_new(); }

static int gen_fn(VipsRegion *reg, void *seq, void *a, void *b, gboolean *stop)
{
    gen_ctx *g = a;
    VipsRect *r = &reg->valid;
    synth_render(g->s, seq, r->left, r->top, r->width, r->height, (uint8_t *)VIPS_REGION_ADDR(reg, r->left, r->top),
                 (size_t)VIPS_REGION_LSKIP(reg));
    uint64_t n = (uint64_t)r->width * r->height;
    uint64_t before = atomic_fetch_add(&g->px, n);
    if (g->prog && (before >> 20) != ((before + n) >> 20))
        mp_progress_update(g->prog, g->base + (before + n) / 1000000, NULL);
    return 0;
}

static int gen_stop(void *seq, void *a, void *b)
{
    synth_scratch_free(seq);
    return 0;
}

static void ctx_free(VipsImage *im, void *a) { free(a); }

static VipsImage *image_new(const synth_slide *s, mp_progress *prog, uint64_t base)
{
    if (vips_ready()) return NULL;
    const synth_params *p = &s->p;
    double ppmm = 1000.0 / p->mpp; /* libvips resolution unit: pixels per millimetre */
    gen_ctx *g = mp_xcalloc(1, sizeof *g);
    g->s = s, g->prog = prog, g->base = base;
    atomic_init(&g->px, 0);
    VipsImage *im = vips_image_new();
    g_signal_connect(im, "close", G_CALLBACK(ctx_free), g);
    vips_image_init_fields(im, p->width, p->height, 3, VIPS_FORMAT_UCHAR, VIPS_CODING_NONE, VIPS_INTERPRETATION_sRGB,
                           ppmm, ppmm);
    if (vips_image_pipelinev(im, VIPS_DEMAND_STYLE_SMALLTILE, NULL) ||
        vips_image_generate(im, gen_start, gen_fn, gen_stop, g, NULL)) {
        g_object_unref(im);
        char why[400];
        mp_err_set("libvips: %s", mp_vips_err_take_into(why, sizeof why, NULL));
        return NULL;
    }
    return im;
}

VipsImage *synth_image_new(const synth_slide *s) { return image_new(s, NULL, 0); }

static int tiff_write_base(const synth_slide *s, const char *path, int tile, int quality, mp_progress *prog,
                           uint64_t base)
{
    const synth_params *p = &s->p;
    double ppmm = 1000.0 / p->mpp;
    VipsImage *im = image_new(s, prog, base);
    if (!im) return mp_err_prefix("%s", path);
    /* classic TIFF offsets are 32-bit: go BigTIFF when the JPEG stream might pass ~3.5 GB */
    double est = (double)p->width * p->height * 1.34 * (quality >= 95 ? 1.5 : 0.6);
    char tmp[4200];
    mp_atomic_tmp_name(tmp, sizeof tmp, path);
    int rc = vips_tiffsave(im, tmp, "tile", TRUE, "tile_width", tile, "tile_height", tile, "pyramid", TRUE,
                           "compression", VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, "Q", quality, "xres", ppmm, "yres", ppmm,
                           "resunit", VIPS_FOREIGN_TIFF_RESUNIT_CM, "bigtiff", est > 3.5e9, NULL);
    g_object_unref(im);
    if (rc) {
        char why[400]; /* one line: the take joins libvips' lines */
        mp_err_set("%s: libvips: %s", path, mp_vips_err_take_into(why, sizeof why, NULL));
        unlink(tmp);
        return -1;
    }
    return mp_atomic_commit_tmp(tmp, path);
}

int synth_tiff_write(const synth_slide *s, const char *path, int tile, int quality, mp_progress *prog)
{
    return tiff_write_base(s, path, tile, quality, prog, 0);
}

/* RFC 4180: quote only when needed, doubling inner quotes. */
static void csv_field(FILE *f, const char *v, int last)
{
    int q = strpbrk(v, ",\"\r\n") != NULL || (v[0] == ' ') || (v[0] && v[strlen(v) - 1] == ' ');
    if (q) {
        fputc('"', f);
        for (const char *c = v; *c; c++) {
            if (*c == '"') fputc('"', f);
            fputc(*c, f);
        }
        fputc('"', f);
    } else {
        fputs(v, f);
    }
    fputs(last ? "\n" : ",", f);
}

static json_t *params_json(const synth_run_opts *o)
{
    const synth_params *p = &o->p;
    json_t *cls = json_array();
    for (int k = 0; k < p->nclasses; k++) {
        int rgb[3];
        synth_type_color(p->types[k], rgb);
        json_array_append_new(cls, json_pack("{s:i, s:s, s:s, s:[i,i,i]}", "value", k + 1, "name", p->names[k], "type",
                                             synth_type_name(p->types[k]), "color", rgb[0], rgb[1], rgb[2]));
    }
    return json_pack("{s:s, s:I, s:i, s:i, s:i, s:i, s:f, s:o, s:{s:f, s:f, s:f}, s:f, s:f, s:f, s:f, s:i, s:i}",
                     "generator", "magpie synth", "seed", (json_int_t)p->seed, "slides", o->slides, "patients",
                     o->patients, "width", p->width, "height", p->height, "mpp", p->mpp, "classes", cls, "nuisance",
                     "mix", p->mix, "density_jitter", p->density_jitter, "stain_jitter", p->stain_jitter, "region_um",
                     p->region_um, "purity", p->purity, "pen_prob", p->pen_prob, "dust_per_mm2", p->dust_per_mm2,
                     "tile", o->tile, "quality", o->quality);
}

static int write_json(const char *path, json_t *j)
{
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!txt) return mp_err_set("%s: JSON encoding failed", path);
    size_t n = strlen(txt);
    txt = mp_xrealloc(txt, n + 2);
    txt[n] = '\n', txt[n + 1] = 0;
    int rc = mp_write_file_atomic(path, txt, n + 1);
    free(txt);
    return rc;
}

typedef struct {
    char name[128], patient[128];
    int label; /* class index, -1 if the slide failed */
} slide_row;

static int one_slide(const synth_run_opts *o, int i, int dominant, slide_row *row, mp_progress *prog, uint64_t base)
{
    const synth_params *p = &o->p;
    char path[4096];
    synth_slide *s = synth_slide_new(p, i, dominant);
    synth_mask m = {0}, am = {0};
    int ds = o->mask_downsample > 0 ? o->mask_downsample : synth_mask_default_downsample(p->width, p->height, p->mpp);
    int rc = -1;
    json_t *side = NULL;
    if (synth_mask_make(s, ds, &m)) goto done;
    /* slide label: the class covering the largest share of the slide's tissue */
    uint64_t count[SYNTH_MAX_CLASSES + 1] = {0};
    for (size_t k = 0; k < (size_t)m.width * m.height; k++) count[m.data[k]]++;
    uint64_t tissue = 0;
    int best = -1;
    for (int k = 0; k < p->nclasses; k++) {
        tissue += count[k + 1];
        if (best < 0 || count[k + 1] > count[best + 1]) best = k;
    }
    row->label = tissue ? best : s->dominant;

    snprintf(path, sizeof path, "%s/%s_mask.png", o->outdir, row->name);
    if (synth_mask_write_png(s, &m, path)) goto done;
    snprintf(path, sizeof path, "%s/%s.geojson", o->outdir, row->name);
    if (synth_geojson_write(s, &m, path)) goto done;
    if (synth_artifact_mask_make(s, ds, &am)) goto done;
    snprintf(path, sizeof path, "%s/%s_artifacts.png", o->outdir, row->name);
    if (synth_artifact_mask_write_png(s, &am, path)) goto done;
    snprintf(path, sizeof path, "%s/%s.tiff", o->outdir, row->name);
    if (tiff_write_base(s, path, o->tile, o->quality, prog, base)) goto done;

    json_t *cls = json_array();
    for (int k = 0; k < p->nclasses; k++) {
        int rgb[3];
        synth_type_color(p->types[k], rgb);
        json_array_append_new(cls, json_pack("{s:i, s:s, s:s, s:[i,i,i], s:f}", "value", k + 1, "name", p->names[k], "type",
                                             synth_type_name(p->types[k]), "color", rgb[0], rgb[1], rgb[2], "tissue_share",
                                             tissue ? (double)count[k + 1] / tissue : 0.0));
    }
    json_t *pens = json_array();
    for (int k = 0; k < s->npen; k++) {
        json_t *pts = json_array();
        for (int q = 0; q < s->pen[k].npts; q++)
            json_array_append_new(pts, json_pack("[f,f]", s->pen[k].x[q] / p->mpp, s->pen[k].y[q] / p->mpp));
        json_array_append_new(pens, json_pack("{s:f, s:[f,f,f], s:o}", "width", s->pen[k].width / p->mpp, "od",
                                              s->pen[k].od[0], s->pen[k].od[1], s->pen[k].od[2], "line", pts));
    }
    char f_tiff[160], f_mask[160], f_geo[160], f_art[160];
    snprintf(f_art, sizeof f_art, "%s_artifacts.png", row->name);
    snprintf(f_tiff, sizeof f_tiff, "%s.tiff", row->name);
    snprintf(f_mask, sizeof f_mask, "%s_mask.png", row->name);
    snprintf(f_geo, sizeof f_geo, "%s.geojson", row->name);
    side = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:s, s:s, s:{s:s, s:i, s:i, s:i, s:f, s:s}, s:o, s:f, "
                     "s:{s:s, s:s}, s:o}",
                     "slide", row->name, "patient", row->patient, "label", p->names[row->label], "width", p->width,
                     "height", p->height, "mpp", p->mpp, "tiff", f_tiff, "geojson", f_geo, "mask", "file", f_mask,
                     "downsample", ds, "width", m.width, "height", m.height, "mpp", p->mpp * ds, "values",
                     "0 = background (glass), k = classes[k-1]", "classes", cls, "tissue_fraction",
                     (double)tissue / ((double)m.width * m.height), "artifacts", "file", f_art, "values",
                     "0 = none, 1 = pen ink, 2 = dust (same grid as the mask)", "pen_strokes", pens);
    snprintf(path, sizeof path, "%s/%s.json", o->outdir, row->name);
    if (write_json(path, side)) goto done;
    rc = 0;
done:
    json_decref(side);
    synth_mask_free(&m);
    synth_mask_free(&am);
    synth_slide_free(s);
    return rc;
}

int synth_run(const synth_run_opts *o)
{
    const synth_params *p = &o->p;
    if (mp_mkdir_p(o->outdir)) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (vips_ready()) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (o->jobs > 0) vips_concurrency_set(o->jobs);
    int digits = 3;
    for (int n = o->slides - 1; n >= 1000; n /= 10) digits++;
    slide_row *rows = mp_xcalloc((size_t)o->slides, sizeof *rows);
    /* patients are dealt round-robin; each patient's slides share a dominant class */
    mp_rng r;
    mp_rng_derive(&r, p->seed, P_LAYOUT, 0xC1A55, 0);
    int off = (int)mp_rng_below(&r, (uint32_t)p->nclasses);
    uint64_t mpx_slide = (uint64_t)p->width * p->height / 1000000;
    mp_progress *prog = mp_progress_new(o->progress, "synth", mpx_slide * o->slides, "Mpx");
    int ok = 0, failed = 0;
    double t0 = mp_now();
    for (int i = 0; i < o->slides; i++) {
        int pat = i % o->patients;
        /* prefix is at most 64 characters and digits at most 6: never truncated */
        if (snprintf(rows[i].name, sizeof rows[i].name, "%s_%0*d", o->prefix, digits, i) >= (int)sizeof rows[i].name ||
            snprintf(rows[i].patient, sizeof rows[i].patient, "%s_p%0*d", o->prefix, digits, pat) >=
                (int)sizeof rows[i].patient)
            abort();
        if (one_slide(o, i, (pat + off) % p->nclasses, &rows[i], prog, mpx_slide * i)) {
            mp_error("%s", mp_err());
            rows[i].label = -1;
            failed++;
        } else {
            ok++;
        }
    }
    mp_progress_update(prog, mpx_slide * o->slides, NULL);
    mp_progress_finish(prog, NULL);
    mp_progress_free(prog);

    int rc = MP_EXIT_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/slides.csv", o->outdir);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    csv_field(f, "slide", 0), csv_field(f, "patient", 0), csv_field(f, "label", 1);
    for (int i = 0; i < o->slides; i++) {
        if (rows[i].label < 0) continue;
        csv_field(f, rows[i].name, 0), csv_field(f, rows[i].patient, 0), csv_field(f, p->names[rows[i].label], 1);
    }
    fclose(f);
    if (mp_write_file_atomic(path, buf, len)) {
        mp_error("%s", mp_err());
        rc = MP_EXIT_FAIL;
    }
    free(buf);
    snprintf(path, sizeof path, "%s/synth.json", o->outdir);
    json_t *pj = params_json(o);
    if (rc == MP_EXIT_OK && write_json(path, pj)) {
        mp_error("%s", mp_err());
        rc = MP_EXIT_FAIL;
    }
    json_decref(pj);
    free(rows);
    if (rc != MP_EXIT_OK) return rc;
    double el = mp_now() - t0;
    mp_info("synth: %d slides (%dx%d at %g µm/px) in %s, %.1f s, %.1f Mpx/s", ok, p->width, p->height, p->mpp,
            o->outdir, el, el > 0 ? (double)p->width * p->height * ok / el / 1e6 : 0);
    if (failed) return ok ? MP_EXIT_PARTIAL : MP_EXIT_FAIL;
    return MP_EXIT_OK;
}
