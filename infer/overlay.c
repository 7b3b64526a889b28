/* infer/overlay.c — overlay.png, the picture a person looks at: the slide at a readable size
 * with one class's probability blended over its tissue cells, and beside it the slide name,
 * the class, a colour bar with ticks, the slide-level call and a scale bar in µm. The cell
 * blend is a per-pixel lookup into the grid; all text is set by Pango through vips_text and
 * the ticks, frames and scale bar are an SVG drawn by librsvg through vips_svgload_buffer. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>
#include <zlib.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "infer/infer.h"
#include "infer/internal.h"

#define FONT "DejaVu Sans"

/* The canvas: plain RGB pixels. Layers (text, the vector drawing) are blended into it over
 * their own rectangle only; a chain of vips_composite2 calls would redo every layer over the
 * whole canvas (in float) when the PNG is written. */
typedef struct {
    uint8_t *px;
    int w, h;
} canvas;

/* `top` (straight RGBA, 8-bit) over the canvas at (x, y), clipped: the OVER operator. */
static int put(canvas *cv, VipsImage *top, int x, int y)
{
    VipsImage *u = NULL;
    if (top->Bands != 4 || vips_cast_uchar(top, &u, NULL)) return -1;
    size_t len = 0;
    uint8_t *t = vips_image_write_to_memory(u, &len);
    int tw = u->Xsize, th = u->Ysize;
    g_object_unref(u);
    if (!t || len != (size_t)tw * th * 4) {
        g_free(t);
        return -1;
    }
    for (int j = y < 0 ? -y : 0; j < th && y + j < cv->h; j++)
        for (int i = x < 0 ? -x : 0; i < tw && x + i < cv->w; i++) {
            const uint8_t *s = t + ((size_t)j * tw + i) * 4;
            if (!s[3]) continue;
            uint8_t *o = cv->px + ((size_t)(y + j) * cv->w + x + i) * 3;
            for (int c = 0; c < 3; c++) o[c] = (uint8_t)((s[c] * s[3] + o[c] * (255 - s[3]) + 127) / 255);
        }
    g_free(t);
    return 0;
}

/* Pango markup to an RGBA image at most `width` px wide (wrapped), font size px. */
static VipsImage *text(const char *markup, int px, int width)
{
    char font[64];
    snprintf(font, sizeof font, FONT " %d", px);
    VipsImage *t = NULL;
    if (vips_text(&t, markup, "font", font, "width", width, "dpi", 72, "rgba", TRUE, NULL)) return NULL;
    return t;
}

/* Draw markup at (x, y); *h gets its height. */
static int put_text(canvas *base, const char *markup, int px, int width, int x, int y, int *h)
{
    VipsImage *t = text(markup, px, width);
    if (!t) return -1;
    if (h) *h = t->Ysize;
    int r = put(base, t, x, y);
    g_object_unref(t);
    return r;
}

/* 1, 2 or 5 times a power of ten, the largest not above v. */
static double nice_below(double v)
{
    double p = pow(10, floor(log10(v)));
    double m = v / p;
    return (m >= 5 ? 5 : m >= 2 ? 2 : 1) * p;
}

int infer_overlay_scalebar(double um_per_px, int width_px, double *um, int *px)
{
    if (!(um_per_px > 0) || width_px < 10) return -1;
    double u = nice_below(um_per_px * width_px / 5.0); /* about a fifth of the picture */
    *um = u;
    *px = (int)lround(u / um_per_px);
    return 0;
}

void infer_overlay_layout(const infer_overlay_spec *s, infer_overlay_geom *o)
{
    double bw = (double)s->g->bw, bh = (double)s->g->bh;
    double k = s->size / fmax(bw, bh);
    int W = (int)fmax(1, lround(bw * k)), H = (int)fmax(1, lround(bh * k));
    int S = W > H ? W : H;
    o->pic_w = W, o->pic_h = H;
    o->margin = (int)fmax(12, S / 64);
    o->font = (int)fmax(12, S / 75);
    o->panel_w = (int)fmax(240, S * 0.26);
    o->bar_h = (int)fmax(160, fmin(S * 0.3, 480));
    o->bar_w = (int)fmax(16, o->font * 1.6);
    int m = o->margin, f = o->font;
    o->pic_x = m;
    o->pic_y = 2 * f + m; /* under the title row */
    o->bar_x = m + W + m + 2 * f;
    o->bar_y = o->pic_y + 3 * f;
    o->canvas_w = m + W + m + o->panel_w + m;
    o->canvas_h = o->pic_y + (int)fmax(H, o->bar_h + 16 * f) + m;
}

/* The slide picture (straight RGBA, s->bgw x s->bgh) flattened over white into the canvas's
 * W x H rectangle at (x0, y0). A background within a pixel or two of the picture's size (the
 * thumbnail's own rounding) is mapped pixel to pixel, each picture pixel taking the background
 * pixel under its centre; any other size is flattened over white and resized by libvips, as
 * before. */
static int put_background(uint8_t *cv, int CW, int x0, int y0, int W, int H, const infer_overlay_spec *s)
{
    const uint8_t *src = s->bg;
    int sw = s->bgw, sh = s->bgh, stride = s->bg_stride > 0 ? s->bg_stride : s->bgw;
    void *mem = NULL;
    int bands = 4;
    if (abs(sw - W) > 2 || abs(sh - H) > 2) {
        uint8_t *packed = NULL;
        if (stride != sw) { /* libvips wants the rows contiguous */
            packed = mp_xmalloc((size_t)sw * sh * 4);
            for (int y = 0; y < sh; y++) memcpy(packed + (size_t)y * sw * 4, src + (size_t)y * stride * 4, (size_t)sw * 4);
        }
        VipsImage *bg = vips_image_new_from_memory(packed ? packed : src, (size_t)sw * sh * 4, sw, sh, 4,
                                                   VIPS_FORMAT_UCHAR);
        VipsImage *bgf = NULL, *bgs = NULL, *u = NULL;
        size_t len = 0;
        /* flattened over white first: resampling straight RGBA would pull the colour of
         * transparent pixels (no slide there) into the picture's edges */
        double white[3] = {255, 255, 255};
        VipsArrayDouble *wb = vips_array_double_new(white, 3);
        int r = !bg || vips_flatten(bg, &bgf, "background", wb, NULL) ||
                vips_resize(bgf, &bgs, (double)W / sw, "vscale", (double)H / sh, NULL) ||
                vips_cast_uchar(bgs, &u, NULL) || !(mem = vips_image_write_to_memory(u, &len)) ||
                len != (size_t)W * H * 3;
        vips_area_unref(VIPS_AREA(wb));
        if (bg) g_object_unref(bg);
        if (bgf) g_object_unref(bgf);
        if (bgs) g_object_unref(bgs);
        if (u) g_object_unref(u);
        free(packed);
        if (r) {
            g_free(mem);
            return -1;
        }
        src = mem;
        sw = W, sh = H, stride = W, bands = 3;
    }
    int *sx = mp_xmalloc(sizeof(int) * (size_t)W);
    for (int x = 0; x < W; x++) sx[x] = (int)fmin(sw - 1, floor((x + 0.5) * sw / W));
    for (int y = 0; y < H; y++) {
        const uint8_t *row = src + (size_t)(int)fmin(sh - 1, floor((y + 0.5) * sh / H)) * stride * bands;
        uint8_t *o = cv + ((size_t)(y0 + y) * CW + x0) * 3;
        for (int x = 0; x < W; x++, o += 3) {
            const uint8_t *p = row + (size_t)sx[x] * bands;
            unsigned a = bands == 4 ? p[3] : 255;
            if (a == 255) {
                o[0] = p[0], o[1] = p[1], o[2] = p[2];
            } else {
                for (int c = 0; c < 3; c++) o[c] = (uint8_t)((p[c] * a + 255 * (255 - a) + 127) / 255);
            }
        }
    }
    free(sx);
    g_free(mem);
    return 0;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void png_put(png_structp png, png_bytep d, png_size_t n)
{
    membuf *b = png_get_io_ptr(png);
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) png_error(png, "out of memory");
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void png_flush_none(png_structp png) { (void)png; }

/* 8-bit RGB PNG through libpng, written atomically. The "up" filter with zlib's run-length
 * strategy at level 1: on a 2091x1377 overlay of the TCGA replicate 3.29 MB in 63 ms of CPU,
 * where libvips' pngsave (no filter, level 1) made 3.90 MB in 113 ms and level 6 with every
 * filter 3.24 MB in 322 ms. Lossless either way: the pixels are the same. */
static int write_png(const char *path, const uint8_t *rgb, int w, int h)
{
    membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(b.p);
        return mp_err_set("%s: PNG encoding failed", path);
    }
    png_set_write_fn(png, &b, png_put, png_flush_none);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 1);
    png_set_compression_strategy(png, Z_RLE);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_UP);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    int r = mp_write_file_atomic(path, b.p, b.n);
    free(b.p);
    return r;
}

int infer_overlay_write(const char *path, const infer_overlay_spec *s)
{
    const infer_grid *g = s->g;
    infer_overlay_geom L;
    infer_overlay_layout(s, &L);
    int W = L.pic_w, H = L.pic_h, m = L.margin, f = L.font, P = L.panel_w, bar_h = L.bar_h, bar_w = L.bar_w;
    double l0_per_px = fmax((double)g->bw, (double)g->bh) / s->size; /* level-0 px per picture px */
    double um_per_px = l0_per_px * s->mpp;

    /* canvas: title row, picture at (m, top), panel at its right; the background goes straight
     * into the picture's rectangle */
    int CW = L.canvas_w, CH = L.canvas_h, px0 = L.pic_x, py0 = L.pic_y, bx0 = L.bar_x, by0 = L.bar_y;
    uint8_t *cv = mp_xmalloc((size_t)CW * CH * 3);
    memset(cv, 255, (size_t)CW * CH * 3);
    if (put_background(cv, CW, px0, py0, W, H, s)) {
        free(cv);
        goto vfail;
    }
    /* the cells: each picture pixel takes the cell under its centre. The grid is separable, so
     * the cell column of every picture column and the cell row of every picture row are found
     * once, and each evaluated cell's colour is mapped once (a picture has ~1000x more pixels
     * than the grid has cells) */
    int a = (int)lround(fmin(fmax(s->opacity, 0), 1) * 256);
    int *col = mp_xmalloc(sizeof(int) * (size_t)W), *row = mp_xmalloc(sizeof(int) * (size_t)H);
    double in_x = g->ox + 0.5 * g->cell0, in_y = g->oy + 0.5 * g->cell0; /* inside cell (0, 0) */
    for (int x = 0; x < W; x++) {
        int i, j;
        col[x] = infer_grid_cell_at(g, g->ox + (x + 0.5) * l0_per_px, in_y, &i, &j) ? -1 : i;
    }
    for (int y = 0; y < H; y++) {
        int i, j;
        row[y] = infer_grid_cell_at(g, in_x, g->oy + (y + 0.5) * l0_per_px, &i, &j) ? -1 : j;
    }
    size_t ncell = (size_t)g->nx * g->ny;
    uint8_t *cmc = mp_xmalloc(ncell * 3);
    for (size_t c = 0; c < ncell; c++)
        if (s->valid[c]) infer_colormap(s->cmap, s->prob[c * s->nclasses + s->klass], cmc + 3 * c);
    for (int y = 0; y < H; y++) {
        if (row[y] < 0) continue;
        size_t c0 = (size_t)row[y] * g->nx;
        for (int x = 0; x < W; x++) {
            if (col[x] < 0 || !s->valid[c0 + col[x]]) continue;
            const uint8_t *cm = cmc + 3 * (c0 + col[x]);
            uint8_t *o = cv + ((size_t)(py0 + y) * CW + px0 + x) * 3;
            for (int q = 0; q < 3; q++) o[q] = (uint8_t)((o[q] * (256 - a) + cm[q] * a + 128) >> 8);
        }
    }
    free(col);
    free(row);
    free(cmc);

    /* colour bar: 1 at the top, exact map colours per row */
    for (int y = 0; y < bar_h; y++) {
        uint8_t cm[3];
        infer_colormap(s->cmap, 1.0f - (y + 0.5f) / bar_h, cm);
        for (int x = 0; x < bar_w; x++) memcpy(cv + ((size_t)(by0 + y) * CW + bx0 + x) * 3, cm, 3);
    }
    canvas cvs = {cv, CW, CH}, *base = &cvs;

    /* vector layer: picture frame, bar frame and ticks, scale bar on a white plate */
    double sb_um;
    int sb_px;
    int has_sb = !infer_overlay_scalebar(um_per_px, W, &sb_um, &sb_px);
    char sb_label[64] = "";
    if (has_sb) {
        if (sb_um >= 1000) snprintf(sb_label, sizeof sb_label, "%g mm", sb_um / 1000);
        else snprintf(sb_label, sizeof sb_label, "%g µm", sb_um);
    }
    int sb_h = (int)fmax(4, f / 3), sb_x = px0 + m, sb_y = py0 + H - m - sb_h;
    /* one drawing, rendered through windows around its parts only (the frames' edges, the colour
     * bar, the scale bar): librsvg and the blend then touch a few thousand pixels, not the whole
     * canvas, and a window is the drawing moved by whole pixels, so the same pixels */
    GString *svg = g_string_new(NULL);
    g_string_append_printf(svg, "<rect x='%d.5' y='%d.5' width='%d' height='%d' fill='none' stroke='#888'/>", px0 - 1,
                           py0 - 1, W + 1, H + 1);
    g_string_append_printf(svg, "<rect x='%d.5' y='%d.5' width='%d' height='%d' fill='none' stroke='#222'/>", bx0 - 1,
                           by0 - 1, bar_w + 1, bar_h + 1);
    static const double ticks[] = {0, 0.25, 0.5, 0.75, 1};
    for (int t = 0; t < 5; t++) {
        double y = by0 + (1 - ticks[t]) * (bar_h - 1) + 0.5;
        g_string_append_printf(svg, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#222' stroke-width='1.5'/>",
                               bx0 + bar_w, y, bx0 + bar_w + f / 2, y);
    }
    int sb_win[4] = {0, 0, 0, 0};
    if (has_sb && sb_px >= 4) {
        int lw = (int)(f * 0.62 * (strlen(sb_label) + 1));
        int rx = sb_x - f / 2, ry = sb_y - f - f / 2, rw = (int)fmax(sb_px, lw) + f, rh = f + sb_h + f;
        g_string_append_printf(svg,
                               "<rect x='%d' y='%d' width='%d' height='%d' fill='white' fill-opacity='0.8' rx='3'/>"
                               "<rect x='%d' y='%d' width='%d' height='%d' fill='black'/>",
                               rx, ry, rw, rh, sb_x, sb_y, sb_px, sb_h);
        sb_win[0] = rx - 2, sb_win[1] = ry - 2, sb_win[2] = rw + 4, sb_win[3] = rh + 4;
    }
    /* windows (x, y, w, h), disjoint so that no pixel is blended twice: the picture frame's four
     * edges, the bar with its frame and ticks, the scale bar */
    int win[6][4] = {{px0 - 3, py0 - 3, W + 6, 4}, {px0 - 3, py0 + H - 1, W + 6, 4}, {px0 - 3, py0 + 1, 4, H - 2},
                     {px0 + W - 1, py0 + 1, 4, H - 2}, {bx0 - 3, by0 - 3, bar_w + f / 2 + 6, bar_h + 6},
                     {sb_win[0], sb_win[1], sb_win[2], sb_win[3]}};
    int r = 0;
    for (int i = 0; i < 6 && !r; i++) {
        int *wd = win[i];
        if (wd[2] <= 0 || wd[3] <= 0) continue;
        GString *doc = g_string_new(NULL);
        g_string_append_printf(doc,
                               "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='%d %d %d %d'>%s</svg>",
                               wd[2], wd[3], wd[0], wd[1], wd[2], wd[3], svg->str);
        VipsImage *vec = NULL;
        r = vips_svgload_buffer(doc->str, doc->len, &vec, NULL) || put(base, vec, wd[0], wd[1]);
        if (vec) g_object_unref(vec);
        g_string_free(doc, TRUE);
    }
    g_string_free(svg, TRUE);
    if (r) {
        free(cv);
        goto vfail;
    }

    /* text */
    char *esc_slide = g_markup_escape_text(s->slide_name ? s->slide_name : "", -1);
    char *esc_class = g_markup_escape_text(s->class_name ? s->class_name : "", -1);
    char *esc_call = g_markup_escape_text(s->call ? s->call : "", -1);
    char *esc_note = g_markup_escape_text(s->note ? s->note : "", -1);
    char buf[4096];
    int th = 0, rc = 0;
    snprintf(buf, sizeof buf, "<b>%s</b>  <span foreground='#555'>p(%s), %s</span>", esc_slide, esc_class,
             infer_cmap_name(s->cmap));
    rc |= put_text(base, buf, (int)(f * 1.35), CW - 2 * m, m, m / 2 + f / 4, NULL);
    snprintf(buf, sizeof buf, "probability of <b>%s</b>", esc_class);
    rc |= put_text(base, buf, f, P - 2 * f, bx0, py0, NULL);
    for (int t = 0; t < 5 && !rc; t++) {
        char lab[32];
        snprintf(lab, sizeof lab, "%g", ticks[t]);
        VipsImage *ti = text(lab, f, 0);
        if (!ti) {
            rc = -1;
            break;
        }
        int y = by0 + (int)lround((1 - ticks[t]) * (bar_h - 1)) - ti->Ysize / 2;
        rc |= put(base, ti, bx0 + bar_w + f, y);
        g_object_unref(ti);
    }
    int ty = by0 + bar_h + 2 * f;
    if (!rc) {
        snprintf(buf, sizeof buf, "<span foreground='#555'>uncoloured: no tissue / not evaluated</span>");
        rc |= put_text(base, buf, (int)(f * 0.85), P - 2 * f, bx0, ty, &th);
        ty += th + f;
    }
    if (!rc) {
        snprintf(buf, sizeof buf, "<b>Slide call</b>\n%s", esc_call);
        rc |= put_text(base, buf, f, P - 2 * f, bx0, ty, &th);
        ty += th + f;
    }
    if (!rc && esc_note[0]) {
        snprintf(buf, sizeof buf, "<span foreground='#444'>%s</span>", esc_note);
        rc |= put_text(base, buf, (int)(f * 0.85), P - 2 * f, bx0, ty, &th);
    }
    if (!rc && has_sb && sb_px >= 4) rc |= put_text(base, sb_label, f, 0, sb_x, sb_y - f - f / 4, NULL);
    g_free(esc_slide);
    g_free(esc_class);
    g_free(esc_call);
    g_free(esc_note);
    if (rc) {
        free(cv);
        goto vfail;
    }

    r = write_png(path, cv, CW, CH);
    free(cv);
    return r;

vfail: {
    /* copied and cleared at once: the buffer is the process's, and magpie run infers on threads */
    char why[400];
    mp_err_set("%s: cannot render the overlay: %s", path, mp_vips_err_take_into(why, sizeof why, NULL));
    return -1;
}
}
