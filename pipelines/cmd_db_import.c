/* pipelines/cmd_db_import.c — `magpie db DB import-patches DIR --mpp X [...]`: option parsing
 * over tiler/tiler.h's tiler_import_patches (an existing labelled patch set into the dataset). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "db/db.h"
#include "pipelines/cmds.h"
#include "tiler/tiler.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie db DB import-patches DIR --mpp X [--mags 10,1.25] [--label-from folder|none]\n"
            "                                   [--patient-from regex:RE] [--png] [--quality Q] [-q]\n\n"
            "Brings a patch set laid out as class folders (DIR/CLASS/IMAGE, e.g. Kather 2016 or\n"
            "NCT-CRC-HE-100K) into the dataset, so it can be split and trained on like tiled slides.\n"
            "Each file becomes a slide (vendor patch-import, MPP source --mpp, label = its folder) with\n"
            "one patch, stored at every --mags magnification by area averaging the file's pixels (no\n"
            "upsampling: a magnification finer than 10/X is refused). Images must be square and of one\n"
            "size; PNG, JPEG, TIFF, WebP, BMP; grey is expanded, alpha flattened on white; hidden files\n"
            "and symlinks are skipped. One transaction: a bad file stops the import with nothing written.\n"
            "Re-importing the same files changes nothing; a changed file or option replaces its rows.\n\n"
            "  --mpp X                 um per pixel of the files (NCT-CRC-HE-100K 0.5, Kather 2016 0.495)\n"
            "  --mags LIST             magnifications to store (default 10,1.25)\n"
            "  --label-from folder     the class is the first folder under DIR (default); none: no labels\n"
            "  --patient-from regex:RE the patient is the first group (or the match) of the POSIX extended\n"
            "                          regular expression RE on the file name, e.g. for Kather 2016\n"
            "                          'regex:(CRC-Prim-HE-[0-9]+)'; default: each file is its own patient\n"
            "  --png                   store PNG (default JPEG, --quality 90)\n");
}

int cmd_db_import(const char *db_path, int argc, char **argv)
{
    tiler_import_opts o = {.mags = {10, 1.25}, .n_mags = 2, .label_from_folder = 1, .quality = 90,
                           .progress = MP_PROGRESS_AUTO};
    const char *dir = NULL;
    enum { O_PNG = 256, O_MPP, O_MAGS, O_LABEL, O_PATIENT, O_Q, O_PROG };
    static const struct option lo[] = {
        {"png", no_argument, 0, O_PNG},                  {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},                   {"mpp", required_argument, 0, O_MPP},
        {"mags", required_argument, 0, O_MAGS},          {"label-from", required_argument, 0, O_LABEL},
        {"patient-from", required_argument, 0, O_PATIENT}, {"quality", required_argument, 0, O_Q},
        {"progress", required_argument, 0, O_PROG},      {0, 0, 0, 0}};
    optind = 1;
    int ch, li;
    while ((ch = mp_getopt_long(argc, argv, "qh", lo, &li)) != -1) {
        const char *v = optarg;
        int bad = 0;
        long lv;
        switch (ch) {
        case 'h': usage(stdout); return MP_EXIT_OK;
        case O_PNG: o.png = 1; break;
        case 'q': mp_log_set_quiet(1), o.progress = MP_PROGRESS_NONE; break;
        case O_MPP: bad = mp_parse_double(v, &o.mpp) < 0 || !tiler_mpp_plausible(o.mpp); break;
        case O_MAGS: {
            int n = mp_parse_double_list(v, o.mags, TILER_MAX_MAGS);
            bad = n < 1;
            for (int k = 0; k < n; k++) bad |= !(o.mags[k] > 0);
            o.n_mags = n;
            break;
        }
        case O_LABEL:
            bad = strcmp(v, "folder") && strcmp(v, "none");
            o.label_from_folder = !strcmp(v, "folder");
            break;
        case O_PATIENT:
            bad = strncmp(v, "regex:", 6) || !v[6];
            o.patient_regex = v + 6;
            break;
        case O_Q: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 100, o.quality = (int)lv; break;
        case O_PROG: bad = mp_progress_parse(v, &o.progress) < 0; break;
        default: return mp_usage_error("db import-patches", "db DB import-patches", "%s", mp_err());
        }
        if (bad)
            return mp_usage_error("db import-patches", "db DB import-patches", "bad value for --%s: '%s'%s", lo[li].name, v,
                                  ch == O_MPP       ? " (um per pixel, 0.05 to 20)"
                                  : ch == O_PATIENT ? " (regex:RE)"
                                  : ch == O_LABEL   ? " (folder or none)"
                                                    : "");
    }
    for (int i = optind; i < argc; i++) {
        if (dir) return mp_usage_error("db import-patches", "db DB import-patches", "unexpected argument '%s' (one DIR)", argv[i]);
        dir = argv[i];
    }
    if (!dir || o.mpp <= 0) {
        usage(stderr);
        return mp_usage_error("db import-patches", "db DB import-patches", "DIR and --mpp are required");
    }
    char err[256];
    if (tiler_import_check(&o, err, sizeof err)) {
        mp_error("db import-patches: %s%s", strncmp(err, "--", 2) ? "--mags: " : "", err);
        return MP_EXIT_USAGE;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) { /* before the dataset is opened (or created) */
        mp_error("%s: %s", dir, stat(dir, &sb) != 0 ? strerror(errno) : "not a directory");
        return MP_EXIT_FAIL;
    }
    if (tiler_global_init("magpie")) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_db *db = db_open(db_path, DB_OPEN_CREATE);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    tiler_import_report rep;
    int rc = tiler_import_patches(db, dir, &o, &rep);
    db_close(db);
    if (rc) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_info("%s: %d image files: %d imported, %d already in %s; %d other files skipped; %dx%d px at %g um/px; "
            "%d classes in the dataset", dir, rep.files, rep.imported, rep.kept, db_path, rep.skipped, rep.size, rep.size,
            o.mpp, rep.classes);
    return MP_EXIT_OK;
}
