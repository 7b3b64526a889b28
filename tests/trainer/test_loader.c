/* tests/trainer/test_loader.c — the data loader: deterministic batches whatever the thread
 * timing, identical augmentation on both views of a pair, normalisation stats, missing images. */
#include "tests/test.h"

#include "common/error.h"
#include "trainer/trainer.h"
#include "tests/trainer/tiny.h"

static char dir[64];
static char dbp[128];

static tr_loader_cfg base_cfg(void)
{
    tr_loader_cfg c = {.mag = {10, 1.25}, .batch = 5, .shuffle = 1, .augment = 1, .rot90 = 1, .seed = 9};
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < 3; k++) c.mean[v][k] = 0, c.std[v][k] = 1;
    return c;
}

TEST(deterministic)
{
    mp_db *db = db_open(dbp, 0);
    db_itemset is;
    CHECK_INT(db_items_load(db, "train", 0, &is), 0);
    CHECK_INT(is.n, 6 * 4);
    tr_loader_cfg c = base_cfg();
    c.jitter[0] = c.jitter[1] = c.jitter[2] = 0.5f;
    c.jitter[3] = 0.2f;
    c.teacher_view = 1;
    tr_loader *a = tr_loader_new(db, &c, is.items, is.n), *b = tr_loader_new(db, &c, is.items, is.n);
    CHECK(a && b);
    if (!a || !b) return;
    CHECK_INT(tr_loader_size(a, 0), 32);
    CHECK_INT(tr_loader_size(a, 1), 4);
    CHECK_INT(tr_loader_batches(a), 5);
    for (int ep = 0; ep < 2; ep++) {
        tr_loader_start(a, ep);
        tr_loader_start(b, ep);
        const tr_batch *x, *y;
        int nb = 0, seen = 0;
        while (tr_loader_next(a, &x) == 1) {
            CHECK_INT(tr_loader_next(b, &y), 1);
            CHECK(!memcmp(x->x, y->x, sizeof(float) * x->n * 3 * 32 * 32));
            CHECK(!memcmp(x->xp, y->xp, sizeof(float) * x->n * 3 * 4 * 4));
            CHECK(!memcmp(x->xt, y->xt, sizeof(float) * x->n * 3 * 32 * 32));
            CHECK(!memcmp(x->idx, y->idx, sizeof(int) * x->n));
            seen += x->n;
            nb++;
        }
        CHECK_INT(tr_loader_next(b, &y), 0);
        CHECK_INT(nb, 5);
        CHECK_INT(seen, 24);
    }
    /* A restarted epoch gives the same batches as the first pass (resume). */
    tr_loader_start(a, 1);
    const tr_batch *x;
    tr_loader_next(a, &x);
    float first = x->x[100];
    tr_loader_start(b, 0);
    tr_loader_start(b, 1);
    const tr_batch *y;
    tr_loader_next(b, &y);
    CHECK(first == y->x[100]);
    /* With the paired view skipped (RBD with cached teacher outputs) the primary view and the
     * order are unchanged. */
    tr_loader_start(a, 2);
    tr_loader_skip_paired(b, 1);
    tr_loader_start(b, 2);
    const tr_batch *p, *q;
    CHECK_INT(tr_loader_next(a, &p), 1);
    CHECK_INT(tr_loader_next(b, &q), 1);
    CHECK(!memcmp(p->x, q->x, sizeof(float) * p->n * 3 * 32 * 32));
    CHECK(!memcmp(p->idx, q->idx, sizeof(int) * p->n));
    tr_loader_free(a);
    tr_loader_free(b);
    db_itemset_free(&is);
    db_close(db);
}

/* mean of the 8×8 box (y, x) of channel ch of the 32 px primary view of batch item i */
static double box8(const tr_batch *b, int i, int ch, int y, int x)
{
    double s = 0;
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < 8; k++) s += b->x[((size_t)i * 3 + ch) * 1024 + (y * 8 + j) * 32 + x * 8 + k];
    return s / 64;
}

/* With lossless PNG blobs and no colour jitter, downsampling the augmented 10x view by 8×8 boxes
 * gives the augmented 1.25x view: flips and rotations were the same on both. */
TEST(paired_views_same_transform)
{
    mp_db *db = db_open(dbp, 0);
    db_itemset is;
    db_items_load(db, "train", 0, &is);
    tr_loader_cfg c = base_cfg();
    tr_loader *L = tr_loader_new(db, &c, is.items, is.n);
    CHECK(L != NULL);
    if (!L) return;
    int nontrivial = 0;
    for (int ep = 0; ep < 2; ep++) {
        tr_loader_start(L, ep);
        const tr_batch *b;
        while (tr_loader_next(L, &b) == 1)
            for (int i = 0; i < b->n; i++) {
                double maxd = 0;
                for (int ch = 0; ch < 3; ch++)
                    for (int y = 0; y < 4; y++)
                        for (int x = 0; x < 4; x++) {
                            double d = fabs(box8(b, i, ch, y, x) - b->xp[((size_t)i * 3 + ch) * 16 + y * 4 + x]);
                            if (d > maxd) maxd = d;
                        }
                CHECK(maxd <= 0.6 / 255);
                /* the views are not all symmetric: the test would be vacuous if they were */
                if (b->xp[(size_t)i * 48] != b->xp[(size_t)i * 48 + 15]) nontrivial++;
            }
    }
    CHECK(nontrivial > 10);
    tr_loader_free(L);
    db_itemset_free(&is);
    db_close(db);
}

/* RBD with cached teacher outputs: the primary view gets a fresh flip + rot90 every epoch on top of
 * the reused draw, and tr_turn_map turns a map of the shared view to match. Here the paired 1.25x
 * view stands in for the cached map: the 8×8-box downsample of the turned 10x view must equal the
 * turned 1.25x view, and epochs 0 and 2 (one reused draw, aug_period 2) must differ in the turn. */
TEST(extra_dihedral_matches_turned_map)
{
    mp_db *db = db_open(dbp, 0);
    db_itemset is;
    db_items_load(db, "train", 0, &is);
    tr_loader_cfg c = base_cfg();
    c.shuffle = 0;
    c.aug_period = 2;
    c.extra_dihedral = 1;
    tr_loader *L = tr_loader_new(db, &c, is.items, is.n);
    CHECK(L != NULL);
    if (!L) return;
    uint8_t xd0[64];
    float *shared0 = calloc((size_t)is.n * 48, sizeof(float));
    int turned = 0, differ = 0;
    for (int ep = 0; ep <= 2; ep += 2) {
        tr_loader_start(L, ep);
        const tr_batch *b;
        int seen = 0;
        while (tr_loader_next(L, &b) == 1)
            for (int i = 0; i < b->n; i++, seen++) {
                CHECK(b->xd != NULL);
                if (!b->xd) break;
                float want[48], got[48];
                tr_turn_map(want, b->xp + (size_t)i * 48, 3, 4, b->xd[i]);
                for (int ch = 0; ch < 3; ch++)
                    for (int y = 0; y < 4; y++)
                        for (int x = 0; x < 4; x++) {
                            got[ch * 16 + y * 4 + x] = (float)box8(b, i, ch, y, x);
                        }
                double maxd = 0;
                for (int q = 0; q < 48; q++) maxd = fmax(maxd, fabs(got[q] - want[q]));
                CHECK(maxd <= 0.6 / 255);
                turned += b->xd[i] != 0;
                if (ep == 0) {
                    xd0[seen] = b->xd[i];
                    memcpy(shared0 + (size_t)seen * 48, b->xp + (size_t)i * 48, sizeof(float) * 48);
                } else {
                    /* the paired view repeats the reused draw exactly; the turn is drawn anew */
                    CHECK(!memcmp(shared0 + (size_t)seen * 48, b->xp + (size_t)i * 48, sizeof(float) * 48));
                    differ += xd0[seen] != b->xd[i];
                }
            }
        CHECK_INT(seen, is.n);
    }
    CHECK(turned > 10);
    CHECK(differ > 5);
    free(shared0);
    tr_loader_free(L);
    db_itemset_free(&is);
    db_close(db);
}

TEST(stats_and_missing_image)
{
    mp_db *db = db_open(dbp, 0);
    db_itemset is;
    db_items_load(db, "train", 0, &is);
    float mean[3], std[3];
    CHECK_INT(tr_channel_stats(db, is.items, is.n, 10, 100, mean, std), 0);
    CHECK(mean[0] > 0.3 && mean[0] < 0.8 && std[0] > 0.05 && std[0] < 0.4);
    float m2[3], s2[3];
    CHECK_INT(tr_channel_stats(db, is.items, is.n, 1.25, 100, m2, s2), 0);
    CHECK_NEAR(m2[1], mean[1], 0.01); /* box averaging keeps the mean */
    CHECK(s2[1] < std[1]);
    db_close(db);

    db = db_open(dbp, 0);
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM images WHERE patch_id = %lld AND mag = 1.25", (long long)is.items[3].patch_id);
    db_exec(db, sql);
    tr_loader_cfg c = base_cfg();
    CHECK(tr_loader_new(db, &c, is.items, is.n) == NULL);
    char want[256];
    snprintf(want, sizeof want, "%s: patch %lld has no image at 1.25x (it has: 10x; tile with --mags including 1.25, or train at one of those)", dbp, (long long)is.items[3].patch_id);
    CHECK_STR(mp_err(), want);
    CHECK(tr_loader_new(db, &c, is.items, 0) == NULL);
    snprintf(want, sizeof want, "%s: no patches to load", dbp);
    CHECK_STR(mp_err(), want);
    db_itemset_free(&is);
    db_close(db);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/mp_loader_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    snprintf(dbp, sizeof dbp, "%s/tiny.db", dir);
    tiny_cfg tc = {.slides = 10, .per_slide = 4, .classes = 3, .hi = 32, .lo = 4, .png = 1, .seed = 1};
    if (tiny_make(dbp, &tc) < 0) TEST_FATAL("cannot write the tiny dataset %s: %s", dbp, mp_err());
    RUN(deterministic);
    RUN(paired_views_same_transform);
    RUN(extra_dihedral_matches_turned_map);
    RUN(stats_and_missing_image);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return test_done();
}
