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

/* The statement behind db_query_run and db_query_count: the columns of query.h's DBQ_ enum.
 * The matching patches ordered by id (DBQ_PREDICTION/CONFIDENCE NULL unless the expression
 * uses them). mag > 0 keeps only patches with an image at that magnification and adds its
 * columns. count_only: one row, the count. Checks split values against the splits the dataset
 * and magpie know ("unknown split 'x' (known: ...)"). NULL + mp_err on failure. */
sqlite3_stmt *db_query_prepare(mp_db *db, const db_query *q, double mag, int count_only, int64_t limit);

#endif
