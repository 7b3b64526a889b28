/* tiler/import.c — `magpie db DB import-patches DIR`: an existing patch set (one image per patch,
 * class folders) into the dataset. Each requested magnification is derived from the file's
 * pixels by the tiler's own area average (tiler_area_resample), so an imported patch at 1.25x is
 * made the way a tiled one is; encoding follows the tiler (JPEG 4:4:4 at Q >= 90, or PNG). All
 * rows are written in one transaction: the import lands whole or not at all. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/dataset.h"
#include "db/patchimport.h"
#include "tiler/internal.h"
#include "tiler/tiler.h"

#define IMPORT_MAX_SIDE 8192 /* a patch set's images are small; past this a file is not a patch */

static const char *image_exts[] = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"};

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++)
        if (!strcasecmp(dot, image_exts[i])) return 1;
    return 0;
}

/* nftw has no user pointer: the walk's state lives here for the one walk at a time. */
static struct {
    char **files;
    int n, cap, skipped, hidden_root;
} walk;

static int walk_fn(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    const char *base = path + f->base;
    if (f->level > 0 && base[0] == '.') return flag == FTW_D ? FTW_SKIP_SUBTREE : 0; /* hidden: .DS_Store, .git */
    if (flag != FTW_F || !S_ISREG(sb->st_mode)) return 0;                          /* symlinks (FTW_SL) are not followed */
    if (!has_image_ext(base)) {
        walk.skipped++;
        return 0;
    }
    if (walk.n == walk.cap) walk.files = mp_xrealloc(walk.files, sizeof(char *) * (walk.cap = walk.cap ? walk.cap * 2 : 256));
    walk.files[walk.n++] = mp_xstrdup(path);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int tiler_import_check(const tiler_import_opts *o, char *err, size_t en)
{
    double native = 10.0 / o->mpp;
    for (int k = 0; k < o->n_mags; k++)
        if (o->mags[k] > native * (1 + TILER_LEVEL_TOL)) {
            snprintf(err, en, "%gx is finer than the images (%.3gx at %g um/px); import-patches does not upsample",
                     o->mags[k], native, o->mpp);
            return -1;
        }
    if (o->patient_regex) {
        regex_t re;
        int rc = regcomp(&re, o->patient_regex, REG_EXTENDED);
        if (rc) {
            char why[128];
            regerror(rc, &re, why, sizeof why);
            snprintf(err, en, "--patient-from: bad regular expression '%s': %s", o->patient_regex, why);
            return -1;
        }
        regfree(&re);
    }
    return 0;
}

/* The file's pixels as RGB: 8-bit, grey expanded, alpha flattened on white. */
static int load_rgb(const char *path, uint8_t **rgb, int *w, int *h)
{
    uint8_t *buf;
    size_t len;
    if (mp_read_file(path, &buf, &len)) return -1;
    VipsImage *im = vips_image_new_from_buffer(buf, len, "", "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    if (!im) {
        char e[256];
        tiler_vips_error_take(e, sizeof e, "");
        char *nl = strchr(e, '\n');
        if (nl) *nl = 0;
        free(buf);
        return mp_err_set("%s: not an image libvips can read%s", path, e);
    }
    int rc = -1;
    VipsImage *t = NULL;
    if (vips_image_get_format(im) != VIPS_FORMAT_UCHAR) {
        mp_err_set("%s: %s pixels; import-patches takes 8-bit images", path, vips_enum_nick(VIPS_TYPE_BAND_FORMAT, vips_image_get_format(im)));
        goto out;
    }
    if (vips_image_get_width(im) > IMPORT_MAX_SIDE || vips_image_get_height(im) > IMPORT_MAX_SIDE) {
        mp_err_set("%s: %dx%d is larger than a patch (at most %d px a side)", path, vips_image_get_width(im),
                   vips_image_get_height(im), IMPORT_MAX_SIDE);
        goto out;
    }
    if (vips_image_hasalpha(im)) {
        double white[1] = {255};
        if (vips_flatten(im, &t, "background", vips_array_double_new(white, 1), NULL)) goto vfail;
        g_object_unref(im), im = t, t = NULL;
    }
    if (vips_image_get_bands(im) == 1) {
        VipsImage *in[3] = {im, im, im};
        if (vips_bandjoin(in, &t, 3, NULL)) goto vfail;
        g_object_unref(im), im = t, t = NULL;
    }
    if (vips_image_get_bands(im) != 3) {
        mp_err_set("%s: %d bands; import-patches takes RGB or grey images", path, vips_image_get_bands(im));
        goto out;
    }
    size_t n;
    void *px = vips_image_write_to_memory(im, &n);
    if (!px) goto vfail;
    *w = vips_image_get_width(im);
    *h = vips_image_get_height(im);
    *rgb = mp_xmalloc(n);
    memcpy(*rgb, px, n);
    g_free(px);
    rc = 0;
    goto out;
vfail: {
    char e[256];
    tiler_vips_error_take(e, sizeof e, "");
    mp_err_set("%s: does not decode%s", path, e);
}
out:
    g_object_unref(im);
    free(buf);
    return rc;
}

/* The patient of a file: the regex's first group (or whole match) on the file name. */
static int patient_of(const regex_t *re, const char *path, const char *base, char *out, size_t cap)
{
    regmatch_t m[2];
    if (regexec(re, base, 2, m, 0) != 0)
        return mp_err_set("%s: --patient-from regex does not match the file name '%s'", path, base);
    regmatch_t g = m[1].rm_so >= 0 ? m[1] : m[0];
    if (g.rm_eo <= g.rm_so) return mp_err_set("%s: --patient-from regex matched an empty patient id", path);
    snprintf(out, cap, "%.*s", (int)(g.rm_eo - g.rm_so), base + g.rm_so);
    return 0;
}

int tiler_import_patches(mp_db *db, const char *dir, const tiler_import_opts *o, tiler_import_report *rep)
{
    memset(rep, 0, sizeof *rep);
    char err[512];
    if (tiler_import_check(o, err, sizeof err)) return mp_err_set("%s", err);
    regex_t re;
    int have_re = 0;
    if (o->patient_regex) {
        int rc = regcomp(&re, o->patient_regex, REG_EXTENDED);
        if (rc) {
            regerror(rc, &re, err, sizeof err);
            return mp_err_set("--patient-from: bad regular expression '%s': %s", o->patient_regex, err);
        }
        have_re = 1;
    }
    char root[PATH_MAX];
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (have_re) regfree(&re);
        return mp_err_set("%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode) || !realpath(dir, root)) {
        if (have_re) regfree(&re);
        return mp_err_set("%s: not a directory", dir);
    }
    memset(&walk, 0, sizeof walk);
    nftw(root, walk_fn, 32, FTW_PHYS | FTW_ACTIONRETVAL);
    rep->skipped = walk.skipped;
    qsort(walk.files, (size_t)walk.n, sizeof(char *), cmp_str);
    int rc = -1, W = 0;
    const char *first = NULL;
    tjhandle tj = tjInitCompress();
    db_importer *imp = NULL;
    mp_progress *prog = NULL;
    long kill_after = -1;
    const char *kv = getenv("MAGPIE_IMPORT_KILL"); /* test hook: SIGKILL after N files (crash tests) */
    if (kv && mp_parse_long(kv, &kill_after) < 0) kill_after = -1;
    if (walk.n == 0) {
        mp_err_set("%s: no image files (%s) found", dir, ".png .jpg .jpeg .tif .tiff .webp .bmp");
        goto done;
    }
    if (db_begin(db)) goto done;
    if (!(imp = db_importer_new(db))) goto rollback;
    char params[256];
    {
        int n = snprintf(params, sizeof params, "{\"import\":\"patches\",\"mpp\":%.17g,\"mags\":[", o->mpp);
        for (int k = 0; k < o->n_mags; k++) n += snprintf(params + n, sizeof params - (size_t)n, "%s%.17g", k ? "," : "", o->mags[k]);
        snprintf(params + n, sizeof params - (size_t)n, "],\"codec\":\"%s\",\"quality\":%d}", o->png ? "png" : "jpeg",
                 o->png ? 0 : o->quality);
    }
    prog = mp_progress_new(o->progress, "import", (uint64_t)walk.n, "patches");
    size_t rootlen = strlen(root);
    for (int i = 0; i < walk.n; i++) {
        const char *path = walk.files[i];
        const char *rel = path + rootlen + 1;
        const char *base = strrchr(path, '/') + 1;
        char label[NAME_MAX + 1] = "", patient[256] = "", name[NAME_MAX + 1];
        if (o->label_from_folder) {
            const char *slash = strchr(rel, '/');
            if (!slash) {
                mp_err_set("%s: not inside a class folder (--label-from folder takes the class from DIR/CLASS/FILE)", path);
                goto rollback;
            }
            snprintf(label, sizeof label, "%.*s", (int)(slash - rel), rel);
        }
        if (have_re && patient_of(&re, path, base, patient, sizeof patient)) goto rollback;
        mp_path_stem(base, name, sizeof name);
        uint8_t *rgb = NULL;
        int w = 0, h = 0;
        if (load_rgb(path, &rgb, &w, &h)) goto rollback;
        if (w != h) {
            free(rgb);
            mp_err_set("%s: %dx%d is not square (a patch covers a square)", path, w, h);
            goto rollback;
        }
        if (!first) first = path, W = w;
        else if (w != W) {
            free(rgb);
            mp_err_set("%s: %dx%d, but %s is %dx%d: one patch size per import (import each size on its own, "
                       "with its --mpp)", path, w, h, first, W, W);
            goto rollback;
        }
        char fp[64];
        if (tiler_fingerprint(path, fp)) {
            free(rgb);
            goto rollback;
        }
        db_image_rec imgs[TILER_MAX_MAGS];
        void *bufs[TILER_MAX_MAGS] = {0};
        int gbuf[TILER_MAX_MAGS] = {0}; /* 1: g_free, 0: tjFree */
        int bad = 0;
        for (int k = 0; k < o->n_mags && !bad; k++) {
            int t = (int)lround(W * o->mpp * o->mags[k] / 10.0);
            if (t > W) t = W; /* within TILER_LEVEL_TOL of the file's own scale */
            if (t < 1) {
                bad = mp_err_set("%s: %gx would make a patch of %g px; choose a higher magnification", path, o->mags[k],
                                 W * o->mpp * o->mags[k] / 10.0);
                break;
            }
            uint8_t *px = t == W ? rgb : tiler_area_resample(rgb, W, t);
            imgs[k] = (db_image_rec){.mag = o->mags[k], .width = t, .height = t, .level = 0, .scale = (double)t / W};
            if (o->png) {
                VipsImage *v = vips_image_new_from_memory(px, (size_t)t * t * 3, t, t, 3, VIPS_FORMAT_UCHAR);
                size_t len = 0;
                if (!v || vips_pngsave_buffer(v, &bufs[k], &len, "compression", 6, NULL)) {
                    tiler_vips_error_take(err, sizeof err, "PNG encode");
                    bad = mp_err_set("%s: %s", path, err);
                }
                if (v) g_object_unref(v);
                gbuf[k] = 1;
                imgs[k].codec = "png";
                imgs[k].len = len;
            } else {
                unsigned char *jb = NULL;
                unsigned long len = 0;
                if (!tj || tjCompress2(tj, px, t, t * 3, t, TJPF_RGB, &jb, &len, o->quality >= 90 ? TJSAMP_444 : TJSAMP_420,
                                       o->quality, TJFLAG_ACCURATEDCT))
                    bad = mp_err_set("%s: JPEG encode: %s", path, tj ? tjGetErrorStr2(tj) : "no encoder");
                bufs[k] = jb;
                imgs[k].codec = "jpeg";
                imgs[k].len = len;
            }
            imgs[k].data = bufs[k];
            if (px != rgb) tiler_free(px);
        }
        db_import_rec r = {.path = path, .name = name, .fingerprint = fp, .params = params, .label = label[0] ? label : NULL,
                           .patient = patient[0] ? patient : NULL, .width = W, .height = W, .mpp = o->mpp,
                           .n_images = o->n_mags, .images = imgs};
        if (!bad) tiler_qc(rgb, W, W, &r.blur, &r.brightness);
        int kept = 0;
        if (!bad && db_importer_add(imp, &r, &kept)) bad = -1;
        for (int k = 0; k < o->n_mags; k++)
            if (bufs[k]) gbuf[k] ? g_free(bufs[k]) : tjFree(bufs[k]);
        free(rgb);
        if (bad) goto rollback;
        if (kept) rep->kept++;
        else rep->imported++;
        mp_progress_update(prog, (uint64_t)i + 1, NULL);
        if (kill_after >= 0 && i + 1 >= kill_after) raise(SIGKILL);
    }
    db_importer_free(imp);
    imp = NULL;
    if (db_commit(db)) goto rollback;
    rep->size = W;
    rep->classes = (int)db_count_classes(db);
    rc = 0;
    goto done;
rollback: {
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", mp_err());
    db_importer_free(imp);
    imp = NULL;
    db_rollback(db);
    mp_err_set("%s", keep);
}
done:
    mp_progress_finish(prog, NULL);
    mp_progress_free(prog);
    if (tj) tjDestroy(tj);
    for (int i = 0; i < walk.n; i++) free(walk.files[i]);
    free(walk.files);
    memset(&walk, 0, sizeof walk);
    if (have_re) regfree(&re);
    rep->files = rep->imported + rep->kept;
    return rc;
}
