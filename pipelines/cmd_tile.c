/* pipelines/cmd_tile.c — `magpie tile DB SLIDE...`: parse options, tile each slide (the others
 * go on when one fails), report per slide and exit 0 / 2 (all failed) / 3 (some failed). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/opt.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/tiling.h"
#include "pipelines/cmds.h"
#include "tiler/tiler.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie tile DB SLIDE... [options]\n"
            "Cut tissue patches of every slide at several magnifications into the SQLite dataset DB.\n"
            "Resumable: run the same command again after a crash; done slides are skipped, changed\n"
            "slides or parameters are redone.\n\n"
            "  --mags LIST        magnifications, e.g. 20,10,5 (default 10,1.25; mag m = 10/m µm/px)\n"
            "  --size PX          patch side at the highest magnification (default 224); other\n"
            "                     magnifications cover the same square: round(size*m/m_top) px\n"
            "  --stride PX        grid step at the highest magnification (default = size; less overlaps)\n"
            "  --min-tissue F     keep cells whose tissue-mask coverage is >= F (default 0.5; 0 = all)\n"
            "  --mpp X            µm per level-0 pixel; overrides the file (needed when it has none)\n"
            "  --allow-upsample   permit magnifications finer than the slide's level 0\n"
            "  --allow-fluorescence  tile slides classed fluorescence too. Each slide is classed\n"
            "                     bright-field or fluorescence on its low-resolution thumbnail (dark\n"
            "                     background: the commonest brightness below 64/255 and at least 30%%\n"
            "                     of the slide that dark), recorded in slides.kind and printed; a\n"
            "                     fluorescence slide is refused by default (magpie's models are H&E)\n"
            "  -j, --jobs N       worker threads (default: number of cores)\n"
            "  --quality Q        JPEG quality 1-100 (default 90)\n"
            "  --format jpeg|png  image codec (default jpeg)\n"
            "  --dry-run          print MPP, levels, patch counts and estimates; write nothing\n"
            "  --progress MODE    auto|tty|json|none (default auto: a bar on a terminal)\n"
            "  -q, --quiet        only errors\n"
            "  -h, --help\n\n"
            "exit: 0 all slides done or skipped, 1 usage, 2 every slide failed, 3 some failed\n");
}

int cmd_tile(int argc, char **argv)
{
    tiler_opts o;
    tiler_opts_default(&o);
    o.jobs = mp_cpu_count(); /* what this process may use (affinity, cgroup quota), as every command */
    int dry = 0, quiet = 0;
    enum { O_MAGS = 256, O_SIZE, O_STRIDE, O_MIN, O_MPP, O_UP, O_Q, O_FMT, O_DRY, O_PROG, O_FLUO };
    static const struct option lo[] = {
        {"mags", required_argument, 0, O_MAGS},       {"size", required_argument, 0, O_SIZE},
        {"stride", required_argument, 0, O_STRIDE},   {"min-tissue", required_argument, 0, O_MIN},
        {"mpp", required_argument, 0, O_MPP},         {"allow-upsample", no_argument, 0, O_UP},
        {"jobs", required_argument, 0, 'j'},          {"quality", required_argument, 0, O_Q},
        {"format", required_argument, 0, O_FMT},      {"dry-run", no_argument, 0, O_DRY},
        {"progress", required_argument, 0, O_PROG},   {"quiet", no_argument, 0, 'q'},
        {"allow-fluorescence", no_argument, 0, O_FLUO}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = mp_getopt_long(argc, argv, "j:qh", lo, NULL)) != -1) {
        long l;
        double d;
        switch (ch) {
        case O_MAGS: {
            int n = mp_parse_double_list(optarg, o.mags, TILER_MAX_MAGS);
            if (n < 1) return mp_usage_error("tile", NULL, "--mags wants a comma list of magnifications, got '%s'", optarg);
            for (int i = 0; i < n; i++) {
                if (!(o.mags[i] > 0 && o.mags[i] <= 200)) return mp_usage_error("tile", NULL, "--mags: '%s' has a value outside (0, 200]", optarg);
                for (int k = 0; k < i; k++)
                    if (o.mags[k] == o.mags[i]) return mp_usage_error("tile", NULL, "--mags: '%s' repeats a magnification", optarg);
            }
            o.n_mags = n;
            break;
        }
        case O_SIZE:
            if (mp_parse_long(optarg, &l) || l < 8 || l > 8192) return mp_usage_error("tile", NULL, "--size wants 8..8192 px, got '%s'", optarg);
            o.size = (int)l;
            break;
        case O_STRIDE:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 65536) return mp_usage_error("tile", NULL, "--stride wants a positive px count, got '%s'", optarg);
            o.stride = (int)l;
            break;
        case O_MIN:
            if (mp_parse_double(optarg, &d) || d < 0 || d > 1) return mp_usage_error("tile", NULL, "--min-tissue wants 0..1, got '%s'", optarg);
            o.min_tissue = d;
            break;
        case O_MPP:
            if (mp_parse_double(optarg, &d) || d < TILER_MPP_MIN || d > TILER_MPP_MAX)
                return mp_usage_error("tile", NULL, "--mpp wants µm per pixel within 0.05-20, got '%s'", optarg);
            o.mpp = d;
            break;
        case O_UP: o.allow_upsample = 1; break;
        case O_FLUO: o.allow_fluorescence = 1; break;
        case 'j':
            if (mp_parse_long(optarg, &l) || l < 1 || l > 256) return mp_usage_error("tile", NULL, "--jobs wants 1..256, got '%s'", optarg);
            o.jobs = (int)l;
            break;
        case O_Q:
            if (mp_parse_long(optarg, &l) || l < 1 || l > 100) return mp_usage_error("tile", NULL, "--quality wants 1..100, got '%s'", optarg);
            o.quality = (int)l;
            break;
        case O_FMT:
            if (!strcmp(optarg, "png")) o.png = 1;
            else if (!strcmp(optarg, "jpeg") || !strcmp(optarg, "jpg")) o.png = 0;
            else return mp_usage_error("tile", NULL, "--format wants jpeg or png, got '%s'", optarg);
            break;
        case O_DRY: dry = 1; break;
        case O_PROG:
            if (mp_progress_parse(optarg, &o.progress)) return mp_usage_error("tile", NULL, "--progress wants auto|tty|json|none, got '%s'", optarg);
            break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return MP_EXIT_OK;
        default:
            return mp_usage_error("tile", NULL, "%s", mp_err());
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        return MP_EXIT_USAGE;
    }
    if (quiet) {
        mp_log_set_quiet(1);
        if (o.progress == MP_PROGRESS_AUTO || o.progress == MP_PROGRESS_TTY) o.progress = MP_PROGRESS_NONE;
    }
    const char *db_path = argv[optind];
    char **slides = argv + optind + 1;
    int n = argc - optind - 1;
    /* libvips initialises on a helper thread while the first slide is fingerprinted and its
     * mask computed; every return below waits for it (tiler_global_wait). */
    if (tiler_global_init_async(argv[0])) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }

    int nfail = 0;
    if (dry) {
        mp_db *db = mp_file_exists(db_path) ? db_open(db_path, DB_OPEN_READONLY) : NULL;
        for (int i = 0; i < n; i++)
            if (tiler_dry_run(db, slides[i], &o, stdout)) {
                mp_error("%s", mp_err());
                nfail++;
            }
        db_close(db);
    } else {
        if (db_tile_lock(db_path, 1.0) < 0) { /* held until exit */
            mp_error("%s", mp_err());
            tiler_global_wait();
            return MP_EXIT_FAIL;
        }
        mp_db *db = db_open(db_path, DB_OPEN_CREATE);
        if (!db) {
            mp_error("%s", mp_err());
            tiler_global_wait();
            return MP_EXIT_FAIL;
        }
        int64_t total = 0;
        for (int i = 0; i < n; i++) {
            tiler_result r;
            if (tiler_tile_slide(db, slides[i], &o, &r)) {
                mp_error("%s", mp_err());
                nfail++;
                continue;
            }
            total += r.n_patches;
            if (r.outcome == TILER_SKIPPED)
                mp_info("%s: done and unchanged, skipped (%lld patches)", slides[i], (long long)r.n_patches);
            else
                mp_info("%s: %s, %lld patches (%lld new, %lld unreadable cells) in %.1f s", slides[i],
                        tiler_kind_name(r.kind.kind), (long long)r.n_patches, (long long)r.n_new,
                        (long long)r.n_errors, r.seconds);
        }
        db_close(db);
        mp_info("%s: %d of %d slides tiled, %lld patches", db_path, n - nfail, n, (long long)total);
    }
    tiler_global_wait(); /* a failure here was already reported by the slides */
    if (nfail == 0) return MP_EXIT_OK;
    return nfail == n ? MP_EXIT_FAIL : MP_EXIT_PARTIAL;
}
