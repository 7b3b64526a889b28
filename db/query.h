/* db/query.h — `magpie db query WHERE`: a small filter language over patch and slide fields,
 * compiled to a SQL condition whose every value is a bound parameter (no user text is ever
 * pasted into SQL: field names come from a fixed table, values are bound).
 *
 *   expr   := and ('or' and)*
 *   and    := unary ('and' unary)*
 *   unary  := 'not' unary | '(' expr ')' | cmp
 *   cmp    := FIELD op VALUE | FIELD ['not'] 'in' '(' VALUE (',' VALUE)* ')'
 *           | FIELD 'is' ['not'] 'null' | FIELD ['not'] 'like' VALUE
 *   op     := = == != <> < <= > >=
 *   VALUE  := a bare word (letters, digits, _ - . + / : @ % *), 'single' or "double" quoted text
 *             (a quote doubled inside stands for itself)
 *
 * Fields: tissue blur pen brightness (numbers, per patch), mag (the patch has an image at a
 * magnification that compares so), label (patch region label, else its slide's), split, slide
 * (name), patient, prediction and confidence (the prediction of `infer --db` whose square holds
 * the patch's centre: nearest centre, then newest). Keywords and fields are case-insensitive;
 * text compares case-insensitively. Errors are one line with the 1-based column. */
#ifndef MP_DB_QUERY_H
#define MP_DB_QUERY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

typedef struct db_query db_query;

/* Parse expr (NULL or blank = every patch). NULL + mp_err "column N: reason" on a bad expression. */
db_query *db_query_parse(const char *expr);
void db_query_free(db_query *q); /* accepts NULL */
/* The compiled condition ("1" when empty) with ?NNN parameters numbered from 1. */
const char *db_query_where(const db_query *q);
/* Whether the expression uses prediction/confidence (they need db_query_prepare's temp table). */
int db_query_uses_predictions(const db_query *q);

/* Columns of the compiled query's rows (db/sql.h's db_query_prepare; db_patch_row below holds them). */
enum {
    DBQ_ID, DBQ_SLIDE, DBQ_PATIENT, DBQ_X0, DBQ_Y0, DBQ_SIZE0, DBQ_TISSUE, DBQ_BLUR, DBQ_PEN,
    DBQ_BRIGHTNESS, DBQ_LABEL, DBQ_SPLIT, DBQ_MAGS, DBQ_PREDICTION, DBQ_CONFIDENCE, DBQ_SLIDE_ID,
    DBQ_NCOLS,
    /* with mag > 0: the image at that magnification */
    DBQ_CODEC = DBQ_NCOLS, DBQ_WIDTH, DBQ_HEIGHT, DBQ_DATA
};


/* A matching patch, as db_query_next gives it. Strings are borrowed until the next call; NULL
 * where the dataset has no value (patient, label, split, prediction). */
typedef struct {
    int64_t id, slide_id, x0, y0;
    const char *slide, *patient, *label, *split;
    const char *mags;        /* the magnifications it has images at, high to low: "10,1.25" */
    double size0, tissue;
    double blur, pen, brightness; /* each with its has_ flag (a QC score may be missing) */
    int has_blur, has_pen, has_brightness;
    const char *prediction;  /* with db_query_uses_predictions: the class and its confidence */
    double confidence;
    int has_confidence;
    /* with mag > 0: its image at that magnification */
    const char *codec;
    int width, height;
    const void *data;
    size_t bytes;
} db_patch_row;

/* The row as a JSON object for `db query --json` and the viewer's /d/N/query: id, slide,
 * patient, x0, y0, size0, tissue, blur, pen, brightness, label, split, mags (null where the
 * dataset has no value), then what the flags add, in this order. */
enum {
    DB_ROW_JSON_MAGS_TEXT = 1,  /* mags as the text "10,1.25" (else an array of numbers) */
    DB_ROW_JSON_PREDICTION = 2, /* prediction and confidence */
    DB_ROW_JSON_SLIDE_ID = 4,   /* slide_id */
};
json_t *db_patch_row_json(const db_patch_row *r, int flags);

typedef struct db_query_rows db_query_rows;

/* The matching patches in id order (at most limit; 0 = all); mag > 0 as db_query_prepare.
 * NULL + mp_err. db_query_next: 1 + *row, 0 at the end, -1 + mp_err. */
db_query_rows *db_query_run(mp_db *db, const db_query *q, double mag, int64_t limit);
int db_query_next(db_query_rows *r, db_patch_row *row);
void db_query_rows_free(db_query_rows *r); /* accepts NULL */
/* How many patches match (with mag > 0: that have an image there); -1 + mp_err. */
int64_t db_query_count(mp_db *db, const db_query *q, double mag);

/* The values that need the dataset to judge: a split value that is neither one magpie makes nor
 * one the dataset holds is "column N: unknown split 'x' (known: train, val, test, unlabeled)". */
int db_query_check(mp_db *db, const db_query *q);

/* The magnifications stored in the dataset as "10x, 1.25x" (for messages). */
void db_query_mags(mp_db *db, char *out, size_t cap);

#endif
