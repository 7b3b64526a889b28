/* pipelines/cmd_infer.c — `magpie infer CKPT SLIDE... --out DIR`: load the checkpoint once,
 * infer every slide (one bad slide never stops the others), report per slide and exit
 * 0 / 2 (nothing done) / 3 (some slides failed). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/opt.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "infer/infer.h"
#include "nn/gemm.h"
#include "pipelines/cmds.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie infer CKPT SLIDE... --out DIR [options]\n"
            "Run a checkpoint over the tissue of every slide and write, per slide, DIR/<slide name>/:\n"
            "  heatmap.tif      for viewers (OpenSlide, QuPath, libvips, PIL): tiled pyramidal 8-bit RGBA,\n"
            "                   --class's probability through viridis (a diverging blue-grey-red map for\n"
            "                   two classes), transparent where not evaluated; one pixel per stride step,\n"
            "                   registered to the slide by its resolution tags (px/cm) and XPosition/\n"
            "                   YPosition (the slide's bounds offset)\n"
            "  probability.tif  for analysis: the same grid and tags, one band per class (uint8 =\n"
            "                   round(255 p), or float32 with --float32), 0 in every band = not evaluated\n"
            "  overlay.png      the slide (longest side --overlay-size px) with --class's probability over\n"
            "                   its tissue, a colour bar, the slide-level call and a scale bar\n"
            "  heatmap.geojson  QuPath annotations: cells with probability >= --threshold, per class\n"
            "  prediction.json  slide-level prediction (mean probability, thresholded majority vote),\n"
            "                   patch counts, MPP and its source, level read, timing\n"
            "Patches are the checkpoint's input size at its magnification (mag m = 10/m µm/px), read from\n"
            "the smallest pyramid level at least as fine and resampled. Rerunning skips slides whose outputs\n"
            "are complete and were made from the same slide, checkpoint and options.\n\n"
            "  --out DIR          output directory (required)\n"
            "  --stride PX        grid step in model pixels (default: the input size, no overlap). Below\n"
            "                     the input size the patches overlap: one patch is centred on every\n"
            "                     cell, and each heatmap pixel is the mean of the evaluated patches that\n"
            "                     cover its cell, weighted by the share of the cell each covers (a cell\n"
            "                     whose own patch was not evaluated stays empty); slide-level figures\n"
            "                     are over the patches\n"
            "  --mag M            the magnification the checkpoint must take (e.g. 1.25 for a student);\n"
            "                     a checkpoint trained at another is refused before any slide is read\n"
            "  --class NAME|K     class shown in heatmap.tif and overlay.png, by name or 0-based index\n"
            "                     (default: the last class)\n"
            "  --overlay-size PX  longest side of overlay.png's slide picture (default 1600)\n"
            "  --batch N          patches per forward (default 8 for inputs >= 112 px, else 64)\n"
            "  --threads N        compute threads (default: the CPUs this process may use, here %d); one more\n"
            "                     thread reads and resamples the next batch meanwhile\n"
            "  --mpp X            µm per level-0 pixel; overrides the file (needed when it has none)\n"
            "  --min-tissue F     evaluate cells whose patch is >= F tissue (default 0.25)\n"
            "  --threshold P      GeoJSON and vote confidence threshold (default 0.5)\n"
            "  --float32          probability.tif samples as float32 instead of uint8\n"
            "  --db DB            also store every evaluated patch's probabilities in DB's predictions\n"
            "                     table (slide, grid cell, level-0 square, per-class probabilities,\n"
            "                     checkpoint fingerprint; created if missing); a rerun replaces the\n"
            "                     slide and checkpoint's rows\n"
            "  --allow-fluorescence  infer fluorescence slides too. Each slide is classed on its\n"
            "                     tissue-mask thumbnail: fluorescence when its commonest brightness is\n"
            "                     below 64/255 and at least 30%% of it is that dark (a dark background);\n"
            "                     such a slide is refused by default, since magpie's models are\n"
            "                     bright-field H&E models; the class is in prediction.json's slide_kind\n"
            "  --cascade TEACHER  a student -> teacher cascade: CKPT (a cheap student, e.g. 1.25x) runs on\n"
            "                     every cell, TEACHER (e.g. 10x) again on the cells where the student is\n"
            "                     unsure (its highest class probability below the threshold), reading the\n"
            "                     same square at its own magnification; its probabilities replace the\n"
            "                     student's there. Same classes and the same square (size x 10 / mag µm)\n"
            "                     required. prediction.json's cascade records the threshold, its source\n"
            "                     and the share of cells sent to the teacher. One of:\n"
            "  --cascade-threshold X   the threshold (0 = the student alone, above 1 = the teacher on\n"
            "                     every cell)\n"
            "  --cascade-calibrate DB  choose it on DB's val split (labelled patches, their stored\n"
            "                     images at both magnifications): the lowest threshold, so the fewest\n"
            "                     teacher calls, whose balanced accuracy on val is within\n"
            "                     --cascade-tolerance points (default 1) of the teacher's alone\n"
            "  --cascade-split S  the split to calibrate on; only val is accepted (test must stay held\n"
            "                     out, and the models were fit on train)\n"
            "  --cascade-calibrate-slides A,B,...  choose it on these slides, no labels needed: student\n"
            "                     and teacher run on every tissue cell (this run's --stride and\n"
            "                     --min-tissue), and the threshold is the lowest whose cascade agrees\n"
            "                     with the teacher alone on all but --cascade-tolerance points of the\n"
            "                     cells (balanced over the teacher's classes). Slides like the ones to\n"
            "                     infer, but not the ones reported as a test; may be repeated\n"
            "  --force            recompute even when the outputs are current\n"
            "  --progress MODE    auto|tty|json|none (default auto); --progress=json for JSON lines\n"
            "  -q, --quiet        only errors\n"
            "  -h, --help\n\n"
            "exit: 0 all slides done or skipped, 1 usage, 2 nothing done (bad checkpoint, output\n"
            "directory, or every slide failed), 3 some slides failed and the others are done\n",
            mp_cpu_count());
}

int cmd_infer(int argc, char **argv)
{
    infer_opts o;
    infer_opts_default(&o);
    o.threads = mp_cpu_count();
    const char *out = NULL;
    int quiet = 0;
    enum { O_OUT = 256, O_STRIDE, O_CLASS, O_BATCH, O_THREADS, O_MPP, O_MIN, O_THR, O_F32, O_FORCE, O_PROG, O_OVSIZE, O_DB, O_FLUO, O_MAG, O_CAS, O_CAS_T, O_CAS_CAL, O_CAS_SPLIT, O_CAS_TOL, O_CAS_SL };
    const char *class_arg = NULL;
    double want_mag = 0;
    const char *cas_path = NULL, *cas_db = NULL, *cas_split = "val";
    char **cal_slides = NULL; /* --cascade-calibrate-slides, split at commas */
    int ncal = 0;
    double cas_t = -1, cas_tol = 0.01;
    static const struct option lo[] = {
        {"out", required_argument, 0, O_OUT},         {"stride", required_argument, 0, O_STRIDE},
        {"class", required_argument, 0, O_CLASS},     {"batch", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, O_THREADS}, {"mpp", required_argument, 0, O_MPP},
        {"min-tissue", required_argument, 0, O_MIN},  {"threshold", required_argument, 0, O_THR},
        {"float32", no_argument, 0, O_F32},           {"force", no_argument, 0, O_FORCE},
        {"progress", required_argument, 0, O_PROG},   {"quiet", no_argument, 0, 'q'},
        {"overlay-size", required_argument, 0, O_OVSIZE}, {"db", required_argument, 0, O_DB},
        {"allow-fluorescence", no_argument, 0, O_FLUO}, {"mag", required_argument, 0, O_MAG},
        {"cascade", required_argument, 0, O_CAS},     {"cascade-threshold", required_argument, 0, O_CAS_T},
        {"cascade-calibrate", required_argument, 0, O_CAS_CAL}, {"cascade-split", required_argument, 0, O_CAS_SPLIT},
        {"cascade-tolerance", required_argument, 0, O_CAS_TOL}, {"cascade-calibrate-slides", required_argument, 0, O_CAS_SL},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = mp_getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
        long l;
        double d;
        switch (ch) {
        case O_OUT: out = optarg; break;
        case O_STRIDE:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 65536) return mp_usage_error("infer", NULL, "--stride wants a positive px count, got '%s'", optarg);
            o.stride = (int)l;
            break;
        case O_CLASS:
            if (!optarg[0]) return mp_usage_error("infer", NULL, "--class wants a class name or index, got '%s'", optarg);
            class_arg = optarg; /* resolved against the checkpoint's names once it is loaded */
            break;
        case O_DB: o.db = optarg; break;
        case O_OVSIZE:
            if (mp_parse_long(optarg, &l) || l < 64 || l > 16384) return mp_usage_error("infer", NULL, "--overlay-size wants 64..16384 px, got '%s'", optarg);
            o.overlay_size = (int)l;
            break;
        case O_BATCH:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 4096) return mp_usage_error("infer", NULL, "--batch wants 1..4096, got '%s'", optarg);
            o.batch = (int)l;
            break;
        case O_THREADS:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 256) return mp_usage_error("infer", NULL, "--threads wants 1..256, got '%s'", optarg);
            o.threads = (int)l;
            break;
        case O_MPP:
            if (mp_parse_double(optarg, &d) || d < 0.05 || d > 20) return mp_usage_error("infer", NULL, "--mpp wants µm per pixel within 0.05-20, got '%s'", optarg);
            o.mpp = d;
            break;
        case O_MIN:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 1) return mp_usage_error("infer", NULL, "--min-tissue wants 0..1, got '%s'", optarg);
            o.min_tissue = d;
            break;
        case O_THR:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 1) return mp_usage_error("infer", NULL, "--threshold wants 0..1, got '%s'", optarg);
            o.threshold = d;
            break;
        case O_F32: o.float32 = 1; break;
        case O_FORCE: o.force = 1; break;
        case O_FLUO: o.allow_fluorescence = 1; break;
        case O_CAS: cas_path = optarg; break;
        case O_CAS_T:
            if (mp_parse_double(optarg, &d) || !(d >= 0) || d > 1e6)
                return mp_usage_error("infer", NULL, "--cascade-threshold wants a probability threshold >= 0, got '%s'", optarg);
            cas_t = d;
            break;
        case O_CAS_CAL: cas_db = optarg; break;
        case O_CAS_SPLIT: cas_split = optarg; break;
        case O_CAS_SL:
            for (char *t = strtok(optarg, ","); t; t = strtok(NULL, ","))
                if (*t) {
                    cal_slides = mp_xrealloc(cal_slides, sizeof(char *) * (size_t)(ncal + 1));
                    cal_slides[ncal++] = t;
                }
            if (!ncal) return mp_usage_error("infer", NULL, "--cascade-calibrate-slides wants slide paths, got '%s'", optarg);
            break;
        case O_CAS_TOL:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 100) return mp_usage_error("infer", NULL, "--cascade-tolerance wants 0..100 points, got '%s'", optarg);
            cas_tol = d / 100;
            break;
        case O_MAG:
            if (mp_parse_double(optarg, &d) || d < 0.5 || d > 200) return mp_usage_error("infer", NULL, "--mag wants a magnification in 0.5..200, got '%s'", optarg);
            want_mag = d;
            break;
        case O_PROG:
            if (mp_progress_parse(optarg, &o.progress)) return mp_usage_error("infer", NULL, "--progress wants auto|tty|json|none, got '%s'", optarg);
            break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return MP_EXIT_OK;
        default: return mp_usage_error("infer", NULL, "%s", mp_err());
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        return MP_EXIT_USAGE;
    }
    if (!out) return mp_usage_error("infer", NULL, "--out DIR is required");
    if (cas_path && (cas_t >= 0) + (cas_db != NULL) + (ncal > 0) != 1) {
        free(cal_slides);
        return mp_usage_error("infer", NULL, "--cascade %s wants one of --cascade-threshold X, --cascade-calibrate DB and "
                              "--cascade-calibrate-slides A,B,...", cas_path);
    }
    if (!cas_path && (cas_t >= 0 || cas_db || ncal)) {
        free(cal_slides);
        return mp_usage_error("infer", NULL, "--cascade-threshold, --cascade-calibrate and --cascade-calibrate-slides go "
                              "with --cascade TEACHER");
    }
    if (cas_db && infer_cascade_split_ok(cas_db, cas_split)) {
        mp_error("%s", mp_err());
        return MP_EXIT_USAGE;
    }
    if (quiet) {
        mp_log_set_quiet(1);
        if (o.progress == MP_PROGRESS_AUTO || o.progress == MP_PROGRESS_TTY) o.progress = MP_PROGRESS_NONE;
    }
    const char *ckpt = argv[optind];
    char **slides = argv + optind + 1;
    int n = argc - optind - 1;

    /* the checkpoint first: a refused one leaves nothing behind, not even --out */
    nn_set_threads(o.threads);
    infer_model *m = infer_model_load(ckpt, o.batch); /* 0: sized for the checkpoint's input */
    if (!m) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (want_mag > 0 && fabs(infer_model_mag(m) / want_mag - 1) > 0.01) {
        /* a 10x teacher run where a 1.25x student was meant costs 64x the time, silently */
        mp_error("%s: trained for %gx patches, not the %gx of --mag", ckpt, infer_model_mag(m), want_mag);
        infer_model_free(m);
        return MP_EXIT_FAIL;
    }
    if (class_arg && (o.klass = infer_class_index(m, ckpt, class_arg)) < 0) {
        mp_error("%s", mp_err());
        infer_model_free(m);
        return MP_EXIT_USAGE;
    }
    infer_cascade cas;
    memset(&cas, 0, sizeof cas);
    if (cas_path) {
        cas.path = cas_path;
        cas.teacher = infer_model_load(cas_path, o.batch);
        if (!cas.teacher || infer_cascade_check(m, ckpt, cas.teacher, cas_path)) {
            mp_error("%s", mp_err());
            infer_model_free(cas.teacher);
            infer_model_free(m);
            return MP_EXIT_FAIL;
        }
        o.cascade = &cas;
    }

    /* the calibration too, before anything is written */
    if (infer_global_init(argv[0])) {
        mp_error("%s", mp_err());
        infer_model_free(cas.teacher);
        infer_model_free(m);
        return MP_EXIT_FAIL;
    }
    if (cas_path && cas_db) {
        infer_calibration cal;
        if (infer_cascade_calibrate(m, cas.teacher, cas_db, cas_split, cas_tol, &cal)) {
            mp_error("%s", mp_err());
            infer_model_free(cas.teacher);
            infer_model_free(m);
            return MP_EXIT_FAIL;
        }
        cas.threshold = cal.threshold;
        snprintf(cas.source, sizeof cas.source,
                 "calibrated on %s, split %s: %lld labelled patches; balanced accuracy student %.4f, teacher %.4f, "
                 "cascade %.4f with %.1f%% of them to the teacher; rule: the lowest threshold within %g points of the "
                 "teacher",
                 cas_db, cas_split, (long long)cal.n, cal.bacc_student, cal.bacc_teacher, cal.bacc_cascade,
                 100 * cal.fraction, 100 * cas_tol);
        mp_info("cascade threshold %.6g, %s", cas.threshold, cas.source);
    } else if (cas_path && ncal) {
        infer_calibration cal;
        if (infer_cascade_calibrate_slides(m, ckpt, &cas, cal_slides, ncal, &o, cas_tol, &cal)) {
            mp_error("%s", mp_err());
            free(cal_slides);
            infer_model_free(cas.teacher);
            infer_model_free(m);
            return MP_EXIT_FAIL;
        }
        cas.threshold = cal.threshold;
        snprintf(cas.source, sizeof cas.source,
                 "calibrated on %d slide%s (%s%s): %lld tissue cells, the teacher's class as reference; agreement "
                 "(balanced) student %.4f, cascade %.4f with %.1f%% of the cells to the teacher; rule: the lowest "
                 "threshold within %g points of the teacher",
                 ncal, ncal == 1 ? "" : "s", cal_slides[0], ncal > 1 ? ", ..." : "", (long long)cal.n, cal.bacc_student,
                 cal.bacc_cascade, 100 * cal.fraction, 100 * cas_tol);
        mp_info("cascade threshold %.6g, %s", cas.threshold, cas.source);
    } else if (cas_path) {
        cas.threshold = cas_t;
        snprintf(cas.source, sizeof cas.source, "--cascade-threshold");
    }
    free(cal_slides); /* strings in argv */
    if (mp_mkdir_p(out)) {
        mp_error("%s", mp_err());
        infer_model_free(cas.teacher);
        infer_model_free(m);
        return MP_EXIT_FAIL;
    }
    if (access(out, W_OK | X_OK)) {
        mp_error("%s: output directory is not writable (%s)", out, strerror(errno));
        infer_model_free(cas.teacher);
        infer_model_free(m);
        return MP_EXIT_FAIL;
    }
    if (o.db) {
        /* a dataset that cannot take the rows fails the run now, not after the first slide */
        mp_db *db = db_open(o.db, DB_OPEN_CREATE);
        if (!db) {
            mp_error("%s", mp_err());
            infer_model_free(cas.teacher);
            infer_model_free(m);
            return MP_EXIT_FAIL;
        }
        db_close(db);
    }
    int nfail = 0;
    for (int i = 0; i < n; i++) {
        /* two slides with one name would overwrite each other's outputs */
        char ni[1024], nj[1024];
        infer_slide_name(slides[i], ni, sizeof ni);
        int dup = -1;
        for (int j = 0; j < i && dup < 0; j++) {
            infer_slide_name(slides[j], nj, sizeof nj);
            if (!strcmp(ni, nj)) dup = j;
        }
        if (dup >= 0 && !strcmp(slides[i], slides[dup])) {
            mp_warn("%s: given twice, inferred once", slides[i]); /* a repeat is no failure */
            continue;
        }
        if (dup >= 0) {
            mp_error("%s: same output name '%s' as %s; rename one or run them separately", slides[i], ni, slides[dup]);
            nfail++;
            continue;
        }
        infer_result r;
        if (infer_slide(m, ckpt, slides[i], out, &o, &r)) {
            mp_error("%s", mp_err());
            nfail++;
            continue;
        }
        if (r.outcome == INFER_DONE && r.n_evaluated == 0)
            /* an empty heatmap must not pass for a result (PEERS.md pain point 3) */
            mp_warn("%s: no tissue found by the mask, the heatmap is empty (try --min-tissue 0 or check the slide)",
                    slides[i]);
        if (r.outcome == INFER_SKIPPED)
            mp_info("%s: outputs current, skipped (%s)", slides[i], r.outdir);
        else
            mp_info("%s: %s, %lld of %lld cells evaluated (level %d, %lld unreadable) in %.1f s -> %s", slides[i],
                    r.kind ? r.kind : "?", (long long)r.n_evaluated, (long long)r.n_cells, r.level,
                    (long long)r.n_read_errors, r.seconds, r.outdir);
    }
    infer_model_free(cas.teacher);
    infer_model_free(m);
    mp_info("%s: %d of %d slides done", out, n - nfail, n);
    if (nfail == 0) return MP_EXIT_OK;
    return nfail == n ? MP_EXIT_FAIL : MP_EXIT_PARTIAL;
}
