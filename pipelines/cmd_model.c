/* pipelines/cmd_model.c — `magpie model info|run|grad|import|export`: checkpoints in and out of
 * PyTorch (safetensors with state_dict names), forward and cross-entropy gradients on .npy
 * batches, and a checkpoint's architecture, size and FLOPs. */
#include <assert.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "nn/arch.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "nn/gemm.h"
#include "nn/losses.h"
#include "nn/model.h"
#include "nn/npy.h"
#include "nn/safetensors.h"
#include "pipelines/cmds.h"

#define RUN_BATCH 32 /* images per forward in `model run`: bounds the activation arena */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie model COMMAND [ARGS]   (magpie model COMMAND --help for details)\n\n"
            "commands:\n"
            "  info CKPT [--size PX] [--json]            architecture, parameters, FLOPs, training state\n"
            "  run CKPT IN.npy OUT.npy                    forward an N×C×H×W float32 batch, write N×classes logits\n"
            "  grad CKPT IN.npy LABELS.npy OUT.safetensors  cross-entropy gradients of every parameter\n"
            "  import FILE.safetensors --out CKPT [--arch NAME] [--groups G] [--mag M] [--size PX] [--mean a,b,c] [--std a,b,c]\n"
            "                                             PyTorch state_dict -> checkpoint (architecture inferred)\n"
            "  export CKPT FILE.safetensors               checkpoint -> PyTorch state_dict (load_state_dict ready)\n"
            "  init --out CKPT [--arch NAME] [--classes K] [--widths ..] [--blocks ..] [--norm group|batch] [--seed S]\n"
            "                                             a freshly initialised network (PyTorch's default init)\n"
            "every option taking a value accepts --name VALUE and --name=VALUE; names are exact\n");
}

static const char *help_info =
    "usage: magpie model info CKPT [--size PX] [--json]\n"
    "Print the architecture, trainable parameter count, forward FLOPs for one PX×PX image (default: the\n"
    "checkpoint's own input size, 224 when it records none; 2 FLOPs per multiply-add) and the training\n"
    "state stored in the checkpoint. Epochs are counted from 1, as in training's output and log.\n";
static const char *help_run =
    "usage: magpie model run CKPT IN.npy OUT.npy [--threads N]\n"
    "Forward a float32 .npy batch N×C×H×W (C order, already normalised as the model expects) in eval\n"
    "mode and write the N×classes logits as float32 .npy.\n"
    "--threads N: compute threads (default: the CPUs this process may use).\n";
static const char *help_grad =
    "usage: magpie model grad CKPT IN.npy LABELS.npy OUT.safetensors [--eval] [--threads N]\n"
    "Forward IN (N×C×H×W float32) in train mode (--eval: eval mode, matters for BatchNorm), take the\n"
    "mean softmax cross-entropy against LABELS (N int64 or int32 class indices) and write the gradient\n"
    "of every trainable parameter under its PyTorch name. The loss is printed and stored as metadata.\n"
    "--threads N: compute threads (default: the CPUs this process may use).\n";
static const char *help_import =
    "usage: magpie model import FILE.safetensors --out CKPT [--arch NAME] [--groups G] [--mag M]\n"
    "                           [--size PX] [--mean a,b,c] [--std a,b,c]\n"
    "Convert a PyTorch state_dict (names of torch_resnet_gn.py: stem.0.weight, layers.K.c1.weight, fc.bias)\n"
    "to a checkpoint. The architecture is inferred: widths from conv shapes, blocks per stage from the\n"
    "layer names, GroupNorm or BatchNorm from running_mean, classes from fc.weight. --arch resnet_gn |\n"
    "resnet18 | resnet18_bn states it instead (every tensor is then checked against it). --groups is\n"
    "the GroupNorm group count (default 32; not recorded in a state_dict). --mag, --size, --mean, --std\n"
    "record the input magnification, patch size and normalisation (of [0,1] pixels) in the checkpoint;\n"
    "--mean defaults to 0,0,0 and --std to 1,1,1 (pixels in [0,1] as they are).\n";
static const char *help_export =
    "usage: magpie model export CKPT FILE.safetensors\n"
    "Write the model tensors under their PyTorch state_dict names (num_batches_tracked as int64), so\n"
    "torch's load_state_dict(strict=True) accepts them; the architecture goes into __metadata__.\n";

static const char *help_init =
    "usage: magpie model init --out CKPT [--arch NAME] [--classes K] [--widths W,W,..] [--blocks B,B,..]\n"
    "                         [--norm group|batch] [--groups G] [--seed S]\n"
    "Write a checkpoint of a new network with PyTorch's default initialisation (seeded; default 0).\n"
    "--arch resnet_gn (default) | resnet18 | resnet18_bn; --widths/--blocks/--norm/--groups change the\n"
    "layout (one width and block count per stage); --classes defaults to 2.\n";

/* A subcommand's options: a value option stores its argument in *val, a flag sets *flag. */
typedef struct {
    const char *name;
    const char **val; /* NULL for a flag */
    int *flag;
} opt;

#define MAX_OPTS 16

/* Parse argv (argv[0] the subcommand's name) through mp_getopt_long: exact option names, "--name
 * VALUE" or "--name=VALUE", options anywhere among the positional arguments, which land in pos
 * (at most maxpos, count in *npos). Returns 1 after printing help (--help, -h), 0, or -1 after
 * the usage error line. */
static int parse_args(int argc, char **argv, const opt *opts, const char *help, char **pos, int maxpos, int *npos)
{
    char what[64];
    snprintf(what, sizeof what, "model %s", argv[0]);
    struct option lo[MAX_OPTS + 2];
    int n = 0;
    for (const opt *p = opts; p && p->name; p++, n++) {
        assert(n < MAX_OPTS);
        lo[n] = (struct option){p->name, p->val ? required_argument : no_argument, NULL, 256 + n};
    }
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    int ch;
    while ((ch = mp_getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            fputs(help, stdout);
            return 1;
        }
        if (ch < 256 || ch >= 256 + n) return mp_usage_error(what, NULL, "%s", mp_err()), -1;
        const opt *o = &opts[ch - 256];
        if (o->val) *o->val = optarg;
        else *o->flag = 1;
    }
    *npos = 0;
    for (int i = optind; i < argc; i++) {
        if (*npos == maxpos) return mp_usage_error(what, NULL, "unexpected argument '%s'", argv[i]), -1;
        pos[(*npos)++] = argv[i];
    }
    return 0;
}

/* --threads N (default: every CPU this process may use); -1 after a usage error */
static int set_threads(const char *what, const char *s)
{
    long n = mp_cpu_count();
    if (s && (mp_parse_long(s, &n) != 0 || n < 1 || n > 1024))
        return mp_usage_error(what, NULL, "--threads wants 1..1024, got '%s'", s), -1;
    nn_set_threads((int)n);
    return 0;
}

static int fail(void)
{
    mp_error("%s", mp_err());
    return MP_EXIT_FAIL;
}

/* ---- info ---- */

static int do_info(int argc, char **argv)
{
    const char *size_s = NULL;
    int json = 0;
    opt opts[] = {{"size", &size_s, NULL}, {"json", NULL, &json}, {NULL, NULL, NULL}};
    char *pos[1];
    int npos, rc = parse_args(argc, argv, opts, help_info, pos, 1, &npos);
    if (rc) return rc > 0 ? MP_EXIT_OK : MP_EXIT_USAGE;
    long size = 0;
    if (npos != 1) return mp_usage_error("model info", NULL, "expected CKPT");
    if (size_s && (mp_parse_long(size_s, &size) != 0 || size < 1 || size > 65536))
        return mp_usage_error("model info", NULL, "--size must be a pixel count");
    nn_ckpt ck;
    if (nn_ckpt_load(&ck, pos[0]) != 0) return fail();
    nn_card card;
    nn_model *m = NULL;
    if (nn_card_read(&ck, NN_CARD_NETWORK, &card) != 0 || !(m = nn_model_from_ckpt(&ck, 1, 32, 32, 0))) {
        nn_card_free(&card);
        nn_ckpt_free(&ck);
        return fail();
    }
    const nn_model_cfg cfg = card.cfg;
    /* FLOPs where the model runs: its recorded input size unless --size asks for another */
    const char *size_from = size_s ? "--size" : card.size > 0 ? "the checkpoint's input size" : "default; the checkpoint records no input size";
    if (!size_s) size = card.size > 0 ? card.size : 224;
    int64_t flops = nn_model_flops(&cfg, (int)size, (int)size);
    size_t params = nn_model_param_count(m), total = 0;
    const nn_params *ps = nn_model_params(m);
    for (int i = 0; i < ps->n; i++) total += ps->p[i].numel;
    char desc[512];
    nn_arch_describe(&cfg, desc, sizeof desc);
    /* epochs 1-based everywhere: the state's "epoch" is the next epoch to run counted from 0, that
     * is the number of epochs run; its best_epoch counts from 0 (-1 = none yet) */
    int64_t step = -1, epoch = -1, best = -2;
    const char *optk = nn_ckpt_train_get(&ck, "optim.kind");
    if (ck.has_train) {
        if (nn_ckpt_train_get_i64(&ck, "step", &step) != 0 && nn_ckpt_train_get_i64(&ck, "optim.step", &step) != 0)
            step = -1;
        if (nn_ckpt_train_get_i64(&ck, "epoch", &epoch) != 0) epoch = -1;
        if (nn_ckpt_train_get_i64(&ck, "best_epoch", &best) != 0) best = -2;
    }
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:i, s:I, s:b}", "file", pos[0], "architecture", desc,
                              "parameters", (json_int_t)params, "buffers", (json_int_t)(total - params), "size",
                              (int)size, "flops", (json_int_t)flops, "training_state", ck.has_train);
        json_object_set_new(o, "size_from", json_string(size_s ? "option" : card.size > 0 ? "checkpoint" : "default"));
        json_t *meta = json_object();
        for (int i = 0; i < ck.nmeta; i++) json_object_set_new(meta, ck.meta[2 * i], json_string(ck.meta[2 * i + 1]));
        json_object_set_new(o, "meta", meta);
        if (ck.has_train) {
            json_object_set_new(o, "step", json_integer(step));
            json_object_set_new(o, "epochs_run", json_integer(epoch));
            if (best >= -1) json_object_set_new(o, "best_epoch", best >= 0 ? json_integer(best + 1) : json_null());
            if (optk) json_object_set_new(o, "optimizer", json_string(optk));
        }
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("checkpoint    %s\n", pos[0]);
        printf("architecture  %s\n", desc);
        printf("parameters    %zu trainable (%.2f M), %zu buffer values, %d tensors\n", params, (double)params / 1e6,
               total - params, ps->n);
        printf("flops         %.4f GFLOP per %ldx%ld image (%.4f GMAC; %s)\n", (double)flops / 1e9, size, size,
               (double)flops / 2e9, size_from);
        if (ck.has_train) {
            printf("training      %lld epochs run (step %lld), optimiser %s", (long long)epoch, (long long)step,
                   optk ? optk : "none");
            if (best >= 0) printf(", best epoch %lld (1-based)", (long long)best + 1);
            printf("\n");
        }
        else
            printf("training      no training state (weights only)\n");
        for (int i = 0; i < ck.nmeta; i++) printf("meta          %s = %s\n", ck.meta[2 * i], ck.meta[2 * i + 1]);
    }
    nn_model_free(m);
    nn_card_free(&card);
    nn_ckpt_free(&ck);
    return MP_EXIT_OK;
}

/* ---- run / grad ---- */

static int read_batch(const char *path, int in_ch, nn_npy *x)
{
    if (nn_npy_read(path, x) != 0) return -1;
    if (x->dtype != NN_F32 || x->ndim != 4)
        return mp_err_set("%s: expected a float32 N×C×H×W batch, got %s with %d dimensions", path,
                          x->dtype == NN_F32 ? "float32" : x->dtype == NN_I64 ? "int64" : "int32", x->ndim);
    if (x->shape[1] != in_ch)
        return mp_err_set("%s: %lld channels, the model takes %d", path, (long long)x->shape[1], in_ch);
    if (x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1 || x->shape[0] > 1 << 24 || x->shape[2] > 1 << 16 ||
        x->shape[3] > 1 << 16)
        return mp_err_set("%s: bad batch shape", path);
    return 0;
}

static int do_run(int argc, char **argv)
{
    const char *threads = NULL;
    opt opts[] = {{"threads", &threads, NULL}, {NULL, NULL, NULL}};
    char *pos[3];
    int npos, rc = parse_args(argc, argv, opts, help_run, pos, 3, &npos);
    if (rc) return rc > 0 ? MP_EXIT_OK : MP_EXIT_USAGE;
    if (set_threads("model run", threads)) return MP_EXIT_USAGE;
    if (npos != 3) {
        return mp_usage_error("model run", NULL, "expected CKPT IN.npy OUT.npy");
    }
    nn_ckpt ck;
    nn_card card = {0};
    nn_npy x = {0};
    nn_model *m = NULL;
    float *logits = NULL;
    int status = MP_EXIT_FAIL;
    if (nn_ckpt_load(&ck, pos[0]) != 0) return fail();
    if (nn_card_read(&ck, NN_CARD_NETWORK, &card) != 0 || read_batch(pos[1], card.cfg.in_ch, &x) != 0) goto out;
    int N = (int)x.shape[0], C = (int)x.shape[1], H = (int)x.shape[2], W = (int)x.shape[3];
    int B = N < RUN_BATCH ? N : RUN_BATCH, K = card.cfg.classes;
    if (!(m = nn_model_from_ckpt(&ck, B, H, W, 0))) goto out;
    logits = mp_xmalloc((size_t)N * K * sizeof(float));
    for (int i = 0; i < N; i += B) {
        int n = N - i < B ? N - i : B;
        if (nn_model_forward(m, (const float *)x.data + (size_t)i * C * H * W, n, H, W, 0) != 0) {
            mp_err_prefix("%s", pos[1]);
            goto out;
        }
        memcpy(logits + (size_t)i * K, nn_model_logits(m), (size_t)n * K * sizeof(float));
    }
    int64_t shape[2] = {N, K};
    if (nn_npy_write(pos[2], NN_F32, 2, shape, logits) != 0) goto out;
    status = MP_EXIT_OK;
out:
    if (status != MP_EXIT_OK) mp_error("%s", mp_err());
    free(logits);
    nn_model_free(m);
    nn_npy_free(&x);
    nn_card_free(&card);
    nn_ckpt_free(&ck);
    return status;
}

static int do_grad(int argc, char **argv)
{
    int eval = 0;
    const char *threads = NULL;
    opt opts[] = {{"eval", NULL, &eval}, {"threads", &threads, NULL}, {NULL, NULL, NULL}};
    char *pos[4];
    int npos, rc = parse_args(argc, argv, opts, help_grad, pos, 4, &npos);
    if (rc) return rc > 0 ? MP_EXIT_OK : MP_EXIT_USAGE;
    if (set_threads("model grad", threads)) return MP_EXIT_USAGE;
    if (npos != 4) {
        return mp_usage_error("model grad", NULL, "expected CKPT IN.npy LABELS.npy OUT.safetensors");
    }
    nn_ckpt ck;
    nn_card card = {0};
    nn_npy x = {0}, y = {0};
    nn_model *m = NULL;
    int32_t *labels = NULL;
    float *dlogits = NULL;
    int status = MP_EXIT_FAIL;
    if (nn_ckpt_load(&ck, pos[0]) != 0) return fail();
    if (nn_card_read(&ck, NN_CARD_NETWORK, &card) != 0 || read_batch(pos[1], card.cfg.in_ch, &x) != 0 ||
        nn_npy_read(pos[2], &y) != 0)
        goto out;
    int N = (int)x.shape[0], H = (int)x.shape[2], W = (int)x.shape[3], K = card.cfg.classes;
    if (y.dtype == NN_F32 || y.ndim != 1 || y.shape[0] != N) {
        mp_err_set("%s: expected %d int64 or int32 labels (shape (%d,)), got %s with %d dimensions", pos[2], N, N,
                   y.dtype == NN_F32 ? "float32" : "integers", y.ndim);
        goto out;
    }
    labels = mp_xmalloc((size_t)N * sizeof *labels);
    for (int i = 0; i < N; i++) {
        int64_t v = y.dtype == NN_I64 ? ((int64_t *)y.data)[i] : ((int32_t *)y.data)[i];
        if (v < 0 || v >= K) {
            mp_err_set("%s: label %lld at index %d is outside 0..%d", pos[2], (long long)v, i, K - 1);
            goto out;
        }
        labels[i] = (int32_t)v;
    }
    if (!(m = nn_model_from_ckpt(&ck, N, H, W, 1))) goto out;
    if (nn_model_forward(m, x.data, N, H, W, !eval) != 0) {
        mp_err_prefix("%s", pos[1]);
        goto out;
    }
    dlogits = mp_xcalloc((size_t)N * K, sizeof(float));
    double loss = nn_cross_entropy(dlogits, nn_model_logits(m), labels, N, K, NULL, 0.0f, 1.0f);
    nn_params_zero_grad(nn_model_params(m));
    if (nn_model_backward(m, dlogits, NULL) != 0) goto out;
    char ls[64];
    snprintf(ls, sizeof ls, "%.9g", loss);
    const char *meta[] = {"format", "pt", "loss", ls, "mode", eval ? "eval" : "train", NULL};
    if (nn_st_write_params(pos[3], nn_model_params(m), 1, meta) != 0) goto out;
    printf("loss %.9g\n", loss);
    status = MP_EXIT_OK;
out:
    if (status != MP_EXIT_OK) mp_error("%s", mp_err());
    free(labels);
    free(dlogits);
    nn_model_free(m);
    nn_npy_free(&x);
    nn_npy_free(&y);
    nn_card_free(&card);
    nn_ckpt_free(&ck);
    return status;
}

/* ---- import / export ---- */

static int check_triple(const char *what, const char *s)
{
    double v[4];
    if (s && mp_parse_double_list(s, v, 4) != 3) {
        return mp_usage_error("model import", NULL, "%s must be three comma-separated numbers (got '%s')", what, s), -1;
    }
    return 0;
}

static int do_import(int argc, char **argv)
{
    const char *out = NULL, *arch = NULL, *groups_s = NULL, *mag = NULL, *mean = NULL, *std = NULL, *size_s = NULL;
    opt opts[] = {{"out", &out, NULL},   {"arch", &arch, NULL}, {"groups", &groups_s, NULL},
                  {"mag", &mag, NULL},   {"size", &size_s, NULL}, {"mean", &mean, NULL},
                  {"std", &std, NULL},   {NULL, NULL, NULL}};
    char *pos[1];
    int npos, rc = parse_args(argc, argv, opts, help_import, pos, 1, &npos);
    if (rc) return rc > 0 ? MP_EXIT_OK : MP_EXIT_USAGE;
    long groups = 32;
    double magv;
    if (npos != 1 || !out) {
        return mp_usage_error("model import", NULL, "expected FILE.safetensors --out CKPT");
    }
    if (groups_s && (mp_parse_long(groups_s, &groups) != 0 || groups < 1)) {
        return mp_usage_error("model import", NULL, "--groups must be a positive integer");
    }
    if (mag && (mp_parse_double(mag, &magv) != 0 || !(magv > 0))) {
        return mp_usage_error("model import", NULL, "--mag must be a positive number");
    }
    long sizev;
    if (size_s && (mp_parse_long(size_s, &sizev) != 0 || sizev < 1 || sizev > 1 << 20)) {
        return mp_usage_error("model import", NULL, "--size must be a positive pixel count");
    }
    if (check_triple("--mean", mean) || check_triple("--std", std)) return MP_EXIT_USAGE;
    nn_st_file f;
    if (nn_st_read(pos[0], &f) != 0) return fail();
    nn_model_cfg cfg;
    nn_model *m = NULL;
    nn_ckpt ck = {0};
    nn_card card = {0};
    int status = MP_EXIT_FAIL;
    if (arch) {
        const nn_st_tensor *fc = nn_st_find(&f, "fc.weight");
        if (nn_arch_preset(arch, fc && fc->ndim == 2 ? (int)fc->shape[0] : 1, &cfg) != 0) {
            status = mp_usage_error("model import", NULL, "%s", mp_err());
            goto out;
        }
        if (groups_s) cfg.groups = (int)groups;
    } else if (nn_arch_infer(&f, pos[0], (int)groups, &cfg) != 0) {
        goto out;
    }
    if (!(m = nn_model_create(&cfg, 1, 32, 32, 0))) {
        mp_err_prefix("%s", pos[0]);
        goto out;
    }
    if (nn_arch_load_st(&f, pos[0], nn_model_params(m)) != 0) goto out;
    /* the input keys of the card, so `magpie eval/infer` can use an imported model; checked
     * against the same bounds the readers apply */
    nn_card_from_cfg(&card, &cfg);
    if (mag) card.mag = magv;
    if (size_s) card.size = (int)sizev;
    {
        /* without --mean/--std the network takes [0,1] pixels as they are (torchvision's
         * ToTensor without Normalize); the card says so rather than leaving it unknown */
        double mv[4] = {0, 0, 0}, sv[4] = {1, 1, 1};
        if (mean) mp_parse_double_list(mean, mv, 4);
        if (std) mp_parse_double_list(std, sv, 4);
        for (int c = 0; c < 3; c++) card.mean[c] = (float)mv[c], card.std[c] = (float)sv[c];
        card.has_norm = 1;
    }
    if (nn_card_check(&card, out) != 0) {
        status = mp_usage_error("model import", NULL, "%s", mp_err());
        goto out;
    }
    nn_card_write(&card, &ck);
    {
        char src[4096];
        snprintf(src, sizeof src, "%s", pos[0]);
        nn_ckpt_set(&ck, "source", basename(src));
    }
    for (int i = 0; i < f.nmeta; i++) {
        char key[512];
        snprintf(key, sizeof key, "import.%s", f.meta[2 * i]);
        nn_ckpt_set(&ck, key, f.meta[2 * i + 1]);
    }
    if (nn_ckpt_add_params(&ck, nn_model_params(m)) != 0 || nn_ckpt_save(&ck, out) != 0) goto out;
    char desc[512];
    nn_arch_describe(&cfg, desc, sizeof desc);
    if (!mp_log_quiet()) printf("%s: %s, %zu parameters\n", out, desc, nn_model_param_count(m));
    status = MP_EXIT_OK;
out:
    if (status == MP_EXIT_FAIL) mp_error("%s", mp_err());
    nn_card_free(&card);
    nn_ckpt_free(&ck);
    nn_model_free(m);
    nn_st_free(&f);
    return status;
}

static int do_export(int argc, char **argv)
{
    char *pos[2];
    int npos, rc = parse_args(argc, argv, NULL, help_export, pos, 2, &npos);
    if (rc) return rc > 0 ? MP_EXIT_OK : MP_EXIT_USAGE;
    if (npos != 2) {
        return mp_usage_error("model export", NULL, "expected CKPT FILE.safetensors");
    }
    nn_ckpt ck;
    if (nn_ckpt_load(&ck, pos[0]) != 0) return fail();
    /* Building the model proves the checkpoint is a complete, consistent network. */
    nn_model *m = nn_model_from_ckpt(&ck, 1, 32, 32, 0);
    if (!m) {
        nn_ckpt_free(&ck);
        return fail();
    }
    nn_model_free(m);
    nn_st_entry *e = mp_xcalloc((size_t)ck.n + 1, sizeof *e);
    int64_t *counts = mp_xcalloc((size_t)ck.n + 1, sizeof *counts);
    int n = 0;
    for (int i = 0; i < ck.n; i++) {
        const nn_ckpt_tensor *t = &ck.t[i];
        if (t->section != NN_CKPT_MODEL) continue;
        const char *dot = strrchr(t->name, '.');
        e[n] = (nn_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
        if (dot && !strcmp(dot, ".num_batches_tracked") && t->dtype == NN_F32 && t->numel == 1) {
            /* torch keeps this counter as int64 */
            float v;
            memcpy(&v, t->data, 4);
            counts[n] = (int64_t)v;
            e[n].dtype = NN_I64;
            e[n].data = &counts[n];
        }
        n++;
    }
    const char **meta = mp_xcalloc(2 * (size_t)ck.nmeta + 3, sizeof *meta);
    char **keys = mp_xcalloc((size_t)ck.nmeta + 1, sizeof *keys);
    int k = 0;
    meta[k++] = "format";
    meta[k++] = "pt";
    for (int i = 0; i < ck.nmeta; i++) {
        keys[i] = mp_xmalloc(strlen(ck.meta[2 * i]) + 8);
        sprintf(keys[i], "magpie.%s", ck.meta[2 * i]);
        meta[k++] = keys[i];
        meta[k++] = ck.meta[2 * i + 1];
    }
    int status = nn_st_write(pos[1], e, n, meta) == 0 ? MP_EXIT_OK : MP_EXIT_FAIL;
    if (status != MP_EXIT_OK) mp_error("%s", mp_err());
    for (int i = 0; i < ck.nmeta; i++) free(keys[i]);
    free(keys);
    free(meta);
    free(counts);
    free(e);
    nn_ckpt_free(&ck);
    return status;
}

static int parse_counts(const char *what, const char *s, int *out, int *n)
{
    double v[NN_MAX_STAGES + 1];
    int k = mp_parse_double_list(s, v, NN_MAX_STAGES + 1);
    if (k < 1 || k > NN_MAX_STAGES) {
        return mp_usage_error("model init", NULL, "%s must be 1..%d comma-separated counts", what, NN_MAX_STAGES), -1;
    }
    for (int i = 0; i < k; i++) {
        if (v[i] < 1 || v[i] > 65536 || v[i] != (int)v[i]) {
            return mp_usage_error("model init", NULL, "%s must be positive integers (got '%s')", what, s), -1;
        }
        out[i] = (int)v[i];
    }
    *n = k;
    return 0;
}

static int do_init(int argc, char **argv)
{
    const char *out = NULL, *arch = "resnet_gn", *classes_s = NULL, *widths = NULL, *blocks = NULL, *norm = NULL,
               *groups_s = NULL, *seed_s = NULL;
    opt opts[] = {{"out", &out, NULL},       {"arch", &arch, NULL},     {"classes", &classes_s, NULL},
                  {"widths", &widths, NULL}, {"blocks", &blocks, NULL}, {"norm", &norm, NULL},
                  {"groups", &groups_s, NULL}, {"seed", &seed_s, NULL}, {NULL, NULL, NULL}};
    char *pos[1];
    int npos, rc = parse_args(argc, argv, opts, help_init, pos, 0, &npos);
    if (rc) return rc > 0 ? MP_EXIT_OK : MP_EXIT_USAGE;
    long classes = 2, groups = 0, seed = 0;
    if (!out) {
        return mp_usage_error("model init", NULL, "--out CKPT is required");
    }
    if ((classes_s && (mp_parse_long(classes_s, &classes) != 0 || classes < 1 || classes > 1 << 20)) ||
        (groups_s && (mp_parse_long(groups_s, &groups) != 0 || groups < 1)) ||
        (seed_s && (mp_parse_long(seed_s, &seed) != 0 || seed < 0))) {
        return mp_usage_error("model init", NULL, "--classes, --groups and --seed take non-negative integers");
    }
    nn_model_cfg cfg;
    if (nn_arch_preset(arch, (int)classes, &cfg) != 0) {
        return mp_usage_error("model init", NULL, "%s", mp_err());
    }
    int nw = cfg.nstages, nb = cfg.nstages;
    if (widths && parse_counts("--widths", widths, cfg.widths, &nw)) return MP_EXIT_USAGE;
    if (blocks && parse_counts("--blocks", blocks, cfg.blocks, &nb)) return MP_EXIT_USAGE;
    if (nw != nb) {
        if (!blocks) for (int i = cfg.nstages; i < nw; i++) cfg.blocks[i] = cfg.blocks[0];
        else if (!widths) for (int i = cfg.nstages; i < nb; i++) cfg.widths[i] = cfg.widths[cfg.nstages - 1] * 2;
        else {
            return mp_usage_error("model init", NULL, "--widths has %d stages, --blocks %d", nw, nb);
        }
    }
    cfg.nstages = widths ? nw : nb;
    if (norm) {
        if (strcmp(norm, "group") && strcmp(norm, "batch")) {
            return mp_usage_error("model init", NULL, "--norm must be group or batch");
        }
        cfg.norm = strcmp(norm, "batch") ? NN_NORM_GROUP : NN_NORM_BATCH;
    }
    if (groups) cfg.groups = (int)groups;
    if (nn_model_cfg_check(&cfg) != 0) {
        return mp_usage_error("model init", NULL, "%s", mp_err());
    }
    nn_card card;
    nn_card_from_cfg(&card, &cfg);
    if (nn_card_check(&card, out) != 0) { /* a layout no reader would accept */
        int rc = mp_usage_error("model init", NULL, "%s", mp_err());
        nn_card_free(&card);
        return rc;
    }
    nn_model *m = nn_model_create(&cfg, 1, 32, 32, 0);
    if (!m) {
        nn_card_free(&card);
        return fail();
    }
    nn_model_init(m, (uint64_t)seed);
    nn_ckpt ck = {0};
    nn_card_write(&card, &ck);
    nn_card_free(&card);
    nn_ckpt_setf(&ck, "init_seed", "%ld", seed);
    int status = MP_EXIT_OK;
    if (nn_ckpt_add_params(&ck, nn_model_params(m)) != 0 || nn_ckpt_save(&ck, out) != 0) status = fail();
    else if (!mp_log_quiet()) {
        char desc[512];
        nn_arch_describe(&cfg, desc, sizeof desc);
        printf("%s: %s, %zu parameters\n", out, desc, nn_model_param_count(m));
    }
    nn_ckpt_free(&ck);
    nn_model_free(m);
    return status;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return mp_usage_error("model", NULL, "a COMMAND is required");
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        usage(stdout);
        return MP_EXIT_OK;
    }
    if (!strcmp(sub, "info")) return do_info(argc - 1, argv + 1);
    if (!strcmp(sub, "run")) return do_run(argc - 1, argv + 1);
    if (!strcmp(sub, "grad")) return do_grad(argc - 1, argv + 1);
    if (!strcmp(sub, "import")) return do_import(argc - 1, argv + 1);
    if (!strcmp(sub, "export")) return do_export(argc - 1, argv + 1);
    if (!strcmp(sub, "init")) return do_init(argc - 1, argv + 1);
    return mp_usage_error("model", NULL, "unknown command '%s'", sub);
}
