/* pipelines/cmd_synth.c — `magpie synth OUTDIR [...]`: parse options into synth_run_opts and
 * run the generator (synth/synth.h). Usage errors exit 1, failures 2, some slides failed 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/opt.h"
#include "common/log.h"
#include "common/util.h"
#include "pipelines/cmds.h"
#include "synth/synth.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie synth OUTDIR [options]\n\n"
            "Generate synthetic H&E-like whole slides with ground truth. Classes differ in nuclear detail\n"
            "(visible at 10x) with matched mean colour (nearly lost at 1.25x).\n\n"
            "slides:\n"
            "  --slides N            number of slides (default 4)\n"
            "  --patients P          patients, slides dealt round-robin (default ceil(N/2))\n"
            "  --width W --height H  level-0 size in pixels (default 16384x12288)\n"
            "  --mpp X               µm per pixel (default 0.25 = 40x; geometry scales with it)\n"
            "  --seed S              seed (default 1); same seed, same bytes\n"
            "  --classes LIST        TYPE[:NAME],... types lymphocyte, tumor, stroma\n"
            "                        (default lymphocyte,tumor,stroma named Lymphocyte, Tumor, Stroma)\n"
            "  --region-size UM      class region (Voronoi cell) spacing in µm (default 600)\n"
            "  --purity F            share of regions of the slide's dominant class (default 0.6)\n"
            "nuisance:\n"
            "  --nuisance PRESET     none | mild (mix 0.10, density 0.2, stain 0.5, default) |\n"
            "                        strong (0.15, 0.3, 1.0)\n"
            "  --mix F               share of nuclei of other classes' types\n"
            "  --density-jitter D    per-region nuclear density factor exp(D·N(0,1))\n"
            "  --stain-jitter S      stain vector, amount and brightness jitter strength\n"
            "artifacts:\n"
            "  --pen P               probability that a slide has pen strokes (default 0.5)\n"
            "  --dust D              dust specks per mm² (default 1)\n"
            "output:\n"
            "  --quality Q           JPEG quality of the TIFF tiles (default 90)\n"
            "  --tile T              TIFF tile size (default 256, multiple of 16)\n"
            "  --mask-downsample D   level-0 pixels per mask pixel (default: power of two near 8 µm)\n"
            "  --prefix NAME         slide names NAME_000... and patients NAME_p000... (default synth)\n"
            "  --jobs N              libvips worker threads (default: all cores)\n"
            "  --progress MODE       auto | tty | json | none\n"
            "  -q, --quiet           no messages except errors\n\n"
            "writes OUTDIR/NAME_000.tiff (tiled pyramidal JPEG TIFF, MPP in the resolution tags),\n"
            "NAME_000_mask.png (class value per pixel: 0 glass, k = k-th class), NAME_000_artifacts.png\n"
            "(0 none, 1 pen, 2 dust), NAME_000.geojson (QuPath annotations), NAME_000.json (sidecar),\n"
            "slides.csv (slide,patient,label with label = the class covering most of the slide's\n"
            "tissue) and synth.json (parameters).\n");
}

static int bad(const char *opt, const char *val, const char *what)
{
    mp_error("synth: %s %s: %s", opt, val, what);
    return MP_EXIT_USAGE;
}

int cmd_synth(int argc, char **argv)
{
    enum {
        O_SLIDES = 256, O_PATIENTS, O_WIDTH, O_HEIGHT, O_MPP, O_SEED, O_CLASSES, O_REGION, O_PURITY, O_NUISANCE, O_MIX,
        O_DJIT, O_SJIT, O_PEN, O_DUST, O_QUALITY, O_TILE, O_MASKDS, O_PREFIX, O_JOBS, O_PROGRESS, O_QUIET, O_HELP
    };
    static const struct option opts[] = {
        {"slides", 1, 0, O_SLIDES}, {"patients", 1, 0, O_PATIENTS}, {"width", 1, 0, O_WIDTH},
        {"height", 1, 0, O_HEIGHT}, {"mpp", 1, 0, O_MPP}, {"seed", 1, 0, O_SEED}, {"classes", 1, 0, O_CLASSES},
        {"region-size", 1, 0, O_REGION}, {"purity", 1, 0, O_PURITY}, {"nuisance", 1, 0, O_NUISANCE},
        {"mix", 1, 0, O_MIX}, {"density-jitter", 1, 0, O_DJIT}, {"stain-jitter", 1, 0, O_SJIT}, {"pen", 1, 0, O_PEN},
        {"dust", 1, 0, O_DUST}, {"quality", 1, 0, O_QUALITY}, {"tile", 1, 0, O_TILE},
        {"mask-downsample", 1, 0, O_MASKDS}, {"prefix", 1, 0, O_PREFIX}, {"jobs", 1, 0, O_JOBS},
        {"progress", 1, 0, O_PROGRESS}, {"quiet", 0, 0, O_QUIET}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    synth_run_opts o = {.prefix = "synth", .slides = 4, .patients = 0, .tile = 256, .quality = 90};
    synth_params_default(&o.p);
    double mix = 0, dj = 0, sj = 0;
    int have_mix = 0, have_dj = 0, have_sj = 0;
    opterr = 0;
    optind = 1;
    int c, li = 0;
    char name[48];
    while ((c = mp_getopt_long(argc, argv, "hq", opts, &li)) != -1) {
        const char *a = optarg;
        snprintf(name, sizeof name, "--%s", c >= 256 ? opts[li].name : "?");
        long l;
        double d;
        switch (c) {
        case O_HELP:
        case 'h':
            usage(stdout);
            return MP_EXIT_OK;
        case O_QUIET:
        case 'q':
            mp_log_set_quiet(1);
            o.progress = MP_PROGRESS_NONE;
            break;
        case O_PROGRESS:
            if (mp_progress_parse(a, &o.progress)) return bad("--progress", a, "expected auto, tty, json or none");
            break;
        case O_PREFIX:
            if (!*a || strlen(a) > 64 || strpbrk(a, "/\\,\"\r\n"))
                return bad("--prefix", a, "1-64 characters, no slashes, commas or quotes");
            o.prefix = a;
            break;
        case O_CLASSES:
            if (synth_parse_classes(&o.p, a)) {
                mp_error("synth: %s", mp_err());
                return MP_EXIT_USAGE;
            }
            break;
        case O_NUISANCE:
            if (synth_nuisance_preset(&o.p, a)) {
                mp_error("synth: %s", mp_err());
                return MP_EXIT_USAGE;
            }
            break;
        case O_SEED:
            if (mp_parse_long(a, &l) || l < 0) return bad("--seed", a, "expected a non-negative integer");
            o.p.seed = (uint64_t)l;
            break;
        case O_SLIDES: case O_PATIENTS: case O_WIDTH: case O_HEIGHT: case O_QUALITY: case O_TILE: case O_MASKDS:
        case O_JOBS:
            if (mp_parse_long(a, &l)) return bad(name, a, "expected an integer");
            if (c == O_SLIDES) {
                if (l < 1 || l > 100000) return bad("--slides", a, "must be between 1 and 100000");
                o.slides = (int)l;
            } else if (c == O_PATIENTS) {
                if (l < 1 || l > 100000) return bad("--patients", a, "must be between 1 and 100000");
                o.patients = (int)l;
            } else if (c == O_WIDTH || c == O_HEIGHT) {
                if (l < 64 || l > 1000000) return bad(c == O_WIDTH ? "--width" : "--height", a, "must be between 64 and 1000000");
                *(c == O_WIDTH ? &o.p.width : &o.p.height) = (int)l;
            } else if (c == O_QUALITY) {
                if (l < 1 || l > 100) return bad("--quality", a, "must be between 1 and 100");
                o.quality = (int)l;
            } else if (c == O_TILE) {
                if (l < 16 || l > 4096 || l % 16) return bad("--tile", a, "must be a multiple of 16 between 16 and 4096");
                o.tile = (int)l;
            } else if (c == O_MASKDS) {
                if (l < 1 || l > 4096) return bad("--mask-downsample", a, "must be between 1 and 4096");
                o.mask_downsample = (int)l;
            } else {
                if (l < 1 || l > 256) return bad("--jobs", a, "must be between 1 and 256");
                o.jobs = (int)l;
            }
            break;
        case O_MPP: case O_REGION: case O_PURITY: case O_MIX: case O_DJIT: case O_SJIT: case O_PEN: case O_DUST:
            if (mp_parse_double(a, &d)) return bad(name, a, "expected a number");
            if (c == O_MPP) o.p.mpp = d;
            else if (c == O_REGION) o.p.region_um = d;
            else if (c == O_PURITY) o.p.purity = d;
            else if (c == O_MIX) mix = d, have_mix = 1;
            else if (c == O_DJIT) dj = d, have_dj = 1;
            else if (c == O_SJIT) sj = d, have_sj = 1;
            else if (c == O_PEN) o.p.pen_prob = d;
            else o.p.dust_per_mm2 = d;
            break;
        case '?':
        default:
            mp_error("synth: %s (see magpie synth --help)", mp_err());
            return MP_EXIT_USAGE;
        }
    }
    /* explicit knobs override the preset whatever their order on the command line */
    if (have_mix) o.p.mix = mix;
    if (have_dj) o.p.density_jitter = dj;
    if (have_sj) o.p.stain_jitter = sj;
    if (optind >= argc) {
        mp_error("synth: missing OUTDIR (see magpie synth --help)");
        return MP_EXIT_USAGE;
    }
    if (optind + 1 < argc) {
        mp_error("synth: unexpected argument %s (one OUTDIR only)", argv[optind + 1]);
        return MP_EXIT_USAGE;
    }
    o.outdir = argv[optind];
    if (!o.patients) o.patients = (o.slides + 1) / 2;
    if (o.patients > o.slides) {
        mp_error("synth: --patients %d: more patients than slides (%d)", o.patients, o.slides);
        return MP_EXIT_USAGE;
    }
    if (synth_params_check(&o.p)) {
        mp_error("synth: %s", mp_err());
        return MP_EXIT_USAGE;
    }
    return synth_run(&o);
}
