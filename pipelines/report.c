/* pipelines/report.c — report.html over one or more `magpie run` folders: one self-contained
 * page (images inline as data: URIs, a few lines of inline JS to sort the table, nothing
 * fetched), so it opens offline and can be mailed. Built from each folder's status.csv,
 * summary.json, dataset.db (tissue masks), thumbs/ and heatmaps/: a report over the shards of
 * a cluster run is the same function over their folders. Every text from a slide (names,
 * paths, errors, labels) is HTML-escaped. */
#include <csv.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vips/vips.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/db.h"
#include "db/slides.h"
#include "infer/infer.h"
#include "pipelines/run.h"

/* ---- status.csv ---- */

typedef struct {
    char **f;
    int nf, cap;
} row;

typedef struct {
    row *rows;
    int n, cap;
    row cur;
} table;

static void t_field(void *s, size_t len, void *data)
{
    table *t = data;
    if (t->cur.nf == t->cur.cap) t->cur.f = mp_xrealloc(t->cur.f, sizeof(char *) * (size_t)(t->cur.cap = t->cur.cap ? 2 * t->cur.cap : 32));
    char *v = mp_xmalloc(len + 1);
    memcpy(v, s ? s : "", len);
    v[len] = 0;
    t->cur.f[t->cur.nf++] = v;
}

static void t_row(int c, void *data)
{
    (void)c;
    table *t = data;
    if (t->n == t->cap) t->rows = mp_xrealloc(t->rows, sizeof(row) * (size_t)(t->cap = t->cap ? 2 * t->cap : 64));
    t->rows[t->n++] = t->cur;
    memset(&t->cur, 0, sizeof t->cur);
}

static void table_free(table *t)
{
    for (int i = 0; i < t->n; i++) {
        for (int k = 0; k < t->rows[i].nf; k++) free(t->rows[i].f[k]);
        free(t->rows[i].f);
    }
    for (int k = 0; k < t->cur.nf; k++) free(t->cur.f[k]);
    free(t->cur.f);
    free(t->rows);
}

static int table_load(const char *path, table *t)
{
    memset(t, 0, sizeof *t);
    uint8_t *buf;
    size_t len;
    if (mp_read_file(path, &buf, &len)) return -1;
    struct csv_parser p;
    csv_init(&p, CSV_APPEND_NULL);
    int rc = 0;
    if (csv_parse(&p, buf, len, t_field, t_row, t) != len || csv_fini(&p, t_field, t_row, t))
        rc = mp_err_set("%s: malformed CSV (%s)", path, csv_strerror(csv_error(&p)));
    csv_free(&p);
    free(buf);
    if (!rc && t->n < 1) rc = mp_err_set("%s: empty (no header)", path);
    if (rc) table_free(t);
    return rc;
}

static int col(const table *t, const char *name)
{
    for (int k = 0; k < t->rows[0].nf; k++)
        if (!strcmp(t->rows[0].f[k], name)) return k;
    return -1;
}

static const char *cell(const table *t, int r, int c) { return c >= 0 && c < t->rows[r].nf ? t->rows[r].f[c] : ""; }

/* ---- HTML ---- */

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\t') fputc(' ', f); /* no control bytes in the page */
            else fputc(*s, f);
        }
    }
}

/* esc, with a line-break opportunity (<wbr>) after each '_', '-', '.' and '/': slide names and
 * paths in the narrow slide column wrap between their parts, never inside one. */
static void esc_wbr(FILE *f, const char *s)
{
    char one[2] = {0, 0};
    for (; s && *s; s++) {
        one[0] = *s;
        esc(f, one);
        if (strchr("_-./", *s)) fputs("<wbr>", f);
    }
}

/* im scaled to fit box x box (alpha over white), as JPEG or PNG: *buf g_malloc'd. */
static int encode_small(VipsImage *im, int box, int png, void **buf, size_t *len)
{
    VipsImage *t = NULL, *flat = NULL;
    *buf = NULL;
    int ok = 0;
    if (im && !vips_thumbnail_image(im, &t, box, "height", box, NULL)) {
        VipsImage *src = t;
        if (vips_image_hasalpha(t)) {
            double white[3] = {255, 255, 255};
            VipsArrayDouble *bg = vips_array_double_new(white, 3);
            if (!vips_flatten(t, &flat, "background", bg, NULL)) src = flat;
            else free(mp_vips_err_take(NULL)); /* the unflattened picture will do */
            vips_area_unref(VIPS_AREA(bg));
        }
        ok = png ? !vips_pngsave_buffer(src, buf, len, "compression", 9, "strip", TRUE, NULL)
                 : !vips_jpegsave_buffer(src, buf, len, "Q", 80, "strip", TRUE, NULL);
    }
    if (flat) g_object_unref(flat);
    if (t) g_object_unref(t);
    return ok ? 0 : -1;
}

static void embed(FILE *f, const void *buf, size_t len, const char *mime, const char *alt)
{
    gchar *b64 = g_base64_encode(buf, len);
    fprintf(f, "<img alt=\"");
    esc(f, alt);
    fprintf(f, "\" src=\"data:%s;base64,%s\">", mime, b64);
    g_free(b64);
}

typedef struct {
    char *name;
    json_t *j;
    double mag;
} ev_item;

static int cmp_ev(const void *a, const void *b)
{
    const ev_item *x = a, *y = b;
    return x->mag != y->mag ? (x->mag < y->mag) - (x->mag > y->mag) : strcmp(x->name, y->name);
}

static const char none_html[] = "<span class=none>&mdash;</span>";

/* The small image a run cached (embedded as it is), else one made from the source file now
 * (a folder from an older run, or a cache a kill prevented). */
static void img_file(FILE *f, const char *cache, const char *src, int box, const char *alt)
{
    uint8_t *data;
    size_t len;
    if (cache && mp_file_size(cache) > 0 && !mp_read_file(cache, &data, &len)) {
        embed(f, data, len, strstr(cache, ".png") ? "image/png" : "image/jpeg", alt);
        free(data);
        return;
    }
    VipsImage *im = src && mp_file_size(src) > 0 ? vips_image_new_from_file(src, "access", VIPS_ACCESS_SEQUENTIAL, NULL) : NULL;
    void *buf = NULL;
    if (im && !encode_small(im, box, 0, &buf, &len)) embed(f, buf, len, "image/jpeg", alt);
    else {
        fputs(none_html, f);
        if (src && mp_file_size(src) > 0) free(mp_vips_err_take(src)); /* the page says "none" */
    }
    g_free(buf);
    if (im) g_object_unref(im);
}

/* The tissue mask PNG the dataset holds for slide, as a small PNG (g_malloc'd). */
static int mask_small(mp_db *db, const char *slide, int box, void **buf, size_t *len)
{
    int rc = -1;
    *buf = NULL;
    void *png = NULL; /* libvips reads the buffer lazily: it lives until the image is done */
    size_t n = 0;
    if (db && db_slide_mask(db, 0, slide, &png, &n) == 1 && png && n > 0) {
        VipsImage *im = vips_image_new_from_buffer(png, n, "", NULL);
        if (im) {
            rc = encode_small(im, box, 1, buf, len);
            g_object_unref(im);
        }
    }
    free(png);
    if (rc) free(mp_vips_err_take(NULL)); /* the page says "none" */
    return rc;
}

static void img_mask(FILE *f, const char *cache, mp_db *db, const char *slide, int box)
{
    uint8_t *data;
    size_t len;
    if (cache && mp_file_size(cache) > 0 && !mp_read_file(cache, &data, &len)) {
        embed(f, data, len, "image/png", "tissue mask");
        free(data);
        return;
    }
    void *buf;
    if (!mask_small(db, slide, box, &buf, &len)) embed(f, buf, len, "image/png", "tissue mask");
    else fputs(none_html, f);
    g_free(buf);
}

int run_small_image(const char *src, int box, const char *out) { return run_small_image_region(src, 0, 0, 0, 0, box, out); }

int run_small_image_region(const char *src, int x, int y, int w, int h, int box, const char *out)
{
    VipsImage *im = vips_image_new_from_file(src, "access", VIPS_ACCESS_RANDOM, NULL), *part = NULL;
    void *buf = NULL;
    size_t len;
    int rc;
    if (im && w > 0 && h > 0 && (x + w > im->Xsize || y + h > im->Ysize || x < 0 || y < 0))
        rc = mp_err_set("%s: the region %dx%d+%d+%d is outside the %dx%d image", src, w, h, x, y, im->Xsize, im->Ysize);
    else if (im && (w <= 0 || h <= 0 || !vips_extract_area(im, &part, x, y, w, h, NULL)) &&
             !encode_small(part ? part : im, box, 0, &buf, &len))
        rc = mp_write_file_atomic(out, buf, len);
    else {
        char why[400];
        rc = mp_err_set("%s: cannot make a small copy: %s", src, mp_vips_err_take_into(why, sizeof why, src));
    }
    g_free(buf);
    if (part) g_object_unref(part);
    if (im) g_object_unref(im);
    return rc;
}

int run_small_mask(mp_db *db, const char *slide, int box, const char *out)
{
    void *buf;
    size_t len;
    int rc = mask_small(db, slide, box, &buf, &len) ? mp_err_set("%s: no tissue mask in %s", slide, db_path(db))
                                                    : mp_write_file_atomic(out, buf, len);
    g_free(buf);
    return rc;
}

/* ---- models: training curves and test-split evaluations ---- */

/* The training curves a run copied into thumbs/ (curve.teacher.svg, curve.model.svg) and the
 * `magpie eval --json` outputs kept in eval/ (every .json) (magpie demo writes them), for every folder;
 * a curve several folders share (shards of one run) is shown once. Nothing: no section. */
static void models_section(FILE *f, char *const *dirs, int n, json_t **sums)
{
    static const char *roles[2] = {"teacher", "model"};
    int opened = 0;
    uint64_t seen[64];
    int nseen = 0;
    for (int d = 0; d < n; d++) {
        for (int r = 0; r < 2; r++) {
            char p[4300];
            snprintf(p, sizeof p, "%s/thumbs/curve.%s.svg", dirs[d], roles[r]);
            uint8_t *svg;
            size_t len;
            if (!mp_file_exists(p) || mp_read_file(p, &svg, &len)) {
                mp_err_clear();
                continue;
            }
            uint64_t h = XXH3_64bits(svg, len);
            int dup = 0;
            for (int k = 0; k < nseen; k++) dup |= seen[k] == h;
            if (!dup && nseen < 64) seen[nseen++] = h;
            if (!dup) {
                if (!opened++) fputs("<h2>Models</h2>\n<div class=curves>\n", f);
                const char *ck = json_string_value(json_object_get(sums[d], r ? "model" : "teacher"));
                fputs("<figure>", f);
                embed(f, svg, len, "image/svg+xml", r ? "training curve of the model" : "training curve of its teacher");
                fprintf(f, "<figcaption>%s: ", r ? "the model inferred with" : "its teacher");
                esc(f, ck ? ck : "(checkpoint not recorded)");
                fputs("</figcaption></figure>\n", f);
            }
            free(svg);
        }
    }
    if (opened) fputs("</div>\n", f);
    /* the evaluations, in name order per folder */
    int rows = 0;
    for (int d = 0; d < n; d++) {
        char ed[4300];
        snprintf(ed, sizeof ed, "%s/eval", dirs[d]);
        DIR *dh = opendir(ed);
        if (!dh) continue;
        char **names = NULL;
        int nn = 0;
        struct dirent *e;
        while ((e = readdir(dh))) {
            size_t l = strlen(e->d_name);
            if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) {
                names = mp_xrealloc(names, sizeof(char *) * (size_t)(nn + 1));
                names[nn++] = mp_xstrdup(e->d_name);
            }
        }
        closedir(dh);
        /* highest magnification first (the teacher before its student), then by name */
        ev_item *ev = mp_xcalloc((size_t)nn + 1, sizeof *ev);
        for (int i = 0; i < nn; i++) {
            char p[4600];
            snprintf(p, sizeof p, "%s/%s", ed, names[i]);
            ev[i].name = names[i];
            ev[i].j = json_load_file(p, 0, NULL);
            ev[i].mag = json_number_value(json_object_get(ev[i].j, "mag"));
        }
        qsort(ev, (size_t)nn, sizeof *ev, cmp_ev);
        for (int i = 0; i < nn; i++) {
            json_t *j = ev[i].j;
            names[i] = ev[i].name;
            json_t *ba = json_object_get(j, "balanced_accuracy"), *auc = json_object_get(j, "macro_auc");
            if (j && ba) {
                if (!rows++)
                    fputs("<table class=evals><thead><tr><th>evaluation</th><th>checkpoint</th><th>method</th><th>magnification</th>"
                          "<th>GFLOPs/patch</th><th>split</th><th>patches (slides)</th><th>balanced accuracy [95% CI]</th>"
                          "<th>macro AUC [95% CI]</th><th>slide-level balanced accuracy</th><th>chance</th></tr></thead><tbody>\n",
                          f);
                fputs("<tr><td>", f);
                esc(f, names[i]);
                fputs("</td><td class=path>", f);
                esc(f, json_string_value(json_object_get(j, "checkpoint")));
                fputs("</td><td>", f);
                esc(f, json_string_value(json_object_get(j, "method")));
                fprintf(f, "</td><td class=n>%gx (%lld px)</td><td class=n>%.3f</td><td>", json_number_value(json_object_get(j, "mag")),
                        (long long)json_integer_value(json_object_get(j, "input_size")),
                        json_number_value(json_object_get(j, "flops_per_patch")) / 1e9);
                esc(f, json_string_value(json_object_get(j, "split")));
                fprintf(f, "</td><td class=n>%lld (%lld)</td>", (long long)json_integer_value(json_object_get(j, "patches")),
                        (long long)json_integer_value(json_object_get(j, "slides")));
                json_t *m[2] = {ba, auc};
                for (int k = 0; k < 2; k++) {
                    json_t *ci = json_object_get(m[k], "ci");
                    fprintf(f, "<td class=n>%.3f", json_number_value(json_object_get(m[k], "value")));
                    if (json_array_size(ci) == 2)
                        fprintf(f, " [%.3f, %.3f]", json_number_value(json_array_get(ci, 0)), json_number_value(json_array_get(ci, 1)));
                    fputs("</td>", f);
                }
                json_t *sm = json_object_get(j, "slide_mean_balanced_accuracy");
                if (json_is_number(sm)) fprintf(f, "<td class=n>%.3f</td>", json_number_value(sm));
                else fputs("<td class=n>-</td>", f);
                size_t k = json_array_size(json_object_get(j, "classes"));
                if (k) fprintf(f, "<td class=n>%.3f</td></tr>\n", 1.0 / (double)k);
                else fputs("<td class=n>-</td></tr>\n", f);
            }
            json_decref(j);
            free(names[i]);
        }
        free(ev);
        free(names);
    }
    if (rows) fputs("</tbody></table>\n", f);
}

/* The heatmap column's legend, once: the class and colour map infer used, from the first slide
 * that has a prediction.json (a run infers every slide with one checkpoint and one class). */
static void heat_legend(FILE *f, char *const *dirs, int n, table *tabs)
{
    for (int d = 0; d < n; d++) {
        int cn = col(&tabs[d], "name");
        for (int r = 1; r < tabs[d].n; r++) {
            char safe[1024], p[4600];
            mp_safe_name(cell(&tabs[d], r, cn), safe, sizeof safe);
            snprintf(p, sizeof p, "%s/heatmaps/%s/prediction.json", dirs[d], safe);
            if (!mp_file_exists(p)) continue;
            json_t *j = json_load_file(p, 0, NULL);
            json_t *cls = json_object_get(j, "classes");
            json_int_t k = json_integer_value(json_object_get(json_object_get(j, "params"), "class"));
            const char *name = json_string_value(json_array_get(cls, (size_t)k));
            int K = (int)json_array_size(cls);
            if (name && K > 0) {
                infer_cmap cm = infer_cmap_for(K);
                fputs("<p class=legend>heatmap column: p(", f);
                esc(f, name);
                fputs(") over the slide, 0 <span class=bar style=\"background:linear-gradient(to right", f);
                for (int i = 0; i <= 8; i++) {
                    uint8_t c[3];
                    infer_colormap(cm, (float)i / 8, c);
                    fprintf(f, ",#%02x%02x%02x", c[0], c[1], c[2]);
                }
                fprintf(f, ")\"></span> 1 (%s; blank: not evaluated). Each slide&#39;s full overlay, with its colour bar "
                           "and scale bar: heatmaps/NAME/overlay.png.</p>\n",
                        infer_cmap_name(cm));
            }
            json_decref(j);
            return;
        }
    }
}

static double num(const char *s)
{
    double d;
    return s && *s && !mp_parse_double(s, &d) ? d : 0;
}

static const char style_js[] =
    "<style>\n"
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}\n"
    "h1{font-size:1.4em;margin:0 0 .3em}\n"
    ".totals{display:flex;flex-wrap:wrap;gap:.6em 2em;margin:.6em 0 1.2em;padding:.8em 1em;background:#f4f5f7;border-radius:6px}\n"
    ".totals b{font-size:1.3em;display:block}\n"
    "table{border-collapse:collapse;width:100%}\n"
    "th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:middle}\n"
    "th{background:#eef0f3;cursor:pointer;user-select:none;position:sticky;top:0}\n"
    "th.asc::after{content:' \\25B2'}th.desc::after{content:' \\25BC'}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    /* the slides' table fits a 1400 px window: pictures at 112 px (stored at 200 for sharp
     * screens), status and error in one column with the error wrapping, long names broken
     * between their parts */
    "td img{display:block;max-width:112px;max-height:112px}#slides th{font-size:.85em}#slides td{padding:4px 5px}\n"
    /* names and paths there wrap at the <wbr> after '_', '-', '.', '/' (and spaces) in a column
     * wide enough for the usual parts; only a part wider than the column breaks inside */
    "td.slide{min-width:9em}td.slide b,td.slide .path{overflow-wrap:anywhere;word-break:normal}\n"
    ".failed{color:#b00020;font-weight:600}.done{color:#1b7e3c;font-weight:600}\n"
    ".err{color:#b00020;font-weight:400;font-size:.85em;min-width:12em;max-width:22em;overflow-wrap:anywhere}\n"
    ".path{color:#666;font-size:.85em;word-break:break-all}\n"
    ".none{color:#aaa}\n"
    "h2{font-size:1.15em;margin:1.2em 0 .4em}\n"
    ".legend{margin:.2em 0 .6em;color:#444}.legend .bar{display:inline-block;width:10em;height:.9em;"
    "vertical-align:middle;border:1px solid #999}\n"
    ".curves{display:flex;flex-wrap:wrap;gap:1em}.curves figure{margin:0}.curves img{width:660px;max-width:100%;"
    "border:1px solid #ddd}\n"
    ".curves figcaption{font-size:.85em;color:#555;word-break:break-all;max-width:660px}\n"
    "table.evals{width:auto;margin-bottom:1em}table.evals th{cursor:default;position:static}\n"
    "</style>\n";

static const char sort_js[] =
    "<script>\n"
    "(function(){var t=document.getElementById('slides');if(!t)return;var hs=t.tHead.rows[0].cells;\n"
    "function key(r,i){var c=r.cells[i];var v=c.getAttribute('data-v');if(v===null)v=c.textContent;\n"
    " var x=parseFloat(v);return (v!==''&&!isNaN(x)&&isFinite(v))?[0,x]:[1,v.toLowerCase()];}\n"
    "for(var i=0;i<hs.length;i++)(function(i){hs[i].addEventListener('click',function(){\n"
    " var asc=!hs[i].classList.contains('asc');for(var k=0;k<hs.length;k++)hs[k].classList.remove('asc','desc');\n"
    " hs[i].classList.add(asc?'asc':'desc');var rows=Array.prototype.slice.call(t.tBodies[0].rows);\n"
    " rows.sort(function(a,b){var x=key(a,i),y=key(b,i);var c=x[0]-y[0]||(x[1]<y[1]?-1:x[1]>y[1]?1:0);return asc?c:-c;});\n"
    " rows.forEach(function(r){t.tBodies[0].appendChild(r);});});})(i);\n"
    /* report.html#sort=K opens sorted by column K (a link can carry the order; the test uses it) */
    "var m=/sort=(\\d+)/.exec(location.hash);if(m&&hs[+m[1]])hs[+m[1]].click();\n"
    "document.body.setAttribute('data-ready','1');})();\n"
    "</script>\n";

int run_report_write(const char *out_html, char *const *dirs, int n)
{
    if (n < 1) return mp_err_set("report: no run folder given");
    table *tabs = mp_xcalloc((size_t)n, sizeof *tabs);
    json_t **sums = mp_xcalloc((size_t)n, sizeof *sums);
    int rc = 0;
    for (int d = 0; d < n && !rc; d++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/status.csv", dirs[d]);
        if (table_load(p, &tabs[d])) {
            rc = -1;
            break;
        }
        if (col(&tabs[d], "slide") < 0 || col(&tabs[d], "status") < 0) rc = mp_err_set("%s: not a magpie run status.csv", p);
        snprintf(p, sizeof p, "%s/summary.json", dirs[d]);
        sums[d] = json_load_file(p, 0, NULL); /* optional: totals then come from the rows */
    }
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        for (int d = 0; d < n; d++) {
            if (tabs[d].rows) table_free(&tabs[d]);
            json_decref(sums[d]);
        }
        free(tabs);
        free(sums);
        return mp_err_set("%s", keep);
    }

    /* totals */
    int total = 0, done = 0, failed = 0;
    double patches = 0, evaluated = 0, tile_s = 0, infer_s = 0, wall = 0;
    char first[32] = "", last[32] = "";
    for (int d = 0; d < n; d++) {
        table *t = &tabs[d];
        int cs = col(t, "status"), cp = col(t, "patches"), ce = col(t, "evaluated"), ct = col(t, "tile_seconds"),
            ci = col(t, "infer_seconds");
        for (int r = 1; r < t->n; r++) {
            total++;
            if (!strcmp(cell(t, r, cs), "done")) done++;
            else failed++;
            patches += num(cell(t, r, cp));
            evaluated += num(cell(t, r, ce));
            tile_s += num(cell(t, r, ct));
            infer_s += num(cell(t, r, ci));
        }
        json_t *tm = json_object_get(sums[d], "timing");
        wall += json_real_value(json_object_get(tm, "wall_seconds"));
        const char *st = json_string_value(json_object_get(sums[d], "started"));
        const char *fi = json_string_value(json_object_get(sums[d], "finished"));
        if (st && (!first[0] || strcmp(st, first) < 0)) snprintf(first, sizeof first, "%s", st);
        if (fi && strcmp(fi, last) > 0) snprintf(last, sizeof last, "%s", fi);
    }

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputs("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n"
          "<meta name=viewport content=\"width=device-width,initial-scale=1\">\n<title>magpie run report</title>\n",
          f);
    fputs(style_js, f);
    fputs("</head><body>\n<h1>magpie run report</h1>\n<div class=path>", f);
    for (int d = 0; d < n; d++) {
        if (d) fputs(" &middot; ", f);
        esc(f, dirs[d]);
    }
    if (first[0]) {
        fputs(" &middot; ", f);
        esc(f, first);
        fputs(" &ndash; ", f);
        esc(f, last);
    }
    fputs("</div>\n<div class=totals>\n", f);
    fprintf(f, "<div><b>%d</b>slides</div><div><b class=done>%d</b>done</div><div><b class=failed>%d</b>failed</div>\n",
            total, done, failed);
    fprintf(f, "<div><b>%.0f</b>patches</div><div><b>%.0f</b>cells evaluated</div>\n", patches, evaluated);
    fprintf(f, "<div><b>%.1f s</b>wall time of the last run%s</div><div><b>%.1f s</b>tiling (sum over slides)</div>"
               "<div><b>%.1f s</b>inference (sum over slides)</div>\n",
            wall, n > 1 ? " (sum over the folders)" : "", tile_s, infer_s);
    if (n > 1) fprintf(f, "<div><b>%d</b>run folders</div>\n", n);
    fputs("</div>\n", f);
    models_section(f, dirs, n, sums);
    fputs("<h2>Slides</h2>\n", f);
    heat_legend(f, dirs, n, tabs);
    fputs("<table id=slides><thead><tr><th>#</th><th>slide</th><th>status</th><th>thumbnail</th>"
          "<th>tissue mask</th><th>heatmap</th><th>patches</th><th>unreadable tiles</th><th>cells evaluated</th>"
          "<th>MPP (&micro;m/px)</th><th>MPP source</th><th>call</th><th>confidence</th><th>label</th>"
          "<th>seconds</th></tr></thead>\n<tbody>\n",
          f);
    int idx = 0;
    for (int d = 0; d < n; d++) {
        table *t = &tabs[d];
        int cs = col(t, "slide"), cn = col(t, "name"), cst = col(t, "status"), ce = col(t, "error"),
            cp = col(t, "patches"), cb = col(t, "bad_tiles"), cv = col(t, "evaluated"), cm = col(t, "mpp"),
            cms = col(t, "mpp_source"), cc = col(t, "call"), ccf = col(t, "confidence"), cl = col(t, "label"),
            csec = col(t, "seconds");
        char dbp[4200];
        snprintf(dbp, sizeof dbp, "%s/dataset.db", dirs[d]);
        mp_db *db = mp_file_exists(dbp) ? db_open(dbp, DB_OPEN_READONLY) : NULL;
        for (int r = 1; r < t->n; r++) {
            const char *name = cell(t, r, cn), *status = cell(t, r, cst);
            char safe[1024], p[4600];
            mp_safe_name(name, safe, sizeof safe); /* the name is text from a file: never a path out */
            fprintf(f, "<tr><td class=n>%d</td><td data-v=\"", ++idx);
            esc(f, name);
            fputs("\" class=slide><b>", f);
            esc_wbr(f, name);
            fputs("</b><div class=path>", f);
            esc_wbr(f, cell(t, r, cs));
            fprintf(f, "</div></td><td class=%s data-v=\"", !strcmp(status, "done") ? "done" : "failed");
            esc(f, status);
            fputs("\">", f);
            esc(f, status);
            if (*cell(t, r, ce)) { /* the error under its status, wrapping in the column */
                fputs("<div class=err>", f);
                esc(f, cell(t, r, ce));
                fputs("</div>", f);
            }
            fputs("</td><td>", f);
            snprintf(p, sizeof p, "%s/thumbs/%s.jpg", dirs[d], safe);
            img_file(f, p, NULL, RUN_THUMB_PX, "thumbnail");
            fputs("</td><td>", f);
            snprintf(p, sizeof p, "%s/thumbs/%s.mask.png", dirs[d], safe);
            img_mask(f, p, db, cell(t, r, cs), RUN_THUMB_PX);
            fputs("</td><td>", f);
            char src[4600];
            snprintf(p, sizeof p, "%s/thumbs/%s.heat.jpg", dirs[d], safe);
            snprintf(src, sizeof src, "%s/heatmaps/%s/overlay.png", dirs[d], safe);
            img_file(f, p, src, RUN_THUMB_PX, "heatmap overlay");
            fputs("</td><td class=n>", f);
            esc(f, cell(t, r, cp));
            fputs("</td><td class=n>", f);
            esc(f, cell(t, r, cb));
            fputs("</td><td class=n>", f);
            esc(f, cell(t, r, cv));
            fputs("</td><td class=n>", f);
            esc(f, cell(t, r, cm));
            fputs("</td><td>", f);
            esc(f, cell(t, r, cms));
            fputs("</td><td>", f);
            esc(f, cell(t, r, cc));
            fputs("</td><td class=n>", f);
            esc(f, cell(t, r, ccf));
            fputs("</td><td>", f);
            esc(f, cell(t, r, cl));
            fputs("</td><td class=n>", f);
            esc(f, cell(t, r, csec));
            fputs("</td></tr>\n", f);
        }
        db_close(db);
    }
    fputs("</tbody></table>\n", f);
    fputs(sort_js, f);
    fputs("</body></html>\n", f);
    fclose(f);
    rc = mp_write_file_atomic(out_html, buf, len);
    free(buf);
    for (int d = 0; d < n; d++) {
        table_free(&tabs[d]);
        json_decref(sums[d]);
    }
    free(tabs);
    free(sums);
    return rc;
}
