/* db/db.h — the magpie dataset handle: one SQLite file in WAL mode (schema in db/schema.sql).
 * Opening creates or migrates the schema. A failed call returns -1 (or NULL) and leaves mp_err()
 * "DB.sqlite: reason"; the handle keeps no error of its own (no sticky error: every call stands
 * alone, and a failed one may be retried).
 *
 * The contract: SQL lives in db/ only. The rest of magpie reads and writes the dataset through
 * typed functions named after what they return, one header per topic (slides.h, split.h and
 * splits.h, labels.h, stats.h, dataset.h, query.h, tiling.h, predictions.h, ...): numbers and
 * structs, listings through a row callback or a cursor (db_query_run), never a statement. This
 * header and those include no SQLite header; db/sql.h (the connection and statements) is for db/'s
 * own files and the tests that build fixtures, and holds the two calls that take SQL text
 * (db_exec, db_query_int). What remains here is the handle, transactions, meta, vacuum and
 * naming a slide. */
#ifndef MP_DB_H
#define MP_DB_H

#include <stdint.h>

#define DB_SCHEMA_VERSION 4 /* 2: predictions; 3: labels kept apart from patches, folds; 4: slides.kind */

enum { DB_OPEN_CREATE = 1, DB_OPEN_READONLY = 2 };

typedef struct mp_db mp_db;

/* Open (DB_OPEN_CREATE: create if missing) and bring the schema to DB_SCHEMA_VERSION.
 * NULL + mp_err on failure: not a SQLite file, newer schema than this magpie, ... */
mp_db *db_open(const char *path, int flags);
void db_close(mp_db *db);              /* accepts NULL */
const char *db_path(const mp_db *db);
int64_t db_schema_version(mp_db *db); /* PRAGMA user_version; -1 + mp_err */

int db_begin(mp_db *db);               /* BEGIN IMMEDIATE */
int db_commit(mp_db *db);
int db_rollback(mp_db *db);
/* A read snapshot over several queries (BEGIN DEFERRED ... COMMIT); the end never fails. */
int db_read_begin(mp_db *db);
void db_read_end(mp_db *db);

/* Rebuild the file without its free pages (VACUUM) and fold the WAL back into it. */
int db_vacuum(mp_db *db);

/* meta key/value. db_meta_get returns a malloc'd string or NULL when absent. */
int db_meta_set(mp_db *db, const char *key, const char *value);
char *db_meta_get(mp_db *db, const char *key);

/* The slide a user names on the command line: its path as stored (unique), else its id (an
 * all-digit argument) or its name. An argument that names more than one slide — the id of one
 * and the name of another, or a name two slides share — is an error listing every candidate
 * with its id and path (naming a slide by its path always works). 0 + *id, or -1 + mp_err. */
int db_find_slide(mp_db *db, const char *arg, int64_t *id);

#endif
