/* tests/db/test_labels_hard.c — label import under hostile files: a CSV record past the length
 * bound, a CSV of many rows against many slides costing a bounded number of SQLite VM steps per
 * row (the old import scanned every slide per row), GeoJSON past the feature, vertex and file
 * size bounds, and the polygon index giving the same labels as testing every polygon. */
#include "tests/test.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/rng.h"
#include "db/labels.h"
#include "db/sql.h"

/* n slides s0000.. with a gx x gx grid of `size`-px patches each */
static mp_db *make_db(const char *name, int n, int grid, double size)
{
    unlink(tmp(name));
    mp_db *db = db_open(tmp(name), DB_OPEN_CREATE);
    if (!db) return NULL;
    db_exec(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        char sql[512];
        snprintf(sql, sizeof sql, "INSERT INTO slides(id, path, name, fingerprint) VALUES (%d, '/x/s%04d.tif', 's%04d', 'f')",
                 i + 1, i, i);
        db_exec(db, sql);
        for (int g = 0; g < grid * grid; g++) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO patches(slide_id, gx, gy, x0, y0, size0, tissue) VALUES (%d, %d, %d, %g, %g, %g, 1)",
                     i + 1, g % grid, g / grid, (g % grid) * size, (g / grid) * size, size);
            db_exec(db, sql);
        }
    }
    db_exec(db, "COMMIT");
    return db;
}

static int64_t g_vm;
static int count_vm(void *arg)
{
    (void)arg;
    g_vm++;
    return 0;
}

TEST(csv_bounds)
{
    mp_db *db = make_db("csvb.db", 2, 1, 100);
    db_label_report rep;
    char want[600];
    /* one 2 MiB line: refused at its line, nothing applied */
    const char *p = tmp("long.csv");
    FILE *f = fopen(p, "w");
    fputs("slide,label\ns0000,tumor\ns0001,", f);
    for (int i = 0; i < (2 << 20); i++) fputc('x', f);
    fputs("\n", f);
    fclose(f);
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:3: a record longer than %d bytes (label rows are short: is this the right file?)", p,
             DB_LABELS_MAX_RECORD);
    CHECK_STR(mp_err(), want);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE label IS NOT NULL"), 0);
    /* a quoted field running over many short lines is one record: the same bound */
    p = tmp("quoted.csv");
    f = fopen(p, "w");
    fputs("slide,label\n\"s0000", f);
    for (int i = 0; i < 40000; i++) fputs("\nyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", f);
    fputs("\",tumor\n", f);
    fclose(f);
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:2: a record longer than %d bytes (label rows are short: is this the right file?)", p,
             DB_LABELS_MAX_RECORD);
    CHECK_STR(mp_err(), want);
    db_close(db);
}

TEST(csv_rows_linear)
{
    enum { S = 3000 };
    mp_db *db = make_db("csvl.db", S, 1, 100);
    const char *p = tmp("rows.csv");
    FILE *f = fopen(p, "w");
    fputs("slide,patient,label\n", f);
    for (int i = 0; i < S; i++) fprintf(f, "s%04d,P%d,%s\n", (i * 7) % S, i / 2, i % 3 ? "tumor" : "normal");
    fputs("ghost,P0,tumor\n", f);
    fclose(f);
    db_label_report rep;
    g_vm = 0;
    sqlite3_progress_handler(db_sqlite(db), 100, count_vm, NULL);
    CHECK_INT(db_labels_import_csv(db, p, &rep), 0);
    sqlite3_progress_handler(db_sqlite(db), 0, NULL, NULL);
    CHECK_INT(rep.rows, S + 1);
    CHECK_INT(rep.applied, S);
    CHECK_INT(rep.not_applied, 1);
    CHECK_INT(rep.updated, S);
    CHECK_INT(rep.n_unknown, 1);
    CHECK_INT(rep.new_classes, 2);
    /* hundreds of VM steps per row, not thousands per slide per row (a scan of slides.name) */
    int64_t per_row = g_vm * 100 / (S + 1);
    if (per_row >= 1000) fprintf(stderr, "  %lld SQLite VM steps per row\n", (long long)per_row);
    CHECK(per_row < 1000);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE label = 'tumor'"), 2000);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE patient = 'P1499'"), 2);
    db_label_report_free(&rep);
    db_close(db);
}

TEST(geojson_bounds)
{
    mp_db *db = make_db("geob.db", 1, 2, 100);
    db_label_report rep;
    char want[600];
    /* more features than the bound: refused before any is read */
    const char *p = tmp("many.geojson");
    FILE *f = fopen(p, "w");
    fputc('[', f);
    for (int i = 0; i <= DB_LABELS_MAX_FEATURES; i++) fputs(i ? ",0" : "0", f);
    fputc(']', f);
    fclose(f);
    CHECK_INT(db_labels_import_geojson(db, p, "s0000", 0.5, &rep), -1);
    snprintf(want, sizeof want, "%s: %d features, more than the %d a labels file may have", p,
             DB_LABELS_MAX_FEATURES + 1, DB_LABELS_MAX_FEATURES);
    CHECK_STR(mp_err(), want);
    unlink(p);
    /* a file past the size bound (sparse: no disk used) is not even read */
    p = tmp("huge.geojson");
    f = fopen(p, "w");
    fclose(f);
    CHECK_INT(truncate(p, DB_LABELS_MAX_FILE + 1), 0);
    CHECK_INT(db_labels_import_geojson(db, p, "s0000", 0.5, &rep), -1);
    snprintf(want, sizeof want, "%s: %lld bytes, more than the %lld a GeoJSON labels file may have", p,
             (long long)DB_LABELS_MAX_FILE + 1, (long long)DB_LABELS_MAX_FILE);
    CHECK_STR(mp_err(), want);
    unlink(p);
    /* more vertices than the bound (lowered through the test hook) */
    setenv("MAGPIE_LABELS_MAX_VERTICES", "1000", 1);
    p = tmp("verts.geojson");
    f = fopen(p, "w");
    fputs("{\"type\":\"Feature\",\"properties\":{\"classification\":{\"name\":\"t\"}},"
          "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[",
          f);
    for (int i = 0; i < 1001; i++) fprintf(f, "%s[%d,%d]", i ? "," : "", i % 200, i / 200);
    fputs("]]}}", f);
    fclose(f);
    CHECK_INT(db_labels_import_geojson(db, p, "s0000", 0.5, &rep), -1);
    snprintf(want, sizeof want, "%s: feature 0: more than 1000 polygon vertices in the file", p);
    CHECK_STR(mp_err(), want);
    unsetenv("MAGPIE_LABELS_MAX_VERTICES");
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM classes"), 0); /* nothing of a refused file stays */
    db_close(db);
}

/* ---- the polygon index against testing every polygon ---- */

typedef struct {
    int n;
    double xy[2 * 400];
    int cls;
} tpoly;

static int t_inside(const tpoly *p, double x, double y)
{
    int in = 0;
    for (int i = 0, j = p->n - 1; i < p->n; j = i++) {
        double xi = p->xy[2 * i], yi = p->xy[2 * i + 1], xj = p->xy[2 * j], yj = p->xy[2 * j + 1];
        if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) in = !in;
    }
    return in;
}

TEST(geojson_index_equals_brute_force)
{
    enum { GRID = 12, NP = 300 };
    const double size = 50;
    mp_db *db = make_db("geoi.db", 1, GRID, size);
    mp_rng r;
    mp_rng_seed(&r, 7);
    static tpoly ps[NP];
    const char *p = tmp("idx.geojson");
    FILE *f = fopen(p, "w");
    fputs("{\"type\":\"FeatureCollection\",\"features\":[", f);
    for (int k = 0; k < NP; k++) {
        tpoly *t = &ps[k];
        /* mostly small stars, some big ones (the band index: > 64 points), a few spanning all */
        int big = k % 25 == 0, huge = k % 97 == 0;
        t->n = big ? 300 : 5 + (int)mp_rng_below(&r, 12);
        double cx = mp_rng_uniform(&r) * GRID * size, cy = mp_rng_uniform(&r) * GRID * size;
        double rad = huge ? GRID * size : big ? 120 : 3 + 20 * mp_rng_uniform(&r);
        for (int i = 0; i < t->n; i++) {
            double a = 2 * M_PI * i / t->n, q = rad * (0.4 + 0.6 * mp_rng_uniform(&r));
            t->xy[2 * i] = cx + q * cos(a);
            t->xy[2 * i + 1] = cy + q * sin(a);
        }
        t->cls = (int)mp_rng_below(&r, 3);
        fprintf(f, "%s{\"type\":\"Feature\",\"properties\":{\"classification\":{\"name\":\"c%d\"}},"
                   "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[",
                k ? "," : "", t->cls);
        for (int i = 0; i <= t->n; i++)
            fprintf(f, "%s[%.17g,%.17g]", i ? "," : "", t->xy[2 * (i % t->n)], t->xy[2 * (i % t->n) + 1]);
        fputs("]]}}", f);
    }
    fputs("]}", f);
    fclose(f);
    db_label_report rep;
    CHECK_INT(db_labels_import_geojson(db, p, "s0000", 0.3, &rep), 0);
    CHECK_INT(rep.rows, NP);
    CHECK_INT(rep.applied + rep.not_applied, NP);
    /* class ids follow first appearance in the file */
    int id_of[3] = {-1, -1, -1}, next = 0;
    for (int k = 0; k < NP; k++)
        if (id_of[ps[k].cls] < 0) id_of[ps[k].cls] = next++;
    int labelled = 0, mismatches = 0;
    for (int gy = 0; gy < GRID; gy++)
        for (int gx = 0; gx < GRID; gx++) {
            int counts[3] = {0};
            for (int sy = 0; sy < 16; sy++)
                for (int sx = 0; sx < 16; sx++) {
                    double x = gx * size + (sx + 0.5) * size / 16, y = gy * size + (sy + 0.5) * size / 16;
                    for (int k = 0; k < NP; k++)
                        if (t_inside(&ps[k], x, y)) {
                            counts[id_of[ps[k].cls]]++;
                            break;
                        }
                }
            int best = -1;
            for (int c = 0; c < 3; c++)
                if (counts[c] && (best < 0 || counts[c] > counts[best])) best = c;
            int want = best >= 0 && counts[best] / 256.0 >= 0.3 ? best : -1;
            char sql[256];
            snprintf(sql, sizeof sql, "SELECT coalesce((SELECT l.class_id FROM patch_labels l JOIN patches q ON q.id = "
                                      "l.patch_id WHERE q.gx = %d AND q.gy = %d), -1)", gx, gy);
            int got = (int)db_query_int(db, sql);
            labelled += want >= 0;
            mismatches += got != want;
        }
    CHECK_INT(mismatches, 0);
    CHECK(labelled > 20); /* the comparison covered labelled patches, not only empty ones */
    CHECK_INT(rep.updated, labelled);
    db_label_report_free(&rep);
    db_close(db);
}

int main(void)
{
    if (t_tmpdir("labels_hard")) return 1;
    RUN(csv_bounds);
    RUN(csv_rows_linear);
    RUN(geojson_bounds);
    RUN(geojson_index_equals_brute_force);
    t_rmdir();
    return test_done();
}
