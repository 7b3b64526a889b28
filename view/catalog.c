/* view/catalog.c — what `magpie view PATH...` will serve, fixed at start-up: slides (opened
 * through the tiler), their heatmaps (infer output folders) and datasets. Requests name entries
 * by number only; this is the one place where file paths are chosen. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/slides.h"
#include "view/internal.h"

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = mp_xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

int view_inside(const char *dir, const char *p)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return 1;
    return !strncmp(dir, p, n) && (p[n] == '/' || p[n] == 0);
}

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int is_sqlite(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    char h[16];
    int ok = fread(h, 1, 16, f) == 16 && !memcmp(h, "SQLite format 3", 16);
    fclose(f);
    return ok;
}

static int slide_ext(const char *name)
{
    static const char *ext[] = {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs",
                                ".svslide", ".bif", ".dcm"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

static char *stem(const char *path)
{
    char buf[PATH_MAX];
    return mp_xstrdup(mp_path_stem(path, buf, sizeof buf)); /* the name every command gives it */
}

/* The slide at real path `real`, opened, or the entry it already has. NULL + mp_err. */
static view_slide *slide_add(view_server *v, const char *real, const char *from)
{
    for (int i = 0; i < v->nslides; i++)
        if (!strcmp(v->slides[i]->path, real)) return v->slides[i];
    view_slide *s = mp_xcalloc(1, sizeof *s);
    s->path = mp_xstrdup(real);
    if (tiler_slide_open(s->path, &s->ts)) {
        free(s->path);
        free(s);
        return NULL;
    }
    tiler_mpp m;
    if (!tiler_resolve_mpp(s->path, &s->ts, 0, &m)) s->mpp = m.mpp_x;
    mp_err_clear();
    s->name = stem(real);
    s->from = mp_xstrdup(from);
    s->max_level = view_dz_max_level(s->ts.width, s->ts.height);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->thumb_mu, NULL);
    s->id = v->nslides;
    v->slides = mp_xrealloc(v->slides, (v->nslides + 1) * sizeof *v->slides);
    v->slides[v->nslides++] = s;
    return s;
}

/* A slide named by a run or dataset (its input): skipped with a warning when it is gone. */
static view_slide *slide_ref(view_server *v, const char *path, const char *from)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        mp_warn("%s: slide %s: %s (not shown)", from, path, strerror(errno));
        return NULL;
    }
    view_slide *s = slide_add(v, real, from);
    if (!s) mp_warn("%s (not shown)", mp_err());
    return s;
}

/* An infer output folder (DIR/prediction.json + probability.tif): the heatmap of its slide. */
static int infer_dir_add(view_server *v, const char *dir)
{
    char *pj = join(dir, "prediction.json"), *pt = join(dir, "probability.tif");
    json_error_t je;
    json_t *j = json_load_file(pj, 0, &je);
    const char *slide = j ? json_string_value(json_object_get(j, "slide")) : NULL;
    view_slide *s = NULL;
    if (!j) mp_warn("%s: %s (not shown)", pj, je.text);
    else if (!slide) mp_warn("%s: no \"slide\" (not shown)", pj);
    else if (!is_file(pt)) mp_warn("%s: missing (heatmap not shown)", pt);
    else s = slide_ref(v, slide, dir);
    if (s && !s->pred_json) {
        s->pred_json = pj;
        s->prob_tif = pt;
        pj = pt = NULL;
    }
    json_decref(j);
    free(pj);
    free(pt);
    return 0;
}

typedef struct {
    view_server *v;
    const char *real; /* the dataset */
} slide_walk;

/* A slide of the dataset: the viewer shows it with the dataset's mask and patches. */
static int take_slide(void *ctx, int64_t id, const char *path)
{
    slide_walk *w = ctx;
    view_slide *s = slide_ref(w->v, path, w->real);
    if (s && !s->db_path) {
        s->db_path = mp_xstrdup(w->real);
        s->db_slide_id = id;
    }
    return 0;
}

static int dataset_add(view_server *v, const char *real)
{
    for (int i = 0; i < v->ndatasets; i++)
        if (!strcmp(v->datasets[i]->path, real)) return 0;
    mp_db *db = db_open(real, DB_OPEN_READONLY);
    if (!db) return -1;
    view_dataset *d = mp_xcalloc(1, sizeof *d);
    d->id = v->ndatasets;
    d->path = mp_xstrdup(real);
    d->name = stem(real);
    v->datasets = mp_xrealloc(v->datasets, (v->ndatasets + 1) * sizeof *v->datasets);
    v->datasets[v->ndatasets++] = d;
    /* its slides (patch imports are not slides: their "path" is a patch image) */
    slide_walk w = {v, real};
    if (db_tiled_slides(db, take_slide, &w)) {
        db_close(db);
        return -1;
    }
    db_close(db);
    return 0;
}

static int dir_add(view_server *v, const char *real, int depth);

/* DIR/report.html (a run's, or `magpie report`'s), when it is a file inside DIR itself. */
static void report_add(view_server *v, const char *dir)
{
    char *p = join(dir, "report.html"), real[PATH_MAX];
    int ok = realpath(p, real) && view_inside(dir, real) && is_file(real);
    if (!ok && !access(p, F_OK)) mp_warn("%s: leads outside %s or is not a file (report not shown)", p, dir);
    free(p);
    if (!ok) return;
    for (int i = 0; i < v->nreports; i++)
        if (!strcmp(v->reports[i]->dir, dir)) return;
    view_report *r = mp_xcalloc(1, sizeof *r);
    r->id = v->nreports;
    r->dir = mp_xstrdup(dir);
    const char *b = strrchr(dir, '/');
    r->name = mp_xstrdup(b && b[1] ? b + 1 : dir); /* a folder's name: no extension to drop */
    v->reports = mp_xrealloc(v->reports, (v->nreports + 1) * sizeof *v->reports);
    v->reports[v->nreports++] = r;
}

/* explicit: a PATH the user gave (its failure is an error naming `given`), else a file met in a
 * folder (skipped with a warning) */
static int file_add(view_server *v, const char *real, int explicit, const char *given)
{
    if (is_sqlite(real)) {
        if (!dataset_add(v, real)) return 0;
        if (explicit) return -1;
        mp_warn("%s (not shown)", mp_err());
        return 0;
    }
    if (!explicit && !slide_ext(real)) return 0;
    if (slide_add(v, real, "slide")) return 0;
    if (explicit) {
        char why[600];
        const char *m = mp_err();
        size_t n = strlen(real);
        if (!strncmp(m, real, n) && !strncmp(m + n, ": ", 2)) m += n + 2; /* the tiler names the file too */
        snprintf(why, sizeof why, "%s", m);
        return mp_err_set("%s: not a slide or a magpie dataset (%s)", given, why);
    }
    mp_warn("%s (not shown)", mp_err());
    return 0;
}

static int dir_add(view_server *v, const char *real, int depth)
{
    char *p = join(real, "prediction.json");
    int infer_one = is_file(p);
    free(p);
    if (infer_one) return infer_dir_add(v, real);
    report_add(v, real);
    /* a magpie run folder: its dataset and its heatmaps */
    char *db = join(real, "dataset.db"), *heat = join(real, "heatmaps");
    int run = is_file(db) && is_dir(heat);
    if (run && dataset_add(v, db)) mp_warn("%s (not shown)", mp_err());
    if (run) dir_add(v, heat, depth + 1);
    free(db);
    free(heat);
    if (run) return 0;
    struct dirent **ents;
    int n = scandir(real, &ents, NULL, alphasort);
    if (n < 0) return mp_err_set("%s: %s", real, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        if (nm[0] != '.') {
            char *child = join(real, nm), r2[PATH_MAX];
            /* a symlink that leads out of the folder is not followed */
            if (!realpath(child, r2)) {
            } else if (!view_inside(real, r2)) mp_warn("%s: leads outside %s (not shown)", child, real);
            else if (is_dir(r2)) {
                if (depth < 2) dir_add(v, r2, depth + 1);
            } else if (is_file(r2)) file_add(v, r2, 0, child);
            free(child);
        }
        free(ents[i]);
    }
    free(ents);
    return 0;
}

int view_catalog_add(view_server *v, const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return mp_err_set("%s: %s", path, strerror(errno));
    v->roots = mp_xrealloc(v->roots, (v->nroots + 1) * sizeof *v->roots);
    v->roots[v->nroots++] = mp_xstrdup(real);
    int ns = v->nslides, nd = v->ndatasets, nr = v->nreports;
    if (is_dir(real)) {
        if (dir_add(v, real, 0)) return -1;
    } else if (is_file(real)) {
        if (file_add(v, real, 1, path)) return -1;
    } else return mp_err_set("%s: not a file or folder", path);
    if (v->nslides == ns && v->ndatasets == nd && v->nreports == nr) {
        /* a slide or dataset listed before counts as shown */
        return mp_err_set("%s: no slide, heatmap or dataset in it", path);
    }
    return 0;
}

void view_catalog_free(view_server *v)
{
    for (int i = 0; i < v->nslides; i++) {
        view_slide *s = v->slides[i];
        for (int k = 0; k < s->nreaders; k++) tiler_reader_close(s->readers[k]);
        free(s->readers);
        tiler_slide_close(&s->ts);
        if (s->heat.classes)
            for (int k = 0; k < s->heat.K; k++) free(s->heat.classes[k]);
        free(s->heat.classes);
        free(s->heat.prob);
        free(s->heat.valid);
        free(s->mask_png.data);
        free(s->pred_json);
        free(s->prob_tif);
        free(s->db_path);
        free(s->path);
        free(s->name);
        free(s->from);
        free(s->thumb);
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->thumb_mu);
        free(s);
    }
    free(v->slides);
    for (int i = 0; i < v->ndatasets; i++) {
        free(v->datasets[i]->path);
        free(v->datasets[i]->name);
        free(v->datasets[i]);
    }
    free(v->datasets);
    for (int i = 0; i < v->nreports; i++) {
        free(v->reports[i]->dir);
        free(v->reports[i]->name);
        free(v->reports[i]);
    }
    free(v->reports);
    for (int i = 0; i < v->nroots; i++) free(v->roots[i]);
    free(v->roots);
}
