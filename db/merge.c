/* db/merge.c — `magpie db merge`: datasets into one, exactly. Everything is checked first on a
 * read snapshot of every input (duplicates, parameters, unfinished slides, unknown tables), then
 * copied table by table in one write transaction of the target. Ids are shifted, not renumbered
 * one by one: a shard's slide k becomes k + (the target's largest slide id), and likewise for
 * patches and predictions, so order is kept and no id map is needed whatever the size. */
#include "db/merge.h"
#include "db/sql.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/tiling.h"

const char *const db_merge_tables[] = {"meta", "classes", "slides", "patches", "images", "tile_errors",
                                       "label_imports", "region_annotations", "slide_labels", "patch_labels",
                                       "splits", "folds", "predictions", NULL};

/* How a column's value changes on the way in. */
enum { R_KEEP, R_SLIDE, R_PATCH, R_PRED, R_CLASS, R_IMPORT, R_REGION, R_IMPORT_SRC };

typedef struct {
    const char *col;
    int rule;
} col_rule;

typedef struct {
    const char *table;
    const char *order;      /* copy in key order: appends to the target's b-trees */
    col_rule rules[4];
} table_spec;

/* classes and meta are matched by name/key (copy_classes, copy_meta), not copied as rows. */
static const table_spec specs[] = {
    {"slides", "id", {{"id", R_SLIDE}}},
    {"patches", "id", {{"id", R_PATCH}, {"slide_id", R_SLIDE}}},
    {"images", "patch_id, mag", {{"patch_id", R_PATCH}}},
    {"tile_errors", "rowid", {{"slide_id", R_SLIDE}}},
    {"label_imports", "id", {{"id", R_IMPORT}, {"slide_id", R_SLIDE}}},
    {"region_annotations", "id", {{"id", R_REGION}, {"import_id", R_IMPORT}, {"slide_id", R_SLIDE}, {"class_id", R_CLASS}}},
    {"slide_labels", "slide_id", {{"slide_id", R_SLIDE}, {"import_id", R_IMPORT}}},
    /* a patch label derived from a region import names it in source as 'import:ID' */
    {"patch_labels", "patch_id", {{"patch_id", R_PATCH}, {"class_id", R_CLASS}, {"source", R_IMPORT_SRC}}},
    {"splits", "slide_id", {{"slide_id", R_SLIDE}}},
    {"folds", "slide_id", {{"slide_id", R_SLIDE}}},
    {"predictions", "id", {{"id", R_PRED}, {"slide_id", R_SLIDE}}},
};

typedef struct {
    const char *path; /* as given */
    mp_db *db;
} source;

typedef struct {
    int64_t slide, patch, pred, import, region; /* added to the shard's ids */
    int64_t *class_from, *class_to;
    int nclass;
} shift;

/* ---- small helpers ---- */

static char *col_text(sqlite3_stmt *st, int c)
{
    const unsigned char *t = sqlite3_column_text(st, c);
    return t ? mp_xstrdup((const char *)t) : NULL;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return mp_err_set("%s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? mp_err_set("%s: fsync: %s", dir, strerror(errno)) : 0;
}

static void unlink_db_files(const char *path)
{
    char side[PATH_MAX + 8];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-journal", path);
    unlink(side);
}

/* ---- checks, on every input's snapshot, before anything is written ---- */

typedef struct {
    char *fp, *path, *name, *params, *status;
    int src;
} slide_row;

static void slide_rows_free(slide_row *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].fp);
        free(r[i].path);
        free(r[i].name);
        free(r[i].params);
        free(r[i].status);
    }
    free(r);
}

static int cmp_fp(const void *a, const void *b)
{
    const slide_row *x = a, *y = b;
    int c = strcmp(x->fp, y->fp);
    return c ? c : x->src - y->src;
}

static int cmp_path(const void *a, const void *b)
{
    const slide_row *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : x->src - y->src;
}

static int load_slides(source *srcs, int ns, slide_row **out, size_t *n)
{
    size_t cap = 64, k = 0;
    slide_row *r = mp_xmalloc(cap * sizeof *r);
    for (int s = 0; s < ns; s++) {
        sqlite3_stmt *st = db_prepare(srcs[s].db, "SELECT fingerprint, path, name, params, status FROM slides ORDER BY id");
        if (!st) goto fail;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (k == cap) r = mp_xrealloc(r, (cap *= 2) * sizeof *r);
            r[k] = (slide_row){col_text(st, 0), col_text(st, 1), col_text(st, 2), col_text(st, 3), col_text(st, 4), s};
            if (!r[k].fp) r[k].fp = mp_xstrdup("");
            if (!r[k].path) r[k].path = mp_xstrdup("");
            if (!r[k].name) r[k].name = mp_xstrdup("");
            k++;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            db_fail(srcs[s].db, "reading slides");
            goto fail;
        }
    }
    *out = r;
    *n = k;
    return 0;
fail:
    slide_rows_free(r, k);
    return -1;
}

/* A value of a params object for a message: compact JSON, or "(unset)". */
static char *param_text(json_t *v)
{
    if (!v) return mp_xstrdup("(unset)");
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    return s ? s : mp_xstrdup("?");
}

static int per_slide_key(const char *key)
{
    static const char *const keys[] = {DB_MERGE_PER_SLIDE_PARAMS};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

/* The first key (other than per-slide ones) whose value differs between a and b, or NULL. */
static const char *params_differ(json_t *a, json_t *b)
{
    const char *key;
    json_t *v;
    json_object_foreach(a, key, v) if (!per_slide_key(key) && !json_equal(v, json_object_get(b, key))) return key;
    json_object_foreach(b, key, v) if (!per_slide_key(key) && !json_object_get(a, key)) return key;
    return NULL;
}

static int check_params(source *srcs, slide_row *r, size_t n)
{
    /* the reference: the first slide with parameters, the target's first when it has one */
    size_t ref = n;
    for (size_t i = 0; i < n && ref == n; i++)
        if (r[i].params) ref = i;
    if (ref == n) return 0;
    json_error_t je;
    json_t *a = json_loads(r[ref].params, 0, &je);
    if (!json_is_object(a)) {
        json_decref(a);
        return mp_err_set("%s: slide %s: tiling parameters are not a JSON object", srcs[r[ref].src].path, r[ref].path);
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        /* differences inside one dataset were there before and are not the merge's doing */
        if (!r[i].params || r[i].src == r[ref].src) continue;
        json_t *b = json_loads(r[i].params, 0, &je);
        if (!json_is_object(b)) {
            rc = mp_err_set("%s: slide %s: tiling parameters are not a JSON object", srcs[r[i].src].path, r[i].path);
        } else {
            const char *key = params_differ(a, b);
            if (key) {
                char *va = param_text(json_object_get(a, key)), *vb = param_text(json_object_get(b, key));
                rc = mp_err_set("%s: tiled with %s=%s but %s with %s=%s (slides %s and %s); merge only datasets "
                                "tiled with the same parameters",
                                srcs[r[i].src].path, key, vb, srcs[r[ref].src].path, key, va, r[i].name, r[ref].name);
                free(va);
                free(vb);
            }
        }
        json_decref(b);
    }
    json_decref(a);
    return rc;
}

/* srcs[0] is the target, srcs[1..] the shards. */
static int check_slides(source *srcs, int ns)
{
    slide_row *r;
    size_t n;
    if (load_slides(srcs, ns, &r, &n)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (r[i].src > 0 && r[i].status && (!strcmp(r[i].status, "tiling") || !strcmp(r[i].status, "pending")))
            rc = mp_err_set("%s: slide %s is '%s': the run that wrote it did not finish; rerun it to the end, then merge",
                            srcs[r[i].src].path, r[i].path, r[i].status);
    if (!rc) rc = check_params(srcs, r, n);
    if (!rc) {
        qsort(r, n, sizeof *r, cmp_fp);
        for (size_t i = 1; i < n && !rc; i++)
            if (r[i].src != r[i - 1].src && !strcmp(r[i].fp, r[i - 1].fp))
                rc = mp_err_set("%s: slide %s (fingerprint %s) is also in %s as %s; a slide may be in only one of the "
                                "merged datasets",
                                srcs[r[i].src].path, r[i].path, r[i].fp, srcs[r[i - 1].src].path, r[i - 1].path);
    }
    if (!rc) {
        qsort(r, n, sizeof *r, cmp_path);
        for (size_t i = 1; i < n && !rc; i++)
            if (r[i].src != r[i - 1].src && !strcmp(r[i].path, r[i - 1].path))
                rc = mp_err_set("%s: slide %s is also in %s with other content (fingerprints %s and %s); a slide may be "
                                "in only one of the merged datasets",
                                srcs[r[i].src].path, r[i].path, srcs[r[i - 1].src].path, r[i].fp, r[i - 1].fp);
    }
    slide_rows_free(r, n);
    return rc;
}

/* Predictions whose slide is in no dataset (slide_id NULL) are keyed by the slide's content;
 * the same (slide, model) pair from two inputs would collide. */
static int check_predictions(source *srcs, int ns)
{
    size_t cap = 64, n = 0;
    slide_row *r = mp_xmalloc(cap * sizeof *r); /* fp = slide fingerprint, path = model fingerprint */
    int rc = 0;
    for (int s = 0; s < ns && !rc; s++) {
        sqlite3_stmt *st = db_prepare(srcs[s].db, "SELECT DISTINCT slide_fingerprint, model_fingerprint, slide_path "
                                                  "FROM predictions");
        if (!st) {
            rc = -1;
            break;
        }
        int k;
        while ((k = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) r = mp_xrealloc(r, (cap *= 2) * sizeof *r);
            r[n++] = (slide_row){col_text(st, 0), col_text(st, 1), col_text(st, 2), NULL, NULL, s};
        }
        sqlite3_finalize(st);
        if (k != SQLITE_DONE) rc = db_fail(srcs[s].db, "reading predictions");
    }
    for (size_t i = 0; i < n; i++) {
        if (!r[i].fp) r[i].fp = mp_xstrdup("");
        if (!r[i].path) r[i].path = mp_xstrdup("");
        if (!r[i].name) r[i].name = mp_xstrdup("");
        /* one sort key: slide then model fingerprint */
        char *key = mp_xmalloc(strlen(r[i].fp) + strlen(r[i].path) + 2);
        sprintf(key, "%s %s", r[i].fp, r[i].path);
        free(r[i].fp);
        r[i].fp = key;
    }
    if (!rc) {
        qsort(r, n, sizeof *r, cmp_fp);
        for (size_t i = 1; i < n && !rc; i++)
            if (r[i].src != r[i - 1].src && !strcmp(r[i].fp, r[i - 1].fp))
                rc = mp_err_set("%s: predictions for slide %s by model %s are also in %s; merge each slide's "
                                "predictions once",
                                srcs[r[i].src].path, r[i].name, strchr(r[i].fp, ' ') + 1, srcs[r[i - 1].src].path);
    }
    slide_rows_free(r, n);
    return rc;
}

static int known_table(const char *name)
{
    for (int i = 0; db_merge_tables[i]; i++)
        if (!strcmp(name, db_merge_tables[i])) return 1;
    return 0;
}

/* A table merge does not know (added by a later magpie) is refused when it holds rows: copying
 * everything else would lose them silently. */
static int check_tables(source *s)
{
    sqlite3_stmt *st = db_prepare(s->db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
    if (!st) return -1;
    int rc = 0, k;
    while (!rc && (k = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (known_table(name)) continue;
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", name);
        int64_t rows = db_query_int(s->db, sql);
        if (rows < 0) rc = -1;
        else if (rows > 0)
            rc = mp_err_set("%s: table '%s' holds %lld rows and this magpie does not know how to merge it", s->path, name,
                            (long long)rows);
    }
    if (!rc && k != SQLITE_DONE && k != SQLITE_ROW) rc = db_fail(s->db, "listing tables");
    sqlite3_finalize(st);
    return rc;
}

/* ---- copying, inside the target's write transaction ---- */

static int copy_meta(mp_db *t, source *s)
{
    sqlite3_stmt *sel = db_prepare(s->db, "SELECT key, value FROM meta ORDER BY key");
    sqlite3_stmt *get = db_prepare(t, "SELECT value FROM meta WHERE key = ?");
    sqlite3_stmt *ins = db_prepare(t, "INSERT INTO meta(key, value) VALUES (?, ?)");
    int rc = sel && get && ins ? 0 : -1, k;
    while (!rc && (k = sqlite3_step(sel)) == SQLITE_ROW) {
        /* which slice of a job array a shard was: true of the shard, not of the merge */
        const char *key = (const char *)sqlite3_column_text(sel, 0);
        if (key && !strcmp(key, "shard")) continue;
        sqlite3_reset(get);
        sqlite3_bind_value(get, 1, sqlite3_column_value(sel, 0));
        int g = sqlite3_step(get);
        if (g == SQLITE_ROW) {
            const char *a = (const char *)sqlite3_column_text(get, 0), *b = (const char *)sqlite3_column_text(sel, 1);
            if ((a || b) && (!a || !b || strcmp(a, b)))
                mp_warn("%s: meta '%s' is '%s' there, '%s' in %s: kept '%s'", s->path, sqlite3_column_text(sel, 0),
                        b ? b : "", a ? a : "", db_path(t), a ? a : "");
        } else if (g == SQLITE_DONE) {
            sqlite3_reset(ins);
            sqlite3_bind_value(ins, 1, sqlite3_column_value(sel, 0));
            sqlite3_bind_value(ins, 2, sqlite3_column_value(sel, 1));
            if (sqlite3_step(ins) != SQLITE_DONE) rc = db_fail(t, "merge meta");
        } else {
            rc = db_fail(t, "merge meta");
        }
    }
    if (!rc && k != SQLITE_DONE) rc = db_fail(s->db, "reading meta");
    sqlite3_finalize(sel);
    sqlite3_finalize(get);
    sqlite3_finalize(ins);
    return rc;
}

/* Classes by name: a name the target has keeps the target's id, a new one gets the next id. */
static int copy_classes(mp_db *t, source *s, shift *sh, int64_t *n_new)
{
    sqlite3_stmt *sel = db_prepare(s->db, "SELECT id, name FROM classes ORDER BY id");
    sqlite3_stmt *get = db_prepare(t, "SELECT id FROM classes WHERE name = ?");
    sqlite3_stmt *ins = db_prepare(t, "INSERT INTO classes(id, name) SELECT coalesce(max(id) + 1, 0), ?1 FROM classes");
    int rc = sel && get && ins ? 0 : -1, k;
    int cap = 16;
    sh->class_from = mp_xmalloc(cap * sizeof(int64_t));
    sh->class_to = mp_xmalloc(cap * sizeof(int64_t));
    while (!rc && (k = sqlite3_step(sel)) == SQLITE_ROW) {
        sqlite3_reset(get);
        sqlite3_bind_value(get, 1, sqlite3_column_value(sel, 1));
        int g = sqlite3_step(get);
        int64_t to = -1;
        if (g == SQLITE_ROW) {
            to = sqlite3_column_int64(get, 0);
        } else if (g == SQLITE_DONE) {
            sqlite3_reset(ins);
            sqlite3_bind_value(ins, 1, sqlite3_column_value(sel, 1));
            if (sqlite3_step(ins) != SQLITE_DONE) rc = db_fail(t, "merge classes");
            to = sqlite3_last_insert_rowid(db_sqlite(t));
            (*n_new)++;
        } else {
            rc = db_fail(t, "merge classes");
        }
        if (sh->nclass == cap) {
            cap *= 2;
            sh->class_from = mp_xrealloc(sh->class_from, cap * sizeof(int64_t));
            sh->class_to = mp_xrealloc(sh->class_to, cap * sizeof(int64_t));
        }
        sh->class_from[sh->nclass] = sqlite3_column_int64(sel, 0);
        sh->class_to[sh->nclass++] = to;
    }
    if (!rc && k != SQLITE_DONE) rc = db_fail(s->db, "reading classes");
    sqlite3_finalize(sel);
    sqlite3_finalize(get);
    sqlite3_finalize(ins);
    return rc;
}

/* The column names of a table (malloc'd array of malloc'd names). */
static int table_columns(mp_db *db, const char *table, char ***cols, int *n)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s') ORDER BY cid", table);
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    int cap = 8, k;
    *n = 0;
    *cols = mp_xmalloc(cap * sizeof **cols);
    while ((k = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) *cols = mp_xrealloc(*cols, (cap *= 2) * sizeof **cols);
        (*cols)[(*n)++] = col_text(st, 0);
    }
    sqlite3_finalize(st);
    return k == SQLITE_DONE ? 0 : db_fail(db, "table columns");
}

static void free_cols(char **c, int n)
{
    for (int i = 0; i < n; i++) free(c[i]);
    free(c);
}

static int copy_table(mp_db *t, source *s, const table_spec *spec, const shift *sh, int64_t *rows)
{
    char **cols = NULL, **tcols = NULL;
    int nc = 0, ntc = 0, rc = 0;
    sqlite3_stmt *sel = NULL, *ins = NULL;
    if (table_columns(s->db, spec->table, &cols, &nc) || table_columns(t, spec->table, &tcols, &ntc)) {
        rc = -1;
        goto out;
    }
    if (nc == 0) goto out; /* an older dataset without this table */
    int rule[64];
    if (nc > 64) {
        rc = mp_err_set("%s: table %s has %d columns", s->path, spec->table, nc);
        goto out;
    }
    size_t cap = 256;
    for (int i = 0; i < nc; i++) cap += 2 * strlen(cols[i]) + 8;
    char *sel_sql = mp_xmalloc(cap), *ins_sql = mp_xmalloc(cap);
    size_t a = (size_t)snprintf(sel_sql, cap, "SELECT "), b = (size_t)snprintf(ins_sql, cap, "INSERT INTO %s(", spec->table);
    for (int i = 0; i < nc; i++) {
        int found = 0;
        for (int j = 0; j < ntc; j++) found |= !strcmp(cols[i], tcols[j]);
        if (!found) {
            rc = mp_err_set("%s: column %s.%s is not in %s", s->path, spec->table, cols[i], db_path(t));
            break;
        }
        rule[i] = R_KEEP;
        for (int r = 0; r < 4 && spec->rules[r].col; r++)
            if (!strcmp(spec->rules[r].col, cols[i])) rule[i] = spec->rules[r].rule;
        a += (size_t)snprintf(sel_sql + a, cap - a, "%s\"%s\"", i ? ", " : "", cols[i]);
        b += (size_t)snprintf(ins_sql + b, cap - b, "%s\"%s\"", i ? ", " : "", cols[i]);
    }
    snprintf(sel_sql + a, cap - a, " FROM %s ORDER BY %s", spec->table, spec->order);
    b += (size_t)snprintf(ins_sql + b, cap - b, ") VALUES (");
    for (int i = 0; i < nc; i++) b += (size_t)snprintf(ins_sql + b, cap - b, "%s?", i ? ", " : "");
    snprintf(ins_sql + b, cap - b, ")");
    if (!rc) {
        sel = db_prepare(s->db, sel_sql);
        ins = sel ? db_prepare(t, ins_sql) : NULL;
        if (!ins) rc = -1;
    }
    free(sel_sql);
    free(ins_sql);
    int k = SQLITE_DONE;
    while (!rc && (k = sqlite3_step(sel)) == SQLITE_ROW) {
        sqlite3_reset(ins);
        for (int i = 0; i < nc && !rc; i++) {
            sqlite3_value *v = sqlite3_column_value(sel, i);
            if (rule[i] == R_IMPORT_SRC) {
                const char *t = (const char *)sqlite3_column_text(sel, i);
                long long id;
                char tail;
                if (t && sscanf(t, "import:%lld%c", &id, &tail) == 1) {
                    char buf[64];
                    snprintf(buf, sizeof buf, "import:%lld", id + (long long)sh->import);
                    sqlite3_bind_text(ins, i + 1, buf, -1, SQLITE_TRANSIENT);
                } else {
                    sqlite3_bind_value(ins, i + 1, v);
                }
                continue;
            }
            if (rule[i] == R_KEEP || sqlite3_column_type(sel, i) == SQLITE_NULL) {
                sqlite3_bind_value(ins, i + 1, v);
                continue;
            }
            int64_t x = sqlite3_column_int64(sel, i);
            if (rule[i] == R_SLIDE) x += sh->slide;
            else if (rule[i] == R_PATCH) x += sh->patch;
            else if (rule[i] == R_PRED) x += sh->pred;
            else if (rule[i] == R_IMPORT) x += sh->import;
            else if (rule[i] == R_REGION) x += sh->region;
            else {
                int c = 0;
                while (c < sh->nclass && sh->class_from[c] != x) c++;
                if (c == sh->nclass)
                    rc = mp_err_set("%s: %s refers to class id %lld, which its classes table does not have", s->path,
                                    spec->table, (long long)x);
                else x = sh->class_to[c];
            }
            sqlite3_bind_int64(ins, i + 1, x);
        }
        if (!rc && sqlite3_step(ins) != SQLITE_DONE) {
            char what[96];
            snprintf(what, sizeof what, "copying %s from %s", spec->table, s->path);
            rc = db_fail(t, what);
        }
        if (!rc) (*rows)++;
    }
    if (!rc && k != SQLITE_DONE) rc = db_fail(s->db, "reading");
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    free_cols(cols, nc);
    free_cols(tcols, ntc);
    return rc;
}

static int copy_shard(mp_db *t, source *s, db_merge_counts *c)
{
    shift sh = {0};
    sh.slide = db_query_int(t, "SELECT coalesce(max(id), 0) FROM slides");
    sh.patch = db_query_int(t, "SELECT coalesce(max(id), 0) FROM patches");
    sh.pred = db_query_int(t, "SELECT coalesce(max(id), 0) FROM predictions");
    sh.import = db_query_int(t, "SELECT coalesce(max(id), 0) FROM label_imports");
    sh.region = db_query_int(t, "SELECT coalesce(max(id), 0) FROM region_annotations");
    if (sh.slide < 0 || sh.patch < 0 || sh.pred < 0 || sh.import < 0 || sh.region < 0) return -1;
    int rc = copy_meta(t, s) || copy_classes(t, s, &sh, &c->classes_new) ? -1 : 0;
    int64_t other = 0;
    int64_t *counts[] = {&c->slides, &c->patches, &c->images, &c->tile_errors, &other, &other, &other,
                         &c->patch_labels, &c->splits, &other, &c->predictions};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0] && !rc; i++) rc = copy_table(t, s, &specs[i], &sh, counts[i]);
    free(sh.class_from);
    free(sh.class_to);
    return rc;
}

/* ---- the whole merge ---- */

static int same_file(const struct stat *a, const struct stat *b) { return a->st_dev == b->st_dev && a->st_ino == b->st_ino; }

static int check_args(const char *out_path, char *const *shards, int n)
{
    struct stat so, *ss = mp_xcalloc((size_t)n, sizeof *ss);
    int have_out = stat(out_path, &so) == 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (stat(shards[i], &ss[i])) {
            rc = mp_err_set("%s: %s", shards[i], errno == ENOENT ? "no such dataset" : strerror(errno));
            break;
        }
        if (!S_ISREG(ss[i].st_mode)) rc = mp_err_set("%s: not a regular file", shards[i]);
        else if (have_out && same_file(&so, &ss[i])) rc = mp_err_set("%s: is the merge target %s itself", shards[i], out_path);
        for (int j = 0; j < i && !rc; j++)
            if (same_file(&ss[i], &ss[j])) rc = mp_err_set("%s: given twice (also as %s)", shards[i], shards[j]);
        if (!rc) {
            int held = db_tile_lock_held(shards[i]);
            if (held < 0) rc = -1;
            else if (held) rc = mp_err_set("%s: a magpie tile or run is writing to it now; merge when it has finished", shards[i]);
        }
    }
    free(ss);
    return rc;
}

int db_merge(const char *out_path, char *const *shards, int n, db_merge_progress_fn progress, void *ctx,
             db_merge_counts *total)
{
    if (n < 1) return mp_err_set("%s: nothing to merge", out_path);
    if (check_args(out_path, shards, n)) return -1;
    int lock = db_tile_lock_new(out_path, 1.0, 0);
    if (lock < 0) return -1;

    /* A new target is built under a temporary name (ours alone while we hold the lock) and
     * renamed into place only once complete. */
    int fresh = !mp_file_exists(out_path);
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.merge-tmp", out_path) >= (int)sizeof tmp) {
        db_tile_unlock(lock);
        return mp_err_set("%s: path too long", out_path);
    }
    if (fresh) unlink_db_files(tmp); /* left by a merge that was killed */

    source *srcs = mp_xcalloc((size_t)n + 1, sizeof *srcs);
    int rc = 0, in_tx = 0;
    srcs[0].path = out_path;
    srcs[0].db = db_open(fresh ? tmp : out_path, DB_OPEN_CREATE);
    if (!srcs[0].db) rc = -1;
    mp_db *t = srcs[0].db;
    for (int i = 0; i < n && !rc; i++) {
        srcs[i + 1].path = shards[i];
        srcs[i + 1].db = db_open(shards[i], DB_OPEN_READONLY);
        /* one read snapshot per shard from the checks to the last copied row */
        if (!srcs[i + 1].db || db_exec(srcs[i + 1].db, "BEGIN") ||
            db_query_int(srcs[i + 1].db, "SELECT count(*) FROM slides") < 0)
            rc = -1;
    }
    /* the write transaction before the checks, so the target cannot change under them */
    if (!rc && !(rc = db_begin(t))) in_tx = 1;
    for (int i = 1; i <= n && !rc; i++) rc = check_tables(&srcs[i]);
    if (!rc) rc = check_slides(srcs, n + 1);
    if (!rc) rc = check_predictions(srcs, n + 1);

    db_merge_counts sum = {0};
    for (int i = 1; i <= n && !rc; i++) {
        db_merge_counts c = {0};
        rc = copy_shard(t, &srcs[i], &c);
        if (!rc) {
            sum.slides += c.slides;
            sum.patches += c.patches;
            sum.images += c.images;
            sum.tile_errors += c.tile_errors;
            sum.patch_labels += c.patch_labels;
            sum.splits += c.splits;
            sum.predictions += c.predictions;
            sum.classes_new += c.classes_new;
            if (progress) progress(ctx, i - 1, srcs[i].path, &c);
        }
    }
    /* predictions made before their slide was in the same dataset now find it, as infer would
     * have linked them had the slide been there */
    if (!rc)
        rc = db_exec(t, "UPDATE predictions SET slide_id = (SELECT min(s.id) FROM slides s WHERE s.fingerprint = "
                        "predictions.slide_fingerprint) WHERE slide_id IS NULL AND slide_fingerprint IN "
                        "(SELECT fingerprint FROM slides)");
    /* one CSV file's slide labels are one import: the shards of a magpie run each recorded the
     * manifest (same file, same rows), and the merged dataset keeps the first of them */
    if (!rc)
        rc = db_exec(t, "UPDATE slide_labels SET import_id = (SELECT min(b.id) FROM label_imports a JOIN label_imports b "
                        "ON b.kind = 'csv' AND b.slide_id IS NULL AND b.source = a.source AND b.rows = a.rows "
                        "WHERE a.id = slide_labels.import_id) "
                        "WHERE import_id IN (SELECT id FROM label_imports WHERE kind = 'csv' AND slide_id IS NULL); "
                        "DELETE FROM label_imports WHERE kind = 'csv' AND slide_id IS NULL AND "
                        "id NOT IN (SELECT import_id FROM slide_labels)");
    if (!rc) {
        rc = db_commit(t);
        if (!rc) in_tx = 0;
    }
    if (rc && in_tx) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_exec(t, "ROLLBACK");
        mp_err_set("%s", keep);
    }
    for (int i = 1; i <= n; i++) db_close(srcs[i].db);
    free(srcs);
    /* closing the last connection checkpoints the WAL into the file and removes it */
    db_close(t);
    if (fresh) {
        if (!rc && rename(tmp, out_path)) rc = mp_err_set("%s: cannot rename %s into place: %s", out_path, tmp, strerror(errno));
        if (!rc) rc = fsync_dir_of(out_path);
        else unlink_db_files(tmp);
    }
    db_tile_unlock(lock);
    if (!rc && total) *total = sum;
    return rc;
}
