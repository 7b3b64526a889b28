/* db/slides.h — naming and removing slides (curation). A slide is named by its full path, or
 * by its name (file name without directory and extension) only when no other slide shares it;
 * removing one takes its patches, images, tile errors, labels, annotations, split, fold and
 * predictions with it in one transaction. */
#ifndef DB_SLIDES_H
#define DB_SLIDES_H

#include <stdint.h>

#include "db/db.h"

/* As db_find_slide (path, else id when allow_id and all digits, else name), but tells "no such
 * slide" apart from an error: 1 + *id found, 0 none, -1 + mp_err (an argument naming several
 * slides — the message lists every candidate — or a SQLite error). */
int db_slide_match(mp_db *db, const char *arg, int allow_id, int64_t *id);

/* Remove slides by id in one transaction (the caller resolves names first). Predictions that
 * pointed at them are deleted too (they were made on the removed slide's file). Returns 0, or
 * -1 + mp_err with nothing removed. *patches_out (may be NULL) gets the patches removed. */
int db_slides_remove(mp_db *db, const int64_t *ids, int n, int64_t *patches_out);

#endif
