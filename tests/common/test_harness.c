/* tests/common/test_harness.c — the runner in tests/test.h keeps failures visible: a skip after a
 * failed check exits 1 (not 77), a plain skip exits 77, TEST_FATAL exits 1 and FAIL_CASE fails
 * its case and lets the next one run. Each behaviour runs in a child process. */
#include "tests/test.h"

#include <sys/wait.h>
#include <unistd.h>

static void skip_after_failure(void)
{
    CHECK_INT(1 + 1, 3);
    TEST_SKIP("optional input absent");
}

static void skip_clean(void)
{
    CHECK_INT(2, 2);
    TEST_SKIP("optional input absent");
}

static void fatal(void) { TEST_FATAL("required input missing"); }

static int ran_after;
TEST(case_that_fails) { FAIL_CASE("committed file %s missing", "x.bin"); }
TEST(case_after) { ran_after = 1; }
static void fail_case_then_next(void)
{
    RUN(case_that_fails);
    RUN(case_after);
    exit(ran_after ? test_done() : 99);
}

/* exit status of fn run in a child with fresh counters, its stderr silenced */
static int child(void (*fn)(void))
{
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        t_fail = t_checks = 0;
        if (!freopen("/dev/null", "w", stderr)) _exit(98);
        fn();
        _exit(97); /* every fn exits */
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

TEST(skip_after_a_failed_check_is_a_failure) { CHECK_INT(child(skip_after_failure), 1); }
TEST(skip_without_failures_is_a_skip) { CHECK_INT(child(skip_clean), 77); }
TEST(fatal_is_a_failure) { CHECK_INT(child(fatal), 1); }
TEST(fail_case_fails_and_continues) { CHECK_INT(child(fail_case_then_next), 1); }

int main(void)
{
    RUN(skip_after_a_failed_check_is_a_failure);
    RUN(skip_without_failures_is_a_skip);
    RUN(fatal_is_a_failure);
    RUN(fail_case_fails_and_continues);
    return test_done();
}
