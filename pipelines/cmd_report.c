/* pipelines/cmd_report.c — `magpie report DIR... [--out FILE]`: rebuild report.html from one or
 * more `magpie run` folders (the shards of a cluster run give one report). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/opt.h"
#include "common/log.h"
#include "pipelines/cmds.h"
#include "pipelines/run.h"
#include "tiler/tiler.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: magpie report DIR... [--out FILE]\n"
               "Write one self-contained HTML report (images inline, opens offline, sortable by column) over\n"
               "the `magpie run` folders DIR...: totals and timings, and per slide its thumbnail, tissue mask,\n"
               "heatmap overlay, patch counts, MPP and its source, status or error, slide-level call.\n\n"
               "  --out FILE   where to write it (default DIR/report.html with one DIR; required with several)\n"
               "  -q, --quiet  only errors\n"
               "  -h, --help\n\n"
               "exit: 0 written, 1 usage, 2 a folder is not a run folder or the file cannot be written\n");
}

int cmd_report(int argc, char **argv)
{
    const char *out = NULL;
    static const struct option lo[] = {{"out", required_argument, 0, 'o'}, {"quiet", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = mp_getopt_long(argc, argv, "o:qh", lo, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'q': mp_log_set_quiet(1); break;
        case 'h': usage(stdout); return MP_EXIT_OK;
        default: return mp_usage_error("report", NULL, "%s", mp_err());
        }
    }
    int n = argc - optind;
    if (n < 1) {
        usage(stderr);
        return MP_EXIT_USAGE;
    }
    char def[4200];
    if (!out) {
        if (n > 1) return mp_usage_error("report", NULL, "--out FILE is required with several folders");
        snprintf(def, sizeof def, "%s/report.html", argv[optind]);
        out = def;
    }
    if (tiler_global_init(argv[0])) { /* libvips, for the inline images */
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (run_report_write(out, argv + optind, n)) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_info("report: %s", out);
    return MP_EXIT_OK;
}
