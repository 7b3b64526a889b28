/* pipelines/main.c — the `magpie` binary: dispatch to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "nn/gemm.h"
#include "pipelines/cmds.h"

#ifndef MAGPIE_VERSION
#define MAGPIE_VERSION "dev"
#endif

static const struct {
    const char *name;
    int (*fn)(int, char **);
    int blas; /* 0: never calls BLAS, so OpenBLAS's spinning pool threads are stopped first */
    const char *what;
} cmds[] = {
    {"demo", cmd_demo, 1, "synthesize slides, tile them, summarise the dataset (the built-in default job)"},
    {"synth", cmd_synth, 0, "generate synthetic H&E-like pyramidal slides with ground truth"},
    {"tile", cmd_tile, 0, "cut tissue patches at several magnifications into an SQLite dataset"},
    {"db", cmd_db, 0, "inspect and curate a dataset (info, slides, stats, check, labels, split, ...)"},
    {"train", cmd_train, 1, "train a teacher or distil a student"},
    {"eval", cmd_eval, 1, "evaluate a checkpoint on a dataset split"},
    {"infer", cmd_infer, 1, "turn slides into heatmaps (pyramidal TIFF registered to the slide), overlays, GeoJSON"},
    {"run", cmd_run, 1, "run a manifest of slides through tile and infer, resumably, with an HTML report"},
    {"report", cmd_report, 0, "rebuild the HTML report of one or more magpie run folders (shards)"},
    {"view", cmd_view, 0, "serve slides, heatmaps and datasets to a browser (local, read-only)"},
    {"model", cmd_model, 1, "model info, run, grad, import/export (safetensors, .npy)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: magpie COMMAND [ARGS...]   (magpie COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-7s %s\n", cmds[i].name, cmds[i].what);
    fprintf(f, "\nexit codes: 0 success, 1 usage error, 2 failure, 3 partial failure (some slides failed)\n");
}

int main(int argc, char **argv)
{
    mp_fp_flush_denormals(); /* before any thread is started, so all of ours inherit it */
    if (argc < 2) {
        usage(stderr);
        return MP_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MP_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("magpie %s\n", MAGPIE_VERSION);
        return MP_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) {
            if (!cmds[i].blas) nn_blas_park();
            return cmds[i].fn(argc - 1, argv + 1);
        }
    mp_error("unknown command '%s' (see magpie --help)", argv[1]);
    return MP_EXIT_USAGE;
}
