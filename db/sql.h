/* db/sql.h — the SQLite side of the dataset handle, for db/'s own files only (and tests that
 * build fixtures): the connection, SQL text, prepared statements, and errors from the
 * connection. Nothing else includes it; the rest of magpie asks db/'s typed functions. */
#ifndef DB_SQL_H
#define DB_SQL_H

#include <sqlite3.h>

#include "db/db.h"
#include "db/query.h"

sqlite3 *db_sqlite(mp_db *db); /* borrowed */
/* Run SQL with no results. -1 + mp_err ("PATH: sqlite message (in: SQL...)"). */
int db_exec(mp_db *db, const char *sql);
/* Single integer result of a query (e.g. "SELECT count(*) FROM patches"); -1 on error. */
int64_t db_query_int(mp_db *db, const char *sql);
/* Prepare; NULL + mp_err on failure. */
sqlite3_stmt *db_prepare(mp_db *db, const char *sql);
/* Set mp_err from the connection's last SQLite error, prefixed with the db path and `what`. */
int db_fail(mp_db *db, const char *what);

/* Walking a statement's rows. db_each_row steps st (NULL: a db_prepare that failed, its mp_err
 * kept: -1), calling row(ctx, st) on each row until one returns nonzero, and finalizes st; it
 * returns that value, else 0 after the last row, else -1 + mp_err "PATH: what: reason". A walk
 * written as a loop ends with db_walk_end(db, st, the last sqlite3_step's code, the caller's
 * stop value, what), which does the same. db_text: column c as text, "" for NULL (borrowed until
 * the next step). */
int db_each_row(mp_db *db, sqlite3_stmt *st, const char *what, int (*row)(void *ctx, sqlite3_stmt *st), void *ctx);
int db_walk_end(mp_db *db, sqlite3_stmt *st, int rc, int stop, const char *what);
const char *db_text(sqlite3_stmt *st, int c);
/* Row functions for db_each_row: the first column into *(double *)ctx or *(int64_t *)ctx, then
 * stop (1). */
int db_row_double(void *ctx, sqlite3_stmt *st);
int db_row_int64(void *ctx, sqlite3_stmt *st);

/* The statement behind db_query_run and db_query_count: the columns of query.h's DBQ_ enum.
 * The matching patches ordered by id (DBQ_PREDICTION/CONFIDENCE NULL unless the expression
 * uses them). mag > 0 keeps only patches with an image at that magnification and adds its
 * columns. count_only: one row, the count. Checks split values against the splits the dataset
 * and magpie know ("unknown split 'x' (known: ...)"). NULL + mp_err on failure. */
sqlite3_stmt *db_query_prepare(mp_db *db, const db_query *q, double mag, int count_only, int64_t limit);

#endif
