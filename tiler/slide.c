/* tiler/slide.c — opening a slide (with a one-line reason for every way it can be bad), its
 * MPP in DESIGN.md's order with provenance, the content fingerprint, and the thumbnail the
 * tissue mask is computed on. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/util.h"
#include "tiler/internal.h"
#include "tiler/tiffread.h"

/* mp_open_regular, with the tiler's wording for a missing slide. */
static int open_slide_file(const char *path)
{
    int fd = mp_open_regular(path);
    if (fd < 0 && access(path, F_OK) != 0 && errno == ENOENT) mp_err_set("%s: no such file", path);
    return fd;
}

int tiler_is_dicom(const char *path)
{
    int fd = mp_open_regular(path);
    if (fd < 0) return 0;
    char b[4];
    int r = pread(fd, b, 4, 128) == 4 && !memcmp(b, "DICM", 4);
    close(fd);
    return r;
}

/* libtiff reports through a global handler; a thread-local flag lets one thread ask "did
 * that fail?" without libtiff printing to the user's terminal. */
static _Thread_local int tiff_error_seen;
static void tiff_error(const char *mod, const char *fmt, va_list ap)
{
    (void)mod;
    (void)fmt;
    (void)ap;
    tiff_error_seen = 1;
}

void tiler_tiff_quiet(void)
{
    TIFFSetErrorHandler(tiff_error);
    TIFFSetWarningHandler(NULL);
}

/* 1 if a directory chain or any tile/strip of the TIFF points past the end of the file. */
static int tiff_cut_short(TIFF *t, uint64_t size)
{
    do {
        int tiled = TIFFIsTiled(t);
        uint64_t *off = NULL, *cnt = NULL;
        uint32_t n = tiled ? TIFFNumberOfTiles(t) : TIFFNumberOfStrips(t);
        if (!TIFFGetField(t, tiled ? TIFFTAG_TILEOFFSETS : TIFFTAG_STRIPOFFSETS, &off) ||
            !TIFFGetField(t, tiled ? TIFFTAG_TILEBYTECOUNTS : TIFFTAG_STRIPBYTECOUNTS, &cnt))
            return 1;
        for (uint32_t i = 0; i < n; i++)
            if (off[i] + cnt[i] > size) return 1;
    } while (TIFFReadDirectory(t));
    /* TIFFReadDirectory returns 0 both at the end and on a broken link; only the error
     * handler tells them apart. */
    return tiff_error_seen;
}

static int is_tiff_magic(const unsigned char mg[4])
{
    return (mg[0] == 'I' && mg[1] == 'I' && (mg[2] == 42 || mg[2] == 43) && mg[3] == 0) ||
           (mg[0] == 'M' && mg[1] == 'M' && mg[2] == 0 && (mg[3] == 42 || mg[3] == 43));
}

/* Every directory's image and tile sizes against the TILER_MAX_* bounds, and its tile count
 * against what the file could index (each tile needs an offset entry of 4 bytes at least).
 * Runs before OpenSlide or the fast reader open the file: both allocate a tile buffer from
 * these numbers and abort when that fails. 0 = within bounds or not readable as a TIFF here
 * (OpenSlide then gives the reason), -1 + mp_err. */
static int tiff_sizes_ok(const char *path, uint64_t fsize)
{
    TIFFErrorHandler prev = TIFFSetErrorHandler(tiff_error);
    TIFFErrorHandler prevw = TIFFSetWarningHandler(NULL);
    TIFF *t = TIFFOpen(path, "rm");
    int rc = 0, dir = 0;
    if (t) do {
            uint32_t w = 0, h = 0, tw = 0, th = 0;
            TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
            TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
            if (w == 0 || h == 0 || w > TILER_MAX_SIDE || h > TILER_MAX_SIDE) {
                rc = mp_err_set("%s: TIFF directory %d declares a %ux%u px image (at most %d px a side, not empty)",
                                path, dir, w, h, TILER_MAX_SIDE);
                break;
            }
            if (!TIFFIsTiled(t)) continue;
            TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
            TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
            if (tw == 0 || th == 0 || tw > TILER_MAX_TILE_SIDE || th > TILER_MAX_TILE_SIDE ||
                (uint64_t)tw * th > TILER_MAX_TILE_PX) {
                rc = mp_err_set("%s: TIFF directory %d declares %ux%u px tiles (at most %d px a side and %d px in all)",
                                path, dir, tw, th, TILER_MAX_TILE_SIDE, TILER_MAX_TILE_PX);
                break;
            }
            uint64_t ntiles = (uint64_t)((w + tw - 1) / tw) * ((h + th - 1) / th);
            if (ntiles > fsize / 4) {
                rc = mp_err_set("%s: TIFF directory %d declares %llu tiles, more than a %llu-byte file can hold", path,
                                dir, (unsigned long long)ntiles, (unsigned long long)fsize);
                break;
            }
        } while (dir++, TIFFReadDirectory(t));
    if (t) TIFFClose(t);
    TIFFSetErrorHandler(prev);
    TIFFSetWarningHandler(prevw);
    return rc;
}

static int prop_i64(openslide_t *osr, const char *key, int64_t *v)
{
    const char *s = openslide_get_property_value(osr, key);
    long d;
    if (!s || mp_parse_long(s, &d)) return -1;
    *v = d;
    return 0;
}

int tiler_slide_bounds(const tiler_slide *s, int64_t b[4])
{
    int64_t x, y, w, h;
    if (!s->osr || prop_i64(s->osr, OPENSLIDE_PROPERTY_NAME_BOUNDS_X, &x) ||
        prop_i64(s->osr, OPENSLIDE_PROPERTY_NAME_BOUNDS_Y, &y) ||
        prop_i64(s->osr, OPENSLIDE_PROPERTY_NAME_BOUNDS_WIDTH, &w) ||
        prop_i64(s->osr, OPENSLIDE_PROPERTY_NAME_BOUNDS_HEIGHT, &h))
        return 0;
    if (!(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= s->width && y + h <= s->height)) return 0;
    b[0] = x, b[1] = y, b[2] = w, b[3] = h;
    return 1;
}

int tiler_slide_open(const char *path, tiler_slide *s)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    /* Only a regular file gets as far as OpenSlide: a FIFO would block its open() for ever. */
    int fd0 = open_slide_file(path);
    if (fd0 < 0) return -1;
    struct stat sb;
    int st_rc = fstat(fd0, &sb);
    close(fd0);
    if (st_rc != 0) return mp_err_set("%s: %s", path, strerror(errno));
    if (sb.st_size == 0) return mp_err_set("%s: empty file (0 bytes)", path);
    if (access(path, R_OK) != 0) return mp_err_set("%s: %s", path, strerror(errno));
    if (tiler_is_dicom(path)) return mp_err_set("%s: DICOM is not supported by OpenSlide 3.4", path);
    unsigned char mg[4] = {0};
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    int is_tiff = fd >= 0 && pread(fd, mg, 4, 0) == 4 && is_tiff_magic(mg);
    if (fd >= 0) close(fd);
    if (is_tiff && tiff_sizes_ok(path, (uint64_t)sb.st_size)) return -1;
    const char *vendor = openslide_detect_vendor(path);
    if (!vendor) {
        /* A TIFF that OpenSlide refuses is most often cut short (the directory of a libtiff
         * file sits at its end); say that instead of "unrecognised". */
        if (is_tiff) {
            /* OpenSlide installs its own libtiff handlers; ours only for this check. */
            TIFFErrorHandler prev = TIFFSetErrorHandler(tiff_error);
            tiff_error_seen = 0;
            TIFF *t = TIFFOpen(path, "rm");
            int cut = t ? tiff_cut_short(t, (uint64_t)sb.st_size) : 0;
            if (t) TIFFClose(t);
            TIFFSetErrorHandler(prev);
            if (!t) return mp_err_set("%s: truncated or corrupt TIFF (its directory cannot be read)", path);
            if (cut) return mp_err_set("%s: truncated TIFF (image data or directories beyond the end of the file)", path);
            return mp_err_set("%s: a TIFF OpenSlide cannot read (not a tiled slide)", path);
        }
        return mp_err_set("%s: not a slide OpenSlide can read (unrecognised format)", path);
    }
    s->osr = openslide_open(path);
    if (!s->osr) return mp_err_set("%s: not a slide OpenSlide can read (%s)", path, vendor);
    const char *e = openslide_get_error(s->osr);
    if (e) {
        mp_err_set("%s: OpenSlide cannot read it: %s", path, e);
        tiler_slide_close(s);
        return -1;
    }
    snprintf(s->vendor, sizeof s->vendor, "%s", vendor);
    s->levels = openslide_get_level_count(s->osr);
    if (s->levels < 1) {
        tiler_slide_close(s);
        return mp_err_set("%s: slide has no pyramid levels", path);
    }
    if (s->levels > TILER_MAX_LEVELS) s->levels = TILER_MAX_LEVELS; /* deeper levels are never needed */
    for (int i = 0; i < s->levels; i++) {
        openslide_get_level_dimensions(s->osr, i, &s->lw[i], &s->lh[i]);
        s->ds[i] = openslide_get_level_downsample(s->osr, i);
    }
    for (int i = 0; i < s->levels; i++)
        if (s->lw[i] > TILER_MAX_SIDE || s->lh[i] > TILER_MAX_SIDE) {
            mp_err_set("%s: level %d declares %lldx%lld px (at most %d px a side)", path, i, (long long)s->lw[i],
                       (long long)s->lh[i], TILER_MAX_SIDE);
            tiler_slide_close(s);
            return -1;
        }
    s->width = s->lw[0];
    s->height = s->lh[0];
    if (s->width <= 0 || s->height <= 0 || !(s->ds[0] > 0)) {
        e = openslide_get_error(s->osr);
        mp_err_set("%s: OpenSlide cannot read it: %s", path, e ? e : "level 0 has no pixels");
        tiler_slide_close(s);
        return -1;
    }
    return 0;
}

void tiler_slide_close(tiler_slide *s)
{
    if (s && s->osr) openslide_close(s->osr);
    if (s) s->osr = NULL;
}

/* ---- MPP ---- */

int tiler_mpp_plausible(double v) { return v >= TILER_MPP_MIN && v <= TILER_MPP_MAX; }

int tiler_mpp_from_resolution(double res, int unit, double *mpp)
{
    double um;
    if (unit == RESUNIT_INCH) um = 25400.0;
    else if (unit == RESUNIT_CENTIMETER) um = 10000.0;
    else return -1; /* RESUNIT_NONE: an aspect ratio, not a size */
    if (!(res > 0) || !isfinite(res)) return -1;
    *mpp = um / res;
    return 0;
}

static void note(tiler_mpp *o, const char *what, double v)
{
    size_t n = strlen(o->rejected);
    snprintf(o->rejected + n, sizeof o->rejected - n, "%s%s gives %.3g µm/px, outside %g–%g", n ? "; " : "", what,
             v, TILER_MPP_MIN, TILER_MPP_MAX);
}

/* A property as a number; 0 when absent or unparseable. */
static double prop_num(openslide_t *osr, const char *key)
{
    const char *v = openslide_get_property_value(osr, key);
    double d;
    if (!v || mp_parse_double(v, &d) != 0) return 0;
    return d;
}

/* Resolution tags of the first directory, through libtiff (OpenSlide 3.4 turns them into
 * openslide.mpp-* only for some vendors). 0 = found. */
static int tiff_resolution(const char *path, double *rx, double *ry, int *unit)
{
    TIFF *t = TIFFOpen(path, "rm"); /* m: no memory-mapping, the file may be huge */
    if (!t) return -1;
    float x = 0, y = 0;
    uint16_t u = RESUNIT_INCH; /* the TIFF default when the tag is absent */
    int ok = TIFFGetField(t, TIFFTAG_XRESOLUTION, &x) == 1;
    if (TIFFGetField(t, TIFFTAG_YRESOLUTION, &y) != 1) y = x;
    TIFFGetFieldDefaulted(t, TIFFTAG_RESOLUTIONUNIT, &u);
    TIFFClose(t);
    if (!ok) return -1;
    *rx = x;
    *ry = y;
    *unit = u;
    return 0;
}

int tiler_resolve_mpp(const char *path, const tiler_slide *s, double override, tiler_mpp *o)
{
    openslide_t *osr = s->osr;
    memset(o, 0, sizeof *o);
    if (override > 0) {
        /* Say so when the override contradicts a plausible value in the file. */
        tiler_mpp f;
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        if (tiler_resolve_mpp(path, s, 0, &f) == 0 && fabs(f.mpp_x - override) > 0.02 * override)
            mp_warn("%s: --mpp %g overrides the file's %.4g µm/px (%s)", path, override, f.mpp_x, f.source);
        mp_err_set("%s", keep); /* the probe's failure is not this call's */
        memset(o, 0, sizeof *o);
        o->mpp_x = o->mpp_y = override;
        snprintf(o->source, sizeof o->source, "--mpp");
        return 0;
    }
    double x = prop_num(osr, OPENSLIDE_PROPERTY_NAME_MPP_X), y = prop_num(osr, OPENSLIDE_PROPERTY_NAME_MPP_Y);
    if (x > 0) {
        if (!(y > 0)) y = x;
        if (tiler_mpp_plausible(x) && tiler_mpp_plausible(y)) {
            o->mpp_x = x;
            o->mpp_y = y;
            snprintf(o->source, sizeof o->source, "openslide.mpp");
            return 0;
        }
        note(o, "openslide.mpp-x", tiler_mpp_plausible(x) ? y : x);
    }
    double a = prop_num(osr, "aperio.MPP");
    if (a > 0) {
        if (tiler_mpp_plausible(a)) {
            o->mpp_x = o->mpp_y = a;
            snprintf(o->source, sizeof o->source, "aperio.MPP");
            return 0;
        }
        note(o, "aperio.MPP", a);
    }
    double rx, ry;
    int unit;
    if (tiff_resolution(path, &rx, &ry, &unit) == 0) {
        double mx, my;
        if (tiler_mpp_from_resolution(rx, unit, &mx) == 0 && tiler_mpp_from_resolution(ry, unit, &my) == 0) {
            if (tiler_mpp_plausible(mx) && tiler_mpp_plausible(my)) {
                o->mpp_x = mx;
                o->mpp_y = my;
                snprintf(o->source, sizeof o->source, "tiff.XResolution");
                return 0;
            }
            note(o, "TIFF XResolution", tiler_mpp_plausible(mx) ? my : mx);
        }
    }
    return mp_err_set("%s: no usable MPP (%s); pass --mpp", path, o->rejected[0] ? o->rejected : "no MPP in the file");
}

/* ---- fingerprint ---- */

int tiler_fingerprint(const char *path, char out[64])
{
    int fd = open_slide_file(path);
    if (fd < 0) return -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return mp_err_set("%s: %s", path, strerror(errno));
    }
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    uint64_t size = (uint64_t)sb.st_size;
    XXH3_64bits_update(st, &size, sizeof size);
    enum { BLOCK = 1 << 16, SAMPLES = 64 };
    uint8_t *buf = mp_xmalloc(BLOCK);
    int rc = 0;
    /* Whole file when small; else 64 blocks of 64 KiB spread evenly, first and last included
     * (a re-saved or truncated slide changes its size or its directory at either end). */
    uint64_t nblocks = (size + BLOCK - 1) / BLOCK;
    int whole = nblocks <= SAMPLES * 2;
    uint64_t count = whole ? nblocks : SAMPLES;
    for (uint64_t i = 0; i < count && rc == 0; i++) {
        uint64_t b = whole ? i : (count > 1 ? i * (nblocks - 1) / (count - 1) : 0);
        ssize_t n = pread(fd, buf, BLOCK, (off_t)(b * BLOCK));
        if (n < 0) rc = mp_err_set("%s: %s", path, strerror(errno));
        else XXH3_64bits_update(st, buf, (size_t)n);
    }
    snprintf(out, 64, "xxh3:%016llx", (unsigned long long)XXH3_64bits_digest(st));
    XXH3_freeState(st);
    free(buf);
    close(fd);
    return rc;
}

/* ---- thumbnail ---- */

int tiler_thumbnail(tiler_slide *s, double mpp, double target_mpp, uint8_t **out, int *ow, int *oh, double *ods)
{
    return tiler_thumbnail_fast(s, NULL, mpp, target_mpp, out, ow, oh, ods);
}

/* One finished thumbnail row from its sums (r, g, b, alpha, count per pixel); clears the sums. */
static void thumb_row(uint32_t *acc, uint8_t *out, int w)
{
    for (int i = 0; i < w; i++) {
        uint32_t *a = acc + (size_t)i * 5;
        uint32_t n = a[4] ? a[4] : 1, al = a[3];
        if (al == 255 && n == 1) { /* one opaque pixel (thumbnail at the level's own scale) */
            out[i * 4] = (uint8_t)a[0];
            out[i * 4 + 1] = (uint8_t)a[1];
            out[i * 4 + 2] = (uint8_t)a[2];
            out[i * 4 + 3] = 255;
            continue;
        }
        /* unpremultiply: colour = sum(c) / sum(alpha) */
        for (int c = 0; c < 3; c++) out[i * 4 + c] = al ? (uint8_t)fmin(255, (a[c] * 255.0 + al / 2) / al) : 0;
        out[i * 4 + 3] = (uint8_t)((al + n / 2) / n);
    }
    memset(acc, 0, sizeof *acc * 5 * (size_t)w);
}

static uint8_t thumb_lut[3][4 * 255 + 1]; /* [n - 2][sum]: thumb_row_opaque's quotient for n = 2..4 */

static void thumb_lut_init(void)
{
    for (uint32_t n = 2; n <= 4; n++)
        for (uint32_t a = 0; a <= 255 * n; a++) thumb_lut[n - 2][a] = (uint8_t)((255 * a + 255 * n / 2) / (255 * n));
}

/* One finished thumbnail row from opaque sums (r, g, b, count per pixel; the direct TIFF path has
 * no transparency): the same values thumb_row gives with alpha 255 per pixel, colour =
 * (255 sum + 255 n / 2) / (255 n) and alpha 255, in integers (from a table for the common counts
 * 2..4, a level up to twice as fine as the thumbnail each way). Clears the sums. */
static void thumb_row_opaque(uint32_t *acc, uint8_t *out, int w)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, thumb_lut_init);
    for (int i = 0; i < w; i++) {
        uint32_t *a = acc + (size_t)i * 4;
        uint32_t n = a[3];
        if (n == 1) {
            out[i * 4] = (uint8_t)a[0], out[i * 4 + 1] = (uint8_t)a[1], out[i * 4 + 2] = (uint8_t)a[2];
        } else if (n >= 2 && n <= 4) {
            const uint8_t *l = thumb_lut[n - 2];
            out[i * 4] = l[a[0]], out[i * 4 + 1] = l[a[1]], out[i * 4 + 2] = l[a[2]];
        } else if (n) {
            uint32_t d = 255 * n, h = d / 2;
            for (int c = 0; c < 3; c++) out[i * 4 + c] = (uint8_t)((255 * a[c] + h) / d);
        } else {
            out[i * 4] = out[i * 4 + 1] = out[i * 4 + 2] = 0;
        }
        out[i * 4 + 3] = n ? 255 : 0;
    }
    memset(acc, 0, sizeof *acc * 4 * (size_t)w);
}

/* The box filter of tiler_thumbnail_fast over the direct TIFF path's decoded tiles, in place: no
 * copy of the level into a band buffer and no widening to ARGB. A row of tiles is fetched at once
 * (up to ROW_TILES of them, fewer than the reader's cache holds, so their pointers stay valid)
 * and walked level row by level row into one thumbnail row of sums, as the band path does;
 * wider levels go tile by tile into a ring of the thumbnail rows one tile row touches. Same
 * pixels as the band path. */
#define ROW_TILES 64
static int thumb_tiles(tiff_fast *fast, int L, int64_t lw, int64_t lh, int w, int h, const int *tx, double fy,
                       uint8_t *rgba, char *err, size_t en)
{
    int tw, th;
    tiff_fast_tile_size(fast, L, &tw, &th);
    int ntr = (int)((lh + th - 1) / th), ntc = (int)((lw + tw - 1) / tw);
    size_t rw = (size_t)w * 4;
    if (ntc <= ROW_TILES) {
        const uint8_t *row_t[ROW_TILES];
        uint32_t *acc = mp_try_calloc(rw, sizeof *acc, "the thumbnail's row sums");
        if (!acc) {
            snprintf(err, en, "%s", mp_err());
            return -1;
        }
        int cur = 0; /* thumbnail row being summed; rows before it are final */
        for (int tr = 0; tr < ntr; tr++) {
            for (int tc = 0; tc < ntc; tc++) {
                int a, b;
                if (!(row_t[tc] = tiff_fast_tile(fast, L, (uint32_t)tc, (uint32_t)tr, &a, &b, err, en))) {
                    free(acc);
                    return -1;
                }
            }
            int64_t y0 = (int64_t)tr * th, y1 = y0 + th < lh ? y0 + th : lh;
            for (int64_t y = y0; y < y1; y++) {
                int ty = (int)fmin(h - 1, floor(y * fy));
                while (cur < ty) thumb_row_opaque(acc, rgba + (size_t)cur++ * rw, w);
                for (int tc = 0; tc < ntc; tc++) {
                    int64_t x0 = (int64_t)tc * tw, x1 = x0 + tw < lw ? x0 + tw : lw;
                    const uint8_t *p = row_t[tc] + (size_t)(y - y0) * tw * 3;
                    for (int64_t x = x0; x < x1; x++, p += 3) {
                        uint32_t *q = acc + (size_t)tx[x] * 4;
                        q[0] += p[0], q[1] += p[1], q[2] += p[2], q[3] += 1;
                    }
                }
            }
        }
        while (cur < h) thumb_row_opaque(acc, rgba + (size_t)cur++ * rw, w);
        free(acc);
        return 0;
    }
    /* a ring of the thumbnail rows one tile row can touch: floor(y fy) over th level rows */
    int span = (int)fmin(ceil(th * fy) + 2, h + 2); /* a tile may be taller than the level */
    uint32_t *acc = mp_try_calloc((size_t)span * rw, sizeof *acc, "the thumbnail's row sums");
    if (!acc) {
        snprintf(err, en, "%s", mp_err());
        return -1;
    }
    int base = 0; /* first thumbnail row not yet final */
    for (int tr = 0; tr < ntr; tr++) {
        int64_t y0 = (int64_t)tr * th, y1 = y0 + th < lh ? y0 + th : lh;
        int first = (int)fmin(h - 1, floor(y0 * fy));
        for (; base < first; base++) thumb_row_opaque(acc + (size_t)(base % span) * rw, rgba + (size_t)base * rw, w);
        for (int tc = 0; tc < ntc; tc++) {
            int a, b;
            const uint8_t *t = tiff_fast_tile(fast, L, (uint32_t)tc, (uint32_t)tr, &a, &b, err, en);
            if (!t) {
                free(acc);
                return -1;
            }
            int64_t x0 = (int64_t)tc * tw, x1 = x0 + tw < lw ? x0 + tw : lw;
            for (int64_t y = y0; y < y1; y++) {
                uint32_t *arow = acc + (size_t)((int)fmin(h - 1, floor(y * fy)) % span) * rw;
                const uint8_t *p = t + (size_t)(y - y0) * tw * 3;
                for (int64_t x = x0; x < x1; x++, p += 3) {
                    uint32_t *q = arow + (size_t)tx[x] * 4;
                    q[0] += p[0], q[1] += p[1], q[2] += p[2], q[3] += 1;
                }
            }
        }
    }
    for (; base < h; base++) thumb_row_opaque(acc + (size_t)(base % span) * rw, rgba + (size_t)base * rw, w);
    free(acc);
    return 0;
}

int tiler_thumbnail_fast(tiler_slide *s, tiff_fast *fast, double mpp, double target_mpp, uint8_t **out, int *ow, int *oh,
                         double *ods)
{
    int L = tiler_choose_level(s->ds, s->levels, target_mpp / mpp, TILER_LEVEL_TOL);
    double lmpp = mpp * s->ds[L];
    double f = lmpp / target_mpp; /* thumb px per level px, <= ~1 */
    if (f > 1) f = 1;
    int64_t lw = s->lw[L], lh = s->lh[L];
    int w = (int)fmax(1, llround(lw * f)), h = (int)fmax(1, llround(lh * f));
    double fx = (double)w / lw, fy = (double)h / lh;
    /* Box filter: every level pixel lands in one thumbnail pixel. Sums of premultiplied values,
     * one thumbnail row at a time (level rows arrive in order), so memory is a row of sums and
     * one band of level pixels, not a whole-thumbnail accumulator. */
    /* sized by the level's declared width (at most TILER_MAX_SIDE): a failure fails this slide */
    uint8_t *rgba = mp_try_malloc((size_t)w * h * 4, "the thumbnail");
    int *tx = rgba ? mp_try_malloc(sizeof(int) * lw, "the thumbnail's column map") : NULL;
    if (!tx) {
        free(rgba);
        return mp_err_prefix("%s", s->path);
    }
    for (int64_t x = 0; x < lw; x++) tx[x] = (int)fmin(w - 1, floor(x * fx));
    if (fast) {
        char ferr[300];
        if (thumb_tiles(fast, L, lw, lh, w, h, tx, fy, rgba, ferr, sizeof ferr) == 0) {
            free(tx);
            *out = rgba;
            *ow = w;
            *oh = h;
            *ods = (double)s->width / w;
            return 0;
        }
        fast = NULL; /* a bad tile: OpenSlide reads the whole level (and reports the error if it agrees) */
    }
    int64_t band = (int64_t)fmax(1, (1 << 22) / (double)lw);
    if (band > lh) band = lh;
    uint32_t *acc = mp_try_calloc((size_t)w * 5, sizeof *acc, "the thumbnail");
    uint32_t *px = acc ? mp_try_malloc((size_t)(lw * band) * 4, "a band of the thumbnail's level") : NULL;
    if (!px) {
        free(acc);
        free(rgba);
        free(tx);
        return mp_err_prefix("%s", s->path);
    }
    int cur = 0; /* thumbnail row being accumulated; rows before it are final */
    for (int64_t y0 = 0; y0 < lh; y0 += band) {
        int64_t bh = y0 + band <= lh ? band : lh - y0;
        const char *e = NULL;
        char ferr[300];
        if (fast && tiff_fast_read(fast, L, 0, y0, (int)lw, (int)bh, (uint8_t *)px, ferr, sizeof ferr) == 0) {
            /* RGB packed at the start of the buffer: widen to opaque ARGB, back to front */
            const uint8_t *rgb = (const uint8_t *)px;
            for (int64_t i = lw * bh - 1; i >= 0; i--)
                px[i] = 0xFF000000u | (uint32_t)rgb[3 * i] << 16 | (uint32_t)rgb[3 * i + 1] << 8 | rgb[3 * i + 2];
        } else {
            openslide_read_region(s->osr, px, 0, (int64_t)llround(y0 * s->ds[L]), L, lw, bh);
            e = openslide_get_error(s->osr);
        }
        if (e) {
            free(acc);
            free(rgba);
            free(px);
            free(tx);
            return mp_err_set("%s: cannot read the thumbnail (level %d): %s", s->path, L, e);
        }
        for (int64_t y = 0; y < bh; y++) {
            int ty = (int)fmin(h - 1, floor((y0 + y) * fy));
            while (cur < ty) thumb_row(acc, rgba + (size_t)cur++ * w * 4, w);
            const uint32_t *row = px + y * lw;
            for (int64_t x = 0; x < lw; x++) {
                uint32_t p = row[x];
                uint32_t *a = acc + (size_t)tx[x] * 5;
                a[0] += (p >> 16) & 255;
                a[1] += (p >> 8) & 255;
                a[2] += p & 255;
                a[3] += p >> 24;
                a[4] += 1;
            }
        }
    }
    while (cur < h) thumb_row(acc, rgba + (size_t)cur++ * w * 4, w);
    free(acc);
    free(px);
    free(tx);
    *out = rgba;
    *ow = w;
    *oh = h;
    *ods = (double)s->width / w;
    return 0;
}
