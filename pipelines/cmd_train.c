/* pipelines/cmd_train.c — `magpie train DB --method M --mag X --out CKPT [...]`: option parsing
 * over trainer/trainer.h's tr_train; every hyperparameter defaults to the papers' values. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
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
            "  every option taking a value accepts --name VALUE and --name=VALUE\n\n"
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
        if (m < 0) {
            mp_error("train: unknown method '%s' (supervised, rbd, crckd, rbd+crckd)", method);
            return MP_EXIT_USAGE;
        }
    }
    tr_train_opts o;
    tr_train_defaults(&o, m < 0 ? 0 : m);
    o.arch = NULL;
    o.progress = MP_PROGRESS_AUTO;
    for (int i = 1; i < argc; i++) {
        char nm[64];
        const char *iv = mp_opt_split(argv[i], nm, sizeof nm); /* --name=VALUE */
        const char *a = iv ? nm : argv[i], *v = iv ? iv : i + 1 < argc ? argv[i + 1] : NULL;
        long lv;
        int bad = 0, flag = 1;
        if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--l1")) o.l1 = 1;
        else if (!strcmp(a, "--no-unlabeled")) o.use_unlabeled = 0;
        else if (!strcmp(a, "--no-augment")) o.augment = 0;
        else if (!strcmp(a, "--no-extra-flips")) o.extra_flips = 0;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) mp_log_set_quiet(1);
        else if (a[0] != '-') {
            if (db) {
                mp_error("train: unexpected argument '%s'", a);
                return MP_EXIT_USAGE;
            }
            db = a;
        } else {
            flag = 0;
            if (!v) bad = 1;
            else if (!strcmp(a, "--method")) ;
            else if (!strcmp(a, "--progress")) {
                mp_progress_mode pm;
                if (mp_progress_parse(v, &pm) < 0) bad = 1;
                else o.progress = pm;
            }
            else if (!strcmp(a, "--mag")) bad = mp_parse_double(v, &mag) < 0 || mag <= 0;
            else if (!strcmp(a, "--out")) o.out = v;
            else if (!strcmp(a, "--teacher")) o.teacher = v;
            else if (!strcmp(a, "--arch")) o.arch = v;
            else if (!strcmp(a, "--epochs")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > TR_MAX_EPOCHS, o.epochs = (int)lv;
            else if (!strcmp(a, "--batch")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > TR_MAX_BATCH, o.batch = (int)lv;
            else if (!strcmp(a, "--patience")) bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > TR_MAX_EPOCHS, o.patience = (int)lv;
            else if (!strcmp(a, "--threads")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 1024, o.threads = (int)lv;
            else if (!strcmp(a, "--seed")) bad = mp_parse_long(v, &lv) < 0 || lv < 0, o.seed = (uint64_t)lv;
            else if (!strcmp(a, "--teacher-views")) bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > 1024, o.teacher_views = (int)lv;
            else if (!strcmp(a, "--teacher-cache")) o.teacher_cache = v;
            else if (!strcmp(a, "--sampling")) o.sampling = v;
            else if (!strcmp(a, "--stop-after")) bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > TR_MAX_EPOCHS, o.stop_after = (int)lv;
            else if (!strcmp(a, "--max-train")) bad = mp_parse_long(v, &lv) < 0 || lv < 0 || lv > INT_MAX, o.max_train = (int)lv;
            else if (!strcmp(a, "--P")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > (1 << 20), o.P = (int)lv;
            else if (!strcmp(a, "--K")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > (1 << 20), o.K = (int)lv;
            else if (!strcmp(a, "--feat-dim")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > 65536, o.feat_dim = (int)lv;
            else if (!strcmp(a, "--rampup")) bad = mp_parse_long(v, &lv) < 0 || lv < 1 || lv > TR_MAX_EPOCHS, o.rampup = (int)lv;
            else if (!strcmp(a, "--lr")) bad = mp_parse_double(v, &o.lr) < 0 || o.lr <= 0;
            else if (!strcmp(a, "--wd")) bad = mp_parse_double(v, &o.wd) < 0 || o.wd < 0;
            else if (!strcmp(a, "--max-lr")) bad = mp_parse_double(v, &o.max_lr) < 0 || o.max_lr <= 0;
            else if (!strcmp(a, "--ce-weight")) bad = mp_parse_double(v, &o.ce_weight) < 0 || o.ce_weight < 0;
            else if (!strcmp(a, "--temperature")) bad = mp_parse_double(v, &o.temperature) < 0 || o.temperature <= 0;
            else if (!strcmp(a, "--beta")) bad = mp_parse_double(v, &o.beta) < 0 || o.beta < 0;
            else if (!strcmp(a, "--avg-epochs")) bad = mp_parse_double(v, &o.avg_epochs) < 0 || o.avg_epochs < 0;
            else if (!strcmp(a, "--lambda-ccd")) bad = mp_parse_double(v, &o.lambda_ccd) < 0;
            else if (!strcmp(a, "--lambda-crp")) bad = mp_parse_double(v, &o.lambda_crp) < 0;
            else if (!strcmp(a, "--ema")) bad = mp_parse_double(v, &o.ema) < 0 || o.ema < 0 || o.ema >= 1;
            else if (!strcmp(a, "--tau")) bad = mp_parse_double(v, &o.tau) < 0 || o.tau <= 0;
            else {
                mp_error("train: unknown option '%s'", a);
                return MP_EXIT_USAGE;
            }
        }
        if (flag && iv) {
            mp_error("train: %s takes no value (got '%s')", a, iv);
            return MP_EXIT_USAGE;
        }
        if (bad) {
            mp_error("train: bad value for %s: '%s'", a, flag ? a : v ? v : "(missing)");
            return MP_EXIT_USAGE;
        }
        if (!flag && !iv) i++;
    }
    if (!db || m < 0 || mag <= 0 || !o.out) {
        usage(stderr);
        mp_error("train: DB, --method, --mag and --out are required");
        return MP_EXIT_USAGE;
    }
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
