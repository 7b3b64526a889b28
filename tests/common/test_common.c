/* tests/common/test_common.c — RNG determinism, strict parsing, CRC, atomic writes. */
#include "tests/test.h"

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

int main(void)
{
    RUN(rng_deterministic);
    RUN(rng_below_uniform);
    RUN(parse_strict);
    RUN(crc32_known);
    RUN(atomic_write_roundtrip);
    return test_done();
}
