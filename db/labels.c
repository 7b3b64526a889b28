/* db/labels.c — slide-level CSV labels (libcsv) and QuPath GeoJSON region annotations (jansson)
 * into the dataset. Patch coverage is measured on a 16×16 grid of sample points per patch, each
 * tested against the class polygons with the even-odd rule (holes are inner rings). */
#include "db/labels.h"
#include "db/sql.h"

#include <csv.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "db/slides.h"

void db_label_report_free(db_label_report *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_unknown; i++) free(r->unknown[i]);
    free(r->unknown);
    memset(r, 0, sizeof *r);
}

static void report_unknown(db_label_report *r, const char *name)
{
    r->unknown = mp_xrealloc(r->unknown, sizeof(char *) * (r->n_unknown + 1));
    r->unknown[r->n_unknown++] = mp_xstrdup(name);
}

int db_class_id(mp_db *db, const char *name, int create)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT id FROM classes WHERE name = ?");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int id = -1;
    if (sqlite3_step(st) == SQLITE_ROW) id = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (id >= 0) return id;
    if (!create) return mp_err_set("%s: unknown class '%s'", db_path(db), name);
    st = db_prepare(db, "INSERT INTO classes(id, name) VALUES ((SELECT coalesce(max(id) + 1, 0) FROM classes), ?)");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "adding a class");
    return db_class_id(db, name, 0);
}

/* ---- CSV ---------------------------------------------------------------------------------- */

static int exec_bind(mp_db *db, const char *sql, int64_t id, const char *text, const char *text2);
static void abs_source(const char *path, char *out, size_t cap);

enum { COL_SLIDE, COL_PATIENT, COL_LABEL, COL_N };

/* The dataset's slides by name (sorted bytewise, as SQLite's BINARY collation): a row's slide is
 * found by binary search instead of an UPDATE scanning the slides table per row. */
typedef struct {
    char *name;
    int64_t id;
} slide_ref;

static int cmp_ref(const void *a, const void *b)
{
    const slide_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

typedef struct {
    const char *path;
    mp_db *db;
    db_label_report *rep;
    int line;            /* line of the row being assembled (1-based) */
    int row_start_line;
    size_t rec_bytes;    /* bytes fed since the last complete record */
    int nf;              /* fields in the current row */
    char *f[16];
    int map[16];         /* column index → COL_* (-1 unused) */
    int ncols;
    int failed;
    sqlite3_stmt *upd, *cls_get, *cls_add, *prov;
    slide_ref *slides;   /* by name */
    slide_ref *paths;    /* by path (unique) */
    char **path_of;      /* slide paths in `slides` order, for messages */
    size_t nslides;
    int64_t import_id;
    int unknown_cap;
} csv_ctx;

static void on_field(void *s, size_t len, void *data)
{
    csv_ctx *c = data;
    if (c->failed) return;
    if (c->nf >= 16) {
        c->failed = mp_err_set("%s:%d: too many fields", c->path, c->row_start_line);
        return;
    }
    char *v = mp_xmalloc(len + 1);
    memcpy(v, s, len);
    v[len] = 0;
    c->f[c->nf++] = v;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

/* A class id by name through the prepared statements (creating it); -1 + mp_err. */
static int csv_class(csv_ctx *c, const char *name)
{
    for (int pass = 0; pass < 2; pass++) {
        sqlite3_reset(c->cls_get);
        sqlite3_bind_text(c->cls_get, 1, name, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(c->cls_get);
        if (rc == SQLITE_ROW) return sqlite3_column_int(c->cls_get, 0);
        if (rc != SQLITE_DONE) return db_fail(c->db, "reading classes");
        if (pass) break;
        sqlite3_reset(c->cls_add);
        sqlite3_bind_text(c->cls_add, 1, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(c->cls_add) != SQLITE_DONE) return db_fail(c->db, "adding a class");
        c->rep->new_classes++;
    }
    return mp_err_set("%s: class '%s' vanished", db_path(c->db), name);
}

static void add_unknown(csv_ctx *c, const char *name)
{
    db_label_report *r = c->rep;
    if (r->n_unknown == c->unknown_cap) {
        c->unknown_cap = c->unknown_cap ? 2 * c->unknown_cap : 16;
        r->unknown = mp_xrealloc(r->unknown, sizeof(char *) * (size_t)c->unknown_cap);
    }
    r->unknown[r->n_unknown++] = mp_xstrdup(name);
}

static void apply_row(csv_ctx *c, const char *v[COL_N])
{
    c->rep->rows++;
    if (!v[COL_SLIDE] || !*v[COL_SLIDE]) {
        c->failed = mp_err_set("%s:%d: empty slide name", c->path, c->row_start_line);
        return;
    }
    if (v[COL_LABEL] && *v[COL_LABEL] && csv_class(c, v[COL_LABEL]) < 0) {
        c->failed = -1;
        return;
    }
    /* The slide by its full path, else by its name when no other slide has it: two slides
     * a/X.svs and b/X.tiff never both take one row. */
    slide_ref key = {(char *)v[COL_SLIDE], INT64_MIN};
    size_t lo = 0, hi = c->nslides;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_ref(&c->paths[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    int64_t target = -1;
    if (lo < c->nslides && !strcmp(c->paths[lo].name, v[COL_SLIDE])) target = c->paths[lo].id;
    else {
        lo = 0, hi = c->nslides;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cmp_ref(&c->slides[mid], &key) < 0) lo = mid + 1;
            else hi = mid;
        }
        size_t n = 0;
        while (lo + n < c->nslides && !strcmp(c->slides[lo + n].name, v[COL_SLIDE])) n++;
        if (n > 1) {
            char list[768] = "";
            size_t used = 0;
            for (size_t i = 0; i < n && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%sslide %lld (%s)", i ? ", " : "",
                                         (long long)c->slides[lo + i].id, c->path_of[lo + i]);
            c->failed = mp_err_set("%s:%d: '%s' names %zu slides: %s; give the slide's path", c->path,
                                   c->row_start_line, v[COL_SLIDE], n, list);
            return;
        }
        if (n == 1) target = c->slides[lo].id;
    }
    int hits = 0;
    if (target >= 0) {
        hits = 1;
        /* Columns absent from the file keep their value; present but empty clears. */
        sqlite3_stmt *u = c->upd;
        sqlite3_reset(u);
        sqlite3_bind_int64(u, 1, target);
        sqlite3_bind_int(u, 2, v[COL_PATIENT] != NULL);
        if (v[COL_PATIENT] && *v[COL_PATIENT]) sqlite3_bind_text(u, 3, v[COL_PATIENT], -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(u, 3);
        sqlite3_bind_int(u, 4, v[COL_LABEL] != NULL);
        if (v[COL_LABEL] && *v[COL_LABEL]) sqlite3_bind_text(u, 5, v[COL_LABEL], -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(u, 5);
        if (sqlite3_step(u) != SQLITE_DONE) {
            c->failed = db_fail(c->db, "updating slide labels");
            return;
        }
        /* which import set it, and the values as the row gave them */
        sqlite3_reset(c->prov);
        sqlite3_bind_int64(c->prov, 1, target);
        sqlite3_bind_int64(c->prov, 2, c->import_id);
        if (v[COL_LABEL]) sqlite3_bind_text(c->prov, 3, v[COL_LABEL], -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(c->prov, 3);
        if (v[COL_PATIENT]) sqlite3_bind_text(c->prov, 4, v[COL_PATIENT], -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(c->prov, 4);
        if (sqlite3_step(c->prov) != SQLITE_DONE) {
            c->failed = db_fail(c->db, "recording slide labels");
            return;
        }
        c->rep->updated++;
    }
    if (hits) c->rep->applied++;
    else {
        c->rep->not_applied++;
        add_unknown(c, v[COL_SLIDE]);
    }
}

static void on_row(int term, void *data)
{
    csv_ctx *c = data;
    (void)term;
    c->rec_bytes = 0;
    if (!c->failed) {
        if (c->ncols == 0) { /* header */
            int seen[COL_N] = {0};
            for (int i = 0; i < c->nf; i++) {
                char *h = trim(c->f[i]);
                int col = !strcasecmp(h, "slide") ? COL_SLIDE
                        : !strcasecmp(h, "patient") ? COL_PATIENT
                        : !strcasecmp(h, "label") ? COL_LABEL : -1;
                if (col < 0) {
                    c->failed = mp_err_set("%s:%d: unknown column '%s' (expected slide, patient, label)", c->path,
                                           c->row_start_line, h);
                    break;
                }
                if (seen[col]++) {
                    c->failed = mp_err_set("%s:%d: column '%s' appears twice", c->path, c->row_start_line, h);
                    break;
                }
                c->map[i] = col;
            }
            if (!c->failed && !seen[COL_SLIDE])
                c->failed = mp_err_set("%s:%d: no 'slide' column in the header", c->path, c->row_start_line);
            c->ncols = c->nf;
        } else if (!(c->nf == 1 && !*trim(c->f[0]))) { /* blank lines are skipped */
            if (c->nf != c->ncols) {
                c->failed = mp_err_set("%s:%d: %d fields, the header has %d", c->path, c->row_start_line, c->nf,
                                       c->ncols);
            } else {
                const char *v[COL_N] = {NULL, NULL, NULL};
                for (int i = 0; i < c->nf; i++) v[c->map[i]] = trim(c->f[i]);
                apply_row(c, v);
            }
        }
    }
    for (int i = 0; i < c->nf; i++) free(c->f[i]);
    c->nf = 0;
}

static int load_slides(csv_ctx *c)
{
    /* sorted by name then id in SQL (BINARY collation = strcmp), so path_of lines up */
    sqlite3_stmt *st = db_prepare(c->db, "SELECT name, id, path FROM slides ORDER BY name, id");
    if (!st) return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (c->nslides == cap) {
            cap = cap ? 2 * cap : 64;
            c->slides = mp_xrealloc(c->slides, sizeof *c->slides * cap);
            c->paths = mp_xrealloc(c->paths, sizeof *c->paths * cap);
            c->path_of = mp_xrealloc(c->path_of, sizeof *c->path_of * cap);
        }
        const char *n = (const char *)sqlite3_column_text(st, 0), *p = (const char *)sqlite3_column_text(st, 2);
        c->slides[c->nslides].name = mp_xstrdup(n ? n : "");
        c->slides[c->nslides].id = sqlite3_column_int64(st, 1);
        c->path_of[c->nslides] = mp_xstrdup(p ? p : "");
        c->paths[c->nslides].name = c->path_of[c->nslides];
        c->paths[c->nslides++].id = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(c->db, "reading slides");
    if (c->nslides) qsort(c->paths, c->nslides, sizeof *c->paths, cmp_ref);
    return 0;
}

int db_labels_import_csv(mp_db *db, const char *path, db_label_report *rep)
{
    memset(rep, 0, sizeof *rep);
    FILE *f = mp_fopen_regular(path);
    if (!f) return -1;
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        fclose(f);
        return mp_err_set("%s: cannot initialise the CSV parser", path);
    }
    csv_set_blk_size(&p, 4096);
    csv_ctx c = {.path = path, .db = db, .rep = rep, .line = 1, .row_start_line = 1};
    c.upd = db_prepare(db, "UPDATE slides SET patient = CASE WHEN ?2 THEN ?3 ELSE patient END, "
                           "label = CASE WHEN ?4 THEN ?5 ELSE label END WHERE id = ?1");
    c.cls_get = c.upd ? db_prepare(db, "SELECT id FROM classes WHERE name = ?") : NULL;
    c.cls_add = c.cls_get ? db_prepare(db, "INSERT INTO classes(id, name) VALUES "
                                           "((SELECT coalesce(max(id) + 1, 0) FROM classes), ?)")
                          : NULL;
    c.prov = c.cls_add ? db_prepare(db, "INSERT OR REPLACE INTO slide_labels(slide_id, import_id, label, patient) "
                                        "VALUES (?, ?, ?, ?)")
                       : NULL;
    int bad = 0;
    char source[4096];
    abs_source(path, source, sizeof source);
    if (!c.prov || db_begin(db) < 0) c.failed = -1;
    else if (load_slides(&c) || exec_bind(db, "INSERT INTO label_imports(kind, source) VALUES ('csv', ?2)", 0, source,
                                          NULL)) {
        c.failed = -1;
        db_rollback(db);
    } else c.import_id = sqlite3_last_insert_rowid(db_sqlite(db));
    /* Stream in chunks, fed to libcsv line by line so errors carry the line where the record
     * started; a record past DB_LABELS_MAX_RECORD bytes is refused as soon as it gets there. */
    enum { CHUNK = 1 << 16 };
    char *chunk = mp_xmalloc(CHUNK);
    size_t got;
    int at_line_start = 1;
    while (!c.failed && !bad && (got = fread(chunk, 1, CHUNK, f)) > 0) {
        size_t pos = 0;
        while (pos < got && !c.failed) {
            size_t e = pos;
            while (e < got && chunk[e] != '\n') e++;
            int eol = e < got;
            if (eol) e++;
            /* a record starts on this line unless one is still open (a quoted field, or fields
             * before it); blank lines belong to no record */
            int blank = 1;
            for (size_t k = pos; k < e && blank; k++) blank = chunk[k] == '\n' || chunk[k] == '\r';
            if (at_line_start && c.rec_bytes == 0) c.row_start_line = c.line;
            if (!blank || c.rec_bytes) c.rec_bytes += e - pos;
            if (csv_parse(&p, chunk + pos, e - pos, on_field, on_row, &c) != e - pos) {
                bad = 1;
                break;
            }
            if (c.rec_bytes > DB_LABELS_MAX_RECORD && !c.failed)
                c.failed = mp_err_set("%s:%d: a record longer than %d bytes (label rows are short: is this the "
                                      "right file?)",
                                      path, c.row_start_line, DB_LABELS_MAX_RECORD);
            at_line_start = eol;
            if (eol) c.line++;
            pos = e;
        }
    }
    if (!c.failed && !bad && ferror(f)) c.failed = mp_err_set("%s: read error: %s", path, strerror(errno));
    if (bad && !c.failed)
        c.failed = mp_err_set("%s:%d: malformed CSV (%s)", path, c.line, csv_strerror(csv_error(&p)));
    /* At end of file the only parse error left is an open quote: name the line it opened on. */
    if (!bad && !c.failed && csv_fini(&p, on_field, on_row, &c) != 0)
        c.failed = mp_err_set("%s:%d: malformed CSV (unterminated quoted field)", path, c.row_start_line);
    if (!c.failed && c.ncols == 0) c.failed = mp_err_set("%s: empty file (no header)", path);
    free(chunk);
    for (int i = 0; i < c.nf; i++) free(c.f[i]);
    for (size_t i = 0; i < c.nslides; i++) {
        free(c.slides[i].name);
        free(c.path_of[i]);
    }
    free(c.slides);
    free(c.paths);
    free(c.path_of);
    sqlite3_finalize(c.prov);
    csv_free(&p);
    sqlite3_finalize(c.upd);
    sqlite3_finalize(c.cls_get);
    sqlite3_finalize(c.cls_add);
    fclose(f);
    if (c.failed) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        if (!sqlite3_get_autocommit(db_sqlite(db))) db_rollback(db);
        db_label_report_free(rep);
        return mp_err_set("%s", msg);
    }
    /* the row count of this import; imports none of whose rows is left (re-imports) go */
    sqlite3_stmt *rows = db_prepare(db, "UPDATE label_imports SET rows = ?2 WHERE id = ?1");
    int rc = rows ? 0 : -1;
    if (rows) {
        sqlite3_bind_int64(rows, 1, c.import_id);
        sqlite3_bind_int(rows, 2, rep->rows);
        if (sqlite3_step(rows) != SQLITE_DONE) rc = db_fail(db, "recording the import");
        sqlite3_finalize(rows);
    }
    if (rc == 0)
        rc = db_exec(db, "DELETE FROM label_imports WHERE kind = 'csv' AND id NOT IN (SELECT import_id FROM slide_labels)");
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        db_label_report_free(rep);
        return mp_err_set("%s", msg);
    }
    return db_commit(db);
}

/* ---- GeoJSON ------------------------------------------------------------------------------ */

/* One polygon (a Polygon, or one part of a MultiPolygon): its rings' points, and for long
 * outlines its edges bucketed into horizontal bands, so an even-odd test looks only at the
 * edges whose y-range meets the point's band instead of all of them. */
typedef struct {
    int cls, feature;
    int nrings, ncap, *ring_len;
    int64_t npts, pcap;
    double *xy;          /* all rings' points, x,y interleaved */
    double bx0, by0, bx1, by1;
    int nband;           /* 0: no band index (short outline: every edge is tested) */
    double band_h;
    int64_t *band_off;   /* nband + 1 offsets into band_edge */
    int32_t *band_edge;  /* edge = its first point's index; the second is nxt[] */
    int32_t *nxt;        /* the point after each point in its ring (the ring closes) */
    int hit;             /* some sample point counted for this polygon */
} poly;

static void poly_free(poly *p)
{
    free(p->ring_len);
    free(p->xy);
    free(p->band_off);
    free(p->band_edge);
    free(p->nxt);
}

static int parse_ring(json_t *ring, poly *p, int64_t *budget)
{
    if (!json_is_array(ring)) return -1;
    size_t n = json_array_size(ring);
    if ((int64_t)n > *budget) return -2;
    *budget -= (int64_t)n;
    if (p->npts + (int64_t)n > p->pcap) {
        while (p->npts + (int64_t)n > p->pcap) p->pcap = p->pcap ? 2 * p->pcap : 16;
        p->xy = mp_xrealloc(p->xy, sizeof(double) * 2 * (size_t)p->pcap);
    }
    if (p->nrings == p->ncap) p->ring_len = mp_xrealloc(p->ring_len, sizeof(int) * (size_t)(p->ncap = p->ncap ? 2 * p->ncap : 4));
    double *v = p->xy ? p->xy + 2 * p->npts : NULL; /* an empty first ring: still no points */
    for (size_t i = 0; i < n; i++) {
        json_t *pt = json_array_get(ring, i);
        if (!json_is_array(pt) || json_array_size(pt) < 2 || !json_is_number(json_array_get(pt, 0)) ||
            !json_is_number(json_array_get(pt, 1)))
            return -1;
        double x = json_number_value(json_array_get(pt, 0)), y = json_number_value(json_array_get(pt, 1));
        v[2 * i] = x;
        v[2 * i + 1] = y;
        if (x < p->bx0) p->bx0 = x;
        if (x > p->bx1) p->bx1 = x;
        if (y < p->by0) p->by0 = y;
        if (y > p->by1) p->by1 = y;
    }
    p->npts += (int64_t)n;
    p->ring_len[p->nrings++] = (int)n;
    return 0;
}

static int band_of(const poly *p, double y)
{
    double b = floor((y - p->by0) / p->band_h);
    return b < 0 ? 0 : b >= p->nband ? p->nband - 1 : (int)b;
}

/* The band index of a long outline: about 8 edges per band; an edge goes into every band its
 * y-range meets. Skipped (plain scan) if that would store more than 16 entries per edge. */
static void poly_index(poly *p)
{
    if (p->npts < 64 || !(p->by1 > p->by0)) return;
    p->nxt = mp_xmalloc(sizeof(int32_t) * (size_t)p->npts);
    int64_t k = 0;
    for (int r = 0; r < p->nrings; r++) {
        int n = p->ring_len[r];
        for (int i = 0; i < n; i++) p->nxt[k + i] = (int32_t)(k + (i + 1 < n ? i + 1 : 0));
        k += n;
    }
    int64_t nb = p->npts / 8;
    p->nband = (int)(nb < 1 ? 1 : nb > 65536 ? 65536 : nb);
    p->band_h = (p->by1 - p->by0) / p->nband;
    p->band_off = mp_xcalloc((size_t)p->nband + 1, sizeof(int64_t));
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t e = 0; e < p->npts; e++) {
            double ya = p->xy[2 * e + 1], yb = p->xy[2 * p->nxt[e] + 1];
            int b0 = band_of(p, ya < yb ? ya : yb), b1 = band_of(p, ya < yb ? yb : ya);
            for (int b = b0; b <= b1; b++) {
                if (pass == 0) p->band_off[b + 1]++;
                else p->band_edge[p->band_off[b]++] = (int32_t)e;
            }
        }
        if (pass == 0) {
            for (int b = 0; b < p->nband; b++) p->band_off[b + 1] += p->band_off[b];
            if (p->band_off[p->nband] > 16 * p->npts) { /* edges spanning most bands: not worth it */
                free(p->band_off);
                free(p->nxt);
                p->band_off = NULL;
                p->nxt = NULL;
                p->nband = 0;
                return;
            }
            p->band_edge = mp_xmalloc(sizeof(int32_t) * (size_t)(p->band_off[p->nband] ? p->band_off[p->nband] : 1));
        } else {
            /* the fill advanced each offset to the next band's start: shift back */
            for (int b = p->nband; b > 0; b--) p->band_off[b] = p->band_off[b - 1];
            p->band_off[0] = 0;
        }
    }
}

/* Even-odd over all rings: a point inside the outer ring and one hole is outside. */
static int inside(const poly *p, double x, double y)
{
    if (x < p->bx0 || x > p->bx1 || y < p->by0 || y > p->by1) return 0;
    int in = 0;
    const double *v = p->xy;
    if (p->nband) {
        int b = band_of(p, y);
        for (int64_t k = p->band_off[b]; k < p->band_off[b + 1]; k++) {
            int32_t i = p->band_edge[k], j = p->nxt[i];
            double xi = v[2 * i], yi = v[2 * i + 1], xj = v[2 * j], yj = v[2 * j + 1];
            if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) in = !in;
        }
        return in;
    }
    for (int r = 0; r < p->nrings; r++) {
        int n = p->ring_len[r];
        for (int i = 0, j = n - 1; i < n; j = i++) {
            double xi = v[2 * i], yi = v[2 * i + 1], xj = v[2 * j], yj = v[2 * j + 1];
            if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) in = !in;
        }
        v += 2 * n;
    }
    return in;
}

/* Where the polygons are: a pyramid of grids over their boxes' extent. A polygon goes into the
 * finest level whose cells are at least its size, so it sits in at most 2x2 cells; a patch
 * finds the polygons whose boxes meet it by visiting, on each level, the cells it overlaps. */
enum { GRID_LEVELS = 24, GRID_FINE = 1024 };
typedef struct {
    double x0, y0, cell0;
    int nlev;
    struct {
        int nx, ny;
        double cell;
        int32_t *off;  /* nx*ny + 1 */
        int32_t *ids;  /* polygon indices, ascending per cell */
    } lev[GRID_LEVELS];
} poly_grid;

static void grid_cells(const poly_grid *g, int L, double ax, double ay, double bx, double by, int *cx0, int *cy0,
                       int *cx1, int *cy1)
{
    double c = g->lev[L].cell;
    double fx0 = floor((ax - g->x0) / c), fy0 = floor((ay - g->y0) / c);
    double fx1 = floor((bx - g->x0) / c), fy1 = floor((by - g->y0) / c);
    int nx = g->lev[L].nx, ny = g->lev[L].ny;
    *cx0 = fx0 < 0 ? 0 : fx0 >= nx ? nx : (int)fx0;
    *cy0 = fy0 < 0 ? 0 : fy0 >= ny ? ny : (int)fy0;
    *cx1 = fx1 < 0 ? -1 : fx1 >= nx ? nx - 1 : (int)fx1;
    *cy1 = fy1 < 0 ? -1 : fy1 >= ny ? ny - 1 : (int)fy1;
}

static int poly_level(const poly_grid *g, const poly *p)
{
    double s = fmax(p->bx1 - p->bx0, p->by1 - p->by0);
    int L = 0;
    while (L + 1 < g->nlev && g->lev[L].cell < s) L++;
    return L;
}

static void grid_build(poly_grid *g, const poly *ps, int np)
{
    memset(g, 0, sizeof *g);
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (int k = 0; k < np; k++) {
        if (!(ps[k].bx1 >= ps[k].bx0)) continue; /* no points */
        x0 = fmin(x0, ps[k].bx0), y0 = fmin(y0, ps[k].by0);
        x1 = fmax(x1, ps[k].bx1), y1 = fmax(y1, ps[k].by1);
    }
    if (!(x1 >= x0)) return;
    double ext = fmax(fmax(x1 - x0, y1 - y0), 1e-9);
    g->x0 = x0, g->y0 = y0;
    /* about 4 fine cells per polygon, at most GRID_FINE a side: a few polygons do not pay for
     * a million empty cells (it was 4 MB and most of the time of a small import) */
    double fine = fmin(GRID_FINE, fmax(4, 2 * ceil(sqrt((double)np))));
    g->cell0 = ext / fine;
    /* levels up to one cell over everything */
    for (g->nlev = 0; g->nlev < GRID_LEVELS; g->nlev++) {
        double c = g->cell0 * (double)(1 << g->nlev);
        g->lev[g->nlev].cell = c;
        g->lev[g->nlev].nx = (int)fmin(fine + 1, floor((x1 - x0) / c) + 1);
        g->lev[g->nlev].ny = (int)fmin(fine + 1, floor((y1 - y0) / c) + 1);
        if (c >= ext) {
            g->nlev++;
            break;
        }
    }
    for (int L = 0; L < g->nlev; L++)
        g->lev[L].off = mp_xcalloc((size_t)g->lev[L].nx * g->lev[L].ny + 1, sizeof(int32_t));
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < np; k++) { /* ascending k: each cell's list comes out sorted */
            const poly *p = &ps[k];
            if (!(p->bx1 >= p->bx0)) continue;
            int L = poly_level(g, p), cx0, cy0, cx1, cy1;
            grid_cells(g, L, p->bx0, p->by0, p->bx1, p->by1, &cx0, &cy0, &cx1, &cy1);
            for (int cy = cy0; cy <= cy1; cy++)
                for (int cx = cx0; cx <= cx1; cx++) {
                    size_t cell = (size_t)cy * g->lev[L].nx + cx;
                    if (pass == 0) g->lev[L].off[cell + 1]++;
                    else g->lev[L].ids[g->lev[L].off[cell]++] = k;
                }
        }
        for (int L = 0; L < g->nlev; L++) {
            size_t nc = (size_t)g->lev[L].nx * g->lev[L].ny;
            if (pass == 0) {
                for (size_t c = 0; c < nc; c++) g->lev[L].off[c + 1] += g->lev[L].off[c];
                g->lev[L].ids = mp_xmalloc(sizeof(int32_t) * (size_t)(g->lev[L].off[nc] ? g->lev[L].off[nc] : 1));
            } else {
                for (size_t c = nc; c > 0; c--) g->lev[L].off[c] = g->lev[L].off[c - 1];
                g->lev[L].off[0] = 0;
            }
        }
    }
}

static void grid_free(poly_grid *g)
{
    for (int L = 0; L < g->nlev; L++) {
        free(g->lev[L].off);
        free(g->lev[L].ids);
    }
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Polygons whose boxes meet [ax,bx]x[ay,by], ascending, each once (seen[] holds the stamp of
 * the last query that listed it). Returns the count; *cand grows as needed. */
static int grid_query(const poly_grid *g, double ax, double ay, double bx, double by, int **cand, int *cap, int *seen,
                      int stamp)
{
    int n = 0;
    for (int L = 0; L < g->nlev; L++) {
        int cx0, cy0, cx1, cy1;
        grid_cells(g, L, ax, ay, bx, by, &cx0, &cy0, &cx1, &cy1);
        for (int cy = cy0; cy <= cy1; cy++)
            for (int cx = cx0; cx <= cx1; cx++) {
                size_t cell = (size_t)cy * g->lev[L].nx + cx;
                for (int32_t i = g->lev[L].off[cell]; i < g->lev[L].off[cell + 1]; i++) {
                    int k = g->lev[L].ids[i];
                    if (seen[k] == stamp) continue;
                    seen[k] = stamp;
                    if (n == *cap) *cand = mp_xrealloc(*cand, sizeof(int) * (size_t)(*cap = *cap ? 2 * *cap : 64));
                    (*cand)[n++] = k;
                }
            }
    }
    if (n > 1) qsort(*cand, (size_t)n, sizeof(int), cmp_int); /* *cand may still be NULL when n == 0 */
    return n;
}

static const char *basename_noext(const char *path, char *buf, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, cap, "%s", b);
    char *dot = strchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
    return buf;
}

/* The file as JSON, refusing what is not a regular file or is past DB_LABELS_MAX_FILE. Read
 * whole first: jansson's stream reader takes a locked getc per byte (13% of a 66 MB import). */
static json_t *load_json(const char *path)
{
    int64_t size = mp_file_size(path);
    if (size > DB_LABELS_MAX_FILE) {
        mp_err_set("%s: %lld bytes, more than the %lld a GeoJSON labels file may have", path, (long long)size,
                   (long long)DB_LABELS_MAX_FILE);
        return NULL;
    }
    uint8_t *buf;
    size_t len;
    if (mp_read_file(path, &buf, &len)) return NULL;
    json_error_t je;
    json_t *root = json_loadb((const char *)buf, len, 0, &je);
    free(buf);
    if (!root) mp_err_set("%s:%d: not valid JSON (%s)", path, je.line, je.text);
    return root;
}

/* The polygons of one GeoJSON geometry appended to *ps (a Polygon is one, a MultiPolygon one per
 * part; points and lines cover no area and add none). 0, -1 bad coordinates, -2 the vertex
 * budget is spent. */
typedef struct {
    poly *p;
    int n, cap;
} poly_set;

static void poly_set_free(poly_set *s)
{
    for (int i = 0; i < s->n; i++) poly_free(&s->p[i]);
    free(s->p);
    memset(s, 0, sizeof *s);
}

static int geometry_polys(json_t *g, int cls, int feature, poly_set *ps, int64_t *budget)
{
    const char *gt = json_string_value(json_object_get(g, "type"));
    json_t *coords = json_object_get(g, "coordinates");
    if (!gt || !json_is_array(coords)) return -1;
    int multi = !strcmp(gt, "MultiPolygon");
    if (!multi && strcmp(gt, "Polygon")) return 0;
    size_t nparts = multi ? json_array_size(coords) : 1;
    for (size_t pi = 0; pi < nparts; pi++) {
        json_t *rings = multi ? json_array_get(coords, pi) : coords;
        if (ps->n == ps->cap) ps->p = mp_xrealloc(ps->p, sizeof(poly) * (size_t)(ps->cap = ps->cap ? 2 * ps->cap : 64));
        poly *p = &ps->p[ps->n++];
        memset(p, 0, sizeof *p);
        p->cls = cls;
        p->feature = feature;
        p->bx0 = p->by0 = INFINITY;
        p->bx1 = p->by1 = -INFINITY;
        for (size_t r = 0; r < json_array_size(rings); r++) {
            int pr = parse_ring(json_array_get(rings, r), p, budget);
            if (pr < 0) return pr;
        }
        poly_index(p);
    }
    return 0;
}

static int64_t vertex_budget(void)
{
    int64_t budget = DB_LABELS_MAX_VERTICES;
    long lowered;
    const char *hook = getenv("MAGPIE_LABELS_MAX_VERTICES"); /* test hook: a bound a test can reach */
    if (hook && mp_parse_long(hook, &lowered) == 0 && lowered > 0 && lowered < budget) budget = lowered;
    return budget;
}

/* Label the slide's patches from one stored GeoJSON import: every patch whose best-covering
 * class covers at least the import's min_coverage gets (or, over an earlier import's, replaces)
 * a patch label with source 'import:ID'. *labelled counts them; hit[f] is set for every
 * feature f that counted for some sample point (hit may be NULL; nhit bounds it). */
static int apply_import(mp_db *db, int64_t import_id, int64_t slide_id, double min_coverage, int *labelled,
                        uint8_t *hit, int nhit)
{
    poly_set ps = {0};
    poly_grid grid = {0};
    int *cand = NULL, ccap = 0, *seen = NULL, rc = -1;
    int64_t budget = DB_LABELS_MAX_VERTICES;
    sqlite3_stmt *ann = NULL, *pt = NULL, *ins = NULL;
    *labelled = 0;
    ann = db_prepare(db, "SELECT id, feature, class_id, geometry FROM region_annotations WHERE import_id = ? "
                         "ORDER BY feature, id");
    if (!ann) goto out;
    sqlite3_bind_int64(ann, 1, import_id);
    int st;
    while ((st = sqlite3_step(ann)) == SQLITE_ROW) {
        json_error_t je;
        const char *text = (const char *)sqlite3_column_text(ann, 3);
        json_t *g = text ? json_loads(text, 0, &je) : NULL;
        int r = g ? geometry_polys(g, sqlite3_column_int(ann, 2), sqlite3_column_int(ann, 1), &ps, &budget) : -1;
        json_decref(g);
        if (r < 0) {
            mp_err_set("%s: region annotation %lld: stored geometry unreadable", db_path(db),
                       (long long)sqlite3_column_int64(ann, 0));
            goto out;
        }
    }
    if (st != SQLITE_DONE) {
        db_fail(db, "reading region annotations");
        goto out;
    }
    grid_build(&grid, ps.p, ps.n);
    seen = mp_xmalloc(sizeof(int) * (size_t)(ps.n ? ps.n : 1));
    for (int k = 0; k < ps.n; k++) seen[k] = -1;
    pt = db_prepare(db, "SELECT id, x0, y0, size0 FROM patches WHERE slide_id = ?");
    ins = pt ? db_prepare(db, "INSERT OR REPLACE INTO patch_labels(patch_id, class_id, coverage, source) VALUES (?, ?, ?, ?)")
             : NULL;
    if (!ins) goto out;
    sqlite3_bind_int64(pt, 1, slide_id);
    char src[64];
    snprintf(src, sizeof src, "import:%lld", (long long)import_id);
    enum { G = 16 };
    int counts[256], stamp = 0;
    while ((st = sqlite3_step(pt)) == SQLITE_ROW) {
        int64_t pid = sqlite3_column_int64(pt, 0);
        double x0 = sqlite3_column_double(pt, 1), y0 = sqlite3_column_double(pt, 2), s = sqlite3_column_double(pt, 3);
        memset(counts, 0, sizeof counts);
        int nc = grid_query(&grid, x0, y0, x0 + s, y0 + s, &cand, &ccap, seen, stamp++);
        for (int gy = 0; gy < G && nc; gy++)
            for (int gx = 0; gx < G; gx++) {
                double x = x0 + (gx + 0.5) * s / G, y = y0 + (gy + 0.5) * s / G;
                /* A point belongs to at most one class: the first polygon (in file order) containing it. */
                for (int i = 0; i < nc; i++) {
                    poly *p = &ps.p[cand[i]];
                    if (p->cls < 256 && inside(p, x, y)) {
                        counts[p->cls]++;
                        p->hit = 1;
                        break;
                    }
                }
            }
        int best = -1;
        for (int k = 0; k < 256; k++)
            if (counts[k] && (best < 0 || counts[k] > counts[best])) best = k;
        if (best < 0) continue;
        double cov = counts[best] / (double)(G * G);
        if (cov < min_coverage) continue;
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, pid);
        sqlite3_bind_int(ins, 2, best);
        sqlite3_bind_double(ins, 3, cov);
        sqlite3_bind_text(ins, 4, src, -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            db_fail(db, "writing patch labels");
            goto out;
        }
        (*labelled)++;
    }
    if (st != SQLITE_DONE) {
        db_fail(db, "reading patches");
        goto out;
    }
    for (int k = 0; hit && k < ps.n; k++)
        if (ps.p[k].hit && ps.p[k].feature >= 0 && ps.p[k].feature < nhit) hit[ps.p[k].feature] = 1;
    rc = 0;
out:
    sqlite3_finalize(ann);
    sqlite3_finalize(pt);
    sqlite3_finalize(ins);
    poly_set_free(&ps);
    grid_free(&grid);
    free(cand);
    free(seen);
    return rc;
}

/* Re-derive a slide's region labels (see labels.h); report_import's counts go to rep. */
static int apply_slide(mp_db *db, int64_t slide_id, int64_t report_import, int nfeat, db_label_report *rep)
{
    sqlite3_stmt *del = db_prepare(db, "DELETE FROM patch_labels WHERE source LIKE 'import:%' AND patch_id IN "
                                       "(SELECT id FROM patches WHERE slide_id = ?)");
    if (!del) return -1;
    sqlite3_bind_int64(del, 1, slide_id);
    int r = sqlite3_step(del);
    sqlite3_finalize(del);
    if (r != SQLITE_DONE) return db_fail(db, "clearing derived patch labels");
    sqlite3_stmt *imp = db_prepare(db, "SELECT id, coalesce(min_coverage, 0.5) FROM label_imports WHERE kind = 'geojson' "
                                       "AND slide_id = ? ORDER BY id");
    if (!imp) return -1;
    sqlite3_bind_int64(imp, 1, slide_id);
    int rc = 0;
    uint8_t *hit = report_import > 0 ? mp_xcalloc((size_t)(nfeat > 0 ? nfeat : 1), 1) : NULL;
    while (rc == 0 && (r = sqlite3_step(imp)) == SQLITE_ROW) {
        int64_t iid = sqlite3_column_int64(imp, 0);
        int labelled = 0, mine = iid == report_import;
        rc = apply_import(db, iid, slide_id, sqlite3_column_double(imp, 1), &labelled, mine ? hit : NULL, nfeat);
        if (rc == 0 && mine && rep) rep->updated = labelled;
    }
    if (rc == 0 && r != SQLITE_DONE) rc = db_fail(db, "reading label imports");
    sqlite3_finalize(imp);
    if (rc == 0 && hit && rep)
        for (int f = 0; f < nfeat; f++) rep->applied += hit[f];
    free(hit);
    return rc;
}

int db_labels_apply(mp_db *db, int64_t slide_id) { return apply_slide(db, slide_id, 0, 0, NULL); }

int64_t db_labels_regions(mp_db *db, int64_t slide_id)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM region_annotations WHERE slide_id = ?");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, slide_id);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : db_fail(db, "counting annotations");
    sqlite3_finalize(st);
    return n;
}

/* The file's absolute path, as label_imports.source records it (as given if it cannot be resolved). */
static void abs_source(const char *path, char *out, size_t cap)
{
    char *r = realpath(path, NULL);
    snprintf(out, cap, "%s", r ? r : path);
    free(r);
}

static int class_get_or_add(mp_db *db, sqlite3_stmt *get, sqlite3_stmt *add, const char *name, db_label_report *rep)
{
    for (int pass = 0; pass < 2; pass++) { /* the class, created on first sight */
        sqlite3_reset(get);
        sqlite3_bind_text(get, 1, name, -1, SQLITE_TRANSIENT);
        int st = sqlite3_step(get);
        if (st == SQLITE_ROW) return sqlite3_column_int(get, 0);
        if (st != SQLITE_DONE || pass) return db_fail(db, "reading classes");
        sqlite3_reset(add);
        sqlite3_bind_text(add, 1, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(add) != SQLITE_DONE) return db_fail(db, "adding a class");
        rep->new_classes++;
    }
    return -1;
}

int db_labels_import_geojson(mp_db *db, const char *path, const char *slide, double min_coverage,
                             db_label_report *rep)
{
    memset(rep, 0, sizeof *rep);
    json_t *root = load_json(path);
    if (!root) return -1;
    json_t *features = NULL;
    if (json_is_array(root)) features = root;
    else if (json_is_object(root)) {
        const char *type = json_string_value(json_object_get(root, "type"));
        if (type && !strcmp(type, "FeatureCollection")) features = json_object_get(root, "features");
        else if (type && !strcmp(type, "Feature")) features = NULL;
        else {
            json_decref(root);
            return mp_err_set("%s: not GeoJSON (expected a FeatureCollection, a Feature or an array of Features)", path);
        }
    }
    if (features && !json_is_array(features)) {
        json_decref(root);
        return mp_err_set("%s: 'features' is not an array", path);
    }
    size_t nfeat_z = features ? json_array_size(features) : 1;
    if (nfeat_z > DB_LABELS_MAX_FEATURES) {
        json_decref(root);
        return mp_err_set("%s: %zu features, more than the %d a labels file may have", path, nfeat_z,
                          DB_LABELS_MAX_FEATURES);
    }
    int nfeat = (int)nfeat_z, slide_given = slide != NULL, rc = -1;
    char namebuf[512];
    if (!slide) slide = basename_noext(path, namebuf, sizeof namebuf);

    /* Check every feature before anything is written: a bad file changes nothing. */
    int64_t budget = vertex_budget();
    const int64_t max_vertices = budget;
    for (int fi = 0; fi < nfeat; fi++) {
        json_t *f = features ? json_array_get(features, fi) : root;
        json_t *props = json_object_get(f, "properties");
        json_t *cls = props ? json_object_get(props, "classification") : NULL;
        const char *cname = cls ? json_string_value(json_object_get(cls, "name")) : NULL;
        if (!cname && props) cname = json_string_value(json_object_get(props, "classification")); /* older layout */
        const char *fname = props ? json_string_value(json_object_get(props, "name")) : NULL;
        const char *fid = json_string_value(json_object_get(f, "id"));
        if (!cname || !*cname) {
            mp_err_set("%s: feature %d%s%s%s has no classification (QuPath writes properties.classification.name)",
                              path, fi, fname || fid ? " (" : "", fname ? fname : fid ? fid : "",
                              fname || fid ? ")" : "");
            json_decref(root);
            return -1;
        }
        json_t *g = json_object_get(f, "geometry");
        if (!json_string_value(json_object_get(g, "type")) || !json_is_array(json_object_get(g, "coordinates"))) {
            mp_err_set("%s: feature %d has no geometry", path, fi);
            json_decref(root);
            return -1;
        }
        poly_set scratch = {0};
        int pr = geometry_polys(g, 0, fi, &scratch, &budget);
        poly_set_free(&scratch);
        if (pr == -2) {
            mp_err_set("%s: feature %d: more than %lld polygon vertices in the file", path, fi,
                              (long long)max_vertices);
            json_decref(root);
            return -1;
        }
        if (pr < 0) {
            mp_err_set("%s: feature %d: bad coordinates", path, fi);
            json_decref(root);
            return -1;
        }
    }
    rep->rows = nfeat;
    int64_t sid = 0;
    int found = db_slide_match(db, slide, slide_given, &sid);
    if (found < 0) {
        json_decref(root);
        return mp_err_prefix("%s", path);
    }
    if (!found) { /* reported, not fatal: the other files of the command still apply */
        report_unknown(rep, slide);
        rep->not_applied = rep->rows;
        json_decref(root);
        return 0;
    }
    char source[4096];
    abs_source(path, source, sizeof source);
    sqlite3_stmt *cls_get = NULL, *cls_add = NULL, *ins = NULL, *st = NULL;
    if (db_begin(db) < 0) {
        json_decref(root);
        return -1;
    }
    /* importing a file again for the same slide replaces what it brought before (its regions
     * first, through their import index: no reliance on foreign-key cascades) */
    if (exec_bind(db, "DELETE FROM region_annotations WHERE import_id IN (SELECT id FROM label_imports WHERE "
                      "kind = 'geojson' AND slide_id = ?1 AND source = ?2)", sid, source, NULL) ||
        exec_bind(db, "DELETE FROM label_imports WHERE kind = 'geojson' AND slide_id = ?1 AND source = ?2", sid, source,
                  NULL))
        goto out;
    st = db_prepare(db, "INSERT INTO label_imports(kind, source, slide_id, min_coverage, rows) VALUES ('geojson', ?, ?, ?, ?)");
    if (!st) goto out;
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sid);
    sqlite3_bind_double(st, 3, min_coverage);
    sqlite3_bind_int(st, 4, nfeat);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(db, "recording the import");
        goto out;
    }
    int64_t import_id = sqlite3_last_insert_rowid(db_sqlite(db));
    cls_get = db_prepare(db, "SELECT id FROM classes WHERE name = ?");
    cls_add = cls_get ? db_prepare(db, "INSERT INTO classes(id, name) VALUES "
                                       "((SELECT coalesce(max(id) + 1, 0) FROM classes), ?)")
                      : NULL;
    ins = cls_add ? db_prepare(db, "INSERT INTO region_annotations(import_id, slide_id, feature, class_id, name, geometry) "
                                   "VALUES (?, ?, ?, ?, ?, ?)")
                  : NULL;
    if (!ins) goto out;
    for (int fi = 0; fi < nfeat; fi++) {
        json_t *f = features ? json_array_get(features, fi) : root;
        json_t *props = json_object_get(f, "properties");
        json_t *cls = props ? json_object_get(props, "classification") : NULL;
        const char *cname = cls ? json_string_value(json_object_get(cls, "name")) : NULL;
        if (!cname && props) cname = json_string_value(json_object_get(props, "classification"));
        const char *fname = props ? json_string_value(json_object_get(props, "name")) : NULL;
        if (!fname) fname = json_string_value(json_object_get(f, "id"));
        int cid = class_get_or_add(db, cls_get, cls_add, cname, rep);
        if (cid < 0) goto out;
        char *geom = json_dumps(json_object_get(f, "geometry"), JSON_COMPACT);
        if (!geom) {
            mp_err_set("%s: feature %d: cannot store its geometry (out of memory)", path, fi);
            goto out;
        }
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, import_id);
        sqlite3_bind_int64(ins, 2, sid);
        sqlite3_bind_int(ins, 3, fi);
        sqlite3_bind_int(ins, 4, cid);
        if (fname) sqlite3_bind_text(ins, 5, fname, -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(ins, 5);
        sqlite3_bind_text(ins, 6, geom, -1, free);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            db_fail(db, "storing region annotations");
            goto out;
        }
    }
    if (apply_slide(db, sid, import_id, nfeat, rep)) goto out;
    rep->not_applied = rep->rows - rep->applied;
    rc = db_commit(db);
out:
    sqlite3_finalize(st);
    sqlite3_finalize(cls_get);
    sqlite3_finalize(cls_add);
    sqlite3_finalize(ins);
    if (rc < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        db_label_report_free(rep);
        mp_err_set("%s", msg);
    }
    json_decref(root);
    return rc;
}

/* ---- removal ------------------------------------------------------------------------------ */

static int exec_bind(mp_db *db, const char *sql, int64_t id, const char *text, const char *text2)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int64(st, 1, id);
    if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(st) >= 3) sqlite3_bind_text(st, 3, text2, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(db, "removing labels");
    sqlite3_finalize(st);
    return rc;
}

int db_labels_remove(mp_db *db, const db_labels_sel *sel, db_labels_removed *out)
{
    memset(out, 0, sizeof *out);
    char source[4096] = "";
    if (sel->source) abs_source(sel->source, source, sizeof source);
    if (db_begin(db)) return -1;
    /* the slides to re-derive and the imports to drop, gathered first */
    int rc = db_exec(db, "CREATE TEMP TABLE IF NOT EXISTS lr_slides(id INTEGER PRIMARY KEY); DELETE FROM lr_slides; "
                         "CREATE TEMP TABLE IF NOT EXISTS lr_imports(id INTEGER PRIMARY KEY); DELETE FROM lr_imports;");
    const char *what = "";
    char whatbuf[4200];
    if (rc == 0 && sel->slide_id > 0) {
        snprintf(whatbuf, sizeof whatbuf, "slide %lld", (long long)sel->slide_id);
        what = whatbuf;
        rc = exec_bind(db, "INSERT INTO lr_slides VALUES (?1)", sel->slide_id, NULL, NULL) ||
             exec_bind(db, "INSERT INTO lr_imports SELECT id FROM label_imports WHERE slide_id = ?1", sel->slide_id, NULL,
                       NULL);
        if (rc == 0) {
            out->regions = db_query_int(db, "SELECT count(*) FROM region_annotations WHERE slide_id IN lr_slides");
            out->slide_labels = db_query_int(db, "SELECT count(*) FROM slides WHERE id IN lr_slides AND label IS NOT NULL");
            out->patch_labels_before = db_query_int(db, "SELECT count(*) FROM patch_labels WHERE patch_id IN "
                                                        "(SELECT id FROM patches WHERE slide_id IN lr_slides)");
            rc = db_exec(db, "DELETE FROM region_annotations WHERE slide_id IN lr_slides; "
                             "DELETE FROM slide_labels WHERE slide_id IN lr_slides; "
                             "UPDATE slides SET label = NULL WHERE id IN lr_slides; "
                             "DELETE FROM patch_labels WHERE patch_id IN (SELECT id FROM patches WHERE slide_id IN lr_slides)");
        }
        if (rc == 0 && out->regions + out->slide_labels + out->patch_labels_before == 0) {
            rc = mp_err_set("%s: slide %lld has no labels to remove", db_path(db), (long long)sel->slide_id);
        }
    } else if (rc == 0 && sel->annotation_id > 0) {
        snprintf(whatbuf, sizeof whatbuf, "region annotation %lld", (long long)sel->annotation_id);
        what = whatbuf;
        rc = exec_bind(db, "INSERT INTO lr_slides SELECT slide_id FROM region_annotations WHERE id = ?1", sel->annotation_id,
                       NULL, NULL);
        if (rc == 0 && db_query_int(db, "SELECT count(*) FROM lr_slides") == 0)
            rc = mp_err_set("%s: no region annotation %lld (see magpie db DB labels list)", db_path(db),
                            (long long)sel->annotation_id);
        if (rc == 0) {
            out->regions = 1;
            out->patch_labels_before = db_query_int(db, "SELECT count(*) FROM patch_labels WHERE patch_id IN "
                                                        "(SELECT id FROM patches WHERE slide_id IN lr_slides)");
            rc = exec_bind(db, "DELETE FROM region_annotations WHERE id = ?1", sel->annotation_id, NULL, NULL);
        }
    } else if (rc == 0) {
        if (sel->import_id > 0) {
            snprintf(whatbuf, sizeof whatbuf, "import %lld", (long long)sel->import_id);
            rc = exec_bind(db, "INSERT INTO lr_imports SELECT id FROM label_imports WHERE id = ?1", sel->import_id, NULL,
                           NULL);
        } else if (sel->source) {
            snprintf(whatbuf, sizeof whatbuf, "file %s", sel->source);
            rc = exec_bind(db, "INSERT INTO lr_imports SELECT id FROM label_imports WHERE source = ?2 OR source = ?3", 0,
                           source, sel->source);
        } else {
            rc = mp_err_set("labels remove: nothing selected");
        }
        what = whatbuf;
        if (rc == 0 && db_query_int(db, "SELECT count(*) FROM lr_imports") == 0)
            rc = mp_err_set("%s: no labels imported from %s (see magpie db DB labels list)", db_path(db), what);
        if (rc == 0)
            rc = db_exec(db, "INSERT OR IGNORE INTO lr_slides SELECT slide_id FROM label_imports WHERE id IN lr_imports "
                             "AND slide_id IS NOT NULL; "
                             "INSERT OR IGNORE INTO lr_slides SELECT slide_id FROM slide_labels WHERE import_id IN lr_imports");
        if (rc == 0) {
            out->regions = db_query_int(db, "SELECT count(*) FROM region_annotations WHERE import_id IN lr_imports");
            out->slide_labels = db_query_int(db, "SELECT count(*) FROM slide_labels WHERE import_id IN lr_imports");
            out->patch_labels_before = db_query_int(db, "SELECT count(*) FROM patch_labels WHERE patch_id IN "
                                                        "(SELECT id FROM patches WHERE slide_id IN lr_slides)");
            rc = db_exec(db, "UPDATE slides SET label = NULL WHERE id IN "
                             "(SELECT slide_id FROM slide_labels WHERE import_id IN lr_imports); "
                             "DELETE FROM slide_labels WHERE import_id IN lr_imports; "
                             "DELETE FROM region_annotations WHERE import_id IN lr_imports;");
        }
    }
    if (rc == 0) {
        out->imports = db_query_int(db, "SELECT count(*) FROM label_imports WHERE id IN lr_imports OR "
                                        "(kind = 'geojson' AND id NOT IN (SELECT import_id FROM region_annotations)) OR "
                                        "(kind = 'csv' AND id NOT IN (SELECT import_id FROM slide_labels))");
        rc = db_exec(db, "DELETE FROM label_imports WHERE id IN lr_imports OR "
                         "(kind = 'geojson' AND id NOT IN (SELECT import_id FROM region_annotations)) OR "
                         "(kind = 'csv' AND id NOT IN (SELECT import_id FROM slide_labels))");
    }
    /* what is left is applied again to the slides concerned */
    sqlite3_stmt *st = rc == 0 ? db_prepare(db, "SELECT id FROM lr_slides ORDER BY id") : NULL;
    if (rc == 0 && !st) rc = -1;
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) rc = db_labels_apply(db, sqlite3_column_int64(st, 0));
    if (rc == 0 && r != SQLITE_DONE) rc = db_fail(db, "re-applying labels");
    sqlite3_finalize(st);
    if (rc == 0)
        out->patch_labels_after = db_query_int(db, "SELECT count(*) FROM patch_labels WHERE patch_id IN "
                                                   "(SELECT id FROM patches WHERE slide_id IN lr_slides)");
    if (rc == 0 && (out->regions < 0 || out->slide_labels < 0 || out->patch_labels_before < 0 || out->imports < 0 ||
                    out->patch_labels_after < 0))
        rc = -1;
    if (rc == 0) rc = db_commit(db);
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_exec(db, "ROLLBACK");
        memset(out, 0, sizeof *out);
        return mp_err_set("%s", keep);
    }
    (void)what;
    return 0;
}

/* ---- labels from a batch run's manifest ---------------------------------------------------- */

int64_t db_labels_manifest_import(mp_db *db, const char *manifest, int rows)
{
    char source[4096];
    abs_source(manifest, source, sizeof source);
    sqlite3_stmt *q = db_prepare(db, "SELECT max(id) FROM label_imports WHERE kind = 'csv' AND source = ?");
    if (!q) return -1;
    sqlite3_bind_text(q, 1, source, -1, SQLITE_TRANSIENT);
    int64_t id = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : db_fail(db, "finding the manifest's import");
    sqlite3_finalize(q);
    if (id < 0) return -1;
    /* an existing import of the same file is this one again: its id stays what db labels list shows */
    sqlite3_stmt *st = db_prepare(db, id > 0 ? "UPDATE label_imports SET rows = ?2 WHERE id = ?1"
                                             : "INSERT INTO label_imports(kind, source, rows) VALUES ('csv', ?3, ?2)");
    if (!st) return -1;
    if (id > 0) sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, rows);
    if (!id) sqlite3_bind_text(st, 3, source, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(db, "recording the manifest's import");
    sqlite3_finalize(st);
    if (rc) return -1;
    return id > 0 ? id : sqlite3_last_insert_rowid(db_sqlite(db));
}

int db_labels_manifest_slide(mp_db *db, int64_t import_id, const char *path, const char *label, const char *patient)
{
    sqlite3_stmt *st = db_prepare(db, "UPDATE slides SET patient = CASE WHEN ?2 IS NULL THEN patient ELSE nullif(?2, '') END, "
                                      "label = CASE WHEN ?3 IS NULL THEN label ELSE nullif(?3, '') END WHERE path = ?1");
    sqlite3_stmt *pv = st ? db_prepare(db, "INSERT OR REPLACE INTO slide_labels(slide_id, import_id, label, patient) "
                                           "SELECT id, ?2, ?3, ?4 FROM slides WHERE path = ?1")
                          : NULL;
    int rc = pv ? 0 : -1;
    if (pv) {
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        if (patient) sqlite3_bind_text(st, 2, patient, -1, SQLITE_STATIC);
        if (label) sqlite3_bind_text(st, 3, label, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(db, "manifest labels");
        sqlite3_bind_text(pv, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(pv, 2, import_id);
        if (label) sqlite3_bind_text(pv, 3, label, -1, SQLITE_STATIC);
        if (patient) sqlite3_bind_text(pv, 4, patient, -1, SQLITE_STATIC);
        if (!rc && sqlite3_step(pv) != SQLITE_DONE) rc = db_fail(db, "recording manifest labels");
    }
    sqlite3_finalize(pv);
    sqlite3_finalize(st);
    return rc;
}
