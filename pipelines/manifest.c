/* pipelines/manifest.c — `magpie run`'s slide list: a CSV manifest (libcsv, line numbers kept
 * for every message), a folder, a glob or one slide; validated whole before any work. */
#include <csv.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "infer/infer.h"
#include "pipelines/manifest.h"

#define MF_MAX_BYTES (256LL << 20) /* a manifest of a million slides is ~100 MB */

enum { C_SLIDE, C_PATIENT, C_LABEL, C_SPLIT, C_MPP, C_MIN, C_N };
static const char *col_names[C_N] = {"slide", "patient", "label", "split", "mpp", "min_tissue"};

int mf_is_slide_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    char ext[32];
    snprintf(ext, sizeof ext, " %s ", dot);
    for (char *c = ext; *c; c++) *c = (char)tolower((unsigned char)*c);
    return strstr(" " MF_SLIDE_EXTS " ", ext) != NULL;
}

void mf_free(mf_list *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        mf_item *it = &m->items[i];
        free(it->path), free(it->given), free(it->name), free(it->patient), free(it->label), free(it->split);
        free(it->problem);
    }
    free(m->items);
    free(m->source);
    memset(m, 0, sizeof *m);
}

static char *trim_dup(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    char *o = mp_xmalloc(n + 1);
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

/* Absolute path of `p` (relative to dir when not absolute): realpath when it exists. */
static char *resolve(const char *dir, const char *p)
{
    char joined[PATH_MAX * 2];
    if (p[0] == '/') snprintf(joined, sizeof joined, "%s", p);
    else if (dir && dir[0] == '/') snprintf(joined, sizeof joined, "%s/%s", dir, p);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
        snprintf(joined, sizeof joined, "%s/%s%s%s", cwd, dir ? dir : "", dir ? "/" : "", p);
    }
    char *r = realpath(joined, NULL);
    return r ? r : mp_xstrdup(joined);
}

static void add_item(mf_list *m, int *cap, const char *given, char *path, int line)
{
    if (m->n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        m->items = mp_xrealloc(m->items, (size_t)*cap * sizeof *m->items);
    }
    mf_item *it = &m->items[m->n++];
    memset(it, 0, sizeof *it);
    it->given = mp_xstrdup(given);
    it->path = path;
    it->mpp = 0;
    it->min_tissue = -1;
    it->line = line;
}

/* ---- CSV ---- */

typedef struct {
    const char *path;
    char *dir;
    mf_list *m;
    int cap;
    int line, row_line;
    int col_of[64]; /* header position -> column kind, -1 unknown */
    int ncols;
    char **f;       /* fields of the current row */
    int nf, fcap;
    int problems;
    int header_done;
    long rows;      /* on_row calls: tells whether a line closed its record */
} csv_ctx;

static void problem(csv_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(csv_ctx *c, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->problems++ < 50) mp_error("%s:%d: %s", c->path, line, msg);
    else if (c->problems == 51) mp_error("%s: more problems not shown", c->path);
}

static void on_field(void *s, size_t len, void *data)
{
    csv_ctx *c = data;
    (void)len;
    if (c->nf == c->fcap) {
        c->fcap = c->fcap ? 2 * c->fcap : 16;
        c->f = mp_xrealloc(c->f, (size_t)c->fcap * sizeof *c->f);
    }
    c->f[c->nf++] = trim_dup(s ? (const char *)s : "");
}

static void header_row(csv_ctx *c)
{
    int seen[C_N] = {0};
    if (c->nf > 64) {
        problem(c, c->row_line, "%d columns in the header; a manifest has at most %d (%s)", c->nf, C_N, MF_COLUMNS);
        c->ncols = 0;
        return;
    }
    c->ncols = c->nf;
    for (int i = 0; i < c->nf; i++) {
        c->col_of[i] = -1;
        for (int k = 0; k < C_N; k++)
            if (!strcasecmp(c->f[i], col_names[k])) c->col_of[i] = k;
        if (c->col_of[i] < 0) {
            char esc[256];
            problem(c, c->row_line, "unknown column '%s' (columns: %s)", mp_escape_ctrl(c->f[i], esc, sizeof esc),
                    MF_COLUMNS);
        } else if (seen[c->col_of[i]]++) {
            problem(c, c->row_line, "column '%s' appears twice", col_names[c->col_of[i]]);
        }
    }
    if (!seen[C_SLIDE]) problem(c, c->row_line, "no 'slide' column (columns: %s)", MF_COLUMNS);
    c->m->has_patient = seen[C_PATIENT] > 0;
    c->m->has_label = seen[C_LABEL] > 0;
    c->m->has_split = seen[C_SPLIT] > 0;
}

static void data_row(csv_ctx *c)
{
    int L = c->row_line;
    if (c->nf != c->ncols) {
        problem(c, L, "%d field%s, the header has %d", c->nf, c->nf == 1 ? "" : "s", c->ncols);
        return;
    }
    const char *v[C_N] = {0};
    for (int i = 0; i < c->nf; i++)
        if (c->col_of[i] >= 0) v[c->col_of[i]] = c->f[i];
    if (!v[C_SLIDE] || !v[C_SLIDE][0]) {
        problem(c, L, "empty 'slide'");
        return;
    }
    double mpp = 0, mt = -1;
    int bad = 0;
    if (v[C_MPP] && v[C_MPP][0] && (mp_parse_double(v[C_MPP], &mpp) || mpp < 0.05 || mpp > 20)) {
        char esc[128];
        problem(c, L, "bad number in 'mpp': '%s' (µm per pixel within 0.05-20, or empty)",
                mp_escape_ctrl(v[C_MPP], esc, sizeof esc));
        bad = 1;
    }
    if (v[C_MIN] && v[C_MIN][0] && (mp_parse_double(v[C_MIN], &mt) || mt < 0 || mt > 1)) {
        char esc[128];
        problem(c, L, "bad number in 'min_tissue': '%s' (0..1, or empty)", mp_escape_ctrl(v[C_MIN], esc, sizeof esc));
        bad = 1;
    }
    if (v[C_SPLIT] && v[C_SPLIT][0] && strcmp(v[C_SPLIT], "train") && strcmp(v[C_SPLIT], "val") &&
        strcmp(v[C_SPLIT], "test") && strcmp(v[C_SPLIT], "unlabeled")) {
        char esc[128];
        problem(c, L, "bad 'split': '%s' (train, val, test, unlabeled, or empty)",
                mp_escape_ctrl(v[C_SPLIT], esc, sizeof esc));
        bad = 1;
    }
    if (bad) return;
    add_item(c->m, &c->cap, v[C_SLIDE], resolve(c->dir, v[C_SLIDE]), L);
    mf_item *it = &c->m->items[c->m->n - 1];
    it->mpp = mpp;
    it->min_tissue = mt;
    if (v[C_PATIENT]) it->patient = mp_xstrdup(v[C_PATIENT]);
    if (v[C_LABEL]) it->label = mp_xstrdup(v[C_LABEL]);
    if (v[C_SPLIT]) it->split = mp_xstrdup(v[C_SPLIT]);
}

static void on_row(int ch, void *data)
{
    csv_ctx *c = data;
    (void)ch;
    c->rows++;
    int blank = c->nf == 0 || (c->nf == 1 && !c->f[0][0]);
    if (!blank) {
        if (!c->header_done) {
            c->header_done = 1;
            header_row(c);
        } else if (c->ncols > 0) {
            data_row(c);
        }
    }
    for (int i = 0; i < c->nf; i++) free(c->f[i]);
    c->nf = 0;
}

static int load_csv(const char *path, mf_list *m)
{
    uint8_t *buf;
    size_t len;
    if (mp_read_file(path, &buf, &len)) return -1;
    if ((long long)len > MF_MAX_BYTES) {
        free(buf);
        return mp_err_set("%s: %zu bytes; a manifest is at most %lld", path, len, MF_MAX_BYTES);
    }
    csv_ctx c = {.path = path, .m = m, .line = 1};
    char *slash = strrchr(path, '/');
    c.dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : NULL;
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL)) {
        free(buf);
        free(c.dir);
        return mp_err_set("%s: cannot initialise the CSV parser", path);
    }
    /* Fed line by line so a message names the line its record started on. */
    size_t pos = 0;
    int rec_open = 0, bad = 0;
    while (pos < len && !bad) {
        size_t e = pos;
        /* a bare CR ends a line too (libcsv ends a record there): old Mac files count right */
        while (e < len && buf[e] != '\n' && !(buf[e] == '\r' && (e + 1 == len || buf[e + 1] != '\n'))) e++;
        if (e < len) e++;
        int blank = 1;
        for (size_t k = pos; k < e && blank; k++) blank = buf[k] == '\n' || buf[k] == '\r';
        if (!rec_open) c.row_line = c.line;
        long before = c.rows;
        if (csv_parse(&p, buf + pos, e - pos, on_field, on_row, &c) != e - pos) bad = 1;
        /* open until a row ends; a blank line outside a record opens none */
        if (c.rows != before) rec_open = 0;
        else if (!blank || rec_open) rec_open = 1;
        c.line++;
        pos = e;
    }
    if (bad) problem(&c, c.line - 1, "malformed CSV (%s)", csv_strerror(csv_error(&p)));
    else if (csv_fini(&p, on_field, on_row, &c)) problem(&c, c.row_line, "malformed CSV (unterminated quoted field)");
    csv_free(&p);
    for (int i = 0; i < c.nf; i++) free(c.f[i]);
    free(c.f);
    free(buf);
    free(c.dir);
    if (!c.header_done && c.problems == 0) problem(&c, 1, "empty manifest (a CSV with a header naming a 'slide' column)");
    else if (m->n == 0 && c.problems == 0) problem(&c, 2, "no slides listed under the header");
    if (c.problems) return mp_err_set("%s: %d problem%s in the manifest; nothing was run", path, c.problems,
                                      c.problems == 1 ? "" : "s");
    return 0;
}

/* ---- folders and globs ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_dir(const char *dir, mf_list *m)
{
    DIR *d = opendir(dir);
    if (!d) return mp_err_set("%s: cannot list the folder (%s)", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !mf_is_slide_name(e->d_name)) continue;
        if (n == cap) names = mp_xrealloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *names);
        names[n++] = mp_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int icap = 0;
    for (int i = 0; i < n; i++) {
        char given[PATH_MAX * 2];
        snprintf(given, sizeof given, "%s/%s", dir, names[i]);
        add_item(m, &icap, given, resolve(NULL, given), 0);
        free(names[i]);
    }
    free(names);
    if (n == 0) return mp_err_set("%s: no slide files in the folder (extensions: %s)", dir, MF_SLIDE_EXTS);
    return 0;
}

static int load_glob(const char *pat, mf_list *m)
{
    glob_t g;
    int r = glob(pat, GLOB_ERR, NULL, &g);
    if (r == GLOB_NOMATCH) return mp_err_set("%s: the pattern matches no file", pat);
    if (r) return mp_err_set("%s: cannot expand the pattern", pat);
    int icap = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) add_item(m, &icap, g.gl_pathv[i], resolve(NULL, g.gl_pathv[i]), 0);
    globfree(&g);
    return 0;
}

/* ---- after loading: duplicates, per-slide checks, output names ---- */

typedef struct {
    const char *key;
    int idx;
} ref;

static int cmp_ref(const void *a, const void *b)
{
    const ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Report every slide listed twice; returns how many. */
static int check_dups(mf_list *m, const char *src, int from_csv)
{
    int problems = 0;
    ref *r = mp_xmalloc(sizeof(ref) * (size_t)(m->n ? m->n : 1));
    /* the same file listed twice (after resolving relative paths and symlinks) */
    for (int i = 0; i < m->n; i++) r[i] = (ref){m->items[i].path, i};
    qsort(r, (size_t)m->n, sizeof *r, cmp_ref);
    for (int i = 1; i < m->n; i++)
        if (!strcmp(r[i].key, r[i - 1].key)) {
            int a = r[i - 1].idx, b = r[i].idx;
            char esc[512];
            if (from_csv)
                mp_error("%s:%d: duplicate slide %s (also on line %d)", src, m->items[b].line,
                         mp_escape_ctrl(m->items[b].path, esc, sizeof esc), m->items[a].line);
            else
                mp_error("%s: duplicate slide %s", src, mp_escape_ctrl(m->items[b].path, esc, sizeof esc));
            problems++;
        }
    free(r);
    return problems;
}

/* The output name of item i at disambiguation level L: the stem; stem-HASH32 (two slides share
 * the stem); stem-HASH64; then stem-HASH64-INDEX-L. Levels 3+ end in two fields no other level-3+
 * name shares, so they cannot meet each other. */
static char *level_name(const char *stem, const char *path, int i, int L)
{
    char nm[1100];
    unsigned long long h = (unsigned long long)XXH3_64bits(path, strlen(path));
    if (L == 0) snprintf(nm, sizeof nm, "%s", stem);
    else if (L == 1) snprintf(nm, sizeof nm, "%s-%08llx", stem, h & 0xffffffffULL);
    else if (L == 2) snprintf(nm, sizeof nm, "%s-%016llx", stem, h);
    else snprintf(nm, sizeof nm, "%s-%016llx-%d-%d", stem, h, i + 1, L);
    return mp_xstrdup(nm);
}

static int finish(mf_list *m, const char *src)
{
    ref *r = mp_xmalloc(sizeof(ref) * (size_t)(m->n ? m->n : 1));
    /* output names: the stem, and a hash of the path where two slides share it, decided over the
     * whole list so every shard of it names a slide the same way. A name made with a hash can
     * still meet another slide's plain stem (a file named "a-1234abcd"): then both go a level
     * further, until every name is unique (each round moves at least one slide below level 3
     * up, so this ends). */
    char **stems = mp_xmalloc(sizeof(char *) * (size_t)(m->n ? m->n : 1));
    int *level = mp_xcalloc((size_t)(m->n ? m->n : 1), sizeof(int));
    for (int i = 0; i < m->n; i++) {
        char s[1024];
        infer_slide_name(m->items[i].path, s, sizeof s);
        stems[i] = mp_xstrdup(s);
        m->items[i].name = mp_xstrdup(s);
    }
    for (int clash = 1; clash;) {
        clash = 0;
        for (int i = 0; i < m->n; i++) r[i] = (ref){m->items[i].name, i};
        qsort(r, (size_t)m->n, sizeof *r, cmp_ref);
        for (int i = 0; i < m->n; i++) {
            int shared = (i > 0 && !strcmp(r[i].key, r[i - 1].key)) || (i + 1 < m->n && !strcmp(r[i].key, r[i + 1].key));
            if (shared) level[r[i].idx]++, clash = 1;
        }
        if (!clash) break;
        for (int i = 0; i < m->n; i++) {
            mf_item *it = &m->items[i];
            char *nm = level_name(stems[i], it->path, i, level[i]);
            free(it->name);
            it->name = nm;
        }
    }
    for (int i = 0; i < m->n; i++) free(stems[i]);
    free(stems);
    free(level);
    free(r);
    /* a slide that cannot be opened fails alone */
    for (int i = 0; i < m->n; i++) {
        mf_item *it = &m->items[i];
        int fd = mp_open_regular(it->path);
        if (fd >= 0) {
            close(fd);
            continue;
        }
        it->problem = mp_xstrdup(mp_err());
        if (it->line) mp_warn("%s:%d: %s", src, it->line, it->problem);
        else mp_warn("%s", it->problem);
    }
    return 0;
}

int mf_load(const char *arg, mf_list *out)
{
    memset(out, 0, sizeof *out);
    out->source = mp_xstrdup(arg);
    struct stat st;
    int rc, csv = 0;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) rc = load_dir(arg, out);
    else if (stat(arg, &st) == 0 && S_ISREG(st.st_mode) && mf_is_slide_name(arg)) {
        int cap = 0;
        add_item(out, &cap, arg, resolve(NULL, arg), 0);
        rc = 0;
    } else if (strpbrk(arg, "*?[") && stat(arg, &st) != 0) rc = load_glob(arg, out);
    else {
        csv = 1;
        int fd = mp_open_regular(arg);
        if (fd < 0) rc = -1;
        else {
            close(fd);
            rc = load_csv(arg, out);
        }
    }
    int dups = check_dups(out, arg, csv); /* also after other problems: every one is reported */
    if (rc == 0 && dups)
        rc = mp_err_set("%s: %d duplicate slide%s in the manifest; nothing was run", arg, dups, dups == 1 ? "" : "s");
    if (rc == 0) rc = finish(out, arg);
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        mf_free(out);
        return mp_err_set("%s", keep);
    }
    return 0;
}
