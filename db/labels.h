/* db/labels.h — label import into a magpie dataset: a slide-level CSV (slide,patient,label)
 * and region annotations as GeoJSON in the layout QuPath exports (patch label = the class that
 * covers most of the patch, coverage stored). Classes get 0-based ids in order of first import. */
#ifndef DB_LABELS_H
#define DB_LABELS_H

#include "db/db.h"

typedef struct {
    int rows;            /* data rows read (CSV) or features read (GeoJSON) */
    int updated;         /* slides updated (CSV) or patches labelled (GeoJSON) */
    int applied;         /* rows that named a known slide; features that label some patch */
    int not_applied;     /* rows - applied: unknown slides; features without area or off every patch */
    int n_unknown;       /* slide names not in the dataset */
    char **unknown;      /* those names (malloc'd); free with db_label_report_free */
    int new_classes;
} db_label_report;

/* Bounds on what a labels file may hold (past them: a one-line error, nothing applied). */
#define DB_LABELS_MAX_RECORD (1 << 20)        /* bytes in one CSV record */
#define DB_LABELS_MAX_FILE (512LL << 20)      /* bytes of a GeoJSON file */
#define DB_LABELS_MAX_FEATURES 1000000        /* GeoJSON features */
#define DB_LABELS_MAX_VERTICES 20000000       /* GeoJSON polygon vertices, all features together
                                                * (MAGPIE_LABELS_MAX_VERTICES may lower it: a test hook) */

void db_label_report_free(db_label_report *r);

/* The class id for a name; creates it (next free id) when `create`. -1 + mp_err if absent. */
int db_class_id(mp_db *db, const char *name, int create);

/* CSV with a header naming columns slide (required), patient, label (any order, case-insensitive;
 * other columns are an error). Quoted fields per RFC 4180. An empty label or patient clears it.
 * Unknown slide names are reported, not fatal. One transaction: a bad file changes nothing.
 * Streams the file (memory bounded by DB_LABELS_MAX_RECORD); time linear in rows (slides are
 * looked up in a sorted table, classes through the unique index). */
int db_labels_import_csv(mp_db *db, const char *path, db_label_report *rep);

/* GeoJSON (FeatureCollection, Feature, or a bare array of Features, coordinates in level-0
 * pixels) for the slide named `slide` (its path, id or name; NULL: the file name without
 * directory and extension, matched against slide paths and names). A name two slides share is
 * an error listing them; a slide not in the dataset is reported in rep->unknown, not fatal.
 * The features are stored as imported (label_imports, region_annotations; importing the same
 * file for the same slide again replaces them), then the slide's patches are labelled from all
 * its stored imports in order: every patch whose best-covering class covers at least
 * min_coverage of it gets a patch label. Features without a classification are an error naming
 * the feature. One transaction: a bad file changes nothing. Each sample
 * point is tested only against the polygons whose boxes hold it (a grid of polygon bounding
 * boxes) and each polygon only along the edges of the point's row band, so 200,000 features or
 * a 200,000-vertex outline cost about what their size says, not patches x features. */
int db_labels_import_geojson(mp_db *db, const char *path, const char *slide, double min_coverage,
                             db_label_report *rep);

/* Re-derive the region labels of one slide from its stored annotations: the patch labels with
 * source 'import:ID' are deleted and recomputed for the patches the slide has now. Runs inside
 * the caller's transaction (the tiler calls it when a slide is done). 0, or -1 + mp_err. */
int db_labels_apply(mp_db *db, int64_t slide_id);

/* Region annotations stored for a slide (-1 + mp_err on error). */
int64_t db_labels_regions(mp_db *db, int64_t slide_id);

/* What `db labels remove` removes: exactly one selector. */
typedef struct {
    int64_t slide_id;       /* > 0: the slide's label, its region annotations and patch labels */
    int64_t annotation_id;  /* > 0: one region annotation */
    int64_t import_id;      /* > 0: one import (a CSV's slide labels, or a GeoJSON's regions) */
    const char *source;     /* non-NULL: every import of this file (made absolute when it exists) */
} db_labels_sel;

typedef struct {
    int64_t regions, slide_labels, imports, patch_labels_before, patch_labels_after;
} db_labels_removed;

/* Remove labels and re-apply what is left to the slides concerned, in one transaction. Slide
 * labels removed clear slides.label (patients stay: they are identity, not labels). Nothing
 * matching is an error ("... no labels match"). 0, or -1 + mp_err with nothing changed. */
int db_labels_remove(mp_db *db, const db_labels_sel *sel, db_labels_removed *out);

/* Slide labels a batch run's manifest gives (magpie run), recorded as `labels import` records a
 * CSV's: one 'csv' import whose source is the manifest (made absolute), reused by later runs of
 * the same manifest, and a slide_labels row per slide. Both run inside the caller's transaction.
 * db_labels_manifest_import: the import's id (created, or found and its row count set), or -1. */
int64_t db_labels_manifest_import(mp_db *db, const char *manifest, int rows);
/* The slide at path gets its label and patient from the import; NULL = the manifest has no such
 * column (slides keeps its value), "" = the column is empty there (cleared). 0, or -1 + mp_err. */
int db_labels_manifest_slide(mp_db *db, int64_t import_id, const char *path, const char *label, const char *patient);

/* What `db labels list` shows (db/labels_list.c). Each walks its rows in id order, for every slide
 * (slide_id 0) or one; fn's non-zero return stops the walk and is returned; strings are borrowed
 * until fn returns, "" where the column is empty. Returns 0, or -1 + mp_err. */
int db_labels_have_imports(mp_db *db); /* 1: the schema keeps label imports (version 3+), 0, -1 */

typedef struct {
    int64_t id;
    const char *kind;      /* csv | geojson */
    int64_t slide_id;      /* 0: an import for several slides (a CSV) */
    const char *slide;     /* its name ("" with slide_id 0) */
    int64_t rows;
    const char *imported_at, *source;
} db_label_import;
/* Imports of the slide: its regions, or a CSV that labelled it. */
int db_label_imports(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_label_import *r), void *ctx);

typedef struct {
    int64_t slide_id;
    const char *name, *label, *patient; /* patient NULL when unknown */
    int64_t import_id;                  /* 0: set before schema version 3 */
} db_slide_label;
/* Labelled slides. */
int db_slide_labels(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_slide_label *r), void *ctx);

typedef struct {
    int64_t slide_id;
    const char *slide;
    int64_t regions;
    const char *classes;     /* the classes of its regions, "A, B" in name order */
    int64_t patches_labelled; /* patches with a region label */
} db_slide_regions;
/* Slides with region annotations. */
int db_slides_regions(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_slide_regions *r), void *ctx);

typedef struct {
    int64_t id, import_id;
    const char *slide, *class_name, *name; /* name NULL when the feature had none */
    const char *geometry;                 /* GeoJSON geometry type */
    int64_t vertices;
} db_region;
/* Region annotations. */
int db_regions(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_region *r), void *ctx);

#endif
