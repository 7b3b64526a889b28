/* pipelines/cmd_run.c — `magpie run MANIFEST --out DIR`: options, the slide list validated
 * before any work, then the run (pipelines/run.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/opt.h"
#include "common/log.h"
#include "common/util.h"
#include "pipelines/cmds.h"
#include "pipelines/manifest.h"
#include "pipelines/run.h"
#include "pipelines/shard.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie run MANIFEST --out DIR [--steps tile,infer] [--model CKPT] [--jobs N] [options]\n"
            "Run a list of slides through tiling and inference into one folder, in parallel, resumably.\n\n"
            "MANIFEST is a CSV file with a header, or a folder of slides, or a glob ('slides/*.svs'), or one\n"
            "slide. Manifest columns (any order, case-insensitive):\n"
            "  slide       the slide file, absolute or relative to the manifest (required)\n"
            "  patient     patient id (into the dataset: splits keep a patient's slides together)\n"
            "  label       slide-level class name (into the dataset)\n"
            "  split       train, val, test or unlabeled (into the dataset)\n"
            "  mpp         µm per level-0 pixel for this slide (overrides the file and --mpp)\n"
            "  min_tissue  this slide's tissue threshold for both steps (overrides --min-tissue)\n"
            "The whole manifest is checked before any work: a problem with it (no slide column, an unknown\n"
            "column, a bad number, a slide listed twice) stops the run with every problem and its line;\n"
            "a slide that is missing or unreadable fails alone and the others run.\n\n"
            "Output (DIR):\n"
            "  dataset.db          the patches (tile step), the manifest's labels, patients and splits, and\n"
            "                      every evaluated patch's probabilities (infer step)\n"
            "  heatmaps/NAME/      heatmap.tif, probability.tif, overlay.png, heatmap.geojson,\n"
            "                      prediction.json (see magpie infer --help); NAME is the slide's file\n"
            "                      name without extension (plus -HASH when two slides share one)\n"
            "  thumbs/NAME.jpg     thumbnails for the report\n"
            "  status.csv          one row per slide: status or error, patches, MPP and source, call\n"
            "  summary.json        totals, timings, parameters\n"
            "  report.html         one self-contained page: totals, per slide thumbnail, mask, heatmap\n"
            "Rerunning the same command skips what is done and unchanged and redoes the rest, also after\n"
            "a crash or kill -9.\n\n"
            "  --out DIR           output folder (required)\n"
            "  --steps LIST        tile, infer or tile,infer (default: tile,infer with --model, else tile)\n"
            "  --model CKPT        checkpoint for the infer step\n"
            "  -j, --jobs N        slides at once (default: CPUs, here %d); the CPUs are shared out\n"
            "  --threads N         CPUs to use in all (default %d)\n"
            "  --shard I/N         run only the I-th of N slices of the slide list (1 <= I <= N), for a\n"
            "                      cluster job array; default from SLURM_ARRAY_TASK_ID and\n"
            "                      SLURM_ARRAY_TASK_COUNT when set (--shard 1/1: the whole list). A slide's\n"
            "                      slice depends only on its name, not on the order (docs/slurm.md)\n"
            "  --progress MODE     auto|tty|json|none (default auto: one bar on a terminal); json: JSON\n"
            "                      lines on stderr, one per finished slide plus the progress\n"
            "  -q, --quiet         only errors\n"
            "tile step:\n"
            "  --mags LIST         magnifications (default 10,1.25)\n"
            "  --size PX           patch side at the highest magnification (default 224)\n"
            "  --stride PX         grid step at that magnification (default = size)\n"
            "  --min-tissue F      keep cells whose tissue coverage is >= F (default 0.5)\n"
            "  --mpp X             µm per level-0 pixel when a file has none (both steps)\n"
            "  --quality Q         JPEG quality (default 90)\n"
            "  --format jpeg|png   patch codec (default jpeg)\n"
            "infer step:\n"
            "  --infer-stride PX   grid step in model pixels (default: the input size)\n"
            "  --infer-min-tissue F  evaluate cells whose patch is >= F tissue (default 0.25)\n"
            "  --threshold P       GeoJSON and vote confidence threshold (default 0.5)\n"
            "  --class NAME|K      class shown in the heatmaps (default: the last class)\n"
            "  --overlay-size PX   longest side of overlay.png (default 1600)\n\n"
            "exit: 0 every slide done, 1 usage or a manifest problem, 2 nothing done, 3 some slides failed\n",
            mp_cpu_count(), mp_cpu_count());
}

int cmd_run(int argc, char **argv)
{
    run_opts o;
    run_opts_default(&o);
    const char *steps = NULL, *class_arg = NULL;
    int jobs_set = 0;
    run_shard shard = {0};
    enum { O_OUT = 256, O_STEPS, O_MODEL, O_THREADS, O_PROG, O_MAGS, O_SIZE, O_STRIDE, O_MIN, O_MPP, O_Q, O_FMT,
           O_ISTRIDE, O_IMIN, O_THR, O_CLASS, O_OVSIZE, O_SHARD };
    static const struct option lo[] = {
        {"out", required_argument, 0, O_OUT},         {"steps", required_argument, 0, O_STEPS},
        {"model", required_argument, 0, O_MODEL},     {"jobs", required_argument, 0, 'j'},
        {"threads", required_argument, 0, O_THREADS}, {"progress", required_argument, 0, O_PROG},
        {"quiet", no_argument, 0, 'q'},               {"mags", required_argument, 0, O_MAGS},
        {"size", required_argument, 0, O_SIZE},       {"stride", required_argument, 0, O_STRIDE},
        {"min-tissue", required_argument, 0, O_MIN},  {"mpp", required_argument, 0, O_MPP},
        {"quality", required_argument, 0, O_Q},       {"format", required_argument, 0, O_FMT},
        {"infer-stride", required_argument, 0, O_ISTRIDE}, {"infer-min-tissue", required_argument, 0, O_IMIN},
        {"threshold", required_argument, 0, O_THR},   {"class", required_argument, 0, O_CLASS},
        {"overlay-size", required_argument, 0, O_OVSIZE}, {"help", no_argument, 0, 'h'},
        {"shard", required_argument, 0, O_SHARD},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = mp_getopt_long(argc, argv, "j:qh", lo, NULL)) != -1) {
        long l;
        double d;
        switch (ch) {
        case O_OUT: o.out = optarg; break;
        case O_STEPS: steps = optarg; break;
        case O_MODEL: o.model = optarg; break;
        case 'j':
            if (mp_parse_long(optarg, &l) || l < 1 || l > 256) return mp_usage_error("run", NULL, "--jobs wants 1..256, got '%s'", optarg);
            o.jobs = (int)l;
            jobs_set = 1;
            break;
        case O_THREADS:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 256) return mp_usage_error("run", NULL, "--threads wants 1..256, got '%s'", optarg);
            o.threads = (int)l;
            break;
        case O_PROG:
            if (mp_progress_parse(optarg, &o.progress)) return mp_usage_error("run", NULL, "--progress wants auto|tty|json|none, got '%s'", optarg);
            break;
        case 'q': o.quiet = 1; break;
        case O_MAGS: {
            int n = mp_parse_double_list(optarg, o.tile.mags, TILER_MAX_MAGS);
            if (n < 1) return mp_usage_error("run", NULL, "--mags wants a comma list of magnifications, got '%s'", optarg);
            for (int i = 0; i < n; i++) {
                if (!(o.tile.mags[i] > 0 && o.tile.mags[i] <= 200)) return mp_usage_error("run", NULL, "--mags: '%s' has a value outside (0, 200]", optarg);
                for (int k = 0; k < i; k++)
                    if (o.tile.mags[k] == o.tile.mags[i]) return mp_usage_error("run", NULL, "--mags: '%s' repeats a magnification", optarg);
            }
            o.tile.n_mags = n;
            break;
        }
        case O_SIZE:
            if (mp_parse_long(optarg, &l) || l < 8 || l > 8192) return mp_usage_error("run", NULL, "--size wants 8..8192 px, got '%s'", optarg);
            o.tile.size = (int)l;
            break;
        case O_STRIDE:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 65536) return mp_usage_error("run", NULL, "--stride wants a positive px count, got '%s'", optarg);
            o.tile.stride = (int)l;
            break;
        case O_MIN:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 1) return mp_usage_error("run", NULL, "--min-tissue wants 0..1, got '%s'", optarg);
            o.tile.min_tissue = d;
            break;
        case O_MPP:
            if (mp_parse_double(optarg, &d) || d < TILER_MPP_MIN || d > TILER_MPP_MAX)
                return mp_usage_error("run", NULL, "--mpp wants µm per pixel within 0.05-20, got '%s'", optarg);
            o.tile.mpp = o.infer.mpp = d;
            break;
        case O_Q:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 100) return mp_usage_error("run", NULL, "--quality wants 1..100, got '%s'", optarg);
            o.tile.quality = (int)l;
            break;
        case O_FMT:
            if (!strcmp(optarg, "png")) o.tile.png = 1;
            else if (!strcmp(optarg, "jpeg") || !strcmp(optarg, "jpg")) o.tile.png = 0;
            else return mp_usage_error("run", NULL, "--format wants jpeg or png, got '%s'", optarg);
            break;
        case O_ISTRIDE:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 65536) return mp_usage_error("run", NULL, "--infer-stride wants a positive px count, got '%s'", optarg);
            o.infer.stride = (int)l;
            break;
        case O_IMIN:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 1) return mp_usage_error("run", NULL, "--infer-min-tissue wants 0..1, got '%s'", optarg);
            o.infer.min_tissue = d;
            break;
        case O_THR:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 1) return mp_usage_error("run", NULL, "--threshold wants 0..1, got '%s'", optarg);
            o.infer.threshold = d;
            break;
        case O_CLASS:
            if (!optarg[0]) return mp_usage_error("run", NULL, "--class wants a class name or index, got '%s'", optarg);
            class_arg = optarg;
            break;
        case O_OVSIZE:
            if (mp_parse_long(optarg, &l) || l < 64 || l > 16384) return mp_usage_error("run", NULL, "--overlay-size wants 64..16384 px, got '%s'", optarg);
            o.infer.overlay_size = (int)l;
            break;
        case O_SHARD:
            if (shard_parse(optarg, &shard)) return mp_usage_error("run", NULL, "%s", mp_err());
            break;
        case 'h': usage(stdout); return MP_EXIT_OK;
        default: return mp_usage_error("run", NULL, "%s", mp_err());
        }
    }
    if (argc - optind != 1) {
        if (argc - optind > 1) return mp_usage_error("run", NULL, "one MANIFEST (a CSV, a folder or a quoted glob), got %s more", argv[optind + 1]);
        usage(stderr);
        return MP_EXIT_USAGE;
    }
    if (!o.out) return mp_usage_error("run", NULL, "--out DIR is required");
    if (steps) {
        o.steps = 0;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", steps);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!strcmp(t, "tile")) o.steps |= RUN_STEP_TILE;
            else if (!strcmp(t, "infer")) o.steps |= RUN_STEP_INFER;
            else return mp_usage_error("run", NULL, "--steps wants tile, infer or tile,infer, got '%s'", steps);
        }
        if (!o.steps) return mp_usage_error("run", NULL, "--steps wants tile, infer or tile,infer, got '%s'", steps);
    } else {
        o.steps = RUN_STEP_TILE | (o.model ? RUN_STEP_INFER : 0);
    }
    if ((o.steps & RUN_STEP_INFER) && !o.model) return mp_usage_error("run", NULL, "the infer step needs --model CKPT");
    if (!(o.steps & RUN_STEP_INFER) && o.model) return mp_usage_error("run", NULL, "--model is for the infer step, and --steps is '%s'", steps);
    if (!jobs_set) o.jobs = o.threads;
    if (o.quiet) mp_log_set_quiet(1);

    if (!shard.n && shard_from_env(&shard)) {
        mp_error("%s", mp_err());
        return MP_EXIT_USAGE;
    }
    mf_list m;
    if (mf_load(argv[optind], &m)) {
        mp_error("%s", mp_err());
        return MP_EXIT_USAGE;
    }
    /* the slice after the whole list is loaded: output names and class ids come from all of it */
    mf_list part;
    shard_view(&m, &shard, &part);
    char dbp[4200];
    snprintf(dbp, sizeof dbp, "%s/dataset.db", o.out);
    if (shard.n > 1) {
        mp_info("shard %d/%d (%s): %d of %d slides", shard.i, shard.n, shard.from, part.n, m.n);
        if (mp_mkdir_p(o.out)) {
            mp_error("%s", mp_err());
            shard_view_free(&part);
            mf_free(&m);
            return MP_EXIT_FAIL;
        }
    }
    if (shard_check_folder(dbp, &shard)) {
        mp_error("%s", mp_err());
        shard_view_free(&part);
        mf_free(&m);
        return MP_EXIT_USAGE;
    }
    o.class_arg = class_arg;
    o.class_list = &m;
    int rc = run_slides(&part, &o, argv[0]);
    shard_view_free(&part);
    mf_free(&m);
    return rc;
}
