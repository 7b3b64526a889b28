/* pipelines/cmd_demo.c — `magpie demo [DIR]`: the built-in default job, the whole product on
 * synthetic data: synthesize slides, `magpie run` tile them into one dataset, split it by
 * patient, train the 10x teacher, distil the 1.25x student,
 * evaluate it, `magpie run` infer with the student (heatmaps, predictions, report.html), and
 * print where the report is. It drives the same entry points as the user-facing subcommands
 * and prints each step's time. Rerunning it resumes: finished steps are skipped. */
#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "db/db.h"
#include "db/splits.h"
#include "pipelines/cmds.h"
#include "trainer/trainer.h"

static int is_slide(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".tif") || !strcmp(dot, ".tiff"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* synth's slides.csv (slide name, patient, label) as a lookup for the manifest */
typedef struct {
    char *f[3];
    int nf;
    char ***rows;
    int n;
} rows_ctx;

static void on_field(void *s, size_t len, void *data)
{
    rows_ctx *c = data;
    if (c->nf < 3) c->f[c->nf++] = strndup(s ? s : "", len);
}

static void on_row(int ch, void *data)
{
    (void)ch;
    rows_ctx *c = data;
    c->rows = mp_xrealloc(c->rows, sizeof(char **) * (size_t)(c->n + 1));
    char **r = mp_xcalloc(3, sizeof(char *));
    for (int i = 0; i < 3; i++) r[i] = i < c->nf ? c->f[i] : mp_xstrdup("");
    c->rows[c->n++] = r;
    c->nf = 0;
}

static void csv_out(FILE *f, const char *s, int last)
{
    csv_fwrite(f, s, strlen(s));
    fputc(last ? '\n' : ',', f);
}

/* DIR/manifest.csv: every synthesized slide with its patient and label (empty when synth held
 * the label back: those slides are the unlabeled pool the student learns from). */
static int write_manifest(const char *slides_dir, char **names, int n, const char *out)
{
    char csv[4200];
    snprintf(csv, sizeof csv, "%s/slides.csv", slides_dir);
    uint8_t *buf;
    size_t len;
    if (mp_read_file(csv, &buf, &len)) return -1;
    rows_ctx c = {0};
    struct csv_parser p;
    csv_init(&p, CSV_APPEND_NULL);
    csv_parse(&p, buf, len, on_field, on_row, &c);
    csv_fini(&p, on_field, on_row, &c);
    csv_free(&p);
    free(buf);
    char *mb = NULL;
    size_t ml = 0;
    FILE *f = open_memstream(&mb, &ml);
    fprintf(f, "slide,patient,label\n");
    for (int i = 0; i < n; i++) {
        char stem[1024];
        snprintf(stem, sizeof stem, "%s", names[i]);
        char *dot = strrchr(stem, '.');
        if (dot) *dot = 0;
        const char *patient = "", *label = "";
        for (int r = 1; r < c.n; r++)
            if (!strcmp(c.rows[r][0], stem)) patient = c.rows[r][1], label = c.rows[r][2];
        char rel[1100];
        snprintf(rel, sizeof rel, "slides/%s", names[i]);
        csv_out(f, rel, 0);
        csv_out(f, patient, 0);
        csv_out(f, label, 1);
    }
    fclose(f);
    int rc = mp_write_file_atomic(out, mb, ml);
    free(mb);
    for (int r = 0; r < c.n; r++) {
        for (int k = 0; k < 3; k++) free(c.rows[r][k]);
        free(c.rows[r]);
    }
    free(c.rows);
    for (int k = 0; k < c.nf; k++) free(c.f[k]);
    return rc;
}

typedef struct {
    int k, n;
    double t0, t_all;
} steps;

static void step_begin(steps *s, const char *what)
{
    fflush(stdout);
    mp_info("== %d/%d %s", ++s->k, s->n, what);
    s->t0 = mp_now();
}

static void step_end(steps *s)
{
    fflush(stdout);
    mp_info("   step %d took %.1f s (%.1f s so far)", s->k, mp_now() - s->t0, mp_now() - s->t_all);
}

/* One training of the demo, resumable: OUT.demo.txt records what a finished training was asked
 * (the slides' recipe, the epochs, the teacher's record), so a rerun with the same record skips
 * it, one without a record continues a killed run from OUT.last.mpk, and a different record
 * (other epochs, other slides, a retrained teacher) trains again from scratch. argv has two
 * NULL slots at argc for --resume. */
static int train_step(const char *out, const char *want, char **argv, int argc)
{
    char stamp[4400], last[4400];
    snprintf(stamp, sizeof stamp, "%s.demo.txt", out);
    tr_side_path(last, sizeof last, out, ".last.mpk");
    uint8_t *had = NULL;
    size_t hl = 0;
    int have = !mp_read_file(stamp, &had, &hl);
    int same = have && hl == strlen(want) && !memcmp(had, want, hl);
    free(had);
    mp_err_clear();
    if (same && mp_file_exists(out)) {
        mp_info("   %s is trained already", out);
        return MP_EXIT_OK;
    }
    if (!have && mp_file_exists(last)) argv[argc++] = "--resume";
    unlink(stamp);
    int rc = cmd_train(argc, argv);
    if (rc == MP_EXIT_OK && mp_write_file_atomic(stamp, want, strlen(want))) {
        mp_error("%s", mp_err());
        rc = MP_EXIT_FAIL;
    }
    return rc;
}

typedef struct {
    const char *db_path;
    int rc, n;
} split_check;

static int print_class(void *ctx, const db_class_patches *r)
{
    split_check *c = ctx;
    c->n++;
    const int64_t n[3] = {r->train, r->val, r->test};
    printf("%-10s %6lld %6lld %6lld %10lld\n", r->class_name, (long long)r->train, (long long)r->val,
           (long long)r->test, (long long)r->unlabeled);
    for (int k = 0; k < 3; k++)
        if (n[k] == 0 && c->rc == MP_EXIT_OK) {
            mp_error("%s: class %s has no patches in the %s split: give more or larger slides (--slides, --width, "
                     "--height)",
                     c->db_path, r->class_name, k == 0 ? "train" : k == 1 ? "val" : "test");
            c->rc = MP_EXIT_FAIL;
        }
    return 0;
}

/* Patches per split and class, printed; every class must have patches in train, val and test,
 * or the numbers that follow would not mean what they say. */
static int check_splits(const char *db_path)
{
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    split_check c = {db_path, MP_EXIT_OK, 0};
    printf("patches     train    val   test  unlabeled\n");
    if (db_class_split_patches(db, print_class, &c)) {
        mp_error("%s", mp_err());
        c.rc = MP_EXIT_FAIL;
    } else if (c.n < 2) {
        mp_error("%s: %d class%s with patches; the demo needs at least two", db_path, c.n, c.n == 1 ? "" : "es");
        c.rc = MP_EXIT_FAIL;
    }
    db_close(db);
    return c.rc;
}

/* `magpie eval DB CKPT --split test --json` with its stdout going to `out` (written beside and
 * renamed in, so a killed demo leaves no half file). */
static int eval_to_json(const char *db, const char *ckpt, const char *out)
{
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        mp_error("%s: %s", tmp, strerror(errno));
        return MP_EXIT_FAIL;
    }
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    close(fd);
    char *ev[] = {"eval", (char *)db, (char *)ckpt, "--split", "test", "--bootstrap", "1000", "--json", NULL};
    int rc = cmd_eval(8, ev);
    fflush(stdout);
    int werr = ferror(stdout);
    dup2(saved, 1);
    close(saved);
    clearerr(stdout);
    if (rc == MP_EXIT_OK && (werr || rename(tmp, out))) {
        mp_error("%s: %s", out, strerror(errno ? errno : EIO));
        rc = MP_EXIT_FAIL;
    }
    if (rc != MP_EXIT_OK) unlink(tmp);
    return rc;
}

static void print_metric(json_t *j, const char *key)
{
    json_t *m = json_object_get(j, key);
    double v = json_number_value(json_object_get(m, "value"));
    json_t *ci = json_object_get(m, "ci");
    if (!m) printf("  %-17s", "-");
    else if (json_array_size(ci) == 2)
        printf("  %.3f [%.3f, %.3f]", v, json_number_value(json_array_get(ci, 0)), json_number_value(json_array_get(ci, 1)));
    else printf("  %-17.3f", v);
}

/* The two evaluations side by side: the numbers as eval computed them, and chance. */
static void print_eval(const char *teacher_json, const char *student_json)
{
    json_t *j[2] = {json_load_file(teacher_json, 0, NULL), json_load_file(student_json, 0, NULL)};
    const char *who[2] = {"teacher", "student"};
    int k = (int)json_array_size(json_object_get(j[0], "classes"));
    printf("\ntest split: %lld patches of %lld slides (95%% CIs: bootstrap over whole slides)\n",
           (long long)json_integer_value(json_object_get(j[1], "patches")),
           (long long)json_integer_value(json_object_get(j[1], "slides")));
    printf("model       mag   px  GFLOPs/patch  balanced accuracy     macro AUC             slides (balanced accuracy)\n");
    for (int i = 0; i < 2; i++) {
        if (!j[i]) continue;
        printf("%-8s %5gx %4lld  %12.3f", who[i], json_number_value(json_object_get(j[i], "mag")),
               (long long)json_integer_value(json_object_get(j[i], "input_size")),
               json_number_value(json_object_get(j[i], "flops_per_patch")) / 1e9);
        print_metric(j[i], "balanced_accuracy");
        print_metric(j[i], "macro_auc");
        printf("  %.3f\n", json_number_value(json_object_get(j[i], "slide_mean_balanced_accuracy")));
    }
    if (k > 0) printf("chance: balanced accuracy %.3f (%d classes), AUC 0.5\n", 1.0 / k, k);
    if (j[0] && j[1] && json_number_value(json_object_get(j[1], "flops_per_patch")) > 0)
        printf("the student costs %.0fx fewer FLOPs per patch than the teacher\n",
               json_number_value(json_object_get(j[0], "flops_per_patch")) /
                   json_number_value(json_object_get(j[1], "flops_per_patch")));
    json_decref(j[0]);
    json_decref(j[1]);
}

int cmd_demo(int argc, char **argv)
{
    const char *dir = "magpie-demo";
    const char *nslides = "40", *width = "3584", *height = "3584", *tep = "15", *sep = "40";
    enum { O_SLIDES = 256, O_WIDTH, O_HEIGHT, O_TEP, O_SEP };
    static const struct option lo[] = {{"slides", required_argument, 0, O_SLIDES},
                                       {"width", required_argument, 0, O_WIDTH},
                                       {"height", required_argument, 0, O_HEIGHT},
                                       {"teacher-epochs", required_argument, 0, O_TEP},
                                       {"student-epochs", required_argument, 0, O_SEP},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    optind = 1;
    int ch, li;
    while ((ch = mp_getopt_long(argc, argv, "h", lo, &li)) != -1) {
        const char **dst = ch == O_SLIDES ? &nslides
                         : ch == O_WIDTH  ? &width
                         : ch == O_HEIGHT ? &height
                         : ch == O_TEP    ? &tep
                         : ch == O_SEP    ? &sep
                                          : NULL;
        if (ch == 'h') {
            printf("usage: magpie demo [DIR] [--slides N] [--width W --height H] [--teacher-epochs N] [--student-epochs N]\n\n"
                   "The whole product on synthetic data, each step timed:\n"
                   "  1. synthesize N H&E-like slides (20x, 0.5 µm/px, one class each, two per patient) into\n"
                   "     DIR/slides and list them in DIR/manifest.csv (slide, patient, label)\n"
                   "  2. magpie run: tile them at 10x and 1.25x (256 px / 32 px) into DIR/dataset.db\n"
                   "  3. split the slides by patient: train, val, test and an unlabeled pool (every class must have\n"
                   "     patches in train, val and test: the patch counts are printed)\n"
                   "  4. train the 10x teacher (DIR/models/teacher.mpk)\n"
                   "  5. distil the 1.25x student from it by resolution distillation (DIR/models/student.mpk)\n"
                   "  6. evaluate the teacher and the student on the test split (DIR/eval/*.json), side by side\n"
                   "  7. magpie run: infer every slide with the student: heatmaps under DIR/heatmaps/, predictions\n"
                   "     in the dataset, DIR/report.html\n"
                   "Defaults: DIR magpie-demo, 40 slides of 3584x3584, 15 teacher and 40 student epochs (a few\n"
                   "minutes on 2 cores). Running it again resumes: finished work is skipped, a killed training continues.\n");
            return MP_EXIT_OK;
        }
        if (!dst) return mp_usage_error("demo", NULL, "%s", mp_err());
        long lv;
        if (mp_parse_long(optarg, &lv) < 0 || lv < 1)
            return mp_usage_error("demo", NULL, "--%s wants a positive integer, got '%s'", lo[li].name, optarg);
        *dst = optarg;
    }
    if (argc - optind > 1) return mp_usage_error("demo", NULL, "unexpected argument '%s' (one DIR)", argv[optind + 1]);
    if (optind < argc) dir = argv[optind];
    char slides_dir[4096], db[4200], manifest[4200], models[4200], teacher[4300], student[4300],
        report[4200];
    snprintf(slides_dir, sizeof slides_dir, "%s/slides", dir);
    snprintf(db, sizeof db, "%s/dataset.db", dir);
    snprintf(manifest, sizeof manifest, "%s/manifest.csv", dir);
    snprintf(models, sizeof models, "%s/models", dir);
    snprintf(teacher, sizeof teacher, "%s/teacher.mpk", models);
    snprintf(student, sizeof student, "%s/student.mpk", models);
    snprintf(report, sizeof report, "%s/report.html", dir);
    if (mp_mkdir_p(slides_dir) || mp_mkdir_p(models)) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    steps st = {.n = 7, .t_all = mp_now()};

    step_begin(&st, "synthesize slides");
    /* two slides per patient */
    long ns = atol(nslides);
    char npat[32];
    snprintf(npat, sizeof npat, "%ld", ns > 1 ? (ns + 1) / 2 : 1);
    /* one class per slide (slide labels are then patch labels), few pen marks, no dust: the
     * distillation benchmark's recipe at 20x */
    char *synth_argv[] = {"synth", slides_dir, "--slides", (char *)nslides, "--patients", npat, "--width", (char *)width,
                          "--height", (char *)height, "--mpp", "0.5", "--purity", "1", "--pen", "0.2", "--dust", "0",
                          "--seed", "1", "--progress=none", NULL};
    /* a rerun keeps the slides a finished synth wrote with the same parameters */
    char stamp[4200], want[512];
    snprintf(stamp, sizeof stamp, "%s/demo-synth.txt", slides_dir);
    snprintf(want, sizeof want, "slides=%s patients=%s width=%s height=%s mpp=0.5 purity=1 pen=0.2 dust=0 seed=1\n",
             nslides, npat, width, height);
    uint8_t *had = NULL;
    size_t hl = 0;
    int rc = MP_EXIT_OK;
    if (!mp_read_file(stamp, &had, &hl) && !strcmp((char *)had, want)) mp_info("   the slides are there already");
    else if ((rc = cmd_synth(20, synth_argv)) == MP_EXIT_OK && mp_write_file_atomic(stamp, want, strlen(want))) {
        mp_error("%s", mp_err());
        rc = MP_EXIT_FAIL;
    }
    free(had);
    mp_err_clear();
    if (rc != MP_EXIT_OK) return rc;
    DIR *d = opendir(slides_dir);
    if (!d) {
        mp_error("%s: cannot list directory", slides_dir);
        return MP_EXIT_FAIL;
    }
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_slide(e->d_name)) continue;
        names = mp_xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = mp_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    rc = n ? write_manifest(slides_dir, names, n, manifest) : mp_err_set("%s: synth wrote no slides", slides_dir);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_info("   %d slides, listed in %s", n, manifest);
    step_end(&st);

    /* 256 px at 10x, 32 px at 1.25x: the network's total stride of 32 divides both, so the
     * student costs exactly 1/64 of the teacher's FLOPs */
    step_begin(&st, "magpie run: tile at 10x and 1.25x into the dataset");
    char *run1[] = {"run", manifest, "--out", (char *)dir, "--steps", "tile", "--mags", "10,1.25", "--size", "256", NULL};
    rc = cmd_run(10, run1);
    if (rc != MP_EXIT_OK) goto out;
    step_end(&st);

    /* a third of the patients' slides held out unlabeled: the student learns from them too */
    step_begin(&st, "split the slides by patient (train, val, test, and an unlabeled pool)");
    char *split_argv[] = {"split", "--by", "patient", "--ratios", "0.5,0.25,0.25", "--stratify", "label", "--unlabeled-ratio",
                          "0.35", "--seed", "1", NULL};
    rc = cmd_db_split(db, 11, split_argv);
    if (rc == MP_EXIT_OK) rc = check_splits(db);
    if (rc != MP_EXIT_OK) goto out;
    step_end(&st);

    step_begin(&st, "train the 10x teacher");
    char *tr1[] = {"train", db, "--method", "supervised", "--mag", "10", "--out", teacher, "--epochs", (char *)tep,
                   "--seed", "1", NULL, NULL};
    char want_t[1024];
    snprintf(want_t, sizeof want_t, "%steacher epochs=%s\n", want, tep);
    rc = train_step(teacher, want_t, tr1, 12);
    if (rc != MP_EXIT_OK) goto out;
    step_end(&st);

    step_begin(&st, "distil the 1.25x student from the teacher (resolution distillation)");
    char *tr2[] = {"train", db, "--method", "rbd", "--mag", "1.25", "--teacher", teacher, "--out", student,
                   "--epochs", (char *)sep, "--seed", "1", NULL, NULL};
    char want_s[1200];
    snprintf(want_s, sizeof want_s, "%sstudent epochs=%s\n", want_t, sep);
    rc = train_step(student, want_s, tr2, 14);
    if (rc != MP_EXIT_OK) goto out;
    step_end(&st);

    /* both models on the held-out test split, so the student's figure has its teacher's and
     * chance beside it; the JSON stays in DIR/eval for the report */
    step_begin(&st, "evaluate the teacher and the student on the test split");
    char evdir[4200], evt[4300], evs[4300];
    snprintf(evdir, sizeof evdir, "%s/eval", dir);
    snprintf(evt, sizeof evt, "%s/teacher.json", evdir);
    snprintf(evs, sizeof evs, "%s/student.json", evdir);
    if (mp_mkdir_p(evdir)) {
        mp_error("%s", mp_err());
        rc = MP_EXIT_FAIL;
        goto out;
    }
    if ((rc = eval_to_json(db, teacher, evt)) != MP_EXIT_OK || (rc = eval_to_json(db, student, evs)) != MP_EXIT_OK) goto out;
    print_eval(evt, evs);
    step_end(&st);

    step_begin(&st, "magpie run: infer every slide with the student (heatmaps, predictions, report)");
    char *run2[] = {"run", manifest, "--out", (char *)dir, "--steps", "infer", "--model", student, NULL};
    rc = cmd_run(8, run2);
    if (rc != MP_EXIT_OK) goto out;
    step_end(&st);
    fflush(stdout);
    mp_info("%s", "");
    mp_info("Done in %.1f s. The report: %s", mp_now() - st.t_all, report);
    mp_info("Next: open it in a browser; magpie db %s info; magpie --help", db);
    printf("%s\n", report);
out:
    fflush(stdout);
    return rc;
}
