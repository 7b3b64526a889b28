/* tests/common/test_common.c — RNG determinism, strict parsing, CRC, atomic writes, safe output
 * names, escaped control characters in messages, regular-file opening. */
#include "tests/test.h"

#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"

TEST(rng_deterministic)
{
    mp_rng a, b;
    mp_rng_derive(&a, 42, 1, 2, 3);
    mp_rng_derive(&b, 42, 1, 2, 3);
    for (int i = 0; i < 100; i++) CHECK(mp_rng_u64(&a) == mp_rng_u64(&b));
    mp_rng_derive(&b, 42, 1, 2, 4);
    CHECK(mp_rng_u64(&a) != mp_rng_u64(&b));
}

TEST(rng_below_uniform)
{
    mp_rng r;
    mp_rng_seed(&r, 7);
    int hist[5] = {0};
    for (int i = 0; i < 50000; i++) hist[mp_rng_below(&r, 5)]++;
    for (int k = 0; k < 5; k++) CHECK(hist[k] > 9500 && hist[k] < 10500);
    double s = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) {
        double z = mp_rng_normal(&r);
        s += z;
        s2 += z * z;
    }
    CHECK_NEAR(s / 20000, 0.0, 0.03);
    CHECK_NEAR(s2 / 20000, 1.0, 0.05);
}

TEST(parse_strict)
{
    double d;
    long l;
    CHECK_INT(mp_parse_double("1.25", &d), 0);
    CHECK_NEAR(d, 1.25, 0);
    CHECK_INT(mp_parse_double("1.25x", &d), -1);
    CHECK_INT(mp_parse_double("", &d), -1);
    CHECK_INT(mp_parse_long("12", &l), 0);
    CHECK_INT(l, 12);
    CHECK_INT(mp_parse_long("12.5", &l), -1);
    double v[8];
    CHECK_INT(mp_parse_double_list("20,10,5,2.5,1.25", v, 8), 5);
    CHECK_NEAR(v[4], 1.25, 0);
    CHECK_INT(mp_parse_double_list("10,,1.25", v, 8), -1);
    CHECK_INT(mp_parse_double_list("10,", v, 8), -1);
}

TEST(crc32_known)
{
    /* The standard check value of CRC-32/ISO-HDLC. */
    CHECK(mp_crc32(0, "123456789", 9) == 0xCBF43926u);
}

/* the streamed writer: nothing under PATH until commit, an abort leaves the old file and no
 * temporary, a failed open names the temporary */
TEST(atomic_streamed)
{
    char dir[] = "/tmp/mp_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], tmp[4200];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    CHECK_INT(mp_write_file_atomic(path, "old", 3), 0);
    mp_atomic_file f;
    CHECK_INT(mp_atomic_open(&f, path), 0);
    mp_atomic_tmp_name(tmp, sizeof tmp, path);
    CHECK_STR(f.tmp, tmp);
    CHECK_INT(mp_atomic_write(&f, "new ", 4), 0);
    CHECK_INT(mp_atomic_write(&f, "data", 4), 0);
    CHECK_INT((int)mp_file_size(path), 3); /* still the old file */
    mp_atomic_abort(&f);
    CHECK_INT(mp_file_exists(tmp), 0);
    CHECK_INT((int)mp_file_size(path), 3);
    CHECK_INT(mp_atomic_open(&f, path), 0);
    CHECK_INT(mp_atomic_write(&f, "new ", 4), 0);
    CHECK_INT(mp_atomic_write(&f, "data", 4), 0);
    CHECK_INT(mp_atomic_commit(&f), 0);
    uint8_t *buf = NULL;
    size_t n = 0;
    CHECK_INT(mp_read_file(path, &buf, &n), 0);
    CHECK(n == 8 && buf && !memcmp(buf, "new data", 8));
    free(buf);
    CHECK_INT(mp_file_exists(tmp), 0);
    /* a temporary written by another library, committed */
    FILE *o = fopen(tmp, "wb");
    CHECK(o != NULL);
    if (o) fputs("lib", o), fclose(o);
    CHECK_INT(mp_atomic_commit_tmp(tmp, path), 0);
    CHECK_INT((int)mp_file_size(path), 3);
    CHECK_INT(mp_file_exists(tmp), 0);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x", dir);
    CHECK_INT(mp_atomic_open(&f, missing), -1);
    CHECK_CONTAINS(mp_err(), "x.tmp.");
    CHECK_CONTAINS(mp_err(), "No such file or directory");
    unlink(path);
    rmdir(dir);
}

TEST(path_stem)
{
    char b[64];
    CHECK_STR(mp_path_stem("a/b/TCGA-1.svs", b, sizeof b), "TCGA-1");
    CHECK_STR(mp_path_stem("x.ome.tiff", b, sizeof b), "x.ome");
    CHECK_STR(mp_path_stem("dir.d/slide", b, sizeof b), "slide");
    CHECK_STR(mp_path_stem("/s/.svs", b, sizeof b), ".svs");
    CHECK_STR(mp_path_stem("plain", b, sizeof b), "plain");
}

TEST(atomic_write_roundtrip)
{
    char dir[] = "/tmp/mp_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/c.bin", dir);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    CHECK_INT(mp_mkdir_p(sub), 0);
    CHECK_INT(mp_write_file_atomic(path, "hello", 5), 0);
    uint8_t *buf;
    size_t n;
    CHECK_INT(mp_read_file(path, &buf, &n), 0);
    CHECK_INT(n, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    free(buf);
    CHECK_INT(mp_read_file("/nonexistent/x", &buf, &n), -1);
    CHECK_STR(mp_err(), "/nonexistent/x: No such file or directory");
    unlink(path);
}

TEST(safe_name)
{
    char b[256];
    CHECK_STR(mp_safe_name("CMU-1", b, sizeof b), "CMU-1");
    CHECK_STR(mp_safe_name(".hidden", b, sizeof b), ".hidden");
    CHECK_STR(mp_safe_name("...", b, sizeof b), "...");
    /* the stems of "..svs" and "...svs": never the directory itself or its parent */
    CHECK_STR(mp_safe_name(".", b, sizeof b), "_");
    CHECK_STR(mp_safe_name("..", b, sizeof b), "__");
    CHECK_STR(mp_safe_name("", b, sizeof b), "_");
    CHECK_STR(mp_safe_name("a/../b", b, sizeof b), "a_.._b");
    CHECK_STR(mp_safe_name("a\\b\nc\x1b[31m\x7f", b, sizeof b), "a_b_c_[31m_");
    char longn[600];
    memset(longn, 'x', sizeof longn - 1);
    longn[sizeof longn - 1] = 0;
    CHECK_INT(strlen(mp_safe_name(longn, b, sizeof b)), MP_SAFE_NAME_MAX);
    /* cut on a character boundary: 199 ASCII bytes then a 2-byte character */
    memset(longn, 'y', 199);
    memcpy(longn + 199, "\xc3\xa9z", 4);
    CHECK_INT(strlen(mp_safe_name(longn, b, sizeof b)), 199);
    char small[4];
    CHECK_STR(mp_safe_name("abcdef", small, sizeof small), "abc");
}

TEST(escaped_messages)
{
    char b[64];
    CHECK_STR(mp_escape_ctrl("a\nb\tc\rd\x1b[0m\x7f\\", b, sizeof b), "a\\nb\\tc\\rd\\x1b[0m\\x7f\\");
    char once[64], twice[64];
    mp_escape_ctrl("x\ny", once, sizeof once);
    CHECK_STR(mp_escape_ctrl(once, twice, sizeof twice), once); /* idempotent */
    CHECK_STR(mp_escape_ctrl("ab\n", b, 4), "ab"); /* an escape is never cut in half */
    /* an error quoting a file name with a newline and an escape stays on one visible line,
     * and a library's trailing newline is dropped */
    mp_err_set("%s: not a slide\n", "/d/evil\nname\x1b[2J.svs");
    CHECK_STR(mp_err(), "/d/evil\\nname\\x1b[2J.svs: not a slide");
}

TEST(open_regular)
{
    char dir[] = "/tmp/mp_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[256], want[400];
    snprintf(p, sizeof p, "%s/fifo", dir);
    CHECK_INT(mkfifo(p, 0644), 0);
    CHECK_INT(mp_open_regular(p), -1); /* without a writer, a blocking open would wait for ever */
    snprintf(want, sizeof want, "%s: is a FIFO (named pipe), not a file", p);
    CHECK_STR(mp_err(), want);
    uint8_t *buf;
    size_t n;
    CHECK_INT(mp_read_file(p, &buf, &n), -1);
    CHECK_STR(mp_err(), want);
    unlink(p);
    CHECK_INT(mp_open_regular(dir), -1);
    snprintf(want, sizeof want, "%s: is a directory, not a file", dir);
    CHECK_STR(mp_err(), want);
    CHECK_INT(mp_open_regular("/dev/null"), -1);
    CHECK_STR(mp_err(), "/dev/null: is a device, not a file");
    snprintf(p, sizeof p, "%s/f", dir);
    CHECK_INT(mp_write_file_atomic(p, "x", 1), 0);
    int fd = mp_open_regular(p);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    unlink(p);
    rmdir(dir);
}

/* mp_try_*: a size that cannot be had fails softly with a message; MAGPIE_ALLOC_FAIL=N fails the
 * Nth call only (read at the first call: this case runs before any other mp_try_* here). */
TEST(try_alloc)
{
    setenv("MAGPIE_ALLOC_FAIL", "3", 1);
    void *a = mp_try_malloc(16, "a"), *b = mp_try_calloc(4, 4, "b");
    CHECK(a && b);
    void *c = mp_try_realloc(a, 64, "the third");
    CHECK(c == NULL);
    CHECK_STR(mp_err(), "out of memory (64 bytes for the third) [MAGPIE_ALLOC_FAIL]");
    void *d = mp_try_realloc(a, 64, "the fourth"); /* a was left alone */
    CHECK(d != NULL);
    free(d);
    free(b);
    void *e = mp_try_calloc(SIZE_MAX / 2, 4, "an impossible grid");
    CHECK(e == NULL);
    char want[120];
    snprintf(want, sizeof want, "out of memory (%zu x 4 bytes for an impossible grid)", (size_t)SIZE_MAX / 2);
    CHECK_STR(mp_err(), want);
    unsetenv("MAGPIE_ALLOC_FAIL");
}

/* mp_alloc_big: small sizes 64-byte aligned, large ones on a 2 MiB boundary and usable to the
 * last byte asked for; a size that cannot be had is NULL, not a crash. */
TEST(alloc_big)
{
    unsigned char *s = mp_alloc_big(100);
    CHECK(s && ((uintptr_t)s & 63) == 0);
    if (s) memset(s, 1, 100);
    free(s);
    size_t n = ((size_t)9 << 20) + 5;
    unsigned char *b = mp_alloc_big(n);
    CHECK(b && ((uintptr_t)b & (((size_t)2 << 20) - 1)) == 0);
    if (b) {
        memset(b, 7, n);
        CHECK_INT(b[n - 1], 7);
    }
    free(b);
    CHECK(mp_alloc_big(SIZE_MAX - 100) == NULL);
}

int main(void)
{
    RUN(rng_deterministic);
    RUN(rng_below_uniform);
    RUN(parse_strict);
    RUN(crc32_known);
    RUN(atomic_write_roundtrip);
    RUN(atomic_streamed);
    RUN(path_stem);
    RUN(safe_name);
    RUN(escaped_messages);
    RUN(open_regular);
    RUN(try_alloc);
    RUN(alloc_big);
    return test_done();
}
