/* tests/common/test_opt.c — mp_getopt_long: exact long names only (glibc's getopt_long takes
 * any unambiguous prefix: `tile --mag 10` was silently `--mags 10`), with one-line reasons. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/error.h"
#include "common/opt.h"
#include "tests/test.h"

enum { O_MAGS = 256, O_MPP, O_SIZE, O_DRY };
static const struct option lo[] = {{"mags", required_argument, 0, O_MAGS}, {"mpp", required_argument, 0, O_MPP},
                                   {"size", required_argument, 0, O_SIZE},  {"dry-run", no_argument, 0, O_DRY},
                                   {"jobs", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
                                   {0, 0, 0, 0}};

/* Parse argv (NULL-terminated); returns the code of the first refusal or -1 when all parsed.
 * got[] receives the option codes in order. */
static int parse(char **argv, int *got, int *ngot, char *err, size_t cap)
{
    int argc = 0;
    while (argv[argc]) argc++;
    optind = 1;
    *ngot = 0;
    err[0] = 0;
    int c;
    while ((c = mp_getopt_long(argc, argv, "j:h", lo, NULL)) != -1) {
        if (c == '?') {
            snprintf(err, cap, "%s", mp_err());
            return c;
        }
        got[(*ngot)++] = c;
    }
    return -1;
}

TEST(exact_names_pass)
{
    char *a[] = {"tile", "db", "--mags", "10,1.25", "s.svs", "--size=224", "--dry-run", "-j", "2", "--jobs=3", NULL};
    int got[8], n;
    char err[256];
    CHECK_INT(parse(a, got, &n, err, sizeof err), -1);
    CHECK_INT(n, 5);
    CHECK_INT(got[0], O_MAGS);
    CHECK_INT(got[1], O_SIZE);
    CHECK_INT(got[2], O_DRY);
    CHECK_INT(got[3], 'j');
    CHECK_INT(got[4], 'j');
    CHECK_STR(err, "");
}

TEST(prefix_refused)
{
    int got[8], n;
    char err[256];
    char *a[] = {"tile", "--mag", "10", "db", NULL}; /* the case */
    CHECK_INT(parse(a, got, &n, err, sizeof err), '?');
    CHECK_INT(n, 0);
    CHECK_STR(err, "unknown option '--mag' (did you mean '--mags'?)");
    char *b[] = {"tile", "--mag=10", NULL};
    CHECK_INT(parse(b, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "unknown option '--mag' (did you mean '--mags'?)");
    char *c[] = {"tile", "--dry", NULL};
    CHECK_INT(parse(c, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "unknown option '--dry' (did you mean '--dry-run'?)");
    char *d[] = {"tile", "--m", "1", NULL}; /* ambiguous: mags or mpp, no single hint */
    CHECK_INT(parse(d, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "unknown option '--m'");
    char *e[] = {"tile", "--jobs", "2", "--job", "3", NULL}; /* long name of a short option */
    CHECK_INT(parse(e, got, &n, err, sizeof err), '?');
    CHECK_INT(n, 1);
    CHECK_STR(err, "unknown option '--job' (did you mean '--jobs'?)");
}

TEST(other_refusals)
{
    int got[8], n;
    char err[256];
    char *a[] = {"tile", "--frob", NULL};
    CHECK_INT(parse(a, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "unknown option '--frob'");
    char *b[] = {"tile", "--mags", NULL};
    CHECK_INT(parse(b, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "option '--mags' needs a value");
    char *c[] = {"tile", "-x", NULL};
    CHECK_INT(parse(c, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "unknown option '-x'");
    char *d[] = {"tile", "-j", NULL};
    CHECK_INT(parse(d, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "option '-j' needs a value");
    char *e[] = {"tile", "--dry-run=yes", NULL};
    CHECK_INT(parse(e, got, &n, err, sizeof err), '?');
    CHECK_STR(err, "option '--dry-run' takes no value");
    /* a value that looks like an option is still the value of an exact name */
    char *f[] = {"tile", "--mags", "--size", NULL};
    CHECK_INT(parse(f, got, &n, err, sizeof err), -1);
    CHECK_INT(n, 1);
    CHECK_STR(mp_opt_suggest("--si", lo), "size");
    CHECK(mp_opt_suggest("--size", lo) == NULL);
}

/* the one usage-error line: what, message, where the help is; exit code 1 */
TEST(usage_error_line)
{
    char path[] = "/tmp/mp_opt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    int keep = dup(2);
    dup2(fd, 2);
    int a = mp_usage_error("tile", NULL, "--size wants 8..8192 px, got '%s'", "x");
    int b = mp_usage_error("db split", "db DB split", "unknown option '--by-x'");
    fflush(stderr);
    dup2(keep, 2);
    close(keep);
    CHECK_INT(a, 1);
    CHECK_INT(b, 1);
    char buf[512] = {0};
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    CHECK_STR(buf, "magpie: error: tile: --size wants 8..8192 px, got 'x' (see magpie tile --help)\n"
                   "magpie: error: db split: unknown option '--by-x' (see magpie db DB split --help)\n");
    close(fd);
    unlink(path);
}

int main(void)
{
    RUN(exact_names_pass);
    RUN(prefix_refused);
    RUN(other_refusals);
    RUN(usage_error_line);
    return test_done();
}
