/* db/sampling.c — class-balanced sampling weights and their CSV file (see db/sampling.h). */
#include "db/sampling.h"
#include "db/sql.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

#define SAMPLING_MAX_ROWS (1 << 26) /* 67M patches: past any dataset on one machine */

void db_sampling_free(db_sampling *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->group[i]);
    free(s->patch_id);
    free(s->cls);
    free(s->group);
    free(s->weight);
    memset(s, 0, sizeof *s);
}

static void grow(db_sampling *s, int *cap)
{
    if (s->n < *cap) return;
    *cap = *cap ? *cap * 2 : 1024;
    s->patch_id = mp_xrealloc(s->patch_id, sizeof(int64_t) * *cap);
    s->cls = mp_xrealloc(s->cls, sizeof(int) * *cap);
    s->group = mp_xrealloc(s->group, sizeof(char *) * *cap);
    s->weight = mp_xrealloc(s->weight, sizeof(double) * *cap);
}

int db_sampling_make(mp_db *db, const char *split, int by, db_sampling *out)
{
    memset(out, 0, sizeof *out);
    /* rows ordered by class then group, so each (class, group) run is contiguous */
    const char *group = by == DB_BALANCE_PATCH ? "''" : by == DB_BALANCE_SLIDE ? "s.name || char(31) || s.id"
                                                                                : "coalesce(s.patient, s.name)";
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT p.id, cl.id, %s AS g FROM patches p JOIN slides s ON s.id = p.slide_id "
             "JOIN splits sp ON sp.slide_id = p.slide_id LEFT JOIN patch_labels pl ON pl.patch_id = p.id "
             "JOIN classes cl ON cl.id = coalesce(pl.class_id, (SELECT id FROM classes WHERE name = s.label)) "
             "WHERE sp.split = ?1 ORDER BY cl.id, g, p.id",
             group);
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, split, -1, SQLITE_TRANSIENT);
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        grow(out, &cap);
        out->patch_id[out->n] = sqlite3_column_int64(st, 0);
        out->cls[out->n] = sqlite3_column_int(st, 1);
        const char *g = (const char *)sqlite3_column_text(st, 2);
        out->group[out->n] = mp_xstrdup(g ? g : "");
        /* a slide's group key carries its id after a unit separator (two slides may share a name);
         * the file shows the name */
        char *us = strchr(out->group[out->n], 31);
        if (us) *us = 0;
        out->n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        db_sampling_free(out);
        return db_fail(db, "balance");
    }
    if (out->n == 0) {
        db_sampling_free(out);
        return mp_err_set("%s: the %s split has no labelled patches (run `magpie db DB labels import` and `magpie db "
                          "DB split` first)", db_path(db), split);
    }
    /* classes present, then per class: groups, and patches per group */
    int K = 0;
    for (int i = 0; i < out->n; i++)
        if (i == 0 || out->cls[i] != out->cls[i - 1]) K++;
    out->nclasses = K;
    for (int a = 0; a < out->n;) {
        int b = a;
        while (b < out->n && out->cls[b] == out->cls[a]) b++;
        int groups = 0;
        for (int i = a; i < b; i++)
            if (by == DB_BALANCE_PATCH || i == a || strcmp(out->group[i], out->group[i - 1])) groups++;
        if (by == DB_BALANCE_PATCH) groups = 1; /* one group: the class's patches share equally */
        for (int i = a; i < b;) {
            int j = i + 1;
            if (by != DB_BALANCE_PATCH)
                while (j < b && !strcmp(out->group[j], out->group[i])) j++;
            else j = b;
            for (int t = i; t < j; t++) out->weight[t] = 1.0 / K / groups / (j - i);
            i = j;
        }
        a = b;
    }
    return 0;
}

int db_sampling_write(const db_sampling *s, const char *path)
{
    size_t cap = 64 + (size_t)s->n * 64, len = 0;
    for (int i = 0; i < s->n; i++) cap += 2 * strlen(s->group[i]);
    char *buf = mp_xmalloc(cap);
    len += (size_t)snprintf(buf, cap, "patch_id,class,group,weight\n");
    for (int i = 0; i < s->n; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "%lld,%d,", (long long)s->patch_id[i], s->cls[i]);
        len += csv_write(buf + len, cap - len, s->group[i], strlen(s->group[i]));
        len += (size_t)snprintf(buf + len, cap - len, ",%.17g\n", s->weight[i]);
    }
    int rc = mp_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

/* ---- reading ---- */

typedef struct {
    const char *path;
    db_sampling *s;
    int cap, line, col, err;
    char f[4][64];  /* fields of the current row (group is kept whole below) */
    char *grp;
} reader;

static void on_field(void *data, size_t n, void *u)
{
    reader *r = u;
    if (r->err) return;
    if (r->col < 4) {
        if (r->col == 2) {
            free(r->grp);
            r->grp = mp_xmalloc(n + 1);
            memcpy(r->grp, data, n);
            r->grp[n] = 0;
        } else snprintf(r->f[r->col], sizeof r->f[0], "%.*s", (int)(n < 63 ? n : 63), (const char *)data);
    }
    r->col++;
}

static void on_row(int c, void *u)
{
    (void)c;
    reader *r = u;
    r->line++;
    int cols = r->col;
    r->col = 0;
    if (r->err) return;
    if (cols != 4) {
        r->err = mp_err_set("%s:%d: %d fields, expected 4 (patch_id,class,group,weight)", r->path, r->line, cols);
        return;
    }
    if (r->line == 1) {
        if (strcmp(r->f[0], "patch_id") || strcmp(r->f[1], "class") || strcmp(r->grp, "group") || strcmp(r->f[3], "weight"))
            r->err = mp_err_set("%s:1: not a magpie sampling file (header patch_id,class,group,weight)", r->path);
        return;
    }
    long id, cls;
    double w;
    if (mp_parse_long(r->f[0], &id) < 0 || id < 1) {
        r->err = mp_err_set("%s:%d: bad patch_id '%s'", r->path, r->line, r->f[0]);
        return;
    }
    if (mp_parse_long(r->f[1], &cls) < 0 || cls < 0) {
        r->err = mp_err_set("%s:%d: bad class '%s'", r->path, r->line, r->f[1]);
        return;
    }
    if (mp_parse_double(r->f[3], &w) < 0 || !isfinite(w) || w < 0) {
        r->err = mp_err_set("%s:%d: bad weight '%s' (a number >= 0)", r->path, r->line, r->f[3]);
        return;
    }
    if (r->s->n >= SAMPLING_MAX_ROWS) {
        r->err = mp_err_set("%s:%d: more than %d rows", r->path, r->line, SAMPLING_MAX_ROWS);
        return;
    }
    grow(r->s, &r->cap);
    r->s->patch_id[r->s->n] = id;
    r->s->cls[r->s->n] = (int)cls;
    r->s->group[r->s->n] = r->grp;
    r->grp = NULL;
    r->s->weight[r->s->n] = w;
    r->s->n++;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int db_sampling_read(const char *path, db_sampling *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = mp_fopen_regular(path);
    if (!f) return -1;
    struct csv_parser p;
    csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL);
    reader r = {.path = path, .s = out};
    char buf[65536];
    size_t n;
    while (!r.err && (n = fread(buf, 1, sizeof buf, f)) > 0)
        if (csv_parse(&p, buf, n, on_field, on_row, &r) != n && !r.err)
            r.err = mp_err_set("%s:%d: %s", path, r.line + 1, csv_strerror(csv_error(&p)));
    if (!r.err && ferror(f)) r.err = mp_err_set("%s: read error: %s", path, strerror(errno));
    if (!r.err && csv_fini(&p, on_field, on_row, &r) != 0)
        r.err = mp_err_set("%s:%d: %s", path, r.line + 1, csv_strerror(csv_error(&p)));
    csv_free(&p);
    fclose(f);
    free(r.grp);
    if (!r.err && r.line == 0) r.err = mp_err_set("%s: empty (expected the header patch_id,class,group,weight)", path);
    double tot = 0;
    for (int i = 0; i < out->n; i++) tot += out->weight[i];
    if (!r.err && !(tot > 0)) r.err = mp_err_set("%s: no row with a weight above 0", path);
    if (!r.err) {
        int64_t *ids = mp_xmalloc(sizeof(int64_t) * (out->n ? out->n : 1));
        memcpy(ids, out->patch_id, sizeof(int64_t) * out->n);
        qsort(ids, (size_t)out->n, sizeof(int64_t), cmp_id);
        for (int i = 1; i < out->n && !r.err; i++)
            if (ids[i] == ids[i - 1]) r.err = mp_err_set("%s: patch %lld is listed twice", path, (long long)ids[i]);
        free(ids);
    }
    if (r.err) {
        db_sampling_free(out);
        return -1;
    }
    return 0;
}
