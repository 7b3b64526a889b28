/* db/labels.h — label import into a magpie dataset: a slide-level CSV (slide,patient,label)
 * and region annotations as GeoJSON in the layout QuPath exports (patch label = the class that
 * covers most of the patch, coverage stored). Classes get 0-based ids in order of first import. */
#ifndef DB_LABELS_H
#define DB_LABELS_H

#include "db/db.h"

typedef struct {
    int rows;            /* data rows read (CSV) or features read (GeoJSON) */
    int updated;         /* slides updated (CSV) or patches labelled (GeoJSON) */
    int n_unknown;       /* slide names not in the dataset */
    char **unknown;      /* those names (malloc'd); free with db_label_report_free */
    int new_classes;
} db_label_report;

void db_label_report_free(db_label_report *r);

/* The class id for a name; creates it (next free id) when `create`. -1 + mp_err if absent. */
int db_class_id(mp_db *db, const char *name, int create);

/* CSV with a header naming columns slide (required), patient, label (any order, case-insensitive;
 * other columns are an error). Quoted fields per RFC 4180. An empty label or patient clears it.
 * Unknown slide names are reported, not fatal. One transaction: a bad file changes nothing. */
int db_labels_import_csv(mp_db *db, const char *path, db_label_report *rep);

/* GeoJSON (FeatureCollection, Feature, or a bare array of Features, coordinates in level-0
 * pixels) for the slide named `slide` (NULL: the file name without directory and extension).
 * Every patch of the slide whose best-covering class covers at least min_coverage of it gets a
 * patch label. Features without a classification are an error naming the feature. */
int db_labels_import_geojson(mp_db *db, const char *path, const char *slide, double min_coverage,
                             db_label_report *rep);

#endif
