/* pipelines/cmd_db_export.c — `magpie db DB export --format imagefolder|csv|npy --out DIR
 * [--where EXPR] [--mag M]`: the patches a db query selects, as PyTorch ImageFolder folders of
 * PNGs (DIR/SPLIT/CLASS/...), a CSV of coordinates and labels, or .npy arrays (uint8 NHWC
 * images, int64 labels). Everything is written into a staging directory inside DIR and moved
 * into place at the end, so a failed or killed export leaves no half-written files under their
 * final names; every name taken from the dataset goes through mp_safe_name, so nothing is
 * written outside DIR whatever a slide, class or split is called. */
#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/db.h"
#include "db/query.h"
#include "db/slides.h"
#include "db/stats.h"
#include "nn/npy.h"
#include "pipelines/cmds.h"

#define STAGE_PREFIX ".magpie-export."

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie db DB export --format imagefolder|csv|npy --out DIR [--where EXPR] [--mag M] [-q]\n\n"
            "Exports the patches EXPR selects (the `db query` language; all patches without it):\n"
            "  imagefolder  DIR/SPLIT/CLASS/SLIDE_ID_X0_Y0.png, the layout torchvision's ImageFolder reads\n"
            "               (patches without a split go to 'unsplit', without a label to 'unlabelled')\n"
            "  csv          DIR/patches.csv: id, slide, patient, split, label, label_id, x0, y0, size0,\n"
            "               mpp, tissue, blur, pen, brightness, slide_path (level-0 coordinates)\n"
            "  npy          DIR/images.npy uint8 (N, H, W, 3), DIR/labels.npy int64 (N,) class id or -1,\n"
            "               DIR/classes.txt (class id = line number from 0), DIR/index.csv (row -> patch)\n"
            "  --mag M      the magnification of the images (needed when the dataset holds several);\n"
            "               with csv, keeps the patches that have an image at M\n\n"
            "DIR may exist but must be empty. Files are written into DIR/" STAGE_PREFIX "PID and moved into\n"
            "place at the end; names from the dataset are made safe (no '/', no '..').\n");
}

typedef struct {
    const char *format, *out;
    char *where_opt;
    double mag;
    int help;
} export_opts;

static int export_opt(void *ctx, int argc, char **argv, int *i)
{
    export_opts *o = ctx;
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return o->help = 1;
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        mp_log_set_quiet(1);
        return 1;
    }
    if (strcmp(a, "--format") && strcmp(a, "--out") && strcmp(a, "--where") && strcmp(a, "--mag")) return 0;
    if (!v) {
        mp_error("db export: %s needs a value", a);
        return -1;
    }
    ++*i;
    if (!strcmp(a, "--format")) {
        if (strcmp(v, "imagefolder") && strcmp(v, "csv") && strcmp(v, "npy")) {
            mp_error("db export: unknown format '%s' (imagefolder, csv, npy)", v);
            return -1;
        }
        o->format = v;
    } else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--where")) {
        free(o->where_opt);
        o->where_opt = mp_xstrdup(v);
    } else if (mp_parse_double(v, &o->mag) < 0 || !(o->mag > 0)) {
        mp_error("db export: --mag wants a positive number, got '%s'", v);
        return -1;
    }
    return 1;
}

/* ---- the staging directory ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Remove a tree without following symlinks (a link inside is removed, not its target). */
static int rm_tree(const char *path) { return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* DIR must be empty but for stale staging directories of killed exports, which are removed. */
static int prepare_out(const char *out)
{
    struct stat sb;
    if (lstat(out, &sb) != 0) {
        if (errno != ENOENT) return mp_err_set("%s: %s", out, strerror(errno));
        return mp_mkdir_p(out);
    }
    if (!S_ISDIR(sb.st_mode)) return mp_err_set("%s: exists and is not a directory", out);
    DIR *d = opendir(out);
    if (!d) return mp_err_set("%s: %s", out, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!strncmp(e->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX))) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", out, e->d_name);
            if (rm_tree(p) != 0) rc = mp_err_set("%s: cannot remove a stale export: %s", p, strerror(errno));
            continue;
        }
        rc = mp_err_set("%s: not empty (holds '%s'); export into a new or empty directory", out, e->d_name);
        break;
    }
    closedir(d);
    return rc;
}

/* Move every entry of the staging directory into DIR, flush, remove the staging directory. */
static int publish(const char *stage, const char *out)
{
    int sfd = open(stage, O_RDONLY | O_DIRECTORY);
    if (sfd >= 0) {
        syncfs(sfd); /* one flush for every file written, before any appears under its final name */
        close(sfd);
    }
    DIR *d = opendir(stage);
    if (!d) return mp_err_set("%s: %s", stage, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%s", stage, e->d_name);
        snprintf(b, sizeof b, "%s/%s", out, e->d_name);
        if (rename(a, b) != 0) rc = mp_err_set("%s: cannot move into place: %s", b, strerror(errno));
    }
    closedir(d);
    if (!rc && rmdir(stage) != 0) rc = mp_err_set("%s: %s", stage, strerror(errno));
    int dfd = open(out, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return rc;
}

/* ---- pixels ---- */

/* Decode a stored blob to w x h x 3 RGB (malloc'd). */
static int decode_rgb(const void *data, size_t len, int64_t pid, double mag, uint8_t **rgb, int *w, int *h)
{
    VipsImage *im = vips_image_new_from_buffer(data, len, "", "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    VipsImage *c = NULL;
    if (im && vips_image_get_bands(im) == 4) {
        if (vips_flatten(im, &c, NULL) == 0) g_object_unref(im), im = c;
    }
    if (!im || vips_image_get_bands(im) != 3 || vips_image_get_format(im) != VIPS_FORMAT_UCHAR) {
        char why[400] = "not 8-bit RGB";
        if (!im) mp_vips_err_take_into(why, sizeof why, NULL);
        mp_err_set("patch %lld at %gx: image does not decode (%s)", (long long)pid, mag, why);
        if (im) g_object_unref(im);
        return -1;
    }
    size_t n;
    void *px = vips_image_write_to_memory(im, &n);
    *w = vips_image_get_width(im);
    *h = vips_image_get_height(im);
    g_object_unref(im);
    if (!px || n != (size_t)*w * *h * 3) {
        g_free(px);
        char why[400];
        mp_err_set("patch %lld at %gx: image does not decode (%s)", (long long)pid, mag,
                   mp_vips_err_take_into(why, sizeof why, NULL));
        return -1;
    }
    *rgb = mp_xmalloc(n);
    memcpy(*rgb, px, n);
    g_free(px);
    return 0;
}

static int write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wbx"); /* x: never through an existing name */
    if (!f) return mp_err_set("%s: %s", path, strerror(errno));
    int bad = len && fwrite(data, 1, len, f) != len;
    if (fclose(f) != 0 || bad) return mp_err_set("%s: write failed: %s", path, strerror(errno));
    return 0;
}

/* ---- the formats ---- */

typedef struct {
    mp_db *db;
    const export_opts *o;
    const char *stage;
    db_query_rows *rows;
    db_patch_row row;  /* the current row */
    int nclasses;
    int64_t *class_ids;
    char **class_names;
    int64_t slide_id;  /* the slide whose MPP and path are below (0: none yet) */
    int slide_found, has_mpp;
    double mpp;
    char slide_path[4096];
    int64_t n; /* rows the query selects */
    mp_progress *prog;
} exporter;

static void csv_field(FILE *f, const char *s, int last)
{
    csv_fwrite(f, s ? s : "", s ? strlen(s) : 0);
    fputc(last ? '\n' : ',', f);
}

static const char *real_text(int has, double v, char *buf, size_t cap)
{
    if (!has) return "";
    snprintf(buf, cap, "%.10g", v);
    return buf;
}

static int add_class(void *ctx, int64_t id, const char *name)
{
    exporter *E = ctx;
    E->class_ids = mp_xrealloc(E->class_ids, sizeof(int64_t) * (E->nclasses + 1));
    E->class_names = mp_xrealloc(E->class_names, sizeof(char *) * (E->nclasses + 1));
    E->class_ids[E->nclasses] = id;
    E->class_names[E->nclasses++] = mp_xstrdup(name);
    return 0;
}

/* Class id of the row's label (the classes table), -1 when unlabelled or unknown. */
static int64_t class_id(exporter *E)
{
    for (int i = 0; E->row.label && i < E->nclasses; i++)
        if (!strcmp(E->class_names[i], E->row.label)) return E->class_ids[i];
    return -1;
}

static const char *csv_head[] = {"id", "slide", "patient", "split", "label", "label_id", "x0", "y0", "size0", "mpp",
                                 "tissue", "blur", "pen", "brightness", "slide_path"};

/* One CSV row of the current result row (mpp and path looked up by slide id). */
static void csv_row(exporter *E, FILE *f)
{
    const db_patch_row *r = &E->row;
    if (r->slide_id != E->slide_id) {
        E->slide_id = r->slide_id;
        E->slide_found = db_slide_mpp_path(E->db, r->slide_id, &E->has_mpp, &E->mpp, E->slide_path,
                                           sizeof E->slide_path) == 1;
    }
    char b[8][64];
    snprintf(b[0], 64, "%lld", (long long)class_id(E));
    snprintf(b[1], 64, "%lld", (long long)r->id);
    snprintf(b[2], 64, "%lld", (long long)r->x0);
    snprintf(b[3], 64, "%lld", (long long)r->y0);
    csv_field(f, b[1], 0);
    csv_field(f, r->slide, 0);
    csv_field(f, r->patient, 0);
    csv_field(f, r->split, 0);
    csv_field(f, r->label, 0);
    csv_field(f, b[0], 0);
    csv_field(f, b[2], 0);
    csv_field(f, b[3], 0);
    csv_field(f, real_text(1, r->size0, b[4], 64), 0);
    csv_field(f, E->slide_found ? real_text(E->has_mpp, E->mpp, b[5], 64) : "", 0);
    csv_field(f, real_text(1, r->tissue, b[6], 64), 0);
    csv_field(f, real_text(r->has_blur, r->blur, b[7], 64), 0);
    char c[3][64];
    csv_field(f, real_text(r->has_pen, r->pen, c[0], 64), 0);
    csv_field(f, real_text(r->has_brightness, r->brightness, c[1], 64), 0);
    csv_field(f, E->slide_found ? E->slide_path : "", 1);
}

static FILE *csv_open(const char *stage, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", stage, name);
    FILE *f = fopen(path, "wx");
    if (!f) {
        mp_err_set("%s: %s", path, strerror(errno));
        return NULL;
    }
    for (size_t i = 0; i < sizeof csv_head / sizeof csv_head[0]; i++)
        csv_field(f, csv_head[i], i + 1 == sizeof csv_head / sizeof csv_head[0]);
    return f;
}

static int csv_close(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return mp_err_set("%s: write failed: %s", path, strerror(errno));
    return 0;
}

static int export_csv(exporter *E, const char *name)
{
    char path[4096];
    FILE *f = csv_open(E->stage, name, path, sizeof path);
    if (!f) return -1;
    int rc;
    int64_t done = 0;
    while ((rc = db_query_next(E->rows, &E->row)) == 1) {
        csv_row(E, f);
        mp_progress_update(E->prog, (uint64_t)++done, NULL);
    }
    if (rc) {
        fclose(f);
        return -1;
    }
    return csv_close(f, path);
}

/* A directory name for a split or a class: safe, and two different names must not meet in one
 * folder ("a/b" and "a_b" both become "a_b"). */
typedef struct {
    char **raw, **safe;
    int n;
} name_map;

static int map_name(name_map *m, const char *raw, const char *what, char *out, size_t cap)
{
    mp_safe_name(raw, out, cap);
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->safe[i], out)) continue;
        if (!strcmp(m->raw[i], raw)) return 0;
        return mp_err_set("two %s names, '%s' and '%s', would share the folder '%s'; rename one", what, m->raw[i], raw,
                          out);
    }
    m->raw = mp_xrealloc(m->raw, sizeof(char *) * (m->n + 1));
    m->safe = mp_xrealloc(m->safe, sizeof(char *) * (m->n + 1));
    m->raw[m->n] = mp_xstrdup(raw);
    m->safe[m->n] = mp_xstrdup(out);
    m->n++;
    return 0;
}

static void map_free(name_map *m)
{
    for (int i = 0; i < m->n; i++) free(m->raw[i]), free(m->safe[i]);
    free(m->raw);
    free(m->safe);
}

static int export_imagefolder(exporter *E)
{
    name_map splits = {0}, classes = {0};
    int rc, fail = 0;
    int64_t done = 0;
    while (!fail && (rc = db_query_next(E->rows, &E->row)) == 1) {
        const db_patch_row *r = &E->row;
        const char *split = r->split, *label = r->label;
        char sdir[MP_SAFE_NAME_MAX + 8], cdir[MP_SAFE_NAME_MAX + 8], slide[MP_SAFE_NAME_MAX + 8];
        if (map_name(&splits, split ? split : "unsplit", "split", sdir, sizeof sdir) ||
            map_name(&classes, label ? label : "unlabelled", "class", cdir, sizeof cdir)) {
            fail = 1;
            break;
        }
        mp_safe_name(r->slide, slide, sizeof slide);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/%s", E->stage, sdir, cdir);
        if (mp_mkdir_p(path)) {
            fail = 1;
            break;
        }
        int64_t pid = r->id;
        snprintf(path, sizeof path, "%s/%s/%s/%s_%lld_%lld_%lld.png", E->stage, sdir, cdir, slide, (long long)pid,
                 (long long)r->x0, (long long)r->y0);
        const char *codec = r->codec;
        const void *data = r->data;
        size_t len = r->bytes;
        if (codec && !strcmp(codec, "png")) {
            fail = write_all(path, data, len) != 0; /* stored PNG: the same bytes */
        } else {
            uint8_t *rgb;
            int w, h;
            if (decode_rgb(data, len, pid, E->o->mag, &rgb, &w, &h)) {
                fail = 1;
                break;
            }
            VipsImage *im = vips_image_new_from_memory(rgb, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
            void *png = NULL;
            size_t plen = 0;
            if (!im || vips_pngsave_buffer(im, &png, &plen, "compression", 6, NULL)) {
                char why[400];
                mp_err_set("%s: PNG encode failed: %s", path, mp_vips_err_take_into(why, sizeof why, NULL));
                fail = 1;
            } else fail = write_all(path, png, plen) != 0;
            if (im) g_object_unref(im);
            g_free(png);
            free(rgb);
        }
        mp_progress_update(E->prog, (uint64_t)++done, NULL);
    }
    map_free(&splits);
    map_free(&classes);
    return fail || rc ? -1 : 0;
}

static int export_npy(exporter *E)
{
    /* every image must have one size: the array is (N, H, W, 3) */
    int64_t N = E->n, H = -1, W = -1;
    char ipath[4096], lpath[4096], xpath[4096], cpath[4096];
    snprintf(ipath, sizeof ipath, "%s/images.npy", E->stage);
    snprintf(lpath, sizeof lpath, "%s/labels.npy", E->stage);
    snprintf(cpath, sizeof cpath, "%s/classes.txt", E->stage);
    FILE *fi = NULL, *fx = NULL;
    int64_t *labels = mp_xmalloc(sizeof(int64_t) * (size_t)(N ? N : 1));
    fx = csv_open(E->stage, "index.csv", xpath, sizeof xpath);
    int rc = 0, fail = !fx;
    int64_t i = 0;
    while (!fail && (rc = db_query_next(E->rows, &E->row)) == 1) {
        int64_t pid = E->row.id;
        uint8_t *rgb;
        int w, h;
        if (i >= N) { /* cannot happen inside one read transaction */
            fail = mp_err_set("%s: the dataset changed during the export", db_path(E->db));
            break;
        }
        if (decode_rgb(E->row.data, E->row.bytes, pid, E->o->mag, &rgb, &w, &h)) {
            fail = 1;
            break;
        }
        if (H < 0) {
            H = h, W = w;
            int64_t shape[4] = {N, H, W, 3};
            uint8_t head[640];
            int hl = nn_npy_header(ipath, NN_U8, 4, shape, head, sizeof head);
            fi = hl < 0 ? NULL : fopen(ipath, "wbx");
            if (hl >= 0 && !fi) mp_err_set("%s: %s", ipath, strerror(errno));
            if (!fi || fwrite(head, 1, (size_t)hl, fi) != (size_t)hl) {
                if (fi) mp_err_set("%s: write failed: %s", ipath, strerror(errno));
                free(rgb);
                fail = 1;
                break;
            }
        } else if (h != H || w != W) {
            free(rgb);
            fail = mp_err_set("patch %lld at %gx is %dx%d, earlier patches %lldx%lld: an array needs one size (choose "
                              "patches with --where)", (long long)pid, E->o->mag, w, h, (long long)W, (long long)H);
            break;
        }
        if (fwrite(rgb, 1, (size_t)w * h * 3, fi) != (size_t)w * h * 3) {
            free(rgb);
            fail = mp_err_set("%s: write failed: %s", ipath, strerror(errno));
            break;
        }
        free(rgb);
        labels[i++] = class_id(E);
        csv_row(E, fx);
        mp_progress_update(E->prog, (uint64_t)i, NULL);
    }
    if (!fail && rc) fail = 1;
    if (fi && fclose(fi) != 0 && !fail) fail = mp_err_set("%s: write failed: %s", ipath, strerror(errno)) != 0;
    if (fx && csv_close(fx, xpath) && !fail) fail = 1;
    if (!fail && H < 0) { /* nothing selected: an empty (0, 0, 0, 3) array */
        int64_t shape[4] = {0, 0, 0, 3};
        uint8_t head[640];
        int hl = nn_npy_header(ipath, NN_U8, 4, shape, head, sizeof head);
        fail = hl < 0 || write_all(ipath, head, (size_t)hl) != 0;
    }
    if (!fail) {
        int64_t shape[1] = {i};
        uint8_t head[640];
        int hl = nn_npy_header(lpath, NN_I64, 1, shape, head, sizeof head);
        FILE *fl = hl < 0 ? NULL : fopen(lpath, "wbx");
        if (!fl || fwrite(head, 1, (size_t)hl, fl) != (size_t)hl ||
            fwrite(labels, sizeof(int64_t), (size_t)i, fl) != (size_t)i || fclose(fl) != 0)
            fail = mp_err_set("%s: write failed: %s", lpath, strerror(errno)) != 0;
    }
    free(labels);
    if (!fail) {
        /* classes.txt: line k is class k (the ids labels.npy holds) */
        FILE *fc = fopen(cpath, "wx");
        int64_t next = 0;
        for (int k = 0; fc && k < E->nclasses; k++) {
            for (; next < E->class_ids[k]; next++) fputc('\n', fc);
            char esc[512];
            fprintf(fc, "%s\n", mp_escape_ctrl(E->class_names[k], esc, sizeof esc));
            next++;
        }
        if (!fc || fclose(fc) != 0) fail = mp_err_set("%s: write failed", cpath) != 0;
    }
    return fail ? -1 : 0;
}

int cmd_db_export(const char *db_path, int argc, char **argv)
{
    export_opts o = {0};
    char *where = NULL;
    if (cmd_db_where_args("export", argc, argv, export_opt, &o, &where)) {
        free(o.where_opt);
        return MP_EXIT_USAGE;
    }
    if (o.help) {
        usage(stdout);
        free(where), free(o.where_opt);
        return MP_EXIT_OK;
    }
    if (*where) {
        mp_error("db export: unexpected argument '%s' (a filter goes after --where)", where);
        free(where), free(o.where_opt);
        return MP_EXIT_USAGE;
    }
    free(where);
    if (!o.format || !o.out) {
        usage(stderr);
        mp_error("db export: --format and --out are required");
        free(o.where_opt);
        return MP_EXIT_USAGE;
    }
    db_query *q = db_query_parse(o.where_opt);
    if (!q) {
        mp_error("db export: --where: %s", mp_err());
        free(o.where_opt);
        return MP_EXIT_USAGE;
    }
    free(o.where_opt);
    o.where_opt = NULL;
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        db_query_free(q);
        return MP_EXIT_FAIL;
    }
    int code = MP_EXIT_FAIL;
    char stage[4096] = "";
    exporter E = {.db = db, .o = &o};
    if (db_query_check(db, q)) {
        mp_error("db export: --where: %s", mp_err());
        code = MP_EXIT_USAGE;
        goto out;
    }
    /* one snapshot: the count and the rows agree even if a tiler writes meanwhile */
    if (db_read_begin(db)) goto fail;
    int64_t nmags = db_mags_count(db);
    char mags[256];
    db_query_mags(db, mags, sizeof mags);
    if (o.mag <= 0 && strcmp(o.format, "csv")) {
        if (nmags > 1) {
            mp_error("db export: --mag is needed: %s holds %s", db_path, mags);
            code = MP_EXIT_USAGE;
            goto out;
        }
        db_mag_any(db, &o.mag);
        if (o.mag <= 0) {
            mp_error("db export: %s holds no images (tile or import patches first)", db_path);
            goto out;
        }
    } else if (o.mag > 0) {
        int have = db_mag_images(db, o.mag) > 0;
        if (!have) {
            mp_error("db export: %s has no images at %gx (it holds %s)", db_path, o.mag, mags);
            code = MP_EXIT_USAGE;
            goto out;
        }
    }
    if ((E.n = db_query_count(db, q, o.mag)) < 0) goto fail;
    if (prepare_out(o.out)) goto fail;
    snprintf(stage, sizeof stage, "%s/" STAGE_PREFIX "%d", o.out, (int)getpid());
    if (mkdir(stage, 0755) != 0) {
        mp_err_set("%s: %s", stage, strerror(errno));
        stage[0] = 0;
        goto fail;
    }
    E.stage = stage;
    if (!(E.rows = db_query_run(db, q, o.mag, 0))) goto fail;
    if (db_classes_each(db, add_class, &E)) goto fail;
    if (strcmp(o.format, "csv") && VIPS_INIT("magpie")) {
        char why[400];
        mp_err_set("libvips: %s", mp_vips_err_take_into(why, sizeof why, NULL));
        goto fail;
    }
    E.prog = mp_progress_new(MP_PROGRESS_AUTO, "export", (uint64_t)E.n, "patches");
    int rc = !strcmp(o.format, "csv") ? export_csv(&E, "patches.csv")
           : !strcmp(o.format, "npy") ? export_npy(&E)
                                      : export_imagefolder(&E);
    mp_progress_finish(E.prog, NULL);
    if (rc || publish(stage, o.out)) goto fail;
    stage[0] = 0;
    if (o.mag > 0) mp_info("%s: %lld patches exported (%s, %gx)", o.out, (long long)E.n, o.format, o.mag);
    else mp_info("%s: %lld patches exported (%s)", o.out, (long long)E.n, o.format);
    code = MP_EXIT_OK;
    goto out;
fail:
    mp_error("%s", mp_err());
out:
    if (stage[0]) rm_tree(stage); /* a failed export leaves DIR as it found it */
    mp_progress_free(E.prog);
    db_query_rows_free(E.rows);
    for (int k = 0; k < E.nclasses; k++) free(E.class_names[k]);
    free(E.class_names);
    free(E.class_ids);
    db_query_free(q);
    db_close(db);
    return code;
}
