/* tests/nn/test_ckpt.c — checkpoints: bitwise round trip with training state, parameter
 * loading with shape checks, and anomalies (truncation at every offset, every byte flipped,
 * wrong magic/version, bad CRC) each with its exact message. */
#include "tests/test.h"

#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "nn/optim.h"

static char dir[] = "/tmp/mp_ckpt_XXXXXX";

static char *path_in(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* A small model-like table: conv weight, GN affine, a buffer, fc. */
static void make_params(nn_params *ps, int width, uint64_t seed)
{
    memset(ps, 0, sizeof *ps);
    int64_t s1[4] = {width, 3, 3, 3}, s2[1] = {width}, s3[2] = {2, width}, s4[1] = {2};
    nn_params_add(ps, "stem.0.weight", 4, s1, 1);
    nn_params_add(ps, "stem.1.weight", 1, s2, 1);
    nn_params_add(ps, "stem.1.running_mean", 1, s2, 0);
    nn_params_add(ps, "fc.weight", 2, s3, 1);
    nn_params_add(ps, "fc.bias", 1, s4, 1);
    nn_params_alloc(ps);
    mp_rng r;
    mp_rng_seed(&r, seed);
    for (int k = 0; k < ps->n; k++)
        for (size_t i = 0; i < ps->p[k].numel; i++) ps->p[k].data[i] = (float)mp_rng_normal(&r);
}

static int files_equal(const char *a, const char *b)
{
    uint8_t *x, *y;
    size_t nx, ny;
    if (mp_read_file(a, &x, &nx) || mp_read_file(b, &y, &ny)) return 0;
    int eq = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return eq;
}

TEST(roundtrip_bitwise)
{
    nn_params ps;
    make_params(&ps, 8, 1);
    nn_optim o;
    nn_optim_cfg cfg = nn_optim_defaults(NN_OPT_ADAMW);
    CHECK_INT(nn_optim_init(&o, &ps, &cfg), 0);
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < ps.total; i++) ps.grad[i] = 0.01f * (float)((i * 7 + s) % 13) - 0.05f;
        nn_optim_step(&o);
    }
    mp_rng rng;
    mp_rng_seed(&rng, 99);
    mp_rng_u64(&rng);
    float bank[5 * 4];
    for (int i = 0; i < 20; i++) bank[i] = (float)i / 3;
    int64_t bshape[2] = {5, 4};

    nn_ckpt ck = {0};
    nn_ckpt_set(&ck, "arch", "resnet_gn");
    nn_ckpt_set(&ck, "widths", "8");
    nn_ckpt_set(&ck, "note", "unicode \xc3\xa9 and \"quotes\"");
    CHECK_INT(nn_ckpt_add_params(&ck, &ps), 0);
    nn_ckpt_train_set_i64(&ck, "step", 3);
    nn_ckpt_train_set_i64(&ck, "epoch", 1);
    CHECK_INT(nn_optim_save(&o, &ck), 0);
    CHECK_INT(nn_ckpt_add_rng(&ck, "shuffle", &rng), 0);
    CHECK_INT(nn_ckpt_add(&ck, NN_CKPT_TRAIN, "crckd.bank_s", NN_F32, 2, bshape, bank, 1), 0);
    CHECK_INT(nn_ckpt_save(&ck, path_in("a.mpk")), 0);
    nn_ckpt_free(&ck);

    nn_ckpt l;
    CHECK_INT(nn_ckpt_load(&l, path_in("a.mpk")), 0);
    CHECK_STR(nn_ckpt_get(&l, "arch"), "resnet_gn");
    CHECK_STR(nn_ckpt_get(&l, "note"), "unicode \xc3\xa9 and \"quotes\"");
    int64_t step;
    CHECK_INT(nn_ckpt_train_get_i64(&l, "step", &step), 0);
    CHECK_INT(step, 3);
    mp_rng r2;
    CHECK_INT(nn_ckpt_get_rng(&l, "shuffle", &r2), 0);
    CHECK(mp_rng_u64(&r2) == mp_rng_u64(&rng));
    const nn_ckpt_tensor *b = nn_ckpt_find(&l, NN_CKPT_TRAIN, "crckd.bank_s");
    CHECK(b && b->numel == 20 && !memcmp(b->data, bank, sizeof bank));

    /* Restore into fresh tables: parameters and optimiser state equal bit for bit. */
    nn_params ps2;
    make_params(&ps2, 8, 2);
    CHECK_INT(nn_ckpt_load_params(&l, &ps2), 0);
    CHECK(!memcmp(ps.data, ps2.data, ps.total * sizeof(float)));
    nn_optim o2;
    CHECK_INT(nn_optim_init(&o2, &ps2, &cfg), 0);
    CHECK_INT(nn_optim_load(&o2, &l), 0);
    CHECK_INT(o2.step, 3);
    CHECK(!memcmp(o.m, o2.m, ps.total * sizeof(float)) && !memcmp(o.v, o2.v, ps.total * sizeof(float)));
    /* Re-saving what was loaded reproduces the file byte for byte. */
    CHECK_INT(nn_ckpt_save(&l, path_in("b.mpk")), 0);
    CHECK(files_equal(path_in("a.mpk"), path_in("b.mpk")));
    /* A further step after restore equals a further step of the original. */
    for (size_t i = 0; i < ps.total; i++) ps.grad[i] = ps2.grad[i] = 0.003f * (float)(i % 5);
    nn_optim_step(&o);
    nn_optim_step(&o2);
    CHECK(!memcmp(ps.data, ps2.data, ps.total * sizeof(float)));
    nn_ckpt_free(&l);
    nn_optim_free(&o);
    nn_optim_free(&o2);
    nn_params_free(&ps);
    nn_params_free(&ps2);
}

TEST(model_only_and_empty)
{
    nn_ckpt ck = {0};
    CHECK_INT(nn_ckpt_save(&ck, path_in("empty.mpk")), 0);
    nn_ckpt l;
    CHECK_INT(nn_ckpt_load(&l, path_in("empty.mpk")), 0);
    CHECK_INT(l.n, 0);
    CHECK_INT(l.has_train, 0);
    nn_ckpt_free(&l);
    CHECK(mp_file_size(path_in("empty.mpk")) == 64 + 64);
}

TEST(shapes_vs_model)
{
    nn_params a, b;
    make_params(&a, 8, 1);
    make_params(&b, 4, 1);
    nn_ckpt ck = {0};
    nn_ckpt_add_params(&ck, &a);
    CHECK_INT(nn_ckpt_save(&ck, path_in("w8.mpk")), 0);
    nn_ckpt_free(&ck);
    nn_ckpt l;
    CHECK_INT(nn_ckpt_load(&l, path_in("w8.mpk")), 0);
    CHECK_INT(nn_ckpt_load_params(&l, &b), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor stem.0.weight has shape [8,3,3,3], the model expects [4,3,3,3]",
             path_in("w8.mpk"));
    CHECK_STR(mp_err(), want);
    nn_ckpt_free(&l);

    /* a model with an extra entry: missing tensor; a file with an extra tensor: unexpected */
    nn_params c = {0};
    int64_t s[1] = {3};
    nn_params_add(&c, "fc.bias", 1, (int64_t[]){2}, 1);
    nn_params_add(&c, "extra.weight", 1, s, 1);
    nn_params_alloc(&c);
    CHECK_INT(nn_ckpt_load(&l, path_in("w8.mpk")), 0);
    CHECK_INT(nn_ckpt_load_params(&l, &c), -1);
    snprintf(want, sizeof want, "%s: missing tensor extra.weight", path_in("w8.mpk"));
    CHECK_STR(mp_err(), want);
    nn_params_free(&c);
    memset(&c, 0, sizeof c);
    nn_params_add(&c, "fc.bias", 1, (int64_t[]){2}, 1);
    nn_params_alloc(&c);
    CHECK_INT(nn_ckpt_load_params(&l, &c), -1);
    snprintf(want, sizeof want, "%s: unexpected tensor stem.0.weight (not in the model)", path_in("w8.mpk"));
    CHECK_STR(mp_err(), want);
    nn_ckpt_free(&l);
    nn_params_free(&a);
    nn_params_free(&b);
    nn_params_free(&c);
}

/* The small file every anomaly test corrupts. */
static void small_file(uint8_t **buf, size_t *len)
{
    nn_params ps;
    make_params(&ps, 4, 3);
    nn_ckpt ck = {0};
    nn_ckpt_set(&ck, "arch", "tiny");
    nn_ckpt_add_params(&ck, &ps);
    nn_ckpt_train_set_i64(&ck, "step", 7);
    mp_rng r;
    mp_rng_seed(&r, 5);
    nn_ckpt_add_rng(&ck, "augment", &r);
    CHECK_INT(nn_ckpt_save(&ck, path_in("small.mpk")), 0);
    nn_ckpt_free(&ck);
    nn_params_free(&ps);
    CHECK_INT(mp_read_file(path_in("small.mpk"), buf, len), 0);
}

static int parse_copy(const uint8_t *buf, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    memcpy(c, buf, len);
    nn_ckpt ck;
    int rc = nn_ckpt_parse(&ck, "ckpt.mpk", c, len);
    nn_ckpt_free(&ck);
    return rc;
}

TEST(anomaly_messages)
{
    uint8_t *buf;
    size_t len;
    small_file(&buf, &len);
    CHECK_INT(parse_copy(buf, len), 0);

    uint8_t *c = malloc(len);
    memcpy(c, buf, len);
    c[0] = 'X';
    CHECK_INT(parse_copy(c, len), -1);
    CHECK_STR(mp_err(), "ckpt.mpk: not a magpie checkpoint (bad magic)");
    memcpy(c, buf, len);
    c[8] = 2;
    CHECK_INT(parse_copy(c, len), -1);
    CHECK_STR(mp_err(), "ckpt.mpk: unsupported checkpoint version 2 (this build reads 1)");
    CHECK_INT(parse_copy(buf, 30), -1);
    CHECK_STR(mp_err(), "ckpt.mpk: truncated: 30 bytes, the preamble needs 64");

    /* locate fc.weight's data from the loaded table to corrupt and to cut it */
    nn_ckpt l;
    uint8_t *cp = malloc(len);
    memcpy(cp, buf, len);
    CHECK_INT(nn_ckpt_parse(&l, "ckpt.mpk", cp, len), 0);
    const nn_ckpt_tensor *t = nn_ckpt_find(&l, NN_CKPT_MODEL, "fc.weight");
    size_t b = (size_t)((uint8_t *)t->data - l.buf), e = b + t->nbytes;
    nn_ckpt_free(&l);

    memcpy(c, buf, len);
    c[b + 5] ^= 0x10;
    CHECK_INT(parse_copy(c, len), -1);
    CHECK_CONTAINS(mp_err(), "ckpt.mpk: CRC mismatch in tensor fc.weight (stored ");

    char want[256];
    snprintf(want, sizeof want, "ckpt.mpk: truncated: tensor fc.weight needs bytes %zu..%zu, file has %zu", b, e, e - 3);
    CHECK_INT(parse_copy(buf, e - 3), -1);
    CHECK_STR(mp_err(), want);

    memcpy(c, buf, len);
    c[20] ^= 1; /* header length: caught by the header CRC or the layout check */
    CHECK_INT(parse_copy(c, len), -1);
    CHECK_CONTAINS(mp_err(), "ckpt.mpk: corrupt preamble");
    memcpy(c, buf, len);
    c[70] ^= 1; /* inside the JSON header */
    CHECK_INT(parse_copy(c, len), -1);
    CHECK_CONTAINS(mp_err(), "ckpt.mpk: header CRC mismatch");

    /* trailing garbage */
    uint8_t *big = calloc(len + 4, 1);
    memcpy(big, buf, len);
    CHECK_INT(parse_copy(big, len + 4), -1);
    CHECK_STR(mp_err(), "ckpt.mpk: 4 unexpected bytes after the data");
    free(big);

    CHECK_INT(nn_ckpt_load(&l, path_in("does-not-exist.mpk")), -1);
    CHECK_CONTAINS(mp_err(), "does-not-exist.mpk: No such file or directory");
    free(c);
    free(buf);
}

TEST(fuzz_truncate_and_flip)
{
    uint8_t *buf;
    size_t len;
    small_file(&buf, &len);
    int truncated_ok = 1, flips_ok = 1;
    for (size_t cut = 0; cut < len; cut++) {
        mp_err_clear();
        if (parse_copy(buf, cut) != -1 || strncmp(mp_err(), "ckpt.mpk: ", 10) != 0 ||
            (cut >= 8 && !strstr(mp_err(), "truncated"))) {
            fprintf(stderr, "cut at %zu accepted or unnamed: %s\n", cut, mp_err());
            truncated_ok = 0;
        }
    }
    uint8_t *c = malloc(len);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(c, buf, len);
            c[i] ^= (uint8_t)(1u << bit);
            mp_err_clear();
            if (parse_copy(c, len) != -1 || strncmp(mp_err(), "ckpt.mpk: ", 10) != 0) {
                fprintf(stderr, "flip of byte %zu bit %d accepted: %s\n", i, bit, mp_err());
                flips_ok = 0;
            }
        }
    }
    CHECK(truncated_ok);
    CHECK(flips_ok);
    free(c);
    free(buf);
}

/* Crash test: a child rewrites one checkpoint in a loop (generation g: every value = g) and is
 * killed at varying moments; the file must always load, whole, as some complete generation. */
static int save_gen(const char *path, float *buf, size_t n, int gen)
{
    for (size_t i = 0; i < n; i++) buf[i] = (float)gen;
    nn_ckpt ck = {0};
    nn_ckpt_setf(&ck, "gen", "%d", gen);
    int64_t shape[1] = {(int64_t)n};
    nn_ckpt_add(&ck, NN_CKPT_MODEL, "w", NN_F32, 1, shape, buf, 0);
    int rc = nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    return rc;
}

TEST(crash_mid_write)
{
    const size_t n = 1 << 20; /* 4 MiB per save */
    float *buf = malloc(n * sizeof(float));
    const char *path = path_in("crash.mpk");
    CHECK_INT(save_gen(path, buf, n, 0), 0);
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int g = 1;; g++) save_gen(path, buf, n, g);
        }
        struct timespec ts = {0, 10000000L * (round + 1)}; /* 10..60 ms: several saves complete */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        nn_ckpt l;
        int rc = nn_ckpt_load(&l, path);
        CHECK_INT(rc, 0);
        if (rc) {
            fprintf(stderr, "round %d: %s\n", round, mp_err());
            continue;
        }
        const nn_ckpt_tensor *t = nn_ckpt_find(&l, NN_CKPT_MODEL, "w");
        long gen = atol(nn_ckpt_get(&l, "gen"));
        int whole = t && t->numel == n;
        for (size_t i = 0; whole && i < n; i++) whole = ((float *)t->data)[i] == (float)gen;
        CHECK(whole);
        fprintf(stderr, "     round %d: generation %ld intact\n", round, gen);
        nn_ckpt_free(&l);
    }
    free(buf);
}

/* What a model file declares is bounded, and names are looked up through hash indexes: a 28 KB
 * file with arch.blocks=100000,1 kept `model info` planning for minutes, 200000 metadata keys took
 * 78 s to load (both linear searches per name). Time is bounded by the meson timeout only. */
TEST(declared_sizes_bounded)
{
    nn_ckpt ck = {0};
    nn_ckpt_set(&ck, "arch", "resnet");
    nn_ckpt_set(&ck, "arch.in_ch", "3");
    nn_ckpt_set(&ck, "arch.widths", "32,32");
    nn_ckpt_set(&ck, "arch.blocks", "100000,1");
    nn_ckpt_set(&ck, "arch.norm", "group");
    nn_ckpt_set(&ck, "arch.groups", "32");
    nn_ckpt_set(&ck, "classes", "2");
    CHECK_INT(nn_ckpt_save(&ck, path_in("blocks.mpk")), 0);
    nn_ckpt_free(&ck);
    CHECK_INT(nn_ckpt_load(&ck, path_in("blocks.mpk")), 0);
    nn_card card = {0};
    CHECK_INT(nn_card_read(&ck, NN_CARD_NETWORK, &card), -1);
    CHECK_CONTAINS(mp_err(), "blocks.mpk: arch.blocks = '100000,1' holds a value outside 1..64");
    CHECK(nn_model_from_ckpt(&ck, 1, 32, 32, 0) == NULL);
    nn_ckpt_set(&ck, "arch.blocks", "1,1");
    nn_ckpt_set(&ck, "arch.widths", "8192,8192"); /* each bound holds, the total does not */
    CHECK_INT(nn_card_read(&ck, NN_CARD_NETWORK, &card), -1);
    CHECK_CONTAINS(mp_err(), "model config: about 2.48e+09 weights (at most 1.07e+09)");
    nn_card_free(&card);
    nn_ckpt_free(&ck);

    /* 200000 keys: refused in one line; 65536 (the most) load, and every one is found */
    for (int i = 0; i < 200000; i++) nn_ckpt_setf(&ck, "k", "%d", i); /* one key, replaced */
    CHECK_INT(ck.nmeta, 1);
    for (int i = 0; i < 200000; i++) {
        char k[32];
        snprintf(k, sizeof k, "key.%d", i);
        nn_ckpt_set(&ck, k, "v");
    }
    CHECK_INT(nn_ckpt_save(&ck, path_in("keys.mpk")), 0);
    nn_ckpt_free(&ck);
    CHECK_INT(nn_ckpt_load(&ck, path_in("keys.mpk")), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: header \"meta\" has 200001 keys (at most 65536)", path_in("keys.mpk"));
    CHECK_STR(mp_err(), want);
    for (int i = 0; i < 65536; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "key.%d", i);
        snprintf(v, sizeof v, "%d", i * 7);
        nn_ckpt_train_set(&ck, k, v);
    }
    CHECK_INT(nn_ckpt_save(&ck, path_in("keys.mpk")), 0);
    nn_ckpt_free(&ck);
    CHECK_INT(nn_ckpt_load(&ck, path_in("keys.mpk")), 0);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        char k[32];
        snprintf(k, sizeof k, "key.%d", i);
        const char *v = nn_ckpt_train_get(&ck, k);
        bad += !v || atoi(v) != i * 7;
    }
    CHECK_INT(bad, 0);
    CHECK(nn_ckpt_train_get(&ck, "key.65536") == NULL);
    nn_ckpt_free(&ck);

    /* a key longer than the bound */
    char longkey[300];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    nn_ckpt_set(&ck, longkey, "v");
    CHECK_INT(nn_ckpt_save(&ck, path_in("longkey.mpk")), 0);
    nn_ckpt_free(&ck);
    CHECK_INT(nn_ckpt_load(&ck, path_in("longkey.mpk")), -1);
    CHECK_CONTAINS(mp_err(), "key or value too long (at most 256 and 1048576 bytes)");

    /* many tensors and parameters: each found by name (200000 names, in one table each) */
    nn_params ps = {0};
    int64_t one = 1;
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        char n[32];
        snprintf(n, sizeof n, "layer.%d.w", i);
        bad += nn_params_add(&ps, n, 1, &one, 1) != i;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(nn_params_add(&ps, "layer.7.w", 1, &one, 1), -1);
    CHECK_CONTAINS(mp_err(), "duplicate parameter layer.7.w");
    for (int i = 0; i < 200000; i += 7) {
        char n[32];
        snprintf(n, sizeof n, "layer.%d.w", i);
        nn_param *p = nn_params_find(&ps, n);
        bad += !p || p != &ps.p[i];
    }
    CHECK_INT(bad, 0);
    CHECK(nn_params_find(&ps, "layer.200000.w") == NULL);
    nn_params_free(&ps);
    float z = 0;
    for (int i = 0; i < 60000; i++) {
        char n[32];
        snprintf(n, sizeof n, "t.%d", i);
        bad += nn_ckpt_add(&ck, i % 2 ? NN_CKPT_TRAIN : NN_CKPT_MODEL, n, NN_F32, 1, &one, &z, 0) != 0;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(nn_ckpt_add(&ck, NN_CKPT_MODEL, "t.1", NN_F32, 1, &one, &z, 0), -1); /* names are unique across sections */
    CHECK_INT(nn_ckpt_save(&ck, path_in("tensors.mpk")), 0);
    nn_ckpt_free(&ck);
    CHECK_INT(nn_ckpt_load(&ck, path_in("tensors.mpk")), 0);
    for (int i = 0; i < 60000; i += 3) {
        char n[32];
        snprintf(n, sizeof n, "t.%d", i);
        const nn_ckpt_tensor *t = nn_ckpt_find(&ck, i % 2 ? NN_CKPT_TRAIN : NN_CKPT_MODEL, n);
        bad += !t || t != &ck.t[i] || nn_ckpt_find(&ck, i % 2 ? NN_CKPT_MODEL : NN_CKPT_TRAIN, n) != NULL;
    }
    CHECK_INT(bad, 0);
    nn_ckpt_free(&ck);
}

int main(void)
{
    if (!mkdtemp(dir)) TEST_FATAL("cannot create a temp dir %s", dir);
    RUN(roundtrip_bitwise);
    RUN(model_only_and_empty);
    RUN(shapes_vs_model);
    RUN(anomaly_messages);
    RUN(fuzz_truncate_and_flip);
    RUN(crash_mid_write);
    RUN(declared_sizes_bounded);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_done();
}
