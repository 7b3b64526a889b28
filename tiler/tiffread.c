/* tiler/tiffread.c — fast path for plain pyramidal JPEG TIFFs (OpenSlide's generic-tiff): raw
 * tiles via libtiff, decoded with libturbojpeg straight to RGB, instead of OpenSlide's
 * read_region, whose cairo/pixman compositing was half the CPU of a tiling run (perf, see
 * BENCHMARKS.md). Only integer-aligned reads; anything else falls back to OpenSlide. The output
 * equals OpenSlide's read (same libjpeg-turbo decode) — tests/tiler checks it byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <turbojpeg.h>

#include "common/error.h"
#include "common/util.h"
#include "tiler/tiffread.h"

#define CACHE 96 /* ~19 MB of 256px tiles: two tile rows of a 16-patch chunk, any slide width */

typedef struct {
    int dir;              /* TIFF directory of this OpenSlide level, -1 = none */
    TIFF *t;              /* opened lazily, one per level (switching directories re-reads them) */
    uint32_t w, h, tw, th;
    uint8_t *tables;      /* JPEGTables (SOI..EOI) or NULL */
    uint32_t ntables;
} fast_level;

typedef struct {
    int level;
    uint32_t col, row;
    uint8_t *rgb;         /* tw*th*3 */
    size_t cap;           /* bytes allocated at rgb */
    int valid;
    uint64_t used;        /* last use (f->clock), for LRU eviction */
} cache_ent;

struct tiff_fast {
    char *path;
    int levels;
    fast_level lv[TILER_MAX_LEVELS];
    tjhandle tj;
    uint8_t *raw, *spliced;
    size_t raw_cap, spl_cap;
    cache_ent cache[CACHE];
    uint64_t hits, misses, clock;
};

static int dir_ok(TIFF *t)
{
    uint16_t comp = 0, spp = 0, bps = 0, planar = PLANARCONFIG_CONTIG;
    TIFFGetField(t, TIFFTAG_COMPRESSION, &comp);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
    return TIFFIsTiled(t) && comp == COMPRESSION_JPEG && spp == 3 && bps == 8 && planar == PLANARCONFIG_CONTIG;
}

tiff_fast *tiff_fast_open(const char *path, const tiler_slide *s)
{
    if (strcmp(s->vendor, "generic-tiff") || getenv("MAGPIE_TILER_NO_FAST")) return NULL;
    TIFF *t = TIFFOpen(path, "rm");
    if (!t) return NULL;
    tiff_fast *f = mp_xcalloc(1, sizeof *f);
    f->levels = s->levels;
    for (int i = 0; i < s->levels; i++) f->lv[i].dir = -1;
    int dir = 0;
    do {
        uint32_t w = 0, h = 0;
        TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
        if (!dir_ok(t)) continue;
        for (int i = 0; i < s->levels; i++)
            if (f->lv[i].dir < 0 && s->lw[i] == w && s->lh[i] == h) {
                fast_level *l = &f->lv[i];
                l->dir = dir;
                l->w = w;
                l->h = h;
                TIFFGetField(t, TIFFTAG_TILEWIDTH, &l->tw);
                TIFFGetField(t, TIFFTAG_TILELENGTH, &l->th);
                uint32_t n = 0;
                void *tab = NULL;
                if (TIFFGetField(t, TIFFTAG_JPEGTABLES, &n, &tab) && n > 4) {
                    l->tables = mp_xmalloc(n);
                    memcpy(l->tables, tab, n);
                    l->ntables = n;
                }
                break;
            }
    } while (dir++, TIFFReadDirectory(t));
    TIFFClose(t);
    for (int i = 0; i < s->levels; i++)
        if (f->lv[i].dir < 0 || !f->lv[i].tw || !f->lv[i].th || f->lv[i].tw > TILER_MAX_TILE_SIDE ||
            f->lv[i].th > TILER_MAX_TILE_SIDE || (uint64_t)f->lv[i].tw * f->lv[i].th > TILER_MAX_TILE_PX) {
            /* every level or none: keep it simple (and sizes past the bounds are never read) */
            tiff_fast_close(f);
            return NULL;
        }
    f->path = mp_xstrdup(path);
    f->tj = tjInitDecompress();
    return f;
}

void tiff_fast_close(tiff_fast *f)
{
    if (!f) return;
    for (int i = 0; i < f->levels; i++) {
        if (f->lv[i].t) TIFFClose(f->lv[i].t);
        free(f->lv[i].tables);
    }
    for (int i = 0; i < CACHE; i++) free(f->cache[i].rgb);
    if (f->tj) tjDestroy(f->tj);
    free(f->raw);
    free(f->spliced);
    free(f->path);
    free(f);
}

/* Decoded tile (RGB, tw*th*3), from the cache or the file. NULL + err on failure. */
static const uint8_t *tile(tiff_fast *f, int level, uint32_t col, uint32_t row, char *err, size_t en)
{
    fast_level *l = &f->lv[level];
    /* Fully associative, least recently used out: a hashed slot let the coarse level's tiles
     * (the 1.25x read) evict fine tiles the next grid row still needed (~8% extra decodes). */
    cache_ent *c = NULL;
    for (int i = 0; i < CACHE; i++) {
        cache_ent *e = &f->cache[i];
        if (e->valid && e->level == level && e->col == col && e->row == row) {
            f->hits++;
            e->used = ++f->clock;
            return e->rgb;
        }
        if (!c || (!e->valid && c->valid) || (e->valid == c->valid && e->used < c->used)) c = e;
    }
    f->misses++;
    if (!l->t) {
        l->t = TIFFOpen(f->path, "rm");
        if (!l->t || !TIFFSetDirectory(l->t, (tdir_t)l->dir)) {
            snprintf(err, en, "level %d: cannot open TIFF directory %d", level, l->dir);
            return NULL;
        }
    }
    uint32_t idx = TIFFComputeTile(l->t, col * l->tw, row * l->th, 0, 0);
    uint64_t *counts = NULL;
    if (!TIFFGetField(l->t, TIFFTAG_TILEBYTECOUNTS, &counts) || !counts) {
        snprintf(err, en, "level %d: no tile byte counts", level);
        return NULL;
    }
    uint64_t n = counts[idx];
    if (n == 0 || n > (1u << 26)) {
        snprintf(err, en, "level %d tile (%u,%u): bad size %llu", level, col, row, (unsigned long long)n);
        return NULL;
    }
    if (f->raw_cap < n) { /* at most 64 MB (above), but from the file: fail the read, not the process */
        free(f->raw);
        f->raw_cap = 0;
        if (!(f->raw = mp_try_malloc(n, "a compressed tile"))) {
            snprintf(err, en, "level %d tile (%u,%u): %s", level, col, row, mp_err());
            return NULL;
        }
        f->raw_cap = n;
    }
    tmsize_t got = TIFFReadRawTile(l->t, idx, f->raw, (tmsize_t)n);
    if (got <= 0) {
        snprintf(err, en, "level %d tile (%u,%u): read failed", level, col, row);
        return NULL;
    }
    const uint8_t *jpg = f->raw;
    size_t jlen = (size_t)got;
    if (l->tables && got > 2) {
        /* Abbreviated stream: tables without their EOI, then the tile without its SOI. */
        size_t need = l->ntables - 2 + (size_t)got - 2;
        if (f->spl_cap < need) {
            free(f->spliced);
            f->spl_cap = 0;
            if (!(f->spliced = mp_try_malloc(need, "a compressed tile"))) {
                snprintf(err, en, "level %d tile (%u,%u): %s", level, col, row, mp_err());
                return NULL;
            }
            f->spl_cap = need;
        }
        memcpy(f->spliced, l->tables, l->ntables - 2);
        memcpy(f->spliced + l->ntables - 2, f->raw + 2, (size_t)got - 2);
        jpg = f->spliced;
        jlen = need;
    }
    size_t need_px = (size_t)l->tw * l->th * 3;
    c->valid = 0;
    if (c->cap < need_px) {
        free(c->rgb);
        c->cap = 0;
        /* sized by the file: a failure fails this read, not the process */
        if (!(c->rgb = mp_try_malloc(need_px, "a decoded tile"))) {
            snprintf(err, en, "level %d tile (%u,%u): out of memory for a %ux%u tile", level, col, row, l->tw, l->th);
            return NULL;
        }
        c->cap = need_px;
    }
    if (tjDecompress2(f->tj, jpg, (unsigned long)jlen, c->rgb, (int)l->tw, 0, (int)l->th, TJPF_RGB, 0)) {
        snprintf(err, en, "level %d tile (%u,%u): %s", level, col, row, tjGetErrorStr2(f->tj));
        return NULL;
    }
    c->valid = 1;
    c->used = ++f->clock;
    c->level = level;
    c->col = col;
    c->row = row;
    return c->rgb;
}

const uint8_t *tiff_fast_tile(tiff_fast *f, int level, uint32_t col, uint32_t row, int *tw, int *th, char *err,
                              size_t en)
{
    *tw = (int)f->lv[level].tw;
    *th = (int)f->lv[level].th;
    return tile(f, level, col, row, err, en);
}

void tiff_fast_tile_size(const tiff_fast *f, int level, int *tw, int *th)
{
    *tw = (int)f->lv[level].tw;
    *th = (int)f->lv[level].th;
}

int tiff_fast_read(tiff_fast *f, int level, int64_t lx, int64_t ly, int w, int h, uint8_t *rgb, char *err, size_t en)
{
    fast_level *l = &f->lv[level];
    /* Outside the image reads as white, as OpenSlide's transparent pixels do after compositing. */
    if (lx < 0 || ly < 0 || lx + w > (int64_t)l->w || ly + h > (int64_t)l->h) memset(rgb, 255, (size_t)w * h * 3);
    int64_t x0 = lx < 0 ? 0 : lx, y0 = ly < 0 ? 0 : ly;
    int64_t x1 = lx + w < (int64_t)l->w ? lx + w : l->w, y1 = ly + h < (int64_t)l->h ? ly + h : l->h;
    if (x1 <= x0 || y1 <= y0) return 0;
    for (uint32_t row = (uint32_t)(y0 / l->th); row <= (uint32_t)((y1 - 1) / l->th); row++)
        for (uint32_t col = (uint32_t)(x0 / l->tw); col <= (uint32_t)((x1 - 1) / l->tw); col++) {
            const uint8_t *t = tile(f, level, col, row, err, en);
            if (!t) return -1;
            int64_t tx0 = (int64_t)col * l->tw, ty0 = (int64_t)row * l->th;
            int64_t ax = tx0 > x0 ? tx0 : x0, bx = tx0 + l->tw < x1 ? tx0 + l->tw : x1;
            int64_t ay = ty0 > y0 ? ty0 : y0, by = ty0 + l->th < y1 ? ty0 + l->th : y1;
            for (int64_t y = ay; y < by; y++)
                memcpy(rgb + ((size_t)(y - ly) * w + (size_t)(ax - lx)) * 3,
                       t + ((size_t)(y - ty0) * l->tw + (size_t)(ax - tx0)) * 3, (size_t)(bx - ax) * 3);
        }
    return 0;
}
