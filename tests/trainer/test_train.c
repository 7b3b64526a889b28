/* tests/trainer/test_train.c — training on a tiny synthetic dataset: a teacher learns the easy
 * task, the loss falls for every method, --resume equals an uninterrupted run bit for bit (one
 * thread, fixed seed), and the anomaly cases fail with their exact messages. */
#include "tests/test.h"

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "nn/ckpt.h"
#include "trainer/trainer.h"
#include "tests/trainer/tiny.h"

static char dbp[128];

static tr_train_opts opts(int method, double mag, const char *out, int epochs)
{
    tr_train_opts o;
    tr_train_defaults(&o, method);
    o.db_path = dbp;
    o.out = out;
    o.mag = mag;
    o.epochs = epochs;
    o.batch = 16;
    o.seed = 5;
    o.patience = 0;
    o.P = 4;
    o.K = 32;
    o.rampup = 2;
    o.progress = MP_PROGRESS_NONE;
    return o;
}

/* loss of the first and the last epoch, from the JSON-lines log */
static void log_losses(const char *out, double *first, double *last)
{
    char p[512], line[1024];
    tr_side_path(p, sizeof p, out, ".log.jsonl");
    FILE *f = fopen(p, "r");
    *first = *last = NAN;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        const char *l = strstr(line, "\"loss\":");
        if (!l) continue;
        double v = atof(l + 7);
        if (isnan(*first)) *first = v;
        *last = v;
    }
    fclose(f);
}

static double test_accuracy(const char *ckpt, const char *split)
{
    nn_card mi;
    nn_model *m;
    if (nn_card_load(ckpt, NN_CARD_PATCHES, 16, 0, &mi, &m) < 0) return -1;
    mp_db *db = db_open(dbp, DB_OPEN_READONLY);
    db_itemset is;
    db_items_load(db, split, 0, &is);
    tr_loader_cfg c = {.mag = {mi.mag, 0}, .batch = 16};
    memcpy(c.mean[0], mi.mean, sizeof mi.mean);
    memcpy(c.std[0], mi.std, sizeof mi.std);
    tr_loader *L = tr_loader_new(db, &c, is.items, is.n);
    float *prob = malloc(sizeof(float) * is.n * mi.cfg.classes);
    int *y = malloc(sizeof(int) * is.n);
    int n = tr_predict(m, L, prob, y, NULL);
    tr_metrics mt;
    double acc = n > 0 && tr_metrics_compute(y, prob, n, mi.cfg.classes, &mt) == 0 ? mt.accuracy : -1;
    free(prob);
    free(y);
    tr_loader_free(L);
    db_itemset_free(&is);
    db_close(db);
    nn_model_free(m);
    nn_card_free(&mi);
    return acc;
}

TEST(teacher_learns)
{
    tr_train_opts o = opts(0, 10, tmp("teacher.mpk"), 4);
    tr_train_result r;
    CHECK_INT(tr_train(&o, &r), 0);
    if (t_fail) fprintf(stderr, "  %s\n", mp_err());
    CHECK(r.best_val >= 0.9);
    double acc = test_accuracy(tmp("teacher.mpk"), "test");
    CHECK(acc >= 0.9);
    fprintf(stderr, "  teacher: val balanced accuracy %.3f, test accuracy %.3f\n", r.best_val, acc);
    double a, b;
    log_losses(tmp("teacher.mpk"), &a, &b);
    CHECK(b < a);
    char p[512];
    tr_side_path(p, sizeof p, tmp("teacher.mpk"), ".png");
    CHECK(mp_file_exists(p));
    tr_side_path(p, sizeof p, tmp("teacher.mpk"), ".last.mpk");
    CHECK(mp_file_exists(p));
}

static char *cache_key(const char *path)
{
    nn_ckpt ck = {0};
    char *k = NULL;
    if (nn_ckpt_load(&ck, path) == 0 && nn_ckpt_get(&ck, "teacher_cache.key")) k = mp_xstrdup(nn_ckpt_get(&ck, "teacher_cache.key"));
    nn_ckpt_free(&ck);
    return k;
}

/* The teacher-output cache is keyed by the teacher's content: a teacher retrained into the same
 * file (same path, same size) must not reuse the old outputs; an unchanged one must. */
TEST(teacher_cache_follows_teacher_content)
{
    tr_train_opts t = opts(0, 10, tmp("t2.mpk"), 1);
    CHECK_INT(tr_train(&t, &(tr_train_result){0}), 0);
    tr_train_opts o = opts(TR_RBD, 1.25, tmp("rc.mpk"), 1);
    o.teacher = tmp("t2.mpk");
    o.teacher_views = 1;
    o.teacher_cache = tmp("tc2.mpk");
    CHECK_INT(tr_train(&o, &(tr_train_result){0}), 0);
    char *k1 = cache_key(tmp("tc2.mpk"));
    int64_t m1 = mp_file_size(tmp("tc2.mpk"));
    CHECK(k1 != NULL);
    CHECK_INT(tr_train(&o, &(tr_train_result){0}), 0); /* unchanged teacher: reused as is */
    char *k2 = cache_key(tmp("tc2.mpk"));
    CHECK(k2 && !strcmp(k1, k2));
    t.seed = 77; /* retrain into the same file: same size, different weights */
    CHECK_INT(tr_train(&t, &(tr_train_result){0}), 0);
    CHECK_INT(tr_train(&o, &(tr_train_result){0}), 0);
    char *k3 = cache_key(tmp("tc2.mpk"));
    CHECK(k3 && strcmp(k1, k3) != 0);
    CHECK(mp_file_size(tmp("tc2.mpk")) == m1);
    free(k1);
    free(k2);
    free(k3);
}

TEST(loss_decreases_each_method)
{
    static const int methods[5] = {0, TR_RBD, TR_CRCKD, TR_RBD | TR_CRCKD, TR_RBD};
    static const char *names[5] = {"base.mpk", "rbd.mpk", "crckd.mpk", "both.mpk", "rbdcache.mpk"};
    for (int i = 0; i < 5; i++) {
        tr_train_opts o = opts(methods[i], 1.25, tmp(names[i]), 4);
        if (i == 4) { /* cached teacher outputs, through a cache file: the second run reuses it */
            o.teacher_views = 2;
            o.teacher = tmp("teacher.mpk");
            o.teacher_cache = tmp("tcache.mpk");
            tr_train_result r0;
            int rc0 = tr_train(&o, &r0);
            CHECK_INT(rc0, 0);
            if (rc0) fprintf(stderr, "  %s\n", mp_err());
            CHECK(mp_file_exists(tmp("tcache.mpk")));
        }
        if (methods[i] & TR_RBD) o.teacher = tmp("teacher.mpk");
        if (methods[i] & TR_CRCKD && !(methods[i] & TR_RBD)) o.max_lr = 3e-3; /* tiny run: a faster cycle */
        tr_train_result r;
        int rc = tr_train(&o, &r);
        CHECK_INT(rc, 0);
        if (rc) fprintf(stderr, "  %s: %s\n", names[i], mp_err());
        double a, b;
        log_losses(tmp(names[i]), &a, &b);
        fprintf(stderr, "  %s: loss %.4f -> %.4f\n", names[i], a, b);
        CHECK(b < a);
    }
}

static int same_params(const char *a, const char *b)
{
    nn_ckpt x = {0}, y = {0};
    int same = nn_ckpt_load(&x, a) == 0 && nn_ckpt_load(&y, b) == 0 && x.n == y.n;
    for (int i = 0; same && i < x.n; i++) {
        const nn_ckpt_tensor *t = nn_ckpt_find(&y, x.t[i].section, x.t[i].name);
        same = t && t->nbytes == x.t[i].nbytes && !memcmp(t->data, x.t[i].data, t->nbytes);
        if (!same) fprintf(stderr, "  tensor %s differs\n", x.t[i].name);
    }
    nn_ckpt_free(&x);
    nn_ckpt_free(&y);
    return same;
}

TEST(resume_equals_uninterrupted)
{
    static const int methods[2] = {TR_RBD | TR_CRCKD, 0};
    for (int mi = 0; mi < 2; mi++) {
        tr_train_opts o = opts(methods[mi], 1.25, tmp("full.mpk"), 3);
        if (methods[mi] & TR_RBD) o.teacher = tmp("teacher.mpk");
        tr_train_result r;
        CHECK_INT(tr_train(&o, &r), 0);
        o.out = tmp("part.mpk");
        o.stop_after = 1;
        CHECK_INT(tr_train(&o, &r), 0);
        CHECK_INT(r.epochs_run, 1);
        o.stop_after = 0;
        o.resume = 1;
        CHECK_INT(tr_train(&o, &r), 0);
        CHECK_INT(r.epochs_run, 2);
        char a[512], b[512];
        tr_side_path(a, sizeof a, tmp("full.mpk"), ".last.mpk");
        tr_side_path(b, sizeof b, tmp("part.mpk"), ".last.mpk");
        CHECK(same_params(a, b)); /* model, optimiser moments, EMA teacher, heads, banks, weight average */
        CHECK(same_params(tmp("full.mpk"), tmp("part.mpk"))); /* the kept best models too */
        if (methods[mi] & TR_RBD) {
            /* rbd methods validate a running average of the weights: the training state carries it
             * apart from the student's own weights, and it has moved away from them */
            nn_ckpt ck = {0};
            CHECK_INT(nn_ckpt_load(&ck, a), 0);
            const nn_ckpt_tensor *w = nn_ckpt_find(&ck, NN_CKPT_MODEL, "fc.weight");
            const nn_ckpt_tensor *v = nn_ckpt_find(&ck, NN_CKPT_TRAIN, "avg.fc.weight");
            CHECK(w && v && w->nbytes == v->nbytes);
            if (w && v && w->nbytes == v->nbytes) CHECK(memcmp(w->data, v->data, w->nbytes) != 0);
            nn_ckpt_free(&ck);
        }
    }
}

/* Without a validation split the last epoch is kept as best; with the weight average on, the kept
 * model is the average, and its BatchNorm statistics must be the student's current ones, not the
 * initial ones (they are buffers, not averaged). */
TEST(average_without_validation)
{
    char db2[256];
    snprintf(db2, sizeof db2, "%s", tmp("noval.db"));
    tiny_cfg tc = {.slides = 10, .per_slide = 12, .classes = 3, .hi = 32, .lo = 4, .png = 0, .seed = 2};
    CHECK_INT(tiny_make(db2, &tc), 0);
    mp_db *db = db_open(db2, 0);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_exec(db, "UPDATE splits SET split = 'test' WHERE split = 'val'"), 0);
    db_close(db);
    tr_train_opts o = opts(0, 10, tmp("avg.mpk"), 2);
    o.db_path = db2;
    o.arch = "resnet18_bn";
    o.avg_epochs = 2;
    tr_train_result r;
    CHECK_INT(tr_train(&o, &r), 0);
    if (t_fail) fprintf(stderr, "  %s\n", mp_err());
    char last[512];
    tr_side_path(last, sizeof last, tmp("avg.mpk"), ".last.mpk");
    nn_ckpt best = {0}, st = {0};
    CHECK_INT(nn_ckpt_load(&best, tmp("avg.mpk")), 0);
    CHECK_INT(nn_ckpt_load(&st, last), 0);
    int buffers = 0, averaged = 0;
    for (int i = 0; i < best.n; i++) {
        const nn_ckpt_tensor *a = &best.t[i];
        if (a->section != NN_CKPT_MODEL) continue;
        const nn_ckpt_tensor *b = nn_ckpt_find(&st, NN_CKPT_MODEL, a->name);
        CHECK(b && b->nbytes == a->nbytes);
        if (!b || b->nbytes != a->nbytes) continue;
        int same = !memcmp(a->data, b->data, a->nbytes);
        if (strstr(a->name, "running_") || strstr(a->name, "num_batches_tracked")) {
            buffers++;
            if (!same) fprintf(stderr, "  buffer %s is not the student's\n", a->name);
            CHECK(same);
        } else averaged += !same;
    }
    CHECK(buffers > 0);  /* the architecture has BatchNorm buffers */
    CHECK(averaged > 0); /* and the kept weights are the average, not the student's */
    nn_ckpt_free(&best);
    nn_ckpt_free(&st);
}

/* A diverging run stops with a clear error and leaves the last good checkpoint untouched. */
TEST(nan_keeps_last_good)
{
    tr_train_opts o = opts(0, 10, tmp("div.mpk"), 3);
    o.stop_after = 1;
    tr_train_result r;
    CHECK_INT(tr_train(&o, &r), 0);
    char last[512];
    tr_side_path(last, sizeof last, tmp("div.mpk"), ".last.mpk");
    o.stop_after = 0;
    o.resume = 1;
    o.lr = 3e38; /* two Adam steps of 3e38 overflow the weights to Inf, then NaN */
    CHECK_INT(tr_train(&o, &r), -1);
    CHECK_CONTAINS(mp_err(), "training diverged: loss is");
    CHECK_CONTAINS(mp_err(), "at epoch 2");
    CHECK_CONTAINS(mp_err(), last);
    nn_ckpt ck = {0};
    int64_t ep = -1;
    CHECK_INT(nn_ckpt_load(&ck, last), 0);
    CHECK_INT(nn_ckpt_train_get_i64(&ck, "epoch", &ep), 0);
    CHECK_INT(ep, 1); /* still the state after epoch 1 */
    nn_ckpt_free(&ck);
}

/* epochs of the JSON-lines log in order, and its "loss" fields as written */
static int log_epochs(const char *out, int *ep, char loss[][32], int max)
{
    char p[512], line[1024];
    tr_side_path(p, sizeof p, out, ".log.jsonl");
    FILE *f = fopen(p, "r");
    int n = 0;
    if (!f) return -1;
    while (fgets(line, sizeof line, f) && n < max) {
        const char *e = strstr(line, "\"epoch\":"), *l = strstr(line, "\"loss\":");
        ep[n] = e ? atoi(e + 8) : -1;
        snprintf(loss[n], 32, "%.*s", l ? (int)strcspn(l + 7, ",") : 0, l ? l + 7 : "");
        n++;
    }
    fclose(f);
    return n;
}

/* --resume with fewer epochs than the state has run: a one-line error (it copied the longer
 * history into the shorter buffer: a heap overflow); with as many: done at once, nothing written. */
TEST(resume_fewer_epochs)
{
    tr_train_opts o = opts(0, 1.25, tmp("few.mpk"), 3);
    tr_train_result r;
    CHECK_INT(tr_train(&o, &r), 0);
    char last[512], want[1024];
    tr_side_path(last, sizeof last, tmp("few.mpk"), ".last.mpk");
    uint8_t *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    CHECK_INT(mp_read_file(last, &before, &nb), 0);
    o.resume = 1;
    o.epochs = 1;
    CHECK_INT(tr_train(&o, &r), -1);
    snprintf(want, sizeof want, "%s: 3 epochs already run, more than the 1 asked for (--epochs); resume with --epochs 3 or more", last);
    CHECK_STR(mp_err(), want);
    o.epochs = 3;
    CHECK_INT(tr_train(&o, &r), 0);
    CHECK_INT(r.epochs_run, 0);
    CHECK_INT(mp_read_file(last, &after, &na), 0);
    CHECK(before && after && na == nb && !memcmp(before, after, nb)); /* the state is left as it was */
    free(before);
    free(after);
    int ep[8];
    char loss[8][32];
    CHECK_INT(log_epochs(tmp("few.mpk"), ep, loss, 8), 3);
}

/* A training state with a valid CRC but values that do not fit the run: each is refused in one
 * line naming the file (epoch -3 wrote before the history buffer, 2^31 and INT64_MAX overflowed). */
TEST(resume_checks_state)
{
    tr_train_opts o = opts(0, 1.25, tmp("st.mpk"), 3);
    o.stop_after = 1;
    tr_train_result r;
    CHECK_INT(tr_train(&o, &r), 0);
    char last[512];
    tr_side_path(last, sizeof last, tmp("st.mpk"), ".last.mpk");
    uint8_t *good = NULL;
    size_t len = 0;
    CHECK_INT(mp_read_file(last, &good, &len), 0);
    if (!good) return;
    static const struct { const char *key, *val, *want; } c[] = {
        {"epoch", "-3", "corrupt training state: epoch -3 (0..100000)"},
        {"epoch", "2147483648", "corrupt training state: epoch 2147483648 (0..100000)"},
        {"epoch", "7", "7 epochs already run, more than the 3 asked for (--epochs); resume with --epochs 7 or more"},
        {"epoch", "2", "corrupt training state: the history does not hold its 2 epochs"},
        {"step", "9223372036854775807", "corrupt training state: step 9223372036854775807 after 1 epochs of"},
        {"step", "-1", "corrupt training state: step -1 after 1 epochs"},
        {"best_epoch", "1", "corrupt training state: best_epoch 1 after 1 epochs"},
        {"best_epoch", "-2", "corrupt training state: best_epoch -2 after 1 epochs"},
        {"bad_epochs", "-1", "corrupt training state: bad_epochs -1 after 1 epochs"},
        {"bad_epochs", "2147483648", "corrupt training state: bad_epochs 2147483648 after 1 epochs"},
        {"best_val", "nan", "corrupt training state: best_val nan"},
        {"best_val", "1e300", "corrupt training state: best_val 1e+300"},
    };
    o.stop_after = 0;
    o.resume = 1;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        nn_ckpt ck = {0};
        CHECK_INT(mp_write_file_atomic(last, good, len), 0);
        CHECK_INT(nn_ckpt_load(&ck, last), 0);
        nn_ckpt_train_set(&ck, c[i].key, c[i].val);
        CHECK_INT(nn_ckpt_save(&ck, last), 0); /* a valid file: the CRCs are recomputed */
        nn_ckpt_free(&ck);
        CHECK_INT(tr_train(&o, &r), -1);
        char want[1024];
        snprintf(want, sizeof want, "%s: %s", last, c[i].want);
        CHECK_CONTAINS(mp_err(), want);
    }
    CHECK_INT(mp_write_file_atomic(last, good, len), 0);
    CHECK_INT(tr_train(&o, &r), 0); /* the untouched state still resumes */
    CHECK_INT(r.epochs_run, 2);
    free(good);
}

/* A kill after an epoch's log line and before its training state is saved (here: the state of
 * the epoch before put back, and half a line of the next epoch): the resumed run's log holds
 * every epoch once, with the losses of an uninterrupted run. */
TEST(resume_trims_log)
{
    tr_train_opts o = opts(0, 1.25, tmp("logfull.mpk"), 3);
    tr_train_result r;
    CHECK_INT(tr_train(&o, &r), 0);
    o.out = tmp("logpart.mpk");
    o.stop_after = 1;
    CHECK_INT(tr_train(&o, &r), 0);
    char last[512], logp[512];
    tr_side_path(last, sizeof last, o.out, ".last.mpk");
    tr_side_path(logp, sizeof logp, o.out, ".log.jsonl");
    uint8_t *st1 = NULL;
    size_t len = 0;
    CHECK_INT(mp_read_file(last, &st1, &len), 0);
    o.resume = 1;
    CHECK_INT(tr_train(&o, &r), 0); /* epoch 2: logged and saved */
    CHECK_INT(mp_write_file_atomic(last, st1, len), 0); /* ... as if killed before the save */
    free(st1);
    FILE *f = fopen(logp, "a");
    CHECK(f != NULL);
    if (f) fputs("{\"epoch\":3,\"step\":1", f), fclose(f); /* and inside the next line's write */
    o.stop_after = 0;
    CHECK_INT(tr_train(&o, &r), 0);
    CHECK_INT(r.epochs_run, 2);
    int ea[8], eb[8];
    char la[8][32], lb[8][32];
    CHECK_INT(log_epochs(tmp("logfull.mpk"), ea, la, 8), 3);
    CHECK_INT(log_epochs(tmp("logpart.mpk"), eb, lb, 8), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(eb[i], i + 1);
        CHECK_STR(lb[i], la[i]);
    }
}

/* Default schedule follows the training-set size; explicit values are kept. */
/* Early stopping waits while a network is still at chance (a fresh-seed teacher sat at exactly 1/3
 * for 8 epochs and patience 8 nearly stopped it there): no count while the best is the first
 * epoch's and equals 1/k, nor inside the warm-up; a count once the network is above chance or has
 * improved at all. */
TEST(patience_waits_at_chance)
{
    CHECK_INT(tr_patience_counts(100, 0, 0, 1.0 / 3, 3), 0);      /* first epoch best, at chance */
    CHECK_INT(tr_patience_counts(100, 0, 0, 0.25, 4), 0);
    CHECK_INT(tr_patience_counts(100, 0, 0, 0.30, 3), 0);         /* below chance: not started either */
    CHECK_INT(tr_patience_counts(100, 0, 0, 0.34, 3), 1);         /* above chance from the start */
    CHECK_INT(tr_patience_counts(100, 0, 1, 1.0 / 3, 3), 1);      /* improved once, even to chance */
    CHECK_INT(tr_patience_counts(100, 0, 4, 0.9, 3), 1);
    CHECK_INT(tr_patience_counts(50, 50, 4, 0.9, 3), 0);          /* inside the one-cycle warm-up */
    CHECK_INT(tr_patience_counts(51, 50, 4, 0.9, 3), 1);
}

TEST(auto_schedule)
{
    struct { int method, n, batch, epochs, patience; } c[] = {
        {0, 221, 32, 143, 35},       /* bench/distill's 221 labels: 7 steps per epoch */
        {0, 100000, 32, 30, 8},      /* large set: the floor of 30 epochs */
        {0, 24, 16, 200, 50},        /* tiny set: capped at 200 */
        {TR_CRCKD, 640, 32, 50, 12}, /* 20 steps per epoch */
        {TR_RBD, 4150, 32, 100, 25},
        {TR_RBD | TR_CRCKD, 50, 32, 100, 25},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        tr_train_opts o;
        tr_train_defaults(&o, c[i].method);
        o.batch = c[i].batch;
        tr_auto_schedule(&o, c[i].n);
        CHECK_INT(o.epochs, c[i].epochs);
        CHECK_INT(o.patience, c[i].patience);
    }
    tr_train_opts o;
    tr_train_defaults(&o, 0);
    o.epochs = 7;
    tr_auto_schedule(&o, 221);
    CHECK_INT(o.epochs, 7);
    CHECK_INT(o.patience, 8);
    o.patience = 0;
    o.epochs = 0;
    tr_auto_schedule(&o, 221);
    CHECK_INT(o.epochs, 143);
    CHECK_INT(o.patience, 0);
}

TEST(anomalies)
{
    char want[1024];
    tr_train_opts o = opts(TR_RBD, 1.25, tmp("x.mpk"), 1);
    tr_train_result r;
    /* teacher at the student's own magnification */
    o.teacher = tmp("base.mpk");
    CHECK_INT(tr_train(&o, &r), -1);
    snprintf(want, sizeof want, "%s: teacher was trained at 1.25x; rbd needs a teacher at a higher magnification than "
                                "the student's 1.25x", tmp("base.mpk"));
    CHECK_STR(mp_err(), want);
    /* teacher of another architecture */
    o.teacher = tmp("teacher.mpk");
    o.arch = "resnet18";
    CHECK_INT(tr_train(&o, &r), -1);
    CHECK_CONTAINS(mp_err(), "teacher architecture resnet_gn (resnet 4 stages widths 32,64,128,256 blocks 1,1,1,1 "
                             "GroupNorm(32) 3 classes in_ch 3) differs from the student's resnet18 (resnet 4 stages "
                             "widths 64,128,256,512 blocks 2,2,2,2 GroupNorm(32) 3 classes in_ch 3)");
    o.arch = NULL;
    o.teacher = NULL;
    CHECK_INT(tr_train(&o, &r), -1);
    CHECK_STR(mp_err(), "--teacher CKPT is required for --method rbd");
    /* resume without a previous run */
    tr_train_opts q = opts(0, 10, tmp("never.mpk"), 1);
    q.resume = 1;
    CHECK_INT(tr_train(&q, &r), -1);
    char lp[512];
    tr_side_path(lp, sizeof lp, tmp("never.mpk"), ".last.mpk");
    snprintf(want, sizeof want, "%s: nothing to resume (no checkpoint from an earlier run)", lp);
    CHECK_STR(mp_err(), want);

    /* missing paired image */
    mp_db *db = db_open(dbp, 0);
    int64_t pid = db_query_int(db, "SELECT min(p.id) FROM patches p JOIN splits s ON s.slide_id = p.slide_id WHERE s.split = 'unlabeled'");
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM images WHERE patch_id = %lld AND mag = 10", (long long)pid);
    db_exec(db, sql);
    db_close(db);
    o = opts(TR_RBD, 1.25, tmp("x.mpk"), 1);
    o.teacher = tmp("teacher.mpk");
    CHECK_INT(tr_train(&o, &r), -1);
    snprintf(want, sizeof want, "%s: patch %lld has no image at 10x (it has: 1.25x; tile with --mags including 10, or train at one of those)", dbp, (long long)pid);
    CHECK_STR(mp_err(), want);

    /* one class only */
    db = db_open(dbp, 0);
    db_exec(db, "UPDATE slides SET label = 'class1' WHERE label IS NOT NULL");
    db_close(db);
    o = opts(0, 10, tmp("x.mpk"), 1);
    CHECK_INT(tr_train(&o, &r), -1);
    snprintf(want, sizeof want, "%s: the train split has one class only (class1); training needs at least two", dbp);
    CHECK_STR(mp_err(), want);

    /* empty split */
    db = db_open(dbp, 0);
    db_exec(db, "DELETE FROM splits WHERE split = 'train'");
    db_close(db);
    CHECK_INT(tr_train(&o, &r), -1);
    snprintf(want, sizeof want, "%s: the train split has no labelled patches (run `magpie db DB split` first)", dbp);
    CHECK_STR(mp_err(), want);

    /* a patient in two splits */
    db = db_open(dbp, 0);
    db_exec(db, "UPDATE slides SET patient = 'p00' WHERE name = 's03'"); /* s03 is in val, s00 in test */
    db_exec(db, "INSERT INTO splits VALUES (1, 'train')");
    db_exec(db, "UPDATE splits SET split = 'train' WHERE slide_id = 1");
    db_close(db);
    CHECK_INT(tr_train(&o, &r), -1);
    snprintf(want, sizeof want, "%s: patient p00 is in two splits (train and val)", dbp);
    CHECK_STR(mp_err(), want);
}

int main(void)
{
    if (t_tmpdir("train")) return 1;
    snprintf(dbp, sizeof dbp, "%s/tiny.db", t_dir);
    tiny_cfg tc = {.slides = 10, .per_slide = 12, .classes = 3, .hi = 32, .lo = 4, .png = 0, .seed = 2, .unlabeled_slides = 5};
    if (tiny_make(dbp, &tc) < 0) TEST_FATAL("cannot write the tiny dataset %s: %s", dbp, mp_err());
    RUN(teacher_learns);
    RUN(loss_decreases_each_method);
    RUN(teacher_cache_follows_teacher_content);
    RUN(resume_equals_uninterrupted);
    RUN(average_without_validation);
    RUN(nan_keeps_last_good);
    RUN(resume_fewer_epochs);
    RUN(resume_checks_state);
    RUN(resume_trims_log);
    RUN(patience_waits_at_chance);
    RUN(auto_schedule);
    RUN(anomalies);
    if (t_rmdir()) return 1;
    return test_done();
}
