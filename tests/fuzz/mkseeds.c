/* tests/fuzz/mkseeds.c — writes the seed corpora of the fuzz targets with magpie's own writers
 * (so the seeds are valid files the fuzzer mutates from). Run once from the source root:
 *   ninja -C build-fuzz tests/fuzz/fuzz_mkseeds && build-fuzz/tests/fuzz/fuzz_mkseeds tests/fuzz
 * The output is committed; rerun only when a format changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "nn/arch.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "nn/npy.h"
#include "nn/safetensors.h"

static const char *root;

static void die(void)
{
    fprintf(stderr, "mkseeds: %s\n", mp_err());
    exit(2);
}

static void text(const char *target, const char *name, const char *s)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/%s", root, target, name);
    if (mp_write_file_atomic(p, s, strlen(s)) != 0) die();
}

/* The checkpoint target's input is one repair-mode byte then the file. */
static void ckpt_seed(const nn_ckpt *ck, const char *name, unsigned mode)
{
    char p[1024], q[1100];
    snprintf(p, sizeof p, "%s/ckpt/%s.tmpfile", root, name);
    if (nn_ckpt_save(ck, p) != 0) die();
    uint8_t *b;
    size_t n;
    if (mp_read_file(p, &b, &n) != 0) die();
    remove(p);
    uint8_t *o = malloc(n + 1);
    o[0] = (uint8_t)mode;
    memcpy(o + 1, b, n);
    snprintf(q, sizeof q, "%s/ckpt/%s", root, name);
    if (mp_write_file_atomic(q, o, n + 1) != 0) die();
    free(o);
    free(b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_mkseeds TESTS_FUZZ_DIR\n");
        return 1;
    }
    root = argv[1];
    const char *dirs[] = {"ckpt", "safetensors", "npy", "labels_csv", "geojson"};
    for (int i = 0; i < 5; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        if (mp_mkdir_p(p) != 0) die();
    }

    /* A tiny ResNet: 2 stages of widths 4 and 8, GroupNorm(2), 2 classes (about 2k weights). */
    nn_model_cfg cfg;
    nn_model_cfg_resnet_gn(&cfg, 2);
    cfg.nstages = 2;
    cfg.widths[0] = 4, cfg.widths[1] = 8;
    cfg.blocks[0] = cfg.blocks[1] = 1;
    cfg.groups = 2;
    nn_model *m = nn_model_create(&cfg, 1, 16, 16, 0);
    if (!m) die();
    nn_model_init(m, 1);

    /* checkpoints: the model alone, with training state, an empty one, odd dtypes */
    nn_ckpt ck = {0};
    nn_card card;
    nn_card_from_cfg(&card, &cfg);
    nn_card_write(&card, &ck);
    nn_card_free(&card);
    nn_ckpt_set(&ck, "mag", "10");
    nn_ckpt_set(&ck, "input_size", "16");
    nn_ckpt_set(&ck, "norm.mean", "0.70,0.52,0.66");
    nn_ckpt_set(&ck, "norm.std", "0.2,0.2,0.2");
    if (nn_ckpt_add_params(&ck, nn_model_params(m)) != 0) die();
    ckpt_seed(&ck, "model.mpk", 0);
    mp_rng r;
    mp_rng_seed(&r, 7);
    nn_ckpt_train_set_i64(&ck, "step", 120);
    nn_ckpt_train_set_i64(&ck, "epoch", 3);
    nn_ckpt_train_set_f64(&ck, "lr", 0.001);
    if (nn_ckpt_add_rng(&ck, "train", &r) != 0) die();
    ckpt_seed(&ck, "last.mpk", 3);
    nn_ckpt_free(&ck);
    nn_ckpt e = {0};
    ckpt_seed(&e, "empty.mpk", 0);
    nn_ckpt_set(&e, "note", "x");
    int64_t s2[2] = {2, 3}, s0[1] = {0};
    double d6[6] = {1, -2, 3.5, 0, 1e300, -0.0};
    uint8_t u6[6] = {0, 1, 2, 3, 255, 7};
    if (nn_ckpt_add(&e, NN_CKPT_MODEL, "a.f64", NN_F64, 2, s2, d6, 1) || nn_ckpt_add(&e, NN_CKPT_TRAIN, "b.u8", NN_U8, 2, s2, u6, 1) ||
        nn_ckpt_add(&e, NN_CKPT_MODEL, "c.empty", NN_F32, 1, s0, d6, 1) || nn_ckpt_add(&e, NN_CKPT_MODEL, "d.scalar", NN_I64, 0, NULL, d6, 1))
        die();
    ckpt_seed(&e, "dtypes.mpk", 2);
    nn_ckpt_free(&e);

    /* safetensors: the tiny model as PyTorch names, and a file of every dtype with metadata */
    char p[1024];
    const char *meta[] = {"format", "pt", "note", "seed", NULL};
    snprintf(p, sizeof p, "%s/safetensors/model.safetensors", root);
    if (nn_st_write_params(p, nn_model_params(m), 0, meta) != 0) die();
    uint16_t h6[6] = {0x3c00, 0xc000, 0x7c00, 0x0001, 0x7e00, 0x8000};
    int32_t i6[6] = {1, -1, 2147483647, 0, 5, 6};
    int64_t l6[6] = {1, -1, 0, 9, 5, 6};
    nn_st_entry se[] = {{"f64", NN_F64, 2, s2, d6}, {"f16", NN_F16, 2, s2, h6}, {"bf16", NN_BF16, 2, s2, h6},
                        {"i32", NN_I32, 2, s2, i6}, {"i64", NN_I64, 2, s2, l6}, {"u8", NN_U8, 2, s2, u6},
                        {"empty", NN_F32, 1, s0, d6}};
    snprintf(p, sizeof p, "%s/safetensors/dtypes.safetensors", root);
    if (nn_st_write(p, se, 7, meta) != 0) die();
    snprintf(p, sizeof p, "%s/safetensors/none.safetensors", root);
    if (nn_st_write(p, se, 0, NULL) != 0) die();
    nn_model_free(m);

    /* .npy: the three dtypes, a scalar, an empty array, and a version 2.0 header */
    float f6[6] = {0.5f, -1, 2, 3, 4, 5};
    int64_t s4[4] = {1, 1, 2, 3};
    snprintf(p, sizeof p, "%s/npy/f32_2x3.npy", root);
    if (nn_npy_write(p, NN_F32, 2, s2, f6)) die();
    snprintf(p, sizeof p, "%s/npy/f32_4d.npy", root);
    if (nn_npy_write(p, NN_F32, 4, s4, f6)) die();
    snprintf(p, sizeof p, "%s/npy/i64_2x3.npy", root);
    if (nn_npy_write(p, NN_I64, 2, s2, l6)) die();
    snprintf(p, sizeof p, "%s/npy/i32_scalar.npy", root);
    if (nn_npy_write(p, NN_I32, 0, NULL, i6)) die();
    snprintf(p, sizeof p, "%s/npy/f32_empty.npy", root);
    if (nn_npy_write(p, NN_F32, 1, s0, f6)) die();
    {
        const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
        size_t hl = 64 - 12;
        uint8_t b[64 + 12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, (uint8_t)hl, 0, 0, 0};
        memset(b + 12, ' ', hl);
        memcpy(b + 12, h, strlen(h));
        b[12 + hl - 1] = '\n';
        memcpy(b + 64, f6, 12);
        snprintf(p, sizeof p, "%s/npy/v2.npy", root);
        if (mp_write_file_atomic(p, b, sizeof b) != 0) die();
    }

    /* labels CSV (the fuzz dataset has slides s1, s2 and "a b") */
    text("labels_csv", "basic.csv", "slide,patient,label\ns1,p1,tumour\ns2,p2,normal\n");
    text("labels_csv", "order.csv", "Label , SLIDE\r\nnormal,s1\r\n,s2\r\n");
    text("labels_csv", "quoted.csv", "slide,label\n\"a b\",\"tu\"\"mour, grade 2\"\ns1,\"multi\nline\"\n\nunknown,x\n");
    text("labels_csv", "patient_only.csv", "patient,slide\n,s1\nP9,s2\n");

    /* GeoJSON for slide s1 (patches cover 0..2048 in x and y) */
    text("geojson", "collection.geojson",
         "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"id\":\"a\",\"geometry\":{\"type\":"
         "\"Polygon\",\"coordinates\":[[[0,0],[1024,0],[1024,1024],[0,1024],[0,0]],[[100,100],[300,100],[300,300],"
         "[100,100]]]},\"properties\":{\"objectType\":\"annotation\",\"classification\":{\"name\":\"Tumor\",\"color\":"
         "[200,0,0]}}},{\"type\":\"Feature\",\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":[[[[1024,1024],"
         "[2048,1024],[2048,2048],[1024,1024]]],[[[0,1500],[500,1500],[250,2000],[0,1500]]]]},\"properties\":"
         "{\"classification\":{\"name\":\"Stroma\"}}}]}");
    text("geojson", "feature.geojson",
         "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[-10,-10],[3000,-10],[3000,3000],"
         "[-10,3000]]]},\"properties\":{\"name\":\"all\",\"classification\":\"Normal\"}}");
    text("geojson", "array.geojson",
         "[{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[5,5]},\"properties\":"
         "{\"classification\":{\"name\":\"Dot\"}}},{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
         "\"coordinates\":[[[0,0],[512.5,0],[512.5,512.5],[0,512.5]]]},\"properties\":{\"classification\":"
         "{\"name\":\"Tumor\"}}}]");
    printf("seeds written under %s\n", root);
    return 0;
}
