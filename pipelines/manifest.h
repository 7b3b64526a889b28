/* pipelines/manifest.h — the slide list of `magpie run`: a CSV manifest with a header, a folder
 * of slides, or a glob. Loading validates everything before any work: problems with the manifest
 * itself stop the run; a slide that is missing or unreadable is kept with its problem, so it
 * fails alone and the others run. */
#ifndef MP_MANIFEST_H
#define MP_MANIFEST_H

#include <stddef.h>

typedef struct {
    char *path;      /* absolute (realpath when the file exists) */
    char *given;     /* as written in the manifest (or found in the folder) */
    char *name;      /* output name: the file's stem made safe, plus "-<hash>" when two slides share a stem */
    char *patient;   /* NULL: no such column; "" clears */
    char *label;
    char *split;     /* train | val | test | unlabeled | "" */
    double mpp;      /* > 0: per-slide override of the file's MPP */
    double min_tissue; /* >= 0: per-slide override of --min-tissue; -1 none */
    int line;        /* manifest line of the row (0 for a folder or glob) */
    char *problem;   /* one-line reason the slide cannot run (missing, unreadable), or NULL */
} mf_item;

typedef struct {
    mf_item *items;
    int n;
    int has_patient, has_label, has_split;
    char *source;    /* the argument as given */
} mf_list;

/* Columns a manifest may have (case-insensitive). */
#define MF_COLUMNS "slide, patient, label, split, mpp, min_tissue"
/* Slide file extensions a folder or a glob picks up. */
#define MF_SLIDE_EXTS ".svs .tif .tiff .ndpi .vms .vmu .scn .mrxs .svslide .bif"

/* Load `arg`: a directory (its slide files, sorted), a glob (when it holds * ? or [), a single
 * slide file, or a CSV manifest. Every manifest problem is printed (mp_error, "FILE:LINE:
 * reason") and the load fails: -1 + mp_err summarising them. Per-slide problems are printed as
 * warnings and kept in the items. */
int mf_load(const char *arg, mf_list *out);
void mf_free(mf_list *m);
/* 1 if the file name ends with one of MF_SLIDE_EXTS. */
int mf_is_slide_name(const char *name);

#endif
