/* tests/nn/test_interop.c — safetensors and .npy: files written by PyTorch/numpy
 * (tests/nn/golden/interop_*, from tools/golden_interop.py) read with the right values,
 * re-exports read back equal, and every malformed input gets its exact message. */
#include "tests/test.h"

#include <stdint.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "nn/arch.h"
#include "nn/npy.h"
#include "nn/safetensors.h"

static char gold[1024];

static const char *golden(const char *name)
{
    static char buf[4][1100];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", gold, name);
    return buf[k];
}

static void check_values(const nn_st_file *f)
{
    const nn_st_tensor *t = nn_st_find(f, "a");
    float v[108];
    CHECK(t && t->dtype == NN_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    if (t) {
        nn_st_to_f32(t, v);
        for (int i = 0; i < 6; i++) CHECK(v[i] == (float)i / 4 - 0.5f);
    }
    t = nn_st_find(f, "conv.weight");
    CHECK(t && t->ndim == 4 && t->numel == 108);
    if (t) {
        nn_st_to_f32(t, v);
        for (int i = 0; i < 108; i++) CHECK(v[i] == ((float)i - 50) / 8);
    }
    t = nn_st_find(f, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1);
    if (t) { nn_st_to_f32(t, v); CHECK(v[0] == 2.5f); }
    t = nn_st_find(f, "bn.num_batches_tracked");
    CHECK(t && t->dtype == NN_I64 && t->ndim == 0);
    if (t) { int64_t x; memcpy(&x, t->data, 8); CHECK(x == 123456789012LL); }
    t = nn_st_find(f, "half");
    CHECK(t && t->dtype == NN_F16 && t->numel == 5);
    if (t) {
        nn_st_to_f32(t, v);
        CHECK(v[0] == 0.5f && v[1] == -2.0f && v[2] == 65504.0f && v[3] == ldexpf(1, -24) && isinf(v[4]));
    }
    t = nn_st_find(f, "bf");
    CHECK(t && t->dtype == NN_BF16);
    if (t) { nn_st_to_f32(t, v); CHECK(v[0] == 1.0f && v[1] == -3.140625f && v[2] == ldexpf(1, 100)); }
    t = nn_st_find(f, "d");
    CHECK(t && t->dtype == NN_F64);
    if (t) { nn_st_to_f32(t, v); CHECK(v[0] == (float)(1.0 / 3) && v[1] == (float)-1e-3 && v[2] == 1e10f); }
    t = nn_st_find(f, "i32");
    if (t) { nn_st_to_f32(t, v); CHECK(v[0] == -7 && v[2] == 7); }
    t = nn_st_find(f, "empty");
    CHECK(t && t->numel == 0 && t->ndim == 2 && t->shape[1] == 3);
}

TEST(safetensors_from_torch)
{
    nn_st_file f;
    CHECK_INT(nn_st_read(golden("interop_tensors.safetensors"), &f), 0);
    CHECK_INT(f.n, 9);
    CHECK_STR(nn_st_meta(&f, "format"), "pt");
    check_values(&f);
    /* re-export every tensor unchanged, read back: same dtypes, shapes, bytes, metadata */
    nn_st_entry e[16];
    for (int i = 0; i < f.n; i++) e[i] = (nn_st_entry){f.t[i].name, f.t[i].dtype, f.t[i].ndim, f.t[i].shape, f.t[i].data};
    const char *meta[] = {"format", "pt", NULL};
    CHECK_INT(nn_st_write(tmp("re.safetensors"), e, f.n, meta), 0);
    nn_st_file r;
    CHECK_INT(nn_st_read(tmp("re.safetensors"), &r), 0);
    CHECK_INT(r.n, f.n);
    for (int i = 0; i < f.n && i < r.n; i++) {
        const nn_st_tensor *a = &f.t[i], *b = nn_st_find(&r, a->name);
        CHECK(b && b->dtype == a->dtype && b->ndim == a->ndim && b->nbytes == a->nbytes &&
              !memcmp(a->shape, b->shape, sizeof a->shape) && !memcmp(a->data, b->data, a->nbytes));
    }
    check_values(&r);
    CHECK_STR(nn_st_meta(&r, "format"), "pt");
    /* the data area starts 8-aligned (header padded with spaces) */
    CHECK((r.t[0].data - r.buf) % 8 == 0);
    nn_st_free(&r);
    nn_st_free(&f);
}

TEST(safetensors_params)
{
    nn_params ps = {0};
    nn_params_add(&ps, "fc.weight", 2, (int64_t[]){2, 3}, 1);
    nn_params_add(&ps, "bn.running_mean", 1, (int64_t[]){3}, 0);
    nn_params_alloc(&ps);
    for (int i = 0; i < 6; i++) {
        ps.p[0].data[i] = (float)i;
        ps.p[0].grad[i] = -(float)i;
    }
    CHECK_INT(nn_st_write_params(tmp("p.safetensors"), &ps, 0, NULL), 0);
    CHECK_INT(nn_st_write_params(tmp("g.safetensors"), &ps, 1, NULL), 0);
    nn_st_file f;
    CHECK_INT(nn_st_read(tmp("p.safetensors"), &f), 0);
    CHECK_INT(f.n, 2);
    CHECK(!memcmp(nn_st_find(&f, "fc.weight")->data, ps.p[0].data, 24));
    nn_st_free(&f);
    CHECK_INT(nn_st_read(tmp("g.safetensors"), &f), 0);
    CHECK_INT(f.n, 1); /* gradients only for trainable entries */
    CHECK(!memcmp(nn_st_find(&f, "fc.weight")->data, ps.p[0].grad, 24));
    nn_st_free(&f);
    nn_params_free(&ps);
}

/* Parse a header + data blob built in the test. */
static int st_blob(const char *json, size_t dlen)
{
    size_t hl = strlen(json), len = 8 + hl + dlen;
    uint8_t *b = calloc(len, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    nn_st_file f;
    int rc = nn_st_parse("m.safetensors", b, len, &f);
    nn_st_free(&f);
    return rc;
}

TEST(safetensors_anomalies)
{
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), 0);
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), -1);
    CHECK_STR(mp_err(), "m.safetensors: tensor x: unsupported dtype Q4");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8), -1);
    CHECK_CONTAINS(mp_err(), "m.safetensors: malformed JSON header: ");
    CHECK_INT(st_blob("[1,2]", 0), -1);
    CHECK_STR(mp_err(), "m.safetensors: malformed JSON header: not an object");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), -1);
    CHECK_STR(mp_err(), "m.safetensors: tensor x: shape and dtype need 12 bytes, data_offsets give 8");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), -1);
    CHECK_STR(mp_err(), "m.safetensors: truncated: tensor x needs data bytes 0..8, file has 4");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), -1);
    CHECK_STR(mp_err(), "m.safetensors: tensor y overlaps tensor x");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), -1);
    CHECK_STR(mp_err(), "m.safetensors: hole in the data before tensor x (bytes 0..4 unused)");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12), -1);
    CHECK_STR(mp_err(), "m.safetensors: 4 bytes after the last tensor");
    CHECK_INT(st_blob("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), -1);
    CHECK_STR(mp_err(), "m.safetensors: tensor x: bad shape");
    CHECK_INT(st_blob("{\"__metadata__\":{\"k\":1}}", 0), -1);
    CHECK_STR(mp_err(), "m.safetensors: __metadata__ value of k is not a string");
    uint8_t *b = calloc(16, 1);
    b[0] = 200; /* header says 200 bytes, file has 8 more */
    nn_st_file f;
    CHECK_INT(nn_st_parse("m.safetensors", b, 16, &f), -1);
    CHECK_STR(mp_err(), "m.safetensors: truncated: header needs bytes 8..208, file has 16");
    /* every truncation of the torch file fails with a message naming it */
    uint8_t *g;
    size_t len;
    CHECK_INT(mp_read_file(golden("interop_tensors.safetensors"), &g, &len), 0);
    int all = 1;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *c = malloc(cut + 1);
        memcpy(c, g, cut);
        if (nn_st_parse("cut.safetensors", c, cut, &f) != -1 || strncmp(mp_err(), "cut.safetensors: ", 17)) all = 0;
    }
    CHECK(all);
    free(g);
}

TEST(npy_from_numpy)
{
    nn_npy a;
    CHECK_INT(nn_npy_read(golden("interop_f32.npy"), &a), 0);
    CHECK(a.dtype == NN_F32 && a.ndim == 4 && a.shape[0] == 2 && a.shape[1] == 3 && a.shape[3] == 4 && a.numel == 96);
    for (size_t i = 0; i < a.numel; i++) CHECK(((float *)a.data)[i] == ((float)i - 40) / 16);
    CHECK_INT(nn_npy_write(tmp("x.npy"), a.dtype, a.ndim, a.shape, a.data), 0);
    nn_npy b;
    CHECK_INT(nn_npy_read(tmp("x.npy"), &b), 0);
    CHECK(b.ndim == 4 && !memcmp(a.shape, b.shape, 4 * sizeof(int64_t)) && !memcmp(a.data, b.data, 96 * 4));
    /* our header has numpy's layout: the file is byte-identical to numpy's */
    uint8_t *x, *y;
    size_t nx, ny;
    mp_read_file(golden("interop_f32.npy"), &x, &nx);
    mp_read_file(tmp("x.npy"), &y, &ny);
    CHECK(nx == ny && !memcmp(x, y, nx));
    free(x);
    free(y);
    nn_npy_free(&a);
    nn_npy_free(&b);

    CHECK_INT(nn_npy_read(golden("interop_i64.npy"), &a), 0);
    CHECK(a.dtype == NN_I64 && a.ndim == 1 && a.shape[0] == 4 && ((int64_t *)a.data)[3] == -5);
    CHECK_INT(nn_npy_write(tmp("l.npy"), NN_I64, 1, a.shape, a.data), 0);
    mp_read_file(golden("interop_i64.npy"), &x, &nx);
    mp_read_file(tmp("l.npy"), &y, &ny);
    CHECK(nx == ny && !memcmp(x, y, nx)); /* 1-d shape spelled "(4,)" like numpy */
    free(x);
    free(y);
    nn_npy_free(&a);
    int32_t i3[3] = {1, -2, 3};
    CHECK_INT(nn_npy_write(tmp("i.npy"), NN_I32, 1, (int64_t[]){3}, i3), 0);
    CHECK_INT(nn_npy_read(tmp("i.npy"), &a), 0);
    CHECK(a.dtype == NN_I32 && ((int32_t *)a.data)[1] == -2);
    nn_npy_free(&a);
    CHECK_INT(nn_npy_write(tmp("s.npy"), NN_F32, 0, NULL, (float[]){4.5f}), 0);
    CHECK_INT(nn_npy_read(tmp("s.npy"), &a), 0);
    CHECK(a.ndim == 0 && a.numel == 1 && ((float *)a.data)[0] == 4.5f);
    nn_npy_free(&a);
}

TEST(npy_anomalies)
{
    nn_npy a;
    char want[1200];
    CHECK_INT(nn_npy_read(golden("interop_f64.npy"), &a), -1);
    snprintf(want, sizeof want, "%s: dtype '<f8' not supported (float32 '<f4', int64 '<i8' or int32 '<i4')",
             golden("interop_f64.npy"));
    CHECK_STR(mp_err(), want);
    CHECK_INT(nn_npy_read(golden("interop_fortran.npy"), &a), -1);
    snprintf(want, sizeof want, "%s: Fortran-order array not supported (save a C-contiguous array)",
             golden("interop_fortran.npy"));
    CHECK_STR(mp_err(), want);
    CHECK_INT(nn_npy_read(golden("interop_bigendian.npy"), &a), -1);
    snprintf(want, sizeof want, "%s: dtype '>f4' not supported (float32 '<f4', int64 '<i8' or int32 '<i4')",
             golden("interop_bigendian.npy"));
    CHECK_STR(mp_err(), want);
    CHECK_INT(nn_npy_parse("x.npy", (const uint8_t *)"PK\3\4 not npy", 13, &a), -1);
    CHECK_STR(mp_err(), "x.npy: not a .npy file (bad magic)");
    uint8_t *g;
    size_t len;
    CHECK_INT(mp_read_file(golden("interop_f32.npy"), &g, &len), 0);
    CHECK_INT(nn_npy_parse("x.npy", g, len - 4, &a), -1);
    CHECK_STR(mp_err(), "x.npy: truncated: data needs 384 bytes, file has 380");
    CHECK_INT(nn_npy_parse("x.npy", g, 40, &a), -1);
    CHECK_STR(mp_err(), "x.npy: truncated .npy header: needs 128 bytes, file has 40");
    g[6] = 4;
    CHECK_INT(nn_npy_parse("x.npy", g, len, &a), -1);
    CHECK_STR(mp_err(), "x.npy: unsupported .npy version 4.0");
    g[6] = 1;
    memcpy(g + 10, "{'descx'", 8);
    CHECK_INT(nn_npy_parse("x.npy", g, len, &a), -1);
    CHECK_STR(mp_err(), "x.npy: malformed .npy header: unknown key 'descx'");
    int all = 1;
    free(g);
    mp_read_file(golden("interop_f32.npy"), &g, &len);
    for (size_t cut = 0; cut < len; cut++)
        if (nn_npy_parse("cut.npy", g, cut, &a) != -1 || strncmp(mp_err(), "cut.npy: ", 9)) all = 0;
    CHECK(all);
    free(g);
    CHECK_INT(nn_npy_write(tmp("bad.npy"), NN_F64, 1, (int64_t[]){1}, (double[]){1}), -1);
    CHECK_CONTAINS(mp_err(), "bad.npy: cannot write dtype F64 to .npy");
}

/* Every single-bit flip of the torch file and of a numpy file: parsed or refused with a message
 * naming the file, never a crash (the ASan build runs this too). */
TEST(flip_fuzz)
{
    const char *files[] = {"interop_tensors.safetensors", "interop_f32.npy", "interop_i64.npy"};
    for (int f = 0; f < 3; f++) {
        uint8_t *g;
        size_t len;
        CHECK_INT(mp_read_file(golden(files[f]), &g, &len), 0);
        int named = 1, refused = 0;
        for (size_t i = 0; i < len; i++)
            for (int bit = 0; bit < 8; bit++) {
                uint8_t *c = malloc(len);
                memcpy(c, g, len);
                c[i] ^= (uint8_t)(1u << bit);
                mp_err_clear();
                int rc;
                if (f == 0) {
                    nn_st_file st;
                    rc = nn_st_parse("f.bin", c, len, &st); /* takes c */
                    nn_st_free(&st);
                } else {
                    nn_npy a;
                    rc = nn_npy_parse("f.bin", c, len, &a);
                    nn_npy_free(&a);
                    free(c);
                }
                if (rc) {
                    refused++;
                    if (strncmp(mp_err(), "f.bin: ", 7)) named = 0;
                }
            }
        CHECK(named);
        CHECK(refused > 0);
        free(g);
    }
}

/* A .npy version 2.0 file (4-byte header length) reads like version 1. */
TEST(npy_v2)
{
    const char *h = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
    size_t hl = strlen(h), pad = 64 - (12 + hl + 1) % 64, n = 12 + hl + pad + 1 + 8;
    uint8_t *b = calloc(n, 1);
    memcpy(b, "\x93NUMPY\x02\x00", 8);
    uint32_t L = (uint32_t)(hl + pad + 1);
    memcpy(b + 8, &L, 4);
    memcpy(b + 12, h, hl);
    memset(b + 12 + hl, ' ', pad);
    b[12 + hl + pad] = '\n';
    int32_t v[2] = {7, -9};
    memcpy(b + n - 8, v, 8);
    nn_npy a;
    CHECK_INT(nn_npy_parse("v2.npy", b, n, &a), 0);
    CHECK(a.dtype == NN_I32 && a.ndim == 1 && a.shape[0] == 2 && ((int32_t *)a.data)[1] == -9);
    nn_npy_free(&a);
    free(b);
}

/* What a safetensors file declares is bounded (tensors, metadata keys, name lengths) and names
 * are found through a hash index; 70000 tensors are refused in one line, 60000 load and each is
 * found by name. */
TEST(safetensors_declared_sizes)
{
    enum { MANY = 70000, OK = 60000 };
    nn_st_entry *e = calloc(MANY, sizeof *e);
    char (*names)[24] = calloc(MANY, sizeof *names);
    static const int64_t zero[1] = {0};
    static const float none[1] = {0};
    for (int i = 0; i < MANY; i++) {
        snprintf(names[i], sizeof names[i], "layers.%d.w", i);
        e[i] = (nn_st_entry){names[i], NN_F32, 1, zero, none};
    }
    CHECK_INT(nn_st_write(tmp("many.safetensors"), e, MANY, NULL), 0);
    nn_st_file f;
    CHECK_INT(nn_st_read(tmp("many.safetensors"), &f), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: header declares %d tensors (at most 65536)", tmp("many.safetensors"), MANY);
    CHECK_STR(mp_err(), want);
    CHECK_INT(nn_st_write(tmp("ok.safetensors"), e, OK, NULL), 0);
    CHECK_INT(nn_st_read(tmp("ok.safetensors"), &f), 0);
    int bad = 0;
    for (int i = 0; i < OK; i += 3) bad += nn_st_find(&f, names[i]) != &f.t[i];
    CHECK_INT(bad, 0);
    CHECK(nn_st_find(&f, names[OK]) == NULL);
    nn_st_free(&f);

    /* metadata: 70000 keys refused; a long tensor name refused */
    const char **meta = calloc(2 * MANY + 2, sizeof *meta);
    for (int i = 0; i < MANY; i++) meta[2 * i] = names[i], meta[2 * i + 1] = "v";
    CHECK_INT(nn_st_write(tmp("meta.safetensors"), e, 1, meta), 0);
    CHECK_INT(nn_st_read(tmp("meta.safetensors"), &f), -1);
    CHECK_CONTAINS(mp_err(), "__metadata__ has 70000 keys (at most 65536)");
    meta[2 * 1000] = NULL;
    CHECK_INT(nn_st_write(tmp("meta.safetensors"), e, 1, meta), 0);
    CHECK_INT(nn_st_read(tmp("meta.safetensors"), &f), 0);
    CHECK_STR(nn_st_meta(&f, names[999]), "v");
    CHECK(nn_st_meta(&f, names[1000]) == NULL);
    nn_st_free(&f);
    char longname[1100];
    memset(longname, 'w', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    e[0].name = longname;
    CHECK_INT(nn_st_write(tmp("long.safetensors"), e, 1, NULL), 0);
    CHECK_INT(nn_st_read(tmp("long.safetensors"), &f), -1);
    CHECK_CONTAINS(mp_err(), "is longer than 1024 bytes");
    free(meta);
    free(names);
    free(e);
}

int main(void)
{
    const char *src = getenv("MAGPIE_SRC");
    snprintf(gold, sizeof gold, "%s/tests/nn/golden", src ? src : ".");
    if (t_tmpdir("interop")) TEST_FATAL("cannot create a temp dir");
    RUN(safetensors_from_torch);
    RUN(safetensors_params);
    RUN(safetensors_anomalies);
    RUN(npy_from_numpy);
    RUN(npy_anomalies);
    RUN(flip_fuzz);
    RUN(npy_v2);
    RUN(safetensors_declared_sizes);
    t_rmdir();
    return test_done();
}
