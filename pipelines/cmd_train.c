/* pipelines/cmd_train.c — `magpie train DB --method M --mag X --out CKPT [...]`: option parsing
 * over trainer/trainer.h's tr_train; every hyperparameter defaults to the papers' values. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "pipelines/cmds.h"
#include "trainer/trainer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie train DB --method supervised|rbd|crckd|rbd+crckd --mag X --out CKPT [options]\n\n"
            "  --teacher CKPT     frozen teacher for rbd (trained at a higher magnification)\n"
            "  --arch A           resnet_gn (default; rbd: the teacher's), resnet18, resnet18_bn\n"
            "  --epochs N         default: enough for 1000 steps, 30 to 200 (rbd: 100)   --batch N  32\n"
            "  --patience N       default: a quarter of the epochs, at least 8 (rbd: 25); 0 = no early stop;\n"
            "                     epochs inside the one-cycle warm-up do not count\n"
            "  --lr F --wd F      rbd/supervised: Adam 1e-3, wd 1e-4; crckd: Adam 1e-4, wd 5e-4, one-cycle\n"
            "  --max-lr F         crckd one-cycle peak (3e-4)\n"
            "  --warmup N         rbd/supervised: raise the LR linearly over the first N steps (0, none);\n"
            "                     epochs inside it do not count towards --patience\n"
            "  --seed S\n"
            "  --threads N        compute threads (default: the CPUs this process may use, here %d);\n"
            "                     decoding and augmentation use one more\n"
            "  --temperature T    rbd KL temperature (1)   --beta F  feature term weight (1)   --l1\n"
            "  --ce-weight F      rbd: add F x cross-entropy on labelled patches (0)\n"
            "  --no-unlabeled     rbd: do not use the 'unlabeled' split\n"
            "  --teacher-views N  rbd: compute the teacher once for N augmentation draws per pair (epoch e uses\n"
            "                     draw e mod N; far faster with a 10x teacher); 0 = run the teacher every step;\n"
            "                     default 4, or 0 when the cached outputs would pass 2 GiB\n"
            "  --teacher-cache F  keep those outputs in file F and reuse them in a later run with the same\n"
            "                     teacher, seed, pairs and draws (e.g. rbd then rbd+crckd)\n"
            "  --avg-epochs E     validate and keep a moving average of the weights over ~E epochs\n"
            "                     (default 2 for rbd methods, 0 = off for the others)\n"
            "  --no-extra-flips   with --teacher-views: do not also give the student a fresh flip + rot90\n"
            "                     of the cached draw every epoch\n"
            "  --lambda-ccd F (0.1) --lambda-crp F (1) --ema F (0.99) --tau F (0.07) --P N (20) --K N (4096)\n"
            "  --feat-dim N (128) --rampup EPOCHS (30)\n"
            "  --no-augment       no flips/rotations/colour jitter\n"
            "  --sampling FILE    supervised/crckd: draw each epoch's patches with replacement by the weights of\n"
            "                     FILE (from `magpie db DB balance`; class-balanced), not once each\n"
            "  --resume           continue from CKPT's .last.mpk (the .log.jsonl is cut back to its epochs); if it has\n"
            "                     run all the epochs asked for it finishes at once, if more it is an error\n"
            "  --stop-after N     stop after N epochs (resume later)\n"
            "  --progress auto|tty|json|none (or --progress=MODE)   -q, --quiet\n"
            "  every option taking a value accepts --name VALUE and --name=VALUE; names are exact\n\n"
            "Writes CKPT (best on validation), next to it .last.mpk (every epoch, full training state),\n"
            ".log.jsonl (one line per epoch) and .png (loss and validation curve).\n",
            mp_cpu_count());
}

int cmd_train(int argc, char **argv)
{
    const char *db = NULL, *method = NULL;
    double mag = 0;
    int m = -1;
    /* first pass: the method decides the defaults */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return MP_EXIT_OK;
        } else if (!strcmp(argv[i], "--method") && i + 1 < argc) method = argv[i + 1];
        else if (!strncmp(argv[i], "--method=", 9)) method = argv[i] + 9;
    if (method) {
        m = !strcmp(method, "supervised") ? 0 : !strcmp(method, "rbd") ? TR_RBD : !strcmp(method, "crckd") ? TR_CRCKD
          : !strcmp(method, "rbd+crckd") ? TR_RBD | TR_CRCKD : -1;
        if (m < 0) return mp_usage_error("train", NULL, "unknown method '%s' (supervised, rbd, crckd, rbd+crckd)", method);
    }
    tr_train_opts o;
    tr_train_defaults(&o, m < 0 ? 0 : m);
    o.arch = NULL;
    o.progress = MP_PROGRESS_AUTO;
    enum { O_RESUME = 256, O_L1, O_NOUNL, O_NOAUG, O_NOFLIP, O_METHOD, O_PROG, O_MAG, O_OUT, O_TEACHER, O_ARCH,
           O_EPOCHS, O_BATCH, O_PATIENCE, O_THREADS, O_SEED, O_TVIEWS, O_TCACHE, O_SAMPLING, O_STOP, O_MAXTRAIN, O_P,
           O_K, O_FEAT, O_RAMP, O_LR, O_WD, O_MAXLR, O_CEW, O_TEMP, O_BETA, O_AVG, O_LCCD, O_LCRP, O_EMA, O_TAU, O_WARMUP };
    static const struct option lo[] = {
        {"resume", no_argument, 0, O_RESUME}, {"l1", no_argument, 0, O_L1}, {"no-unlabeled", no_argument, 0, O_NOUNL},
        {"no-augment", no_argument, 0, O_NOAUG}, {"no-extra-flips", no_argument, 0, O_NOFLIP},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {"method", required_argument, 0, O_METHOD},
        {"progress", required_argument, 0, O_PROG}, {"mag", required_argument, 0, O_MAG},
        {"out", required_argument, 0, O_OUT}, {"teacher", required_argument, 0, O_TEACHER},
        {"arch", required_argument, 0, O_ARCH}, {"epochs", required_argument, 0, O_EPOCHS},
        {"batch", required_argument, 0, O_BATCH}, {"patience", required_argument, 0, O_PATIENCE},
        {"threads", required_argument, 0, O_THREADS}, {"seed", required_argument, 0, O_SEED},
        {"teacher-views", required_argument, 0, O_TVIEWS}, {"teacher-cache", required_argument, 0, O_TCACHE},
        {"sampling", required_argument, 0, O_SAMPLING}, {"stop-after", required_argument, 0, O_STOP},
        {"max-train", required_argument, 0, O_MAXTRAIN}, {"P", required_argument, 0, O_P},
        {"K", required_argument, 0, O_K}, {"feat-dim", required_argument, 0, O_FEAT},
        {"rampup", required_argument, 0, O_RAMP}, {"lr", required_argument, 0, O_LR}, {"wd", required_argument, 0, O_WD},
        {"max-lr", required_argument, 0, O_MAXLR}, {"ce-weight", required_argument, 0, O_CEW},
        {"temperature", required_argument, 0, O_TEMP}, {"beta", required_argument, 0, O_BETA},
        {"avg-epochs", required_argument, 0, O_AVG}, {"lambda-ccd", required_argument, 0, O_LCCD},
        {"lambda-crp", required_argument, 0, O_LCRP}, {"ema", required_argument, 0, O_EMA},
        {"tau", required_argument, 0, O_TAU}, {"warmup", required_argument, 0, O_WARMUP}, {0, 0, 0, 0}};
    optind = 1;
    int ch, li;
    while ((ch = mp_getopt_long(argc, argv, "qh", lo, &li)) != -1) {
        const char *v = optarg;
        long lv = 0;
        int bad = 0;
        switch (ch) {
        case O_RESUME: o.resume = 1; break;
        case O_L1: o.l1 = 1; break;
        case O_NOUNL: o.use_unlabeled = 0; break;
        case O_NOAUG: o.augment = 0; break;
        case O_NOFLIP: o.extra_flips = 0; break;
        case 'q': mp_log_set_quiet(1); break;
        case 'h': usage(stdout); return MP_EXIT_OK;
        case O_METHOD: break; /* read above: it decides the defaults */
        case O_PROG: {
            mp_progress_mode pm;
            if (mp_progress_parse(v, &pm) < 0) bad = 1;
            else o.progress = pm;
            break;
        }
        case O_MAG: bad = mp_parse_double(v, &mag) < 0 || mag <= 0; break;
        case O_OUT: o.out = v; break;
        case O_TEACHER: o.teacher = v; break;
        case O_ARCH: o.arch = v; break;
        case O_EPOCHS: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > TR_MAX_EPOCHS, o.epochs = (int)lv; break;
        case O_BATCH: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > TR_MAX_BATCH, o.batch = (int)lv; break;
        case O_PATIENCE: bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > TR_MAX_EPOCHS, o.patience = (int)lv; break;
        case O_THREADS: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 1024, o.threads = (int)lv; break;
        case O_SEED: bad = mp_parse_long(v, &lv) < 0 || lv < 0, o.seed = (uint64_t)lv; break;
        case O_TVIEWS: bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > 1024, o.teacher_views = (int)lv; break;
        case O_TCACHE: o.teacher_cache = v; break;
        case O_SAMPLING: o.sampling = v; break;
        case O_STOP: bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > TR_MAX_EPOCHS, o.stop_after = (int)lv; break;
        case O_MAXTRAIN: bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > INT_MAX, o.max_train = (int)lv; break;
        case O_P: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > (1 << 20), o.P = (int)lv; break;
        case O_K: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > (1 << 20), o.K = (int)lv; break;
        case O_FEAT: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 65536, o.feat_dim = (int)lv; break;
        case O_RAMP: bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > TR_MAX_EPOCHS, o.rampup = (int)lv; break;
        case O_LR: bad = mp_parse_double(v, &o.lr) < 0 || o.lr <= 0; break;
        case O_WD: bad = mp_parse_double(v, &o.wd) < 0 || o.wd < 0; break;
        case O_WARMUP: bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > INT_MAX, o.warmup = (int)lv; break;
        case O_MAXLR: bad = mp_parse_double(v, &o.max_lr) < 0 || o.max_lr <= 0; break;
        case O_CEW: bad = mp_parse_double(v, &o.ce_weight) < 0 || o.ce_weight < 0; break;
        case O_TEMP: bad = mp_parse_double(v, &o.temperature) < 0 || o.temperature <= 0; break;
        case O_BETA: bad = mp_parse_double(v, &o.beta) < 0 || o.beta < 0; break;
        case O_AVG: bad = mp_parse_double(v, &o.avg_epochs) < 0 || o.avg_epochs < 0; break;
        case O_LCCD: bad = mp_parse_double(v, &o.lambda_ccd) < 0; break;
        case O_LCRP: bad = mp_parse_double(v, &o.lambda_crp) < 0; break;
        case O_EMA: bad = mp_parse_double(v, &o.ema) < 0 || o.ema < 0 || o.ema >= 1; break;
        case O_TAU: bad = mp_parse_double(v, &o.tau) < 0 || o.tau <= 0; break;
        default: return mp_usage_error("train", NULL, "%s", mp_err());
        }
        if (bad) return mp_usage_error("train", NULL, "bad value for --%s: '%s'", lo[li].name, v);
    }
    for (int i = optind; i < argc; i++) {
        if (db) return mp_usage_error("train", NULL, "unexpected argument '%s'", argv[i]);
        db = argv[i];
    }
    if (!db || m < 0 || mag <= 0 || !o.out) {
        usage(stderr);
        return mp_usage_error("train", NULL, "DB, --method, --mag and --out are required");
    }
    if (o.warmup > 0 && m == TR_CRCKD)
        return mp_usage_error("train", NULL, "--warmup is for rbd and supervised (crckd warms up in its one-cycle schedule)");
    o.db_path = db;
    o.mag = mag;
    tr_train_result r;
    if (tr_train(&o, &r) < 0) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_info("%s: %d epochs, %lld steps in %.1f s; best validation balanced accuracy %.4f (epoch %d)", o.out, r.epochs_run,
            (long long)r.steps, r.train_seconds, r.best_val, r.best_epoch);
    return MP_EXIT_OK;
}
