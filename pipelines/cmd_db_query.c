/* pipelines/cmd_db_query.c — `magpie db DB query [WHERE...] [--json|--count] [--limit N]`: the
 * patches a filter expression (db/query.h) selects, as a table, JSON lines or a count. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/query.h"
#include "pipelines/cmds.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie db DB query [WHERE] [--json | --count] [--limit N]\n\n"
            "Prints the patches WHERE selects (all without one), ordered by id. WHERE is one argument\n"
            "(quote it) or several, joined with spaces, e.g.\n"
            "  magpie db d.db query \"label = tumor and tissue > 0.5 and split in (train, val)\"\n\n"
            "fields   tissue blur pen brightness confidence (numbers); label split slide patient\n"
            "         prediction (text, compared case-insensitively); mag (the patch has an image at a\n"
            "         magnification that compares so). label is the patch's region label, else its\n"
            "         slide's; prediction/confidence come from `magpie infer --db` (the prediction whose\n"
            "         square holds the patch's centre)\n"
            "compare  = != < <= > >=   FIELD in (A, B)   FIELD not in (...)   FIELD like 'TCGA-%%'\n"
            "         FIELD is null   FIELD is not null\n"
            "combine  and, or, not, parentheses\n"
            "values   bare words or numbers, or 'quoted' / \"quoted\" text (a doubled quote inside stands\n"
            "         for itself); values are bound as SQL parameters, never pasted into SQL\n\n"
            "  --json     one JSON object per patch per line\n"
            "  --count    only the number of matching patches\n"
            "  --limit N  at most N rows\n");
}

/* Options are recognised anywhere; every other argument is part of WHERE. Fills *where (malloc'd).
 * Returns -1 after printing a usage error, 1 after --help. */
int cmd_db_where_args(const char *who, int argc, char **argv, int (*opt)(void *, int, char **, int *), void *ctx,
                      char **where)
{
    size_t cap = 1, len = 0;
    for (int i = 1; i < argc; i++) cap += strlen(argv[i]) + 1;
    char *w = mp_xmalloc(cap);
    w[0] = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = opt(ctx, argc, argv, &i);
        if (r < 0) {
            free(w);
            return -1;
        }
        if (r > 0) continue;
        if (a[0] == '-' && (a[1] == '-' || (a[1] >= 'a' && a[1] <= 'z') || (a[1] >= 'A' && a[1] <= 'Z'))) {
            mp_error("db %s: unknown option '%s' (see magpie db DB %s --help)", who, a, who);
            free(w);
            return -1;
        }
        len += (size_t)snprintf(w + len, cap - len, "%s%s", len ? " " : "", a);
    }
    *where = w;
    return 0;
}

typedef struct {
    int json, count, help;
    long limit;
} query_opts;

static int query_opt(void *ctx, int argc, char **argv, int *i)
{
    query_opts *o = ctx;
    const char *a = argv[*i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return o->help = 1;
    if (!strcmp(a, "--json")) return o->json = 1;
    if (!strcmp(a, "--count")) return o->count = 1;
    if (!strcmp(a, "--limit")) {
        if (*i + 1 >= argc || mp_parse_long(argv[*i + 1], &o->limit) < 0 || o->limit < 1) {
            mp_error("db query: --limit wants a positive whole number, got '%s'", *i + 1 < argc ? argv[*i + 1] : "(missing)");
            return -1;
        }
        ++*i;
        return 1;
    }
    return 0;
}

/* The row as one JSON object (prediction and confidence only when the expression uses them). */
static void print_json(const db_patch_row *r, int pred)
{
    json_t *obj = db_patch_row_json(r, pred ? DB_ROW_JSON_PREDICTION : 0);
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    printf("%s\n", s);
    free(s);
    json_decref(obj);
}

static const char *dash(const char *s) { return s ? s : "-"; }

static void print_line(const db_patch_row *r, int pred)
{
    const int has[4] = {1, r->has_blur, r->has_pen, r->has_brightness};
    const double v[4] = {r->tissue, r->blur, r->pen, r->brightness};
    char num[4][32];
    for (int k = 0; k < 4; k++) {
        if (!has[k]) snprintf(num[k], 32, "-");
        else snprintf(num[k], 32, k == 1 ? "%.1f" : "%.3f", v[k]);
    }
    char esc[3][160];
    printf("%8lld  %-24s %-12s %8lld %8lld %7.1f %6s %9s %6s %6s  %-14s %-9s %s", (long long)r->id,
           mp_escape_ctrl(dash(r->slide), esc[0], 160), mp_escape_ctrl(dash(r->patient), esc[1], 160), (long long)r->x0,
           (long long)r->y0, r->size0, num[0], num[1], num[2], num[3], mp_escape_ctrl(dash(r->label), esc[2], 160),
           dash(r->split), dash(r->mags));
    if (pred) {
        printf("  %-14s ", dash(r->prediction));
        if (!r->has_confidence) printf("-");
        else printf("%.3f", r->confidence);
    }
    printf("\n");
}

int cmd_db_query(const char *db_path, int argc, char **argv)
{
    query_opts o = {0};
    char *where = NULL;
    if (cmd_db_where_args("query", argc, argv, query_opt, &o, &where)) return MP_EXIT_USAGE;
    if (o.help) {
        usage(stdout);
        free(where);
        return MP_EXIT_OK;
    }
    if (o.json && o.count) {
        mp_error("db query: --json and --count exclude each other");
        free(where);
        return MP_EXIT_USAGE;
    }
    db_query *q = db_query_parse(where);
    if (!q) {
        mp_error("db query: %s", mp_err());
        free(where);
        return MP_EXIT_USAGE;
    }
    free(where);
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        db_query_free(q);
        return MP_EXIT_FAIL;
    }
    if (db_query_check(db, q)) {
        mp_error("db query: %s", mp_err());
        db_query_free(q);
        db_close(db);
        return MP_EXIT_USAGE;
    }
    int ok = 1;
    if (o.count) {
        int64_t n = db_query_count(db, q, 0);
        if (n >= 0) printf("%lld\n", (long long)n);
        ok = n >= 0;
    } else {
        db_query_rows *rows = db_query_run(db, q, 0, o.limit);
        int pred = db_query_uses_predictions(q);
        if (rows && !o.json) {
            printf("%8s  %-24s %-12s %8s %8s %7s %6s %9s %6s %6s  %-14s %-9s %s", "id", "slide", "patient", "x0", "y0",
                   "size0", "tissue", "blur", "pen", "bright", "label", "split", "mags");
            if (pred) printf("  %-14s %s", "prediction", "conf");
            printf("\n");
        }
        db_patch_row r;
        int rc = rows ? 1 : -1;
        while (rows && (rc = db_query_next(rows, &r)) == 1) {
            if (o.json) print_json(&r, pred);
            else print_line(&r, pred);
        }
        ok = rc == 0;
        db_query_rows_free(rows);
    }
    db_query_free(q);
    if (!ok) mp_error("%s", mp_err());
    db_close(db);
    return ok ? MP_EXIT_OK : MP_EXIT_FAIL;
}
