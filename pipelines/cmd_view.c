/* pipelines/cmd_view.c — `magpie view PATH... [--port N] [--bind ADDR]`: serve slides, heatmaps
 * and datasets to a browser until interrupted (view/view.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "pipelines/cmds.h"
#include "tiler/tiler.h"
#include "view/view.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: magpie view PATH... [--port 8642] [--bind 127.0.0.1]\n"
               "Serve a local web page where slides and their heatmaps pan and zoom together (OpenSeadragon,\n"
               "built in: no network needed) and a dataset's patches can be browsed with db query's filter\n"
               "language. PATH is a slide, a `magpie run` folder, a `magpie infer --out` folder, a dataset,\n"
               "or a folder holding those. Read-only; only what the PATHs hold (and the slides a run or\n"
               "dataset names) is served, each by number, never by path. A folder's report.html (a run's)\n"
               "is linked from the page and served sandboxed at /r/N/report.html. Zoomed out past what a\n"
               "read of at most 4096 px covers (a slide without a coarse pyramid level), tiles come from\n"
               "the slide's thumbnail (X-Magpie-Tile: thumbnail; MAGPIE_VIEW_MAX_READ=N lowers the limit).\n\n"
               "  --port N        port to listen on (0 = any free one; the address is printed) [8642]\n"
               "  --bind ADDR     address to listen on [127.0.0.1]; anything but loopback exposes the\n"
               "                  slides to the network\n"
               "  --threads N     request threads [4]\n"
               "  --max-conns N   open connections at once [64] (--per-ip N from one address [32])\n"
               "  --timeout S     close a connection idle for S seconds [30]\n"
               "  --cache-mb N    tile cache [256]\n"
               "  --quality Q     JPEG quality of slide tiles [85]\n"
               "  -q, --quiet     print only the address\n"
               "  -h, --help\n\n"
               "exit: 0 stopped by a signal, 1 usage, 2 a PATH cannot be served or the port cannot be opened\n");
}

static int int_opt(const char *name, const char *s, long lo, long hi, int *out)
{
    long v;
    if (mp_parse_long(s, &v) || v < lo || v > hi) {
        mp_usage_error("view", NULL, "%s wants a whole number in %ld..%ld, got '%s'", name, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cmd_view(int argc, char **argv)
{
    view_opts o;
    view_opts_default(&o);
    int cache_mb = (int)(o.cache_bytes >> 20);
    static const struct option lo[] = {{"port", required_argument, 0, 'p'},     {"bind", required_argument, 0, 'b'},
                                       {"threads", required_argument, 0, 't'},  {"max-conns", required_argument, 0, 'm'},
                                       {"per-ip", required_argument, 0, 'i'},   {"timeout", required_argument, 0, 'T'},   {"cache-mb", required_argument, 0, 'c'},
                                       {"quality", required_argument, 0, 'Q'},  {"quiet", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int ch, bad = 0;
    while ((ch = mp_getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': bad |= int_opt("--port", optarg, 0, 65535, &o.port); break;
        case 'b': o.bind = optarg; break;
        case 't': bad |= int_opt("--threads", optarg, 1, 64, &o.threads); break;
        case 'm': bad |= int_opt("--max-conns", optarg, 1, 4096, &o.max_conns); break;
        case 'i': bad |= int_opt("--per-ip", optarg, 1, 4096, &o.per_ip); break;
        case 'T': bad |= int_opt("--timeout", optarg, 1, 3600, &o.timeout_s); break;
        case 'c': bad |= int_opt("--cache-mb", optarg, 1, 1 << 20, &cache_mb); break;
        case 'Q': bad |= int_opt("--quality", optarg, 1, 100, &o.quality); break;
        case 'q': o.quiet = 1; mp_log_set_quiet(1); break;
        case 'h': usage(stdout); return MP_EXIT_OK;
        default: return mp_usage_error("view", NULL, "%s", mp_err());
        }
    }
    if (bad) return MP_EXIT_USAGE;
    if (optind >= argc) return mp_usage_error("view", NULL, "no PATH (a slide, run folder, infer folder or dataset)");
    o.cache_bytes = (size_t)cache_mb << 20;
    /* block the stop signals before any thread starts, so only sigwait below receives them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (tiler_global_init(argv[0])) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    view_server *v = view_open(argv + optind, argc - optind, &o);
    if (!v) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (!o.quiet) view_print_catalog(v, stdout);
    if (view_start(v)) {
        mp_error("%s", mp_err());
        view_close(v);
        return MP_EXIT_FAIL;
    }
    const char *host = strchr(o.bind, ':') ? NULL : o.bind;
    if (host) printf("magpie view: http://%s:%d/\n", host, view_port(v));
    else printf("magpie view: http://[%s]:%d/\n", o.bind, view_port(v));
    if (strcmp(o.bind, "127.0.0.1") && strcmp(o.bind, "::1") && strcmp(o.bind, "localhost"))
        mp_warn("view: listening on %s, not loopback: anyone who can reach this machine can see these slides", o.bind);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    view_close(v);
    return MP_EXIT_OK;
}
