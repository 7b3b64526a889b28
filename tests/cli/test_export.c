/* tests/cli/test_export.c — `magpie db DB export` read back: a dataset with random-pixel PNG
 * and JPEG patches, hostile slide and class names ("../../x", "a/b", "..") is exported as
 * imagefolder, npy and csv; the files decode to the stored pixels, carry the right labels, and
 * nothing is written outside the output directory. */
#include "tests/test.h"

#include <csv.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/db.h"
#include "db/sql.h"
#include "nn/npy.h"

#define S 12 /* patch side at 10x */
#define NP 6

static const char *M;
static uint8_t px[NP + 1][S * S * 3]; /* the pixels each patch decodes to */

/* Patch k: slide, label, split, codec. */
static const struct {
    int slide;
    const char *label; /* region label; NULL = the slide's */
    const char *codec;
} P[NP + 1] = {{0, NULL, NULL},
               {1, "Tumor", "png"},   {1, "../../x", "png"}, {2, NULL, "jpeg"},
               {2, "Tumor", "jpeg"},  {3, "a/b", "png"},     {3, NULL, "png"}};

static int run(const char *args, char *err, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "\"%s\" %s 2> %s", M, args, tmp("err"));
    int rc = system(cmd);
    FILE *f = fopen(tmp("err"), "r");
    err[0] = 0;
    if (f) {
        size_t n = fread(err, 1, cap - 1, f);
        err[n] = 0;
        if (n && err[n - 1] == '\n') err[n - 1] = 0;
        fclose(f);
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void build(const char *path)
{
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    if (!db) TEST_FATAL("%s", mp_err());
    if (db_exec(db, "INSERT INTO slides(id, path, name, patient, fingerprint, status, label, mpp_x) VALUES "
                    "(1, '/x/../evil.svs', '../evil', 'P1', 'f1', 'done', 'Normal', 0.25),"
                    "(2, '/x/b,\"q\".svs', 'b,\"q\"', 'P2', 'f2', 'done', 'Normal', 0.5),"
                    "(3, '/x/dots.svs', '..', 'P3', 'f3', 'done', '..', 0.25);"
                    "INSERT INTO classes VALUES (0, 'Tumor'), (1, 'Normal'), (2, '../../x'), (3, 'a/b'), (4, '..');"
                    "INSERT INTO splits VALUES (1, 'train'), (2, 'val')"))
        TEST_FATAL("%s", mp_err());
    sqlite3_stmt *pi = db_prepare(db, "INSERT INTO patches(id, slide_id, gx, gy, x0, y0, size0, tissue) VALUES (?1, ?2, ?1, 0, ?1 * 100, 7, 48, 0.5)");
    sqlite3_stmt *ii = db_prepare(db, "INSERT INTO images VALUES (?1, ?2, ?3, ?3, 0, 1, ?4, ?5)");
    sqlite3_stmt *li = db_prepare(db, "INSERT INTO patch_labels SELECT ?1, id, 1, 't' FROM classes WHERE name = ?2");
    if (!pi || !ii || !li) TEST_FATAL("%s", mp_err());
    uint64_t r = 12345;
    for (int k = 1; k <= NP; k++) {
        uint8_t raw[S * S * 3];
        for (int i = 0; i < S * S * 3; i++) r = r * 6364136223846793005ULL + 1442695040888963407ULL, raw[i] = (uint8_t)(r >> 56);
        VipsImage *im = vips_image_new_from_memory(raw, sizeof raw, S, S, 3, VIPS_FORMAT_UCHAR);
        void *buf = NULL;
        size_t len = 0;
        int png = !strcmp(P[k].codec, "png");
        if (!im || (png ? vips_pngsave_buffer(im, &buf, &len, NULL) : vips_jpegsave_buffer(im, &buf, &len, "Q", 90, NULL)))
            TEST_FATAL("encode: %s", vips_error_buffer());
        g_object_unref(im);
        /* what the blob decodes to (JPEG is lossy: decode it back) */
        VipsImage *d = vips_image_new_from_buffer(buf, len, "", NULL);
        size_t n;
        void *dp = d ? vips_image_write_to_memory(d, &n) : NULL;
        if (!dp || n != sizeof raw) TEST_FATAL("decode back");
        memcpy(px[k], dp, n);
        g_free(dp);
        g_object_unref(d);
        sqlite3_reset(pi);
        sqlite3_bind_int(pi, 1, k);
        sqlite3_bind_int(pi, 2, P[k].slide);
        sqlite3_reset(ii);
        sqlite3_bind_int(ii, 1, k);
        sqlite3_bind_double(ii, 2, 10);
        sqlite3_bind_int(ii, 3, S);
        sqlite3_bind_text(ii, 4, P[k].codec, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ii, 5, buf, (int)len, SQLITE_TRANSIENT);
        if (sqlite3_step(pi) != SQLITE_DONE || sqlite3_step(ii) != SQLITE_DONE) TEST_FATAL("insert: %s", sqlite3_errmsg(db_sqlite(db)));
        /* a 1.25x image too, of another size, so --mag matters */
        sqlite3_reset(ii);
        sqlite3_bind_int(ii, 1, k);
        sqlite3_bind_double(ii, 2, 1.25);
        sqlite3_bind_int(ii, 3, 2);
        sqlite3_bind_text(ii, 4, P[k].codec, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ii, 5, buf, (int)len, SQLITE_TRANSIENT);
        if (sqlite3_step(ii) != SQLITE_DONE) TEST_FATAL("insert: %s", sqlite3_errmsg(db_sqlite(db)));
        g_free(buf);
        if (P[k].label) {
            sqlite3_reset(li);
            sqlite3_bind_int(li, 1, k);
            sqlite3_bind_text(li, 2, P[k].label, -1, SQLITE_STATIC);
            if (sqlite3_step(li) != SQLITE_DONE) TEST_FATAL("label");
        }
    }
    sqlite3_finalize(pi);
    sqlite3_finalize(ii);
    sqlite3_finalize(li);
    db_close(db);
}

static int nfiles;
static int count_file(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)p, (void)sb, (void)f;
    if (flag == FTW_F || flag == FTW_SL) nfiles++;
    return 0;
}
static int files_under(const char *dir)
{
    nfiles = 0;
    nftw(dir, count_file, 16, FTW_PHYS);
    return nfiles;
}

/* The PNG at path decodes to patch k's pixels. */
static int png_is(const char *path, int k)
{
    VipsImage *im = vips_image_new_from_file(path, NULL);
    if (!im) {
        free(mp_vips_err_take(NULL));
        return 0;
    }
    size_t n;
    void *d = vips_image_write_to_memory(im, &n);
    int same = d && n == sizeof px[k] && vips_image_get_bands(im) == 3 && !memcmp(d, px[k], n);
    g_free(d);
    g_object_unref(im);
    return same;
}

TEST(imagefolder)
{
    char err[1024], args[1024];
    snprintf(args, sizeof args, "db %s export --format imagefolder --out %s --mag 10 -q", tmp("d.db"), tmp("box/if"));
    CHECK_INT(run(args, err, sizeof err), 0);
    CHECK_STR(err, "");
    /* expected places: split/class/slide_id_x0_y0.png, every name made safe */
    CHECK(png_is(tmp("box/if/train/Tumor/.._evil_1_100_7.png"), 1));
    CHECK(png_is(tmp("box/if/train/.._.._x/.._evil_2_200_7.png"), 2));
    CHECK(png_is(tmp("box/if/val/Normal/b,\"q\"_3_300_7.png"), 3));
    CHECK(png_is(tmp("box/if/val/Tumor/b,\"q\"_4_400_7.png"), 4));
    CHECK(png_is(tmp("box/if/unsplit/a_b/___5_500_7.png"), 5));
    CHECK(png_is(tmp("box/if/unsplit/__/___6_600_7.png"), 6)); /* class ".." and slide ".." */
    CHECK_INT(files_under(tmp("box/if")), NP);
    CHECK_INT(files_under(tmp("box")), NP); /* nothing beside DIR */
    /* a second export into the same, now non-empty, directory is refused and changes nothing */
    CHECK_INT(run(args, err, sizeof err), 2);
    char want[1024];
    snprintf(want, sizeof want, "magpie: error: %s: not empty (holds 'train'); export into a new or empty directory",
             tmp("box/if"));
    if (strstr(err, "holds 'unsplit'") || strstr(err, "holds 'val'")) /* readdir order is the file system's */
        snprintf(want, sizeof want, "%s", err);
    CHECK_STR(err, want);
    CHECK_INT(files_under(tmp("box")), NP);
}

TEST(npy)
{
    char err[1024], args[1024];
    snprintf(args, sizeof args, "db %s export --format npy --out %s --mag 10 --where 'split in (train, val)' -q", tmp("d.db"),
             tmp("npy"));
    CHECK_INT(run(args, err, sizeof err), 0);
    CHECK_STR(err, "");
    uint8_t *buf;
    size_t len;
    if (mp_read_file(tmp("npy/images.npy"), &buf, &len)) FAIL_CASE("%s", mp_err());
    const char *want = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 12, 12, 3), }";
    CHECK(len > 10 && !memcmp(buf + 10, want, strlen(want)));
    size_t hl = 10 + (size_t)(buf[8] | buf[9] << 8);
    CHECK_INT(hl % 64, 0);
    CHECK_INT(len, hl + 4 * sizeof px[1]);
    for (int k = 1; k <= 4 && len == hl + 4 * sizeof px[1]; k++) CHECK(!memcmp(buf + hl + (k - 1) * sizeof px[1], px[k], sizeof px[k]));
    free(buf);
    nn_npy y;
    CHECK_INT(nn_npy_read(tmp("npy/labels.npy"), &y), 0);
    CHECK(y.dtype == NN_I64 && y.ndim == 1 && y.shape[0] == 4);
    if (y.data && y.numel == 4) {
        const int64_t *v = y.data;
        CHECK(v[0] == 0 && v[1] == 2 && v[2] == 1 && v[3] == 0); /* Tumor, ../../x, Normal (slide), Tumor */
    }
    nn_npy_free(&y);
    char *cls;
    if (mp_read_file(tmp("npy/classes.txt"), (uint8_t **)&cls, &len) == 0) {
        CHECK_STR(cls, "Tumor\nNormal\n../../x\na/b\n..\n");
        free(cls);
    } else FAIL_CASE("%s", mp_err());
}

/* libcsv callbacks: collect rows of fields */
static char cells[16][16][128];
static int crow, ccol;
static void on_field(void *s, size_t n, void *u)
{
    (void)u;
    if (crow < 16 && ccol < 16) snprintf(cells[crow][ccol], 128, "%.*s", (int)n, (const char *)s);
    ccol++;
}
static void on_row(int c, void *u)
{
    (void)c, (void)u;
    crow++;
    ccol = 0;
}

TEST(csv)
{
    char err[1024], args[1024];
    snprintf(args, sizeof args, "db %s export --format csv --out %s -q", tmp("d.db"), tmp("csv"));
    CHECK_INT(run(args, err, sizeof err), 0);
    uint8_t *buf;
    size_t len;
    if (mp_read_file(tmp("csv/patches.csv"), &buf, &len)) FAIL_CASE("%s", mp_err());
    struct csv_parser p;
    csv_init(&p, CSV_STRICT);
    crow = ccol = 0;
    CHECK_INT(csv_parse(&p, buf, len, on_field, on_row, NULL), len);
    csv_fini(&p, on_field, on_row, NULL);
    csv_free(&p);
    free(buf);
    CHECK_INT(crow, NP + 1);
    CHECK_STR(cells[0][0], "id");
    CHECK_STR(cells[0][14], "slide_path");
    CHECK_STR(cells[3][1], "b,\"q\""); /* a comma and quotes survive */
    CHECK_STR(cells[3][3], "val");
    CHECK_STR(cells[3][4], "Normal");
    CHECK_STR(cells[3][5], "1");
    CHECK_STR(cells[3][6], "300");
    CHECK_STR(cells[3][7], "7");
    CHECK_STR(cells[3][9], "0.5");
    CHECK_STR(cells[5][4], "a/b");
    CHECK_STR(cells[5][3], "");
}

TEST(errors)
{
    char err[1024], args[1024], want[1024];
    snprintf(args, sizeof args, "db %s export --format npy --out %s", tmp("d.db"), tmp("e1"));
    CHECK_INT(run(args, err, sizeof err), 1);
    snprintf(want, sizeof want, "magpie: error: db export: --mag is needed: %s holds 10x, 1.25x", tmp("d.db"));
    CHECK_STR(err, want);
    snprintf(args, sizeof args, "db %s export --format npy --out %s --mag 20", tmp("d.db"), tmp("e1"));
    CHECK_INT(run(args, err, sizeof err), 1);
    snprintf(want, sizeof want, "magpie: error: db export: %s has no images at 20x (it holds 10x, 1.25x)", tmp("d.db"));
    CHECK_STR(err, want);
    snprintf(args, sizeof args, "db %s export --format tar --out %s", tmp("d.db"), tmp("e1"));
    CHECK_INT(run(args, err, sizeof err), 1);
    CHECK_STR(err, "magpie: error: db export: unknown format 'tar' (imagefolder, csv, npy)");
    snprintf(args, sizeof args, "db %s export --format csv --out %s --where 'label = x; DROP TABLE slides'", tmp("d.db"), tmp("e1"));
    CHECK_INT(run(args, err, sizeof err), 1);
    CHECK_STR(err, "magpie: error: db export: --where: column 10: unexpected character ';'");
    snprintf(args, sizeof args, "db %s export --format csv --out %s --where 'split = tset'", tmp("d.db"), tmp("e1"));
    CHECK_INT(run(args, err, sizeof err), 1);
    CHECK_STR(err, "magpie: error: db export: --where: column 9: unknown split 'tset' (known: train, val, test, unlabeled)");
    CHECK(!mp_file_exists(tmp("e1"))); /* usage errors come before any work */
    /* a dataset without images */
    mp_db *e = db_open(tmp("empty.db"), DB_OPEN_CREATE);
    db_close(e);
    snprintf(args, sizeof args, "db %s export --format imagefolder --out %s", tmp("empty.db"), tmp("e1"));
    CHECK_INT(run(args, err, sizeof err), 2);
    snprintf(want, sizeof want, "magpie: error: db export: %s holds no images (tile or import patches first)", tmp("empty.db"));
    CHECK_STR(err, want);
    CHECK(!mp_file_exists(tmp("e1")));
    /* images of two sizes cannot share one array: patch 2 gets a 2x2 image at 10x */
    VipsImage *im = NULL;
    void *b = NULL;
    size_t bl = 0;
    if (vips_black(&im, 2, 2, "bands", 3, NULL) == 0 && vips_pngsave_buffer(im, &b, &bl, NULL) == 0) {
        mp_db *db = db_open(tmp("d.db"), 0);
        sqlite3_stmt *st = db ? db_prepare(db, "UPDATE images SET data = ?1 WHERE patch_id = 2 AND mag = 10") : NULL;
        if (st) {
            sqlite3_bind_blob(st, 1, b, (int)bl, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        db_close(db);
    }
    if (im) g_object_unref(im);
    g_free(b);
    snprintf(args, sizeof args, "db %s export --format npy --out %s --mag 10", tmp("d.db"), tmp("e2"));
    CHECK_INT(run(args, err, sizeof err), 2);
    CHECK_STR(err, "magpie: error: patch 2 at 10x is 2x2, earlier patches 12x12: an array needs one size (choose patches with --where)");
    CHECK_INT(files_under(tmp("e2")), 0); /* the staging directory is gone, DIR is as it was */
    /* classes whose safe names meet */
    snprintf(args, sizeof args, "sqlite3 %s \"INSERT INTO classes VALUES (5, 'a_b'); INSERT INTO patch_labels VALUES (6, 5, 1, 't')\"",
             tmp("d.db"));
    (void)!system(args);
    snprintf(args, sizeof args, "db %s export --format imagefolder --out %s --mag 1.25", tmp("d.db"), tmp("e3"));
    CHECK_INT(run(args, err, sizeof err), 2);
    CHECK_STR(err, "magpie: error: two class names, 'a/b' and 'a_b', would share the folder 'a_b'; rename one");
    CHECK_INT(files_under(tmp("e3")), 0);
}

int main(void)
{
    M = getenv("MAGPIE_BIN");
    if (!M) TEST_FATAL("MAGPIE_BIN is not set");
    if (VIPS_INIT("test")) TEST_FATAL("libvips");
    if (t_tmpdir("export")) TEST_FATAL("temp dir");
    build(tmp("d.db"));
    mkdir(tmp("box"), 0755);
    RUN(imagefolder);
    RUN(npy);
    RUN(csv);
    RUN(errors);
    t_rmdir();
    return test_done();
}
