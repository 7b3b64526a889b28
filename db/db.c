/* db/db.c — open/create/migrate the dataset, and small helpers over the SQLite API. */
#include "db/db.h"
#include "db/sql.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "db/schema_sql.h" /* generated from db/schema.sql: const char db_schema_sql[] */

struct mp_db {
    sqlite3 *h;
    char *path;
};

sqlite3 *db_sqlite(mp_db *db) { return db->h; }
const char *db_path(const mp_db *db) { return db->path; }
int64_t db_schema_version(mp_db *db) { return db_query_int(db, "PRAGMA user_version"); }

/* How long a statement waits for another process's write transaction before giving up. */
#define DB_BUSY_MS 30000

/* SQLite's own words, except for the two a user can act on: another writer, a full disk. */
static const char *why(mp_db *db, const char *msg)
{
    static _Thread_local char buf[160];
    switch (sqlite3_errcode(db->h) & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        snprintf(buf, sizeof buf, "locked by another process (gave up after %d s); retry when it has finished",
                 DB_BUSY_MS / 1000);
        return buf;
    case SQLITE_FULL: return "disk full (the last transaction was rolled back; free space and retry)";
    case SQLITE_IOERR: /* a failed write: SQLite says "disk I/O error", the system says why */
        if (sqlite3_system_errno(db->h) == ENOSPC || sqlite3_system_errno(db->h) == EDQUOT)
            return "disk full (the last transaction was rolled back; free space and retry)";
        snprintf(buf, sizeof buf, "%s (%s)", msg, strerror(sqlite3_system_errno(db->h)));
        return buf;
    default: return msg;
    }
}

int db_fail(mp_db *db, const char *what)
{
    return mp_err_set("%s: %s%s%s", db->path, what ? what : "", what ? ": " : "", why(db, sqlite3_errmsg(db->h)));
}

int db_exec(mp_db *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mp_err_set("%s: %s (in: %.60s)", db->path, why(db, msg ? msg : sqlite3_errmsg(db->h)), sql);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

sqlite3_stmt *db_prepare(mp_db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        mp_err_set("%s: %s (in: %.60s)", db->path, sqlite3_errmsg(db->h), sql);
        return NULL;
    }
    return st;
}

int db_begin(mp_db *db) { return db_exec(db, "BEGIN IMMEDIATE"); }
int db_commit(mp_db *db) { return db_exec(db, "COMMIT"); }
int db_rollback(mp_db *db) { return db_exec(db, "ROLLBACK"); }
int db_vacuum(mp_db *db) { return db_exec(db, "VACUUM") || db_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)") ? -1 : 0; }
int db_read_begin(mp_db *db) { return db_exec(db, "BEGIN DEFERRED"); }
void db_read_end(mp_db *db) { db_exec(db, "COMMIT"); }

int db_walk_end(mp_db *db, sqlite3_stmt *st, int rc, int stop, const char *what)
{
    if (!stop && rc != SQLITE_DONE) stop = db_fail(db, what);
    sqlite3_finalize(st);
    return stop;
}

int db_each_row(mp_db *db, sqlite3_stmt *st, const char *what, int (*row)(void *ctx, sqlite3_stmt *st), void *ctx)
{
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) stop = row(ctx, st);
    return db_walk_end(db, st, rc, stop, what);
}

const char *db_text(sqlite3_stmt *st, int c)
{
    const char *t = (const char *)sqlite3_column_text(st, c);
    return t ? t : "";
}

int db_row_double(void *ctx, sqlite3_stmt *st)
{
    *(double *)ctx = sqlite3_column_double(st, 0);
    return 1;
}

int db_row_int64(void *ctx, sqlite3_stmt *st)
{
    *(int64_t *)ctx = sqlite3_column_int64(st, 0);
    return 1;
}

int64_t db_query_int(mp_db *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    int64_t v = -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE) db_fail(db, "query");
    sqlite3_finalize(st);
    return v;
}

int db_meta_set(mp_db *db, const char *key, const char *value)
{
    sqlite3_stmt *st = db_prepare(db, "INSERT INTO meta(key, value) VALUES (?, ?) "
                                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(db, "meta");
    sqlite3_finalize(st);
    return rc;
}

char *db_meta_get(mp_db *db, const char *key)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT value FROM meta WHERE key = ?");
    if (!st) return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    char *v = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = mp_xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

/* Bring an opened database to DB_SCHEMA_VERSION. Version 0 = empty file (or foreign). */
static int migrate(mp_db *db)
{
    int64_t v = db_query_int(db, "PRAGMA user_version");
    if (v < 0) return -1;
    if (v > DB_SCHEMA_VERSION)
        return mp_err_set("%s: dataset schema version %lld is newer than this magpie supports (%d)", db->path,
                          (long long)v, DB_SCHEMA_VERSION);
    if (v == DB_SCHEMA_VERSION) return 0;
    if (v == 0) {
        /* An empty database gets the schema; a non-empty one without our version is foreign. */
        int64_t n = db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'");
        if (n < 0) return -1;
        if (n > 0 && db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'slides'") != 1)
            return mp_err_set("%s: SQLite file is not a magpie dataset", db->path);
    }
    /* 0 -> current, and 1 -> 2 -> 3 (new tables only): the schema file, all IF NOT EXISTS; then the
     * steps that add columns to tables an older dataset already has (a new dataset got them
     * from the schema file). One transaction with the version bump, so a crash leaves the old
     * version intact. */
    static const struct {
        int to;
        const char *table, *column, *sql;
    } steps[] = {
        {4, "slides", "kind", "ALTER TABLE slides ADD COLUMN kind TEXT CHECK (kind IN ('brightfield', 'fluorescence'))"},
    };
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", DB_SCHEMA_VERSION);
    if (db_begin(db)) return -1;
    int bad = db_exec(db, db_schema_sql);
    for (size_t i = 0; !bad && v > 0 && i < sizeof steps / sizeof steps[0]; i++) {
        if (v >= steps[i].to) continue;
        /* a column already there (a dataset written by a newer schema file) is not added twice */
        char q[160];
        snprintf(q, sizeof q, "SELECT count(*) FROM pragma_table_info('%s') WHERE name = '%s'", steps[i].table,
                 steps[i].column);
        int64_t has = db_query_int(db, q);
        if (has < 0) bad = -1;
        else if (has == 0) bad = db_exec(db, steps[i].sql);
    }
    if (bad || db_exec(db, bump) || (v == 0 && db_meta_set(db, "created_by", "magpie")) || db_commit(db)) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_exec(db, "ROLLBACK");
        return mp_err_set("%s", keep);
    }
    return 0;
}

mp_db *db_open(const char *path, int flags)
{
    int ro = flags & DB_OPEN_READONLY;
    if (!(flags & DB_OPEN_CREATE) && !mp_file_exists(path)) {
        mp_err_set("%s: no such dataset", path);
        return NULL;
    }
    /* an empty file is new too: db_tile_lock makes the file it locks before SQLite writes it */
    int created = (flags & DB_OPEN_CREATE) && !ro && (!mp_file_exists(path) || mp_file_size(path) == 0);
    mp_db *db = mp_xcalloc(1, sizeof *db);
    db->path = mp_xstrdup(path);
    int oflags = ro ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | ((flags & DB_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0));
    oflags |= SQLITE_OPEN_NOMUTEX; /* one handle per thread */
    if (sqlite3_open_v2(path, &db->h, oflags, NULL) != SQLITE_OK) {
        mp_err_set("%s: cannot open dataset: %s", path, db->h ? sqlite3_errmsg(db->h) : "out of memory");
        db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, DB_BUSY_MS);
    sqlite3_extended_result_codes(db->h, 1);
    /* Reading the schema is the cheapest way to learn whether this is a SQLite file at all. */
    if (db_query_int(db, "SELECT count(*) FROM sqlite_master") < 0) {
        int ec = sqlite3_errcode(db->h) & 0xff;
        if (ec == SQLITE_NOTADB || ec == SQLITE_CORRUPT)
            mp_err_set("%s: not a SQLite database (or corrupt): %s", path, sqlite3_errmsg(db->h));
        else
            mp_err_set("%s: cannot open dataset: %s", path, why(db, sqlite3_errmsg(db->h)));
        db_close(db);
        return NULL;
    }
    if (!ro) {
        if (db_exec(db, "PRAGMA journal_mode = WAL") || db_exec(db, "PRAGMA synchronous = NORMAL") ||
            db_exec(db, "PRAGMA foreign_keys = ON") || migrate(db)) {
            db_close(db);
            /* A dataset this call created but could not initialise (a full disk) would later
             * read as "not a magpie dataset": remove it, so the next run starts clean. */
            if (created) {
                char side[4096];
                unlink(path);
                snprintf(side, sizeof side, "%s-wal", path);
                unlink(side);
                snprintf(side, sizeof side, "%s-shm", path);
                unlink(side);
            }
            return NULL;
        }
    } else {
        int64_t v = db_query_int(db, "PRAGMA user_version");
        /* older versions read fine: migrations only add */
        if (v < 1 || v > DB_SCHEMA_VERSION) {
            mp_err_set("%s: not a magpie dataset of schema version %d (found %lld)", path, DB_SCHEMA_VERSION, (long long)v);
            db_close(db);
            return NULL;
        }
    }
    return db;
}

void db_close(mp_db *db)
{
    if (!db) return;
    if (db->h) sqlite3_close_v2(db->h);
    free(db->path);
    free(db);
}

int db_find_slide(mp_db *db, const char *arg, int64_t *id)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT id FROM slides WHERE path = ?1");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return 0;
    int digits = arg[0] != 0;
    for (const char *c = arg; *c; c++) digits = digits && *c >= '0' && *c <= '9';
    st = db_prepare(db, "SELECT id, name, path, (?2 AND CAST(id AS TEXT) = ?1) FROM slides "
                        "WHERE (?2 AND CAST(id AS TEXT) = ?1) OR name = ?1 ORDER BY id");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, digits);
    char list[768] = "";
    size_t used = 0;
    int n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == 0) *id = sqlite3_column_int64(st, 0);
        if (used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%sslide %lld %s%s%s (%s)", n > 1 ? ", " : "",
                                     (long long)sqlite3_column_int64(st, 0),
                                     sqlite3_column_int(st, 3) ? "by id, named '" : "named '",
                                     (const char *)sqlite3_column_text(st, 1), "'",
                                     (const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "finding a slide");
    if (n == 0) return mp_err_set("%s: no slide '%s' (by path, id or name)", db->path, arg);
    if (n > 1)
        return mp_err_set("%s: '%s' names %d slides: %s; name one by its path", db->path, arg, n, list);
    return 0;
}
