/* tests/test.h — the in-tree test runner: each test program runs its cases, prints
 * failures with the values involved, and exits 0 (all passed), 1 (some failed) or
 * 77 (skipped, with the reason printed — meson's skip code; only when no check failed). */
#ifndef MP_TEST_H
#define MP_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_fail, t_checks;
static const char *t_case = "";

#define CHECK(cond)                                                                     \
    do {                                                                                \
        t_checks++;                                                                     \
        if (!(cond)) {                                                                  \
            t_fail++;                                                                   \
            fprintf(stderr, "FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, t_case, #cond); \
        }                                                                               \
    } while (0)

#define CHECK_INT(a, b)                                                                          \
    do {                                                                                         \
        long long _a = (long long)(a), _b = (long long)(b);                                      \
        t_checks++;                                                                              \
        if (_a != _b) {                                                                          \
            t_fail++;                                                                            \
            fprintf(stderr, "FAIL %s:%d [%s]: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, t_case, \
                    #a, #b, _a, _b);                                                             \
        }                                                                                        \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                    \
    do {                                                                                         \
        double _a = (double)(a), _b = (double)(b);                                               \
        t_checks++;                                                                              \
        if (!(fabs(_a - _b) <= (tol))) {                                                         \
            t_fail++;                                                                            \
            fprintf(stderr, "FAIL %s:%d [%s]: %s ~ %s (%.9g vs %.9g, tol %g)\n", __FILE__, __LINE__, \
                    t_case, #a, #b, _a, _b, (double)(tol));                                     \
        }                                                                                        \
    } while (0)

#define CHECK_STR(a, b)                                                                          \
    do {                                                                                         \
        const char *_a = (a), *_b = (b);                                                         \
        t_checks++;                                                                              \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                                 \
            t_fail++;                                                                            \
            fprintf(stderr, "FAIL %s:%d [%s]: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, \
                    t_case, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");                   \
        }                                                                                        \
    } while (0)

/* substring match, for error messages that carry a path */
#define CHECK_CONTAINS(hay, needle)                                                             \
    do {                                                                                        \
        const char *_h = (hay), *_n = (needle);                                                 \
        t_checks++;                                                                             \
        if (!_h || !strstr(_h, _n)) {                                                           \
            t_fail++;                                                                           \
            fprintf(stderr, "FAIL %s:%d [%s]: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    t_case, _h ? _h : "(null)", _n);                                          \
        }                                                                                       \
    } while (0)

#define TEST(name) static void name(void)
#define RUN(name)                                          \
    do {                                                   \
        t_case = #name;                                    \
        int _before = t_fail;                              \
        name();                                            \
        fprintf(stderr, "%s %s\n", t_fail == _before ? "ok  " : "FAIL", #name); \
    } while (0)

static inline int test_done(void)
{
    fprintf(stderr, "%d checks, %d failed\n", t_checks, t_fail);
    if (t_checks == 0) {
        fprintf(stderr, "no checks ran\n");
        return 1;
    }
    return t_fail ? 1 : 0;
}

/* Skip the whole program with a printed reason (meson counts exit 77 as SKIP). Only for optional
 * inputs that are absent (the real slides in ../shared/data). Checks that already failed are not
 * hidden by a skip: the program then exits 1. */
#define TEST_SKIP(...)                                                                  \
    do {                                                                                \
        fprintf(stderr, "%s: ", t_fail ? "FAIL (skip after failed checks)" : "SKIP"); \
        fprintf(stderr, __VA_ARGS__);                                                   \
        fprintf(stderr, "\n");                                                          \
        if (t_fail) fprintf(stderr, "%d checks, %d failed\n", t_checks, t_fail);        \
        exit(t_fail ? 1 : 77);                                                          \
    } while (0)

/* A required input is missing or the setup failed (a committed golden file, a temp dir, a tiny
 * dataset, `magpie synth`): the whole program fails, with the reason. */
#define TEST_FATAL(...)                  \
    do {                                 \
        fprintf(stderr, "FAIL: ");       \
        fprintf(stderr, __VA_ARGS__);    \
        fprintf(stderr, "\n");           \
        exit(1);                         \
    } while (0)

/* Fail the current case with a message and leave it (the other cases still run). */
#define FAIL_CASE(...)                                                          \
    do {                                                                        \
        t_checks++;                                                             \
        t_fail++;                                                               \
        fprintf(stderr, "FAIL %s:%d [%s]: ", __FILE__, __LINE__, t_case);       \
        fprintf(stderr, __VA_ARGS__);                                           \
        fprintf(stderr, "\n");                                                  \
        return;                                                                 \
    } while (0)

/* A private temporary directory per test program: t_tmpdir("name") makes /tmp/mp_name_XXXXXX
 * (0, or -1 if it cannot), tmp("file") is a path inside it (eight rotating buffers, so several can
 * be used in one call), t_rmdir() removes it with everything in it (0, or -1 with a message). */
static char t_dir[64];

static inline int t_tmpdir(const char *prefix)
{
    snprintf(t_dir, sizeof t_dir, "/tmp/mp_%s_XXXXXX", prefix);
    return mkdtemp(t_dir) ? 0 : -1;
}

static inline const char *tmp(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", t_dir, name);
    return buf[k];
}

static inline int t_rmdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t_dir);
    if (!t_dir[0] || system(cmd) == 0) return 0;
    fprintf(stderr, "could not remove %s\n", t_dir);
    return -1;
}

#endif
