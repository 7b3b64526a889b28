/* db/query.c — the `db query` filter language (grammar in db/query.h): a hand-written tokenizer
 * and recursive-descent parser that emit a SQL condition. Field names map through a fixed table
 * to SQL expressions written here; every user value becomes a numbered bound parameter, so no
 * quote, semicolon or comment in the input can reach the SQL text. */
#include "db/query.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/util.h"
#include "db/sql.h"

#define Q_MAX_LEN 65536  /* expression bytes */
#define Q_MAX_PARAMS 900 /* under SQLite's oldest default variable limit (999) */
#define Q_MAX_DEPTH 64   /* nested parentheses and nots */

/* The effective label of a patch: its region label, else its slide's. */
#define Q_LABEL_SQL "coalesce(c.name, s.label)"

typedef enum { F_NUM, F_TEXT, F_MAG } field_kind;

static const struct {
    const char *name;
    field_kind kind;
    const char *sql;
    int pred; /* needs the predictions join */
} fields[] = {
    {"tissue", F_NUM, "p.tissue", 0},
    {"blur", F_NUM, "p.blur", 0},
    {"pen", F_NUM, "p.pen", 0},
    {"brightness", F_NUM, "p.brightness", 0},
    {"mag", F_MAG, NULL, 0},
    {"label", F_TEXT, Q_LABEL_SQL, 0},
    {"split", F_TEXT, "sp.split", 0},
    {"slide", F_TEXT, "s.name", 0},
    {"patient", F_TEXT, "s.patient", 0},
    {"prediction", F_TEXT, "pr.class_name", 1},
    {"confidence", F_NUM, "pr.confidence", 1},
};
#define NFIELDS (int)(sizeof fields / sizeof fields[0])
#define FIELD_LIST "tissue, blur, pen, brightness, mag, label, split, slide, patient, prediction, confidence"

typedef enum { T_END, T_WORD, T_STR, T_LP, T_RP, T_COMMA, T_OP } tkind;

typedef struct {
    tkind kind;
    int col;    /* 1-based column of its first byte */
    char *text; /* word or unquoted string; operator spelling */
} token;

typedef struct {
    char *text;
    int is_num;
    double num;
    int col;
    int is_split; /* a value compared with `split`: checked against the known splits */
} param;

struct db_query {
    char *sql;
    size_t len, cap;
    param *params;
    int nparams;
    int uses_pred;
};

typedef struct {
    token *t;
    int n, pos, depth;
    db_query *q;
} parser;

static void emit(db_query *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(db_query *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (q->len + (size_t)n + 1 > q->cap) {
        q->cap = (q->len + (size_t)n + 1) * 2;
        q->sql = mp_xrealloc(q->sql, q->cap);
    }
    va_start(ap, fmt);
    vsnprintf(q->sql + q->len, q->cap - q->len, fmt, ap);
    va_end(ap);
    q->len += (size_t)n;
}

static int word_char(unsigned char c)
{
    return isalnum(c) || c >= 0x80 || strchr("_-.+/:@%*", c) != NULL;
}

/* Split expr into tokens; -1 + mp_err on a character that belongs to none. */
static int tokenize(const char *s, token **out, int *n)
{
    int cap = 16, k = 0;
    token *t = mp_xmalloc(sizeof(token) * cap);
    size_t i = 0;
    for (;;) {
        while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') i++;
        if (k + 1 >= cap) t = mp_xrealloc(t, sizeof(token) * (cap *= 2));
        token *c = &t[k];
        c->col = (int)i + 1;
        c->text = NULL;
        unsigned char ch = (unsigned char)s[i];
        if (!ch) {
            c->kind = T_END;
            k++;
            break;
        }
        if (ch == '(' || ch == ')' || ch == ',') {
            c->kind = ch == '(' ? T_LP : ch == ')' ? T_RP : T_COMMA;
            i++;
        } else if (ch == '=' || ch == '!' || ch == '<' || ch == '>') {
            char op[3] = {(char)ch, 0, 0};
            if ((ch == '=' || ch == '!' || ch == '<' || ch == '>') && s[i + 1] == '=') op[1] = '=';
            else if (ch == '<' && s[i + 1] == '>') op[1] = '>';
            if (!strcmp(op, "!")) {
                for (int j = 0; j < k; j++) free(t[j].text);
                free(t);
                return mp_err_set("column %d: '!' must be followed by '=' (use 'not' to negate)", (int)i + 1);
            }
            c->kind = T_OP;
            c->text = mp_xstrdup(op);
            i += strlen(op);
        } else if (ch == '\'' || ch == '"') {
            /* quoted text; the quote doubled stands for itself */
            size_t cap2 = 16, m = 0;
            char *v = mp_xmalloc(cap2);
            size_t j = i + 1;
            for (;;) {
                if (!s[j]) {
                    free(v);
                    for (int q = 0; q < k; q++) free(t[q].text);
                    free(t);
                    return mp_err_set("column %d: unterminated %s-quoted text", (int)i + 1,
                                      ch == '\'' ? "single" : "double");
                }
                if ((unsigned char)s[j] == ch) {
                    if ((unsigned char)s[j + 1] != ch) break;
                    j++;
                }
                if (m + 2 > cap2) v = mp_xrealloc(v, cap2 *= 2);
                v[m++] = s[j++];
            }
            v[m] = 0;
            c->kind = T_STR;
            c->text = v;
            i = j + 1;
        } else if (word_char(ch)) {
            size_t j = i;
            while (s[j] && word_char((unsigned char)s[j])) j++;
            c->kind = T_WORD;
            c->text = mp_xmalloc(j - i + 1);
            memcpy(c->text, s + i, j - i);
            c->text[j - i] = 0;
            i = j;
        } else {
            char shown[16];
            if (ch < 0x20 || ch == 0x7f) snprintf(shown, sizeof shown, "\\x%02x", ch);
            else snprintf(shown, sizeof shown, "%c", ch);
            for (int j = 0; j < k; j++) free(t[j].text);
            free(t);
            return mp_err_set("column %d: unexpected character '%s'", (int)i + 1, shown);
        }
        k++;
    }
    *out = t;
    *n = k;
    return 0;
}

static token *peek(parser *P) { return &P->t[P->pos]; }

static int is_kw(const token *t, const char *kw) { return t->kind == T_WORD && !strcasecmp(t->text, kw); }

static const char *describe(const token *t, char *buf, size_t cap)
{
    switch (t->kind) {
    case T_END: return "the end";
    case T_LP: return "'('";
    case T_RP: return "')'";
    case T_COMMA: return "','";
    case T_STR: snprintf(buf, cap, "'%.40s'", t->text); return buf;
    default: snprintf(buf, cap, "'%.40s'", t->text); return buf;
    }
}

static int fail_at(const token *t, const char *expected)
{
    char b[64];
    return mp_err_set("column %d: expected %s, found %s", t->col, expected, describe(t, b, sizeof b));
}

static int keyword(const token *t)
{
    static const char *kws[] = {"and", "or", "not", "in", "is", "null", "like"};
    for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++)
        if (is_kw(t, kws[i])) return 1;
    return 0;
}

/* One value token -> a bound parameter; emits "?N". */
static int value(parser *P, int f, int *idx)
{
    token *t = peek(P);
    if (t->kind != T_WORD && t->kind != T_STR) return fail_at(t, "a value");
    if (t->kind == T_WORD && keyword(t)) return fail_at(t, "a value");
    db_query *q = P->q;
    if (q->nparams >= Q_MAX_PARAMS) return mp_err_set("column %d: more than %d values", t->col, Q_MAX_PARAMS);
    param *p = &q->params[q->nparams];
    memset(p, 0, sizeof *p);
    p->col = t->col;
    if (fields[f].kind != F_TEXT) {
        if (mp_parse_double(t->text, &p->num) < 0 || !isfinite(p->num))
            return mp_err_set("column %d: %s wants a number, got '%.40s'", t->col, fields[f].name, t->text);
        p->is_num = 1;
    }
    p->text = mp_xstrdup(t->text);
    p->is_split = !strcmp(fields[f].name, "split");
    *idx = ++q->nparams;
    P->pos++;
    return 0;
}

/* ( value, value, ... ) -> emits "?a, ?b, ..." */
static int value_list(parser *P, int f)
{
    if (peek(P)->kind != T_LP) return fail_at(peek(P), "'(' after 'in'");
    P->pos++;
    for (int first = 1;; first = 0) {
        int idx;
        if (value(P, f, &idx)) return -1;
        emit(P->q, "%s?%d", first ? "" : ", ", idx);
        token *t = peek(P);
        if (t->kind == T_RP) break;
        if (t->kind != T_COMMA) return fail_at(t, "',' or ')'");
        P->pos++;
    }
    P->pos++;
    return 0;
}

static const char *sql_op(const char *op)
{
    if (!strcmp(op, "==")) return "=";
    if (!strcmp(op, "<>")) return "!=";
    return op;
}

/* FIELD ... ; every comparison is emitted as a 0/1 value, so `not` is plain negation even where a
 * field is NULL (an unlabelled patch is "not label = tumor"). */
static int comparison(parser *P)
{
    token *ft = peek(P);
    if (ft->kind != T_WORD || keyword(ft)) return fail_at(ft, "a field name, 'not' or '('");
    int f = -1;
    for (int i = 0; i < NFIELDS; i++)
        if (!strcasecmp(ft->text, fields[i].name)) f = i;
    if (f < 0) return mp_err_set("column %d: unknown field '%.40s' (fields: " FIELD_LIST ")", ft->col, ft->text);
    P->pos++;
    db_query *q = P->q;
    if (fields[f].pred) q->uses_pred = 1;
    field_kind kind = fields[f].kind;
    const char *col = fields[f].sql;
    const char *coll = kind == F_TEXT ? " COLLATE NOCASE" : "";
    token *t = peek(P);
    int negate = 0;
    if (is_kw(t, "is")) {
        P->pos++;
        if (is_kw(peek(P), "not")) negate = 1, P->pos++;
        if (!is_kw(peek(P), "null")) return fail_at(peek(P), "'null'");
        P->pos++;
        if (kind == F_MAG) emit(q, "(%sEXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id))", negate ? "" : "NOT ");
        else emit(q, "(%s IS %sNULL)", col, negate ? "NOT " : "");
        return 0;
    }
    if (is_kw(t, "not")) {
        negate = 1;
        P->pos++;
        t = peek(P);
        if (!is_kw(t, "in") && !is_kw(t, "like")) return fail_at(t, "'in' or 'like' after 'not'");
    }
    if (is_kw(t, "in")) {
        P->pos++;
        if (kind == F_MAG) {
            emit(q, "(%sEXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id AND (", negate ? "NOT " : "");
            /* each listed magnification matched with the stored REAL's tolerance */
            if (peek(P)->kind != T_LP) return fail_at(peek(P), "'(' after 'in'");
            P->pos++;
            for (int first = 1;; first = 0) {
                int idx;
                if (value(P, f, &idx)) return -1;
                emit(q, "%sabs(i.mag - ?%d) < 1e-3", first ? "" : " OR ", idx);
                token *c = peek(P);
                if (c->kind == T_RP) break;
                if (c->kind != T_COMMA) return fail_at(c, "',' or ')'");
                P->pos++;
            }
            P->pos++;
            emit(q, ")))");
            return 0;
        }
        emit(q, "coalesce(%s%s %sIN (", col, coll, negate ? "NOT " : "");
        if (value_list(P, f)) return -1;
        emit(q, "), %d)", negate);
        return 0;
    }
    if (is_kw(t, "like")) {
        if (kind != F_TEXT)
            return mp_err_set("column %d: 'like' matches text; %s is a number", t->col, fields[f].name);
        P->pos++;
        int idx;
        if (value(P, f, &idx)) return -1;
        emit(q, "coalesce(%s %sLIKE ?%d, %d)", col, negate ? "NOT " : "", idx, negate);
        return 0;
    }
    if (t->kind != T_OP) return fail_at(t, "an operator (= != < <= > >= in like is) after the field");
    const char *op = sql_op(t->text);
    int ordering = op[0] == '<' || op[0] == '>';
    if (kind == F_TEXT && ordering)
        return mp_err_set("column %d: '%s' compares numbers; %s is text (use =, !=, in, like)", t->col, t->text,
                          fields[f].name);
    P->pos++;
    int idx;
    if (value(P, f, &idx)) return -1;
    if (kind == F_MAG) {
        if (!strcmp(op, "=")) emit(q, "(EXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id AND abs(i.mag - ?%d) < 1e-3))", idx);
        else if (!strcmp(op, "!=")) emit(q, "(NOT EXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id AND abs(i.mag - ?%d) < 1e-3))", idx);
        else emit(q, "(EXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id AND i.mag %s ?%d))", op, idx);
    } else if (!strcmp(op, "!=")) {
        emit(q, "(%s%s IS NOT ?%d)", col, coll, idx); /* NULL counts as different */
    } else {
        emit(q, "coalesce(%s%s %s ?%d, 0)", col, coll, op, idx);
    }
    return 0;
}

static int expr_or(parser *P);

static int unary(parser *P)
{
    if (++P->depth > Q_MAX_DEPTH) return mp_err_set("column %d: nested deeper than %d", peek(P)->col, Q_MAX_DEPTH);
    int rc;
    token *t = peek(P);
    if (is_kw(t, "not")) {
        P->pos++;
        emit(P->q, "(NOT ");
        rc = unary(P);
        emit(P->q, ")");
    } else if (t->kind == T_LP) {
        P->pos++;
        emit(P->q, "(");
        rc = expr_or(P);
        if (!rc && peek(P)->kind != T_RP) rc = fail_at(peek(P), "')' or 'and'/'or'");
        if (!rc) P->pos++;
        emit(P->q, ")");
    } else {
        rc = comparison(P);
    }
    P->depth--;
    return rc;
}

static int expr_and(parser *P)
{
    if (unary(P)) return -1;
    while (is_kw(peek(P), "and")) {
        P->pos++;
        emit(P->q, " AND ");
        if (unary(P)) return -1;
    }
    return 0;
}

static int expr_or(parser *P)
{
    if (expr_and(P)) return -1;
    while (is_kw(peek(P), "or")) {
        P->pos++;
        emit(P->q, " OR ");
        if (expr_and(P)) return -1;
    }
    return 0;
}

void db_query_free(db_query *q)
{
    if (!q) return;
    for (int i = 0; i < q->nparams; i++) free(q->params[i].text);
    free(q->params);
    free(q->sql);
    free(q);
}

db_query *db_query_parse(const char *expr)
{
    db_query *q = mp_xcalloc(1, sizeof *q);
    q->params = mp_xcalloc(Q_MAX_PARAMS, sizeof(param));
    if (!expr) expr = "";
    if (strlen(expr) > Q_MAX_LEN) {
        mp_err_set("column %d: expression longer than %d bytes", Q_MAX_LEN + 1, Q_MAX_LEN);
        db_query_free(q);
        return NULL;
    }
    parser P = {.q = q};
    if (tokenize(expr, &P.t, &P.n)) {
        db_query_free(q);
        return NULL;
    }
    int rc = 0;
    if (P.t[0].kind == T_END) emit(q, "1");
    else {
        rc = expr_or(&P);
        if (!rc && peek(&P)->kind != T_END) rc = fail_at(peek(&P), "'and', 'or' or the end");
    }
    for (int i = 0; i < P.n; i++) free(P.t[i].text);
    free(P.t);
    if (rc) {
        db_query_free(q);
        return NULL;
    }
    return q;
}

const char *db_query_where(const db_query *q) { return q->sql; }
int db_query_uses_predictions(const db_query *q) { return q->uses_pred; }

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }
static json_t *real_or_null(int has, double v) { return has ? json_real(v) : json_null(); }

json_t *db_patch_row_json(const db_patch_row *r, int flags)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(r->id));
    json_object_set_new(o, "slide", str_or_null(r->slide));
    json_object_set_new(o, "patient", str_or_null(r->patient));
    json_object_set_new(o, "x0", json_integer(r->x0));
    json_object_set_new(o, "y0", json_integer(r->y0));
    json_object_set_new(o, "size0", json_real(r->size0));
    json_object_set_new(o, "tissue", json_real(r->tissue));
    json_object_set_new(o, "blur", real_or_null(r->has_blur, r->blur));
    json_object_set_new(o, "pen", real_or_null(r->has_pen, r->pen));
    json_object_set_new(o, "brightness", real_or_null(r->has_brightness, r->brightness));
    json_object_set_new(o, "label", str_or_null(r->label));
    json_object_set_new(o, "split", str_or_null(r->split));
    if (flags & DB_ROW_JSON_MAGS_TEXT) {
        json_object_set_new(o, "mags", str_or_null(r->mags));
    } else {
        json_t *mags = json_array();
        for (const char *m = r->mags, *e; m && *m; m = *e ? e + 1 : e) {
            char *end;
            double v = strtod(m, &end);
            if (end == m) break;
            json_array_append_new(mags, json_real(v));
            e = end;
        }
        json_object_set_new(o, "mags", mags);
    }
    if (flags & DB_ROW_JSON_PREDICTION) {
        json_object_set_new(o, "prediction", str_or_null(r->prediction));
        json_object_set_new(o, "confidence", real_or_null(r->has_confidence, r->confidence));
    }
    if (flags & DB_ROW_JSON_SLIDE_ID) json_object_set_new(o, "slide_id", json_integer(r->slide_id));
    return o;
}

void db_query_mags(mp_db *db, char *out, size_t cap)
{
    out[0] = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT DISTINCT mag FROM images ORDER BY mag DESC");
    size_t used = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW && used < cap)
        used += (size_t)snprintf(out + used, cap - used, "%s%gx", used ? ", " : "", sqlite3_column_double(st, 0));
    sqlite3_finalize(st);
    if (!out[0]) snprintf(out, cap, "none");
}

/* Split values must name a split magpie makes or the dataset holds. */
int db_query_check(mp_db *db, const db_query *q)
{
    static const char *known[] = {"train", "val", "test", "unlabeled"};
    for (int i = 0; i < q->nparams; i++) {
        if (!q->params[i].is_split) continue;
        int ok = 0;
        for (int k = 0; k < 4; k++) ok |= !strcasecmp(q->params[i].text, known[k]);
        if (ok) continue;
        sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM splits WHERE split = ?1 COLLATE NOCASE");
        if (!st) return -1;
        sqlite3_bind_text(st, 1, q->params[i].text, -1, SQLITE_TRANSIENT);
        ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0;
        sqlite3_finalize(st);
        if (ok) continue;
        char list[512] = "train, val, test, unlabeled";
        size_t used = strlen(list);
        st = db_prepare(db, "SELECT DISTINCT split FROM splits WHERE split NOT IN ('train', 'val', 'test', 'unlabeled') "
                            "ORDER BY split");
        while (st && sqlite3_step(st) == SQLITE_ROW && used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, ", %s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return mp_err_set("column %d: unknown split '%.40s' (known: %s)", q->params[i].col, q->params[i].text, list);
    }
    return 0;
}

/* The predictions of this dataset's slides, copied to a temporary table with a (slide, x0)
 * index, so the per-patch "which prediction holds my centre" lookup is a short index range
 * instead of a scan of the slide's predictions. */
static int predictions_temp(mp_db *db)
{
    return db_exec(db, "DROP TABLE IF EXISTS temp.mp_query_pred;"
                       "CREATE TEMP TABLE mp_query_pred AS SELECT id AS rid, slide_id, x0, y0, size0, class_name, "
                       "confidence, created_at FROM main.predictions WHERE slide_id IS NOT NULL;"
                       "CREATE INDEX temp.mp_query_pred_xy ON mp_query_pred(slide_id, x0)");
}

sqlite3_stmt *db_query_prepare(mp_db *db, const db_query *q, double mag, int count_only, int64_t limit)
{
    if (db_query_check(db, q)) return NULL;
    if (q->uses_pred && predictions_temp(db)) return NULL;
    int np = q->nparams;
    char *sql = NULL;
    const char *pred_join =
        q->uses_pred
            ? "LEFT JOIN temp.mp_query_pred pr ON pr.rid = (SELECT rid FROM (SELECT r.rid, r.created_at, "
              "(r.x0 + r.size0 / 2.0 - p.x0 - p.size0 / 2.0) * (r.x0 + r.size0 / 2.0 - p.x0 - p.size0 / 2.0) "
              "+ (r.y0 + r.size0 / 2.0 - p.y0 - p.size0 / 2.0) * (r.y0 + r.size0 / 2.0 - p.y0 - p.size0 / 2.0) AS d "
              "FROM temp.mp_query_pred r WHERE r.slide_id = p.slide_id AND r.x0 <= p.x0 + p.size0 / 2.0 "
              "AND r.x0 >= p.x0 + p.size0 / 2.0 - (SELECT max(size0) FROM temp.mp_query_pred) "
              "AND r.x0 + r.size0 > p.x0 + p.size0 / 2.0 AND r.y0 <= p.y0 + p.size0 / 2.0 "
              "AND r.y0 + r.size0 > p.y0 + p.size0 / 2.0) "
              /* SQLite 3.40 refuses outer columns in a scalar subquery's ORDER BY: sort a derived table */
              "ORDER BY d, created_at DESC, rid DESC LIMIT 1) "
            : "";
    char img_join[128] = "";
    if (mag > 0) snprintf(img_join, sizeof img_join, "JOIN images im ON im.patch_id = p.id AND abs(im.mag - ?%d) < 1e-3 ", np + 1);
    const char *cols =
        count_only ? "count(*)"
                   : "p.id, s.name, s.patient, p.x0, p.y0, p.size0, p.tissue, p.blur, p.pen, p.brightness, " Q_LABEL_SQL
                     ", sp.split, (SELECT group_concat(printf('%g', m), ',') FROM (SELECT i.mag AS m FROM images i "
                     "WHERE i.patch_id = p.id ORDER BY i.mag DESC)), ";
    const char *pcols = count_only ? "" : q->uses_pred ? "pr.class_name, pr.confidence, s.id" : "NULL, NULL, s.id";
    const char *icols = !count_only && mag > 0 ? ", im.codec, im.width, im.height, im.data" : "";
    char lim[32] = "";
    if (!count_only) snprintf(lim, sizeof lim, " LIMIT ?%d", np + 2);
    size_t n = strlen(cols) + strlen(pcols) + strlen(icols) + strlen(pred_join) + strlen(img_join) + q->len + 512;
    sql = mp_xmalloc(n);
    snprintf(sql, n,
             "SELECT %s%s%s FROM patches p JOIN slides s ON s.id = p.slide_id "
             "LEFT JOIN splits sp ON sp.slide_id = p.slide_id LEFT JOIN patch_labels pl ON pl.patch_id = p.id "
             "LEFT JOIN classes c ON c.id = pl.class_id %s%sWHERE %s%s%s",
             cols, pcols, icols, pred_join, img_join, q->sql, count_only ? "" : " ORDER BY p.id", lim);
    sqlite3_stmt *st = db_prepare(db, sql);
    free(sql);
    if (!st) return NULL;
    for (int i = 0; i < np; i++) {
        const param *p = &q->params[i];
        if (p->is_num) sqlite3_bind_double(st, i + 1, p->num);
        else sqlite3_bind_text(st, i + 1, p->text, -1, SQLITE_TRANSIENT);
    }
    if (mag > 0) sqlite3_bind_double(st, np + 1, mag);
    if (!count_only) sqlite3_bind_int64(st, np + 2, limit > 0 ? limit : -1); /* negative: no limit */
    return st;
}

struct db_query_rows {
    mp_db *db;
    sqlite3_stmt *st;
    int images;
};

db_query_rows *db_query_run(mp_db *db, const db_query *q, double mag, int64_t limit)
{
    sqlite3_stmt *st = db_query_prepare(db, q, mag, 0, limit);
    if (!st) return NULL;
    db_query_rows *r = mp_xcalloc(1, sizeof *r);
    r->db = db;
    r->st = st;
    r->images = mag > 0;
    return r;
}

static const char *text_or_null(sqlite3_stmt *st, int c) { return (const char *)sqlite3_column_text(st, c); }

int db_query_next(db_query_rows *r, db_patch_row *row)
{
    sqlite3_stmt *st = r->st;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return 0;
    if (rc != SQLITE_ROW) return db_fail(r->db, "query");
    memset(row, 0, sizeof *row);
    row->id = sqlite3_column_int64(st, DBQ_ID);
    row->slide_id = sqlite3_column_int64(st, DBQ_SLIDE_ID);
    row->x0 = sqlite3_column_int64(st, DBQ_X0);
    row->y0 = sqlite3_column_int64(st, DBQ_Y0);
    row->slide = text_or_null(st, DBQ_SLIDE);
    row->patient = text_or_null(st, DBQ_PATIENT);
    row->label = text_or_null(st, DBQ_LABEL);
    row->split = text_or_null(st, DBQ_SPLIT);
    row->mags = text_or_null(st, DBQ_MAGS);
    row->size0 = sqlite3_column_double(st, DBQ_SIZE0);
    row->tissue = sqlite3_column_double(st, DBQ_TISSUE);
    row->has_blur = sqlite3_column_type(st, DBQ_BLUR) != SQLITE_NULL;
    row->blur = sqlite3_column_double(st, DBQ_BLUR);
    row->has_pen = sqlite3_column_type(st, DBQ_PEN) != SQLITE_NULL;
    row->pen = sqlite3_column_double(st, DBQ_PEN);
    row->has_brightness = sqlite3_column_type(st, DBQ_BRIGHTNESS) != SQLITE_NULL;
    row->brightness = sqlite3_column_double(st, DBQ_BRIGHTNESS);
    row->prediction = text_or_null(st, DBQ_PREDICTION);
    row->has_confidence = sqlite3_column_type(st, DBQ_CONFIDENCE) != SQLITE_NULL;
    row->confidence = sqlite3_column_double(st, DBQ_CONFIDENCE);
    if (r->images) {
        row->codec = text_or_null(st, DBQ_CODEC);
        row->width = sqlite3_column_int(st, DBQ_WIDTH);
        row->height = sqlite3_column_int(st, DBQ_HEIGHT);
        row->data = sqlite3_column_blob(st, DBQ_DATA);
        row->bytes = (size_t)sqlite3_column_bytes(st, DBQ_DATA);
    }
    return 1;
}

void db_query_rows_free(db_query_rows *r)
{
    if (!r) return;
    sqlite3_finalize(r->st);
    free(r);
}

int64_t db_query_count(mp_db *db, const db_query *q, double mag)
{
    sqlite3_stmt *st = db_query_prepare(db, q, mag, 1, 0);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : db_fail(db, "query");
    sqlite3_finalize(st);
    return n;
}
