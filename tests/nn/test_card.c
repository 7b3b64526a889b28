/* tests/nn/test_card.c — the model card (nn/card.h): every key round-trips, the fields the three
 * old readers disagreed on (in_ch, norm_eps, bn_momentum) reach the network, and every bad card
 * is refused with a one-line error that names the file. */
#include "tests/test.h"

#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "nn/arch.h"
#include "nn/card.h"

/* A trained-looking card: resnet_gn, 3 classes, 10x 224 px, H&E-like normalisation. */
static void good_card(nn_card *c)
{
    nn_model_cfg cfg;
    nn_model_cfg_resnet_gn(&cfg, 3);
    nn_card_from_cfg(c, &cfg);
    char *names[3] = {"tumour", "stroma", "fat"};
    nn_card_set_names(c, names, 3);
    c->mag = 10, c->size = 224, c->has_norm = 1;
    const float m[3] = {0.7f, 0.52f, 0.66f}, s[3] = {0.15f, 0.2f, 0.17f};
    memcpy(c->mean, m, sizeof m);
    memcpy(c->std, s, sizeof s);
    snprintf(c->method, sizeof c->method, "rbd");
}

/* A checkpoint holding the good card, named name (as nn_ckpt_load would name it). */
static void good_ckpt(nn_ckpt *ck, const char *name)
{
    nn_card c;
    memset(ck, 0, sizeof *ck);
    good_card(&c);
    nn_card_write(&c, ck);
    nn_card_free(&c);
    ck->path = mp_xstrdup(name);
}

/* The good card with one key changed (val NULL: removed) must be refused with msg. */
static void refused(const char *key, const char *val, int need, const char *msg)
{
    nn_ckpt ck;
    good_ckpt(&ck, "m.mpk");
    if (val) nn_ckpt_set(&ck, key, val);
    else
        for (int i = 0; i < ck.nmeta; i++)
            if (!strcmp(ck.meta[2 * i], key)) ck.meta[2 * i][0] = '_'; /* renamed away */
    nn_card c;
    int rc = nn_card_read(&ck, need, &c);
    CHECK_INT(rc, -1);
    if (rc == -1) CHECK_STR(mp_err(), msg);
    else fprintf(stderr, "  (%s = %s was accepted)\n", key, val ? val : "(absent)");
    CHECK(c.class_names == NULL); /* a failed read leaves an empty card */
    nn_ckpt_free(&ck);
}

TEST(round_trip)
{
    const char *names[] = {"resnet_gn", "resnet18", "resnet18_bn"};
    for (int i = 0; i < 3; i++) {
        nn_model_cfg a;
        CHECK_INT(nn_arch_preset(names[i], 5, &a), 0);
        nn_card c, r;
        nn_card_from_cfg(&c, &a);
        CHECK_STR(c.arch, names[i]);
        nn_ckpt ck = {0};
        nn_card_write(&c, &ck);
        CHECK_INT(nn_card_read(&ck, NN_CARD_NETWORK, &r), 0);
        CHECK_STR(r.arch, names[i]);
        CHECK(!memcmp(&r.cfg, &a, sizeof a));
        CHECK(r.mag == 0 && r.size == 0 && !r.has_norm && r.method[0] == 0);
        CHECK_STR(r.class_names[4], "class4");
        /* an imported network has no input keys: a use that feeds it patches says which one */
        nn_card_free(&r);
        CHECK_INT(nn_card_read(&ck, NN_CARD_PATCHES, &r), -1);
        CHECK_CONTAINS(mp_err(), "checkpoint: the model card has no mag");
        nn_card_free(&c);
        nn_ckpt_free(&ck);
    }
    nn_card c, r;
    good_card(&c);
    nn_ckpt ck = {0};
    nn_card_write(&c, &ck);
    CHECK_INT(nn_card_read(&ck, NN_CARD_PATCHES, &r), 0);
    CHECK(!memcmp(&r.cfg, &c.cfg, sizeof c.cfg));
    CHECK(r.mag == 10 && r.size == 224 && r.has_norm && !memcmp(r.mean, c.mean, sizeof c.mean) &&
          !memcmp(r.std, c.std, sizeof c.std));
    CHECK_STR(r.method, "rbd");
    CHECK_STR(r.class_names[0], "tumour");
    CHECK_STR(r.class_names[2], "fat");
    nn_card_free(&r);
    nn_card_free(&c);
    nn_ckpt_free(&ck);
    nn_model_cfg odd;
    nn_model_cfg_resnet_gn(&odd, 2);
    odd.widths[3] = 64;
    nn_card_from_cfg(&c, &odd);
    CHECK_STR(c.arch, "resnet");
    nn_card_free(&c);
    CHECK_INT(nn_arch_preset("vgg", 2, &odd), -1);
}

/* in_ch, norm_eps and bn_momentum: trainer/modelio.c dropped the last two and nn/arch.c ignored
 * unparsable values; now every reader restores them and the network is built with them. */
TEST(fields_reach_the_network)
{
    nn_model_cfg a;
    nn_model_cfg_resnet18(&a, 2, NN_NORM_BATCH);
    a.in_ch = 1, a.norm_eps = 1e-3f, a.bn_momentum = 0.25f;
    nn_card c;
    nn_card_from_cfg(&c, &a);
    CHECK_STR(c.arch, "resnet"); /* one input channel is not the preset */
    nn_model *m = nn_model_create(&a, 1, 32, 32, 0);
    nn_model_init(m, 1);
    nn_ckpt ck = {0};
    nn_card_write(&c, &ck);
    CHECK_STR(nn_ckpt_get(&ck, "arch.norm_eps"), "0.001");
    CHECK_STR(nn_ckpt_get(&ck, "arch.bn_momentum"), "0.25");
    CHECK_INT(nn_ckpt_add_params(&ck, nn_model_params(m)), 0);
    nn_model *b = nn_model_from_ckpt(&ck, 1, 32, 32, 0);
    CHECK(b != NULL);
    if (b) {
        const nn_model_cfg *g = nn_model_config(b);
        CHECK(g->in_ch == 1 && g->norm_eps == 1e-3f && g->bn_momentum == 0.25f && g->norm == NN_NORM_BATCH);
    }
    /* a network that does not take RGB is no use for patches */
    nn_ckpt_set(&ck, "mag", "10");
    nn_ckpt_set(&ck, "input_size", "64");
    nn_ckpt_set(&ck, "norm.mean", "0.5,0.5,0.5");
    nn_ckpt_set(&ck, "norm.std", "0.25,0.25,0.25");
    nn_card r;
    CHECK_INT(nn_card_read(&ck, NN_CARD_PATCHES, &r), -1);
    CHECK_STR(mp_err(), "checkpoint: the network takes 1 input channels, not RGB");
    nn_model_free(b);
    nn_model_free(m);
    nn_card_free(&c);
    nn_ckpt_free(&ck);
}

TEST(missing_fields)
{
    refused("arch", NULL, 0, "m.mpk: not a magpie model (the model card has no arch)");
    refused("arch.widths", NULL, 0, "m.mpk: the model card has no arch.widths");
    refused("arch.blocks", NULL, 0, "m.mpk: the model card has no arch.blocks");
    refused("arch.norm", NULL, 0, "m.mpk: the model card has no arch.norm");
    refused("classes", NULL, 0, "m.mpk: the model card has no classes");
    refused("mag", NULL, NN_CARD_PATCHES,
            "m.mpk: the model card has no mag (a trained model records it; for an imported one use magpie model "
            "import --mag M --size PX --mean a,b,c --std a,b,c)");
    refused("input_size", NULL, NN_CARD_PATCHES,
            "m.mpk: the model card has no input_size (a trained model records it; for an imported one use magpie "
            "model import --mag M --size PX --mean a,b,c --std a,b,c)");
    refused("norm.std", NULL, 0, "m.mpk: the model card has norm.mean without norm.std");
}

TEST(out_of_range)
{
    refused("classes", "0", 0, "m.mpk: classes = '0' is not a whole number in 1..64");
    refused("classes", "65", 0, "m.mpk: classes = '65' is not a whole number in 1..64");
    refused("classes", "3x", 0, "m.mpk: classes = '3x' is not a whole number in 1..64");
    refused("arch.in_ch", "0", 0, "m.mpk: arch.in_ch = '0' is not a whole number in 1..64");
    refused("arch.groups", "0", 0, "m.mpk: arch.groups = '0' is not a whole number in 1..8192");
    refused("arch.widths", "32,64,0,256", 0, "m.mpk: arch.widths = '32,64,0,256' holds a value outside 1..8192");
    refused("arch.blocks", "1,1,1", 0, "m.mpk: arch.widths has 4 stages but arch.blocks 3");
    refused("arch.norm", "layer", 0, "m.mpk: arch.norm = 'layer' is neither group nor batch");
    refused("arch.norm_eps", "0.5", 0, "m.mpk: arch.norm_eps = '0.5' is not a number in [1e-12, 0.1]");
    refused("arch.norm_eps", "nan", 0, "m.mpk: arch.norm_eps = 'nan' is not a number in [1e-12, 0.1]");
    refused("arch.bn_momentum", "2", 0, "m.mpk: arch.bn_momentum = '2' is not a number in [0, 1]");
    refused("mag", "0.1", 0, "m.mpk: mag = '0.1' is not a number in [0.5, 200]");
    refused("mag", "ten", 0, "m.mpk: mag = 'ten' is not a number in [0.5, 200]");
    refused("input_size", "5000", 0, "m.mpk: input_size = '5000' is not a whole number in 2..4096");
    refused("norm.mean", "0.7,0.5", 0, "m.mpk: norm.mean = '0.7,0.5' is not three numbers");
    refused("norm.mean", "0.7,1.5,0.6", 0, "m.mpk: norm.mean[1] = 1.5 is outside [0, 1]");
    refused("norm.std", "0.2,0,0.2", 0, "m.mpk: norm.std[1] = 0 is outside [0.001, 10]");
    refused("class_names", "a\tb", 0, "m.mpk: class_names has 2 names for 3 classes");
    refused("class_names", "a\t\tc", 0, "m.mpk: class name 1 is empty, longer than 255 bytes or holds a tab or newline");
    refused("method", "a method name longer than thirty-one bytes", 0,
            "m.mpk: method 'a method name longer than thirty-one byt' is longer than 31 bytes");
    refused("arch.widths", "32,64,128,48", 0, "m.mpk: model config: width 48 of stage 3 is not divisible by 32 groups");
}

TEST(other_architecture)
{
    refused("arch", "vit_b16", 0,
            "m.mpk: architecture 'vit_b16' is not one magpie builds (resnet_gn, resnet18, resnet18_bn, resnet)");
    refused("arch", "resnet18", 0, "m.mpk: arch = resnet18 but the widths, blocks or norm are another network's");
    refused("arch.norm", "batch", 0, "m.mpk: arch = resnet_gn but the widths, blocks or norm are another network's");
}

TEST(magnification_for_the_use)
{
    nn_card c;
    good_card(&c);
    const double mags[] = {1.25, 10.05, 20};
    CHECK_INT(nn_card_check_mag(&c, "t.mpk", mags, 3, "d.db"), 0);
    CHECK_INT(nn_card_check_mag(&c, "t.mpk", mags, 1, "d.db"), -1);
    CHECK_STR(mp_err(), "t.mpk: the model takes 10x patches; d.db has 1.25x");
    CHECK_INT(nn_card_check_mag(&c, "t.mpk", mags + 2, 1, "d.db"), -1);
    CHECK_STR(mp_err(), "t.mpk: the model takes 10x patches; d.db has 20x");
    CHECK_INT(nn_card_check_mag(&c, "t.mpk", NULL, 0, "d.db"), -1);
    CHECK_STR(mp_err(), "t.mpk: the model takes 10x patches; d.db has none");
    nn_card_free(&c);
}

/* Through a file: the error names the path it was loaded from. */
TEST(file_names_in_errors)
{
    nn_ckpt ck;
    good_ckpt(&ck, "unused");
    nn_model_cfg cfg;
    nn_model_cfg_resnet_gn(&cfg, 3);
    nn_model *m = nn_model_create(&cfg, 1, 32, 32, 0);
    nn_model_init(m, 2);
    CHECK_INT(nn_ckpt_add_params(&ck, nn_model_params(m)), 0);
    nn_ckpt_set(&ck, "input_size", "1");
    CHECK_INT(nn_ckpt_save(&ck, tmp("bad.mpk")), 0);
    nn_card c;
    nn_model *got = NULL;
    CHECK_INT(nn_card_load(tmp("bad.mpk"), NN_CARD_PATCHES, 4, 0, &c, &got), -1);
    CHECK(got == NULL);
    char want[512];
    snprintf(want, sizeof want, "%s: input_size = '1' is not a whole number in 2..4096", tmp("bad.mpk"));
    CHECK_STR(mp_err(), want);
    nn_ckpt_set(&ck, "input_size", "64");
    CHECK_INT(nn_ckpt_save(&ck, tmp("good.mpk")), 0);
    CHECK_INT(nn_card_load(tmp("good.mpk"), NN_CARD_PATCHES, 4, 0, &c, &got), 0);
    CHECK(got != NULL && c.size == 64);
    nn_model_free(got);
    nn_card_free(&c);
    nn_model_free(m);
    nn_ckpt_free(&ck);
}

int main(void)
{
    if (t_tmpdir("card")) TEST_SKIP("cannot create a temp dir");
    RUN(round_trip);
    RUN(fields_reach_the_network);
    RUN(missing_fields);
    RUN(out_of_range);
    RUN(other_architecture);
    RUN(magnification_for_the_use);
    RUN(file_names_in_errors);
    t_rmdir();
    return test_done();
}
