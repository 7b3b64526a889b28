/* db/labels.c — slide-level CSV labels (libcsv) and QuPath GeoJSON region annotations (jansson)
 * into the dataset. Patch coverage is measured on a 16×16 grid of sample points per patch, each
 * tested against the class polygons with the even-odd rule (holes are inner rings). */
#include "db/labels.h"

#include <csv.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/util.h"

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

enum { COL_SLIDE, COL_PATIENT, COL_LABEL, COL_N };

typedef struct {
    const char *path;
    mp_db *db;
    db_label_report *rep;
    int line;            /* line of the row being assembled (1-based) */
    int row_start_line;
    int nf;              /* fields in the current row */
    char *f[16];
    int map[16];         /* column index → COL_* (-1 unused) */
    int ncols;
    int failed;
    sqlite3_stmt *upd;
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

static void on_row(int term, void *data)
{
    csv_ctx *c = data;
    (void)term;
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
                c->rep->rows++;
                if (!v[COL_SLIDE] || !*v[COL_SLIDE]) {
                    c->failed = mp_err_set("%s:%d: empty slide name", c->path, c->row_start_line);
                } else {
                    int label_id = -2;
                    if (v[COL_LABEL] && *v[COL_LABEL]) {
                        int before = (int)db_query_int(c->db, "SELECT count(*) FROM classes");
                        label_id = db_class_id(c->db, v[COL_LABEL], 1);
                        if (label_id < 0) c->failed = -1;
                        else if (db_query_int(c->db, "SELECT count(*) FROM classes") > before) c->rep->new_classes++;
                    }
                    if (!c->failed) {
                        /* Columns absent from the file keep their value; present but empty clears. */
                        sqlite3_stmt *u = c->upd;
                        sqlite3_reset(u);
                        sqlite3_bind_text(u, 1, v[COL_SLIDE], -1, SQLITE_TRANSIENT);
                        sqlite3_bind_int(u, 2, v[COL_PATIENT] != NULL);
                        if (v[COL_PATIENT] && *v[COL_PATIENT]) sqlite3_bind_text(u, 3, v[COL_PATIENT], -1, SQLITE_TRANSIENT);
                        else sqlite3_bind_null(u, 3);
                        sqlite3_bind_int(u, 4, v[COL_LABEL] != NULL);
                        if (v[COL_LABEL] && *v[COL_LABEL]) sqlite3_bind_text(u, 5, v[COL_LABEL], -1, SQLITE_TRANSIENT);
                        else sqlite3_bind_null(u, 5);
                        if (sqlite3_step(u) != SQLITE_DONE) c->failed = db_fail(c->db, "updating slide labels");
                        else if (sqlite3_changes(db_sqlite(c->db)) == 0) report_unknown(c->rep, v[COL_SLIDE]);
                        else c->rep->updated += sqlite3_changes(db_sqlite(c->db));
                    }
                }
            }
        }
    }
    for (int i = 0; i < c->nf; i++) free(c->f[i]);
    c->nf = 0;
}

int db_labels_import_csv(mp_db *db, const char *path, db_label_report *rep)
{
    memset(rep, 0, sizeof *rep);
    uint8_t *buf;
    size_t len;
    if (mp_read_file(path, &buf, &len) < 0) return -1;
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        free(buf);
        return mp_err_set("%s: cannot initialise the CSV parser", path);
    }
    csv_ctx c = {.path = path, .db = db, .rep = rep, .line = 1, .row_start_line = 1};
    /* The name matches the file's slide name, or the slide's path, or its file name. */
    c.upd = db_prepare(db, "UPDATE slides SET patient = CASE WHEN ?2 THEN ?3 ELSE patient END, "
                           "label = CASE WHEN ?4 THEN ?5 ELSE label END WHERE name = ?1");
    if (!c.upd || db_begin(db) < 0) {
        sqlite3_finalize(c.upd);
        csv_free(&p);
        free(buf);
        return -1;
    }
    /* Feed line by line so errors carry the line number where the record started. */
    size_t pos = 0;
    int bad = 0;
    while (pos < len && !c.failed) {
        size_t e = pos;
        while (e < len && buf[e] != '\n') e++;
        if (e < len) e++;
        if (c.nf == 0) c.row_start_line = c.line;
        if (csv_parse(&p, buf + pos, e - pos, on_field, on_row, &c) != e - pos) {
            bad = 1;
            break;
        }
        c.line++;
        pos = e;
    }
    if (bad && !c.failed)
        c.failed = mp_err_set("%s:%d: malformed CSV (%s)", path, c.line, csv_strerror(csv_error(&p)));
    /* At end of file the only parse error left is an open quote: name the line it opened on. */
    if (!bad && !c.failed && csv_fini(&p, on_field, on_row, &c) != 0)
        c.failed = mp_err_set("%s:%d: malformed CSV (unterminated quoted field)", path, c.row_start_line);
    if (!c.failed && c.ncols == 0) c.failed = mp_err_set("%s: empty file (no header)", path);
    for (int i = 0; i < c.nf; i++) free(c.f[i]);
    csv_free(&p);
    sqlite3_finalize(c.upd);
    free(buf);
    if (c.failed) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        db_label_report_free(rep);
        return mp_err_set("%s", msg);
    }
    return db_commit(db);
}

/* ---- GeoJSON ------------------------------------------------------------------------------ */

typedef struct {
    int cls;
    int nrings;
    int *ring_len;   /* points per ring */
    double *xy;      /* all rings' points, x,y interleaved */
    double bx0, by0, bx1, by1;
} poly;

static int parse_ring(json_t *ring, poly *p)
{
    if (!json_is_array(ring)) return -1;
    size_t n = json_array_size(ring);
    size_t base = 0;
    for (int i = 0; i < p->nrings; i++) base += p->ring_len[i];
    p->xy = mp_xrealloc(p->xy, sizeof(double) * 2 * (base + n + 1));
    p->ring_len = mp_xrealloc(p->ring_len, sizeof(int) * (p->nrings + 1));
    for (size_t i = 0; i < n; i++) {
        json_t *pt = json_array_get(ring, i);
        if (!json_is_array(pt) || json_array_size(pt) < 2 || !json_is_number(json_array_get(pt, 0)) ||
            !json_is_number(json_array_get(pt, 1)))
            return -1;
        double x = json_number_value(json_array_get(pt, 0)), y = json_number_value(json_array_get(pt, 1));
        p->xy[2 * (base + i)] = x;
        p->xy[2 * (base + i) + 1] = y;
        if (x < p->bx0) p->bx0 = x;
        if (x > p->bx1) p->bx1 = x;
        if (y < p->by0) p->by0 = y;
        if (y > p->by1) p->by1 = y;
    }
    p->ring_len[p->nrings++] = (int)n;
    return 0;
}

/* Even-odd over all rings: a point inside the outer ring and one hole is outside. */
static int inside(const poly *p, double x, double y)
{
    if (x < p->bx0 || x > p->bx1 || y < p->by0 || y > p->by1) return 0;
    int in = 0;
    const double *v = p->xy;
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

static const char *basename_noext(const char *path, char *buf, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, cap, "%s", b);
    char *dot = strchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
    return buf;
}

int db_labels_import_geojson(mp_db *db, const char *path, const char *slide, double min_coverage,
                             db_label_report *rep)
{
    memset(rep, 0, sizeof *rep);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return mp_err_set("%s:%d: not valid JSON (%s)", path, je.line, je.text);
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
    int nfeat = features ? (int)json_array_size(features) : 1;
    if (features && !json_is_array(features)) {
        json_decref(root);
        return mp_err_set("%s: 'features' is not an array", path);
    }
    char namebuf[512];
    if (!slide) slide = basename_noext(path, namebuf, sizeof namebuf);

    poly *polys = NULL;
    int np = 0, rc = -1;
    if (db_begin(db) < 0) {
        json_decref(root);
        return -1;
    }
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
                       path, fi, fname || fid ? " (" : "", fname ? fname : fid ? fid : "", fname || fid ? ")" : "");
            goto out;
        }
        rep->rows++;
        json_t *g = json_object_get(f, "geometry");
        const char *gt = g ? json_string_value(json_object_get(g, "type")) : NULL;
        json_t *coords = g ? json_object_get(g, "coordinates") : NULL;
        if (!gt || !json_is_array(coords)) {
            mp_err_set("%s: feature %d has no geometry", path, fi);
            goto out;
        }
        int before = (int)db_query_int(db, "SELECT count(*) FROM classes");
        int cid = db_class_id(db, cname, 1);
        if (cid < 0) goto out;
        if (db_query_int(db, "SELECT count(*) FROM classes") > before) rep->new_classes++;
        /* A Polygon is one poly; a MultiPolygon several. Points and lines cover no area. */
        int multi = !strcmp(gt, "MultiPolygon");
        if (!multi && strcmp(gt, "Polygon")) continue;
        size_t nparts = multi ? json_array_size(coords) : 1;
        for (size_t pi = 0; pi < nparts; pi++) {
            json_t *rings = multi ? json_array_get(coords, pi) : coords;
            polys = mp_xrealloc(polys, sizeof(poly) * (np + 1));
            poly *p = &polys[np++];
            memset(p, 0, sizeof *p);
            p->cls = cid;
            p->bx0 = p->by0 = INFINITY;
            p->bx1 = p->by1 = -INFINITY;
            for (size_t r = 0; r < json_array_size(rings); r++)
                if (parse_ring(json_array_get(rings, r), p) < 0) {
                    mp_err_set("%s: feature %d: bad coordinates", path, fi);
                    goto out;
                }
        }
    }
    {
        sqlite3_stmt *st = db_prepare(db, "SELECT p.id, p.x0, p.y0, p.size0 FROM patches p JOIN slides s ON s.id = "
                                          "p.slide_id WHERE s.name = ?");
        if (!st) goto out;
        sqlite3_bind_text(st, 1, slide, -1, SQLITE_STATIC);
        sqlite3_stmt *cnt = db_prepare(db, "SELECT count(*) FROM slides WHERE name = ?");
        sqlite3_bind_text(cnt, 1, slide, -1, SQLITE_STATIC);
        int exists = cnt && sqlite3_step(cnt) == SQLITE_ROW && sqlite3_column_int(cnt, 0) > 0;
        sqlite3_finalize(cnt);
        if (!exists) report_unknown(rep, slide);
        sqlite3_stmt *ins = db_prepare(db, "INSERT OR REPLACE INTO patch_labels(patch_id, class_id, coverage, source) "
                                           "VALUES (?, ?, ?, ?)");
        if (!ins) {
            sqlite3_finalize(st);
            goto out;
        }
        char src[600];
        snprintf(src, sizeof src, "geojson:%s", path);
        enum { G = 16 };
        int counts[256];
        int failed = 0;
        while (!failed && sqlite3_step(st) == SQLITE_ROW) {
            int64_t pid = sqlite3_column_int64(st, 0);
            double x0 = sqlite3_column_double(st, 1), y0 = sqlite3_column_double(st, 2), s = sqlite3_column_double(st, 3);
            memset(counts, 0, sizeof counts);
            for (int gy = 0; gy < G; gy++)
                for (int gx = 0; gx < G; gx++) {
                    double x = x0 + (gx + 0.5) * s / G, y = y0 + (gy + 0.5) * s / G;
                    /* A point belongs to at most one class per point: the first polygon containing it. */
                    for (int k = 0; k < np; k++)
                        if (polys[k].cls < 256 && inside(&polys[k], x, y)) {
                            counts[polys[k].cls]++;
                            break;
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
            if (sqlite3_step(ins) != SQLITE_DONE) failed = db_fail(db, "writing patch labels");
            else rep->updated++;
        }
        sqlite3_finalize(st);
        sqlite3_finalize(ins);
        if (failed) goto out;
    }
    rc = db_commit(db);
out:
    if (rc < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        mp_err_set("%s", msg);
    }
    for (int i = 0; i < np; i++) {
        free(polys[i].xy);
        free(polys[i].ring_len);
    }
    free(polys);
    json_decref(root);
    return rc;
}
