/* tests/infer/test_eval_infer.c — one model, one set of pixels, one answer: the probabilities
 * `magpie eval` computes for a dataset's patches (trainer loader + tr_predict, as
 * pipelines/cmd_eval.c) equal bit for bit those `magpie infer` computes for the same RGB
 * pixels (infer_model_predict), because both read the model card and turn pixels into input
 * and logits into probabilities the same way (nn/card.h, nn_softmax_rows). */
#include "tests/test.h"

#include <png.h>
#include <sys/wait.h>

#include "common/error.h"
#include "infer/infer.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "tests/trainer/tiny.h"
#include "trainer/trainer.h"

#define SIDE 32
#define K 3

/* A randomly initialised 3-class network on 10x 32 px patches with a normalisation far from
 * 0/1, so the input expression matters. */
static int make_model_at(const char *path, const char *key, const char *val)
{
    nn_model_cfg cfg;
    nn_model_cfg_resnet_gn(&cfg, K);
    for (int s = 0; s < 4; s++) cfg.widths[s] = 8;
    cfg.groups = 4;
    nn_model *m = nn_model_create(&cfg, 1, SIDE, SIDE, 0);
    if (!m) return -1;
    nn_model_init(m, 7);
    nn_card c;
    nn_card_from_cfg(&c, &cfg);
    c.mag = 10, c.size = SIDE, c.has_norm = 1;
    const float mean[3] = {0.6137f, 0.4219f, 0.5583f}, std[3] = {0.1371f, 0.0913f, 0.1229f};
    memcpy(c.mean, mean, sizeof mean);
    memcpy(c.std, std, sizeof std);
    nn_ckpt ck = {0};
    nn_card_write(&c, &ck);
    nn_card_free(&c);
    if (key && val) nn_ckpt_set(&ck, key, val);
    else if (key) /* drop the key */
        for (int i = 0; i < ck.nmeta; i++)
            if (!strcmp(ck.meta[2 * i], key)) ck.meta[2 * i][0] = '_';
    int rc = nn_ckpt_add_params(&ck, nn_model_params(m)) || nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    nn_model_free(m);
    return rc ? -1 : 0;
}

static int make_model(const char *path) { return make_model_at(path, NULL, NULL); }

/* Run `magpie CMD...` with stderr into a file; its exit code, and the first stderr line in line. */
static int run(const char *args, char *line, size_t cap)
{
    const char *bin = getenv("MAGPIE_BIN");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s'", bin, args, tmp("err"));
    int st = system(cmd);
    line[0] = 0;
    FILE *f = fopen(tmp("err"), "r");
    if (f) {
        if (fgets(line, (int)cap, f)) line[strcspn(line, "\n")] = 0;
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* eval and infer refuse bad cards with the same one-line message naming the file. */
TEST(bad_cards)
{
    if (!getenv("MAGPIE_BIN")) {
        fprintf(stderr, "  (MAGPIE_BIN not set: the command-line half is skipped)\n");
        return;
    }
    const char *dbp = tmp("c.db");
    tiny_cfg tc = {.slides = 5, .per_slide = 2, .classes = K, .hi = SIDE, .lo = 4, .png = 1, .seed = 4};
    CHECK_INT(tiny_make(dbp, &tc), 0);
    char args[1024], line[1024], want[1024];
    CHECK_INT(make_model(tmp("ok.mpk")), 0);
    snprintf(args, sizeof args, "eval '%s' '%s' --split train --bootstrap 10", dbp, tmp("ok.mpk"));
    CHECK_INT(run(args, line, sizeof line), 0);
    struct {
        const char *key, *val, *msg;
    } bad[] = {
        {"mag", "20", "the model takes 20x patches; %s has 1.25x, 10x"},
        {"mag", NULL, "the model card has no mag (a trained model records it; for an imported one use magpie model "
                      "import --mag M --size PX --mean a,b,c --std a,b,c)"},
        {"norm.std", "0.2,-1,0.2", "norm.std[1] = -1 is outside [0.001, 10]"},
        {"arch", "densenet121", "architecture 'densenet121' is not one magpie builds (resnet_gn, resnet18, "
                                "resnet18_bn, resnet)"},
        {"classes", "100", "classes = '100' is not a whole number in 1..64"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(make_model_at(tmp("bad.mpk"), bad[i].key, bad[i].val), 0);
        char msg[512];
        snprintf(msg, sizeof msg, bad[i].msg, dbp);
        snprintf(want, sizeof want, "magpie: error: %s: %s", tmp("bad.mpk"), msg);
        snprintf(args, sizeof args, "eval '%s' '%s' --split train", dbp, tmp("bad.mpk"));
        CHECK_INT(run(args, line, sizeof line), 2);
        CHECK_STR(line, want);
        if (i == 0) continue; /* infer takes any magnification the slide can give */
        snprintf(args, sizeof args, "infer '%s' '%s' --out '%s'", tmp("bad.mpk"), dbp, tmp("out"));
        CHECK_INT(run(args, line, sizeof line), 2);
        CHECK_STR(line, want);
    }
}

TEST(same_probabilities)
{
    const char *dbp = tmp("t.db"), *ckp = tmp("m.mpk");
    tiny_cfg tc = {.slides = 5, .per_slide = 6, .classes = K, .hi = SIDE, .lo = 4, .png = 1, .seed = 3};
    if (tiny_make(dbp, &tc) < 0 || make_model(ckp) < 0) {
        fprintf(stderr, "setup: %s\n", mp_err());
        CHECK(0);
        return;
    }
    /* eval's side */
    nn_card mi;
    nn_model *net;
    /* eval's and infer's default batch (the engine's sums depend slightly on the batch grouping) */
    int batch = infer_auto_batch(SIDE);
    CHECK_INT(nn_card_load(ckp, NN_CARD_PATCHES, batch, 0, &mi, &net), 0);
    mp_db *db = db_open(dbp, DB_OPEN_READONLY);
    db_itemset is;
    CHECK_INT(db_items_load(db, "train", 0, &is), 0);
    int n = is.n;
    tr_loader_cfg lc = {.mag = {mi.mag, 0}, .batch = batch, .seed = 0};
    memcpy(lc.mean[0], mi.mean, sizeof mi.mean);
    memcpy(lc.std[0], mi.std, sizeof mi.std);
    tr_loader *L = tr_loader_new(db, &lc, is.items, n);
    float *pe = calloc((size_t)n * K, sizeof(float)), *pi = calloc((size_t)n * K, sizeof(float));
    CHECK_INT(tr_predict(net, L, pe, NULL, NULL), n);

    /* infer's side: the same images, decoded from the same blobs, through infer's model */
    uint8_t *rgb = malloc((size_t)n * SIDE * SIDE * 3);
    db_image_reader *ir = db_image_reader_new(db, 10);
    for (int i = 0; i < n; i++) {
        const uint8_t *data;
        size_t len;
        int is_png;
        png_image im = {.version = PNG_IMAGE_VERSION};
        CHECK_INT(db_image_read(ir, is.items[i].patch_id, &data, &len, &is_png), 0);
        CHECK(png_image_begin_read_from_memory(&im, data, len));
        im.format = PNG_FORMAT_RGB;
        CHECK(im.width == SIDE && im.height == SIDE);
        CHECK(png_image_finish_read(&im, NULL, rgb + (size_t)i * SIDE * SIDE * 3, 0, NULL));
    }
    db_image_reader_free(ir);
    infer_model *m = infer_model_load(ckp, 0);
    CHECK(m != NULL);
    if (m) CHECK_INT(infer_model_predict(m, rgb, n, pi), 0);
    int same = 0;
    float worst = 0;
    for (int i = 0; i < n * K; i++) {
        same += pe[i] == pi[i];
        float d = fabsf(pe[i] - pi[i]);
        worst = d > worst ? d : worst;
    }
    CHECK_INT(same, n * K);
    if (same != n * K) fprintf(stderr, "  largest difference %g\n", (double)worst);
    /* the probabilities are not degenerate (a constant would match trivially) */
    float lo = 1, hi = 0;
    for (int i = 0; i < n; i++) lo = pe[i * K] < lo ? pe[i * K] : lo, hi = pe[i * K] > hi ? pe[i * K] : hi;
    CHECK(n >= 12 && hi - lo > 1e-4f);
    infer_model_free(m);
    free(rgb);
    free(pe);
    free(pi);
    tr_loader_free(L);
    db_itemset_free(&is);
    db_close(db);
    nn_model_free(net);
    nn_card_free(&mi);
}

int main(void)
{
    if (t_tmpdir("evalinfer")) TEST_SKIP("cannot create a temp dir");
    RUN(same_probabilities);
    RUN(bad_cards);
    t_rmdir();
    return test_done();
}
