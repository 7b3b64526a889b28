/* db/patchimport.h — rows for `magpie db DB import-patches`: an existing patch set (one image
 * file per patch, e.g. Kather 2016, NCT-CRC-HE-100K) enters the dataset as one slide row per
 * file (status done, MPP source --mpp, label = its class, patient as derived), one patch covering
 * the whole image, and its images per magnification. The caller holds one transaction around
 * every call (db_begin ... db_commit), so an import lands whole or not at all. */
#ifndef MP_DB_PATCHIMPORT_H
#define MP_DB_PATCHIMPORT_H

#include <stdint.h>

#include "db/db.h"
#include "db/tiling.h"

typedef struct {
    const char *path;        /* absolute path of the image file: the slide's unique path */
    const char *name;        /* shown name (file name without extension) */
    const char *fingerprint; /* content hash of the file */
    const char *params;      /* import parameters as JSON (a change re-imports the file) */
    const char *label;       /* class name or NULL */
    const char *patient;     /* patient id or NULL */
    int width, height;       /* the file's pixels */
    double mpp;              /* µm per pixel of the file */
    double blur, brightness; /* QC of the file's pixels */
    int n_images;
    const db_image_rec *images;
} db_import_rec;

typedef struct db_importer db_importer;
db_importer *db_importer_new(mp_db *db); /* NULL + mp_err */
void db_importer_free(db_importer *im);  /* accepts NULL */
/* Add one file. A slide with that path, fingerprint, parameters, label and patient already in the dataset is left
 * as it is (*kept = 1); one with another fingerprint or parameters is replaced. New class names
 * get the next class id. 0, or -1 + mp_err. */
int db_importer_add(db_importer *im, const db_import_rec *r, int *kept);

#endif
