/* db/sql.h — the SQLite side of the dataset handle, for db/'s own files only (and tests that
 * build fixtures): the connection, prepared statements, and errors from the connection. Nothing
 * outside db/ includes it; the rest of magpie asks db/'s typed functions. */
#ifndef DB_SQL_H
#define DB_SQL_H

#include <sqlite3.h>

#include "db/db.h"

#endif
