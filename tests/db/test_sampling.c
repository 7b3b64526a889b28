/* tests/db/test_sampling.c — class-balanced sampling weights by patch, slide and patient on a
 * hand-made split, the CSV round trip, and the reader's exact errors. */
#include "tests/test.h"

#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sampling.h"
#include "db/sql.h"

static mp_db *D;

/* class A: slide s1 (patient P1) patches 1-3, s2 (P1) patch 4, s3 (P2) patches 5-6;
 * class B: slide s4 (P3) patches 7-10; patch 11 unlabelled (slide s5), patch 12 in val. */
static void build(void)
{
    D = db_open(tmp("s.db"), DB_OPEN_CREATE);
    if (!D) TEST_FATAL("%s", mp_err());
    if (db_exec(D, "INSERT INTO classes VALUES (0, 'A'), (1, 'B');"
                   "INSERT INTO slides(id, path, name, patient, fingerprint, status, label) VALUES "
                   "(1, '/s1', 's1', 'P1', 'f', 'done', 'A'), (2, '/s2', 's2', 'P1', 'f', 'done', 'A'),"
                   "(3, '/s3', 's3', 'P2', 'f', 'done', 'A'), (4, '/s4', 's4', 'P3', 'f', 'done', 'B'),"
                   "(5, '/s5', 's5', 'P4', 'f', 'done', NULL), (6, '/s6', 's6', 'P5', 'f', 'done', 'B');"
                   "INSERT INTO patches(id, slide_id, gx, gy, x0, y0, size0, tissue) VALUES "
                   "(1, 1, 0, 0, 0, 0, 1, 1), (2, 1, 1, 0, 0, 0, 1, 1), (3, 1, 2, 0, 0, 0, 1, 1), (4, 2, 0, 0, 0, 0, 1, 1),"
                   "(5, 3, 0, 0, 0, 0, 1, 1), (6, 3, 1, 0, 0, 0, 1, 1), (7, 4, 0, 0, 0, 0, 1, 1), (8, 4, 1, 0, 0, 0, 1, 1),"
                   "(9, 4, 2, 0, 0, 0, 1, 1), (10, 4, 3, 0, 0, 0, 1, 1), (11, 5, 0, 0, 0, 0, 1, 1), (12, 6, 0, 0, 0, 0, 1, 1);"
                   "INSERT INTO splits VALUES (1, 'train'), (2, 'train'), (3, 'train'), (4, 'train'), (5, 'train'), (6, 'val')"))
        TEST_FATAL("%s", mp_err());
}

static double w_of(const db_sampling *s, int64_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->patch_id[i] == id) return s->weight[i];
    return -1;
}

static void class_sums(const db_sampling *s, double *a, double *b)
{
    *a = *b = 0;
    for (int i = 0; i < s->n; i++) *(s->cls[i] == 0 ? a : b) += s->weight[i];
}

TEST(by_patch)
{
    db_sampling s;
    CHECK_INT(db_sampling_make(D, "train", DB_BALANCE_PATCH, &s), 0);
    CHECK_INT(s.n, 10); /* unlabelled and val patches are not listed */
    CHECK_INT(s.nclasses, 2);
    for (int id = 1; id <= 6; id++) CHECK_NEAR(w_of(&s, id), 1.0 / 12, 1e-12);
    for (int id = 7; id <= 10; id++) CHECK_NEAR(w_of(&s, id), 1.0 / 8, 1e-12);
    double a, b;
    class_sums(&s, &a, &b);
    CHECK_NEAR(a, 0.5, 1e-12);
    CHECK_NEAR(b, 0.5, 1e-12);
    db_sampling_free(&s);
}

TEST(by_slide)
{
    db_sampling s;
    CHECK_INT(db_sampling_make(D, "train", DB_BALANCE_SLIDE, &s), 0);
    /* class A's three slides get 1/6 each, shared over their patches */
    for (int id = 1; id <= 3; id++) CHECK_NEAR(w_of(&s, id), 1.0 / 18, 1e-12);
    CHECK_NEAR(w_of(&s, 4), 1.0 / 6, 1e-12);
    CHECK_NEAR(w_of(&s, 5), 1.0 / 12, 1e-12);
    CHECK_NEAR(w_of(&s, 7), 1.0 / 8, 1e-12);
    double a, b;
    class_sums(&s, &a, &b);
    CHECK_NEAR(a, 0.5, 1e-12);
    CHECK_NEAR(b, 0.5, 1e-12);
    db_sampling_free(&s);
}

TEST(by_patient)
{
    db_sampling s;
    CHECK_INT(db_sampling_make(D, "train", DB_BALANCE_PATIENT, &s), 0);
    /* P1 (slides s1, s2: 4 patches) and P2 (2 patches) share class A's half */
    for (int id = 1; id <= 4; id++) CHECK_NEAR(w_of(&s, id), 1.0 / 16, 1e-12);
    CHECK_NEAR(w_of(&s, 6), 1.0 / 8, 1e-12);
    CHECK_NEAR(w_of(&s, 9), 1.0 / 8, 1e-12);
    CHECK_STR(s.group[0], "P1");
    /* written and read back unchanged */
    CHECK_INT(db_sampling_write(&s, tmp("w.csv")), 0);
    db_sampling r;
    CHECK_INT(db_sampling_read(tmp("w.csv"), &r), 0);
    CHECK_INT(r.n, s.n);
    for (int i = 0; i < r.n && i < s.n; i++) {
        CHECK(r.patch_id[i] == s.patch_id[i] && r.cls[i] == s.cls[i] && r.weight[i] == s.weight[i]);
        CHECK_STR(r.group[i], s.group[i]);
    }
    db_sampling_free(&r);
    db_sampling_free(&s);
}

TEST(empty_split)
{
    db_sampling s;
    CHECK_INT(db_sampling_make(D, "test", DB_BALANCE_PATCH, &s), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: the test split has no labelled patches (run `magpie db DB labels import` and "
                                "`magpie db DB split` first)", tmp("s.db"));
    CHECK_STR(mp_err(), want);
}

static const char *read_err(const char *text)
{
    static char msg[512];
    FILE *f = fopen(tmp("r.csv"), "w");
    fputs(text, f);
    fclose(f);
    db_sampling s;
    if (db_sampling_read(tmp("r.csv"), &s) == 0) {
        db_sampling_free(&s);
        return "(read)";
    }
    const char *e = mp_err(), *p = tmp("r.csv");
    snprintf(msg, sizeof msg, "%s", strncmp(e, p, strlen(p)) ? e : e + strlen(p)); /* without the path */
    return msg;
}

TEST(reader_errors)
{
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,\"a,b\",0.5\n2,1,,0.5\n"), "(read)");
    CHECK_STR(read_err(""), ": empty (expected the header patch_id,class,group,weight)");
    CHECK_STR(read_err("id,class,group,weight\n1,0,g,1\n"), ":1: not a magpie sampling file (header patch_id,class,group,weight)");
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,g\n"), ":2: 3 fields, expected 4 (patch_id,class,group,weight)");
    CHECK_STR(read_err("patch_id,class,group,weight\nx,0,g,1\n"), ":2: bad patch_id 'x'");
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,g,1\n2,0,g,-1\n"), ":3: bad weight '-1' (a number >= 0)");
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,g,nan\n"), ":2: bad weight 'nan' (a number >= 0)");
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,g,0\n"), ": no row with a weight above 0");
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,g,1\n1,0,g,1\n"), ": patch 1 is listed twice");
    CHECK_STR(read_err("patch_id,class,group,weight\n1,0,\"g,1\n"), ":2: error parsing data while strict checking enabled");
}

int main(void)
{
    if (t_tmpdir("sampling")) TEST_FATAL("cannot make a temp dir");
    build();
    RUN(by_patch);
    RUN(by_slide);
    RUN(by_patient);
    RUN(empty_split);
    RUN(reader_errors);
    db_close(D);
    t_rmdir();
    return test_done();
}
