/* common/opt.h — getopt_long with exact long-option names. glibc's getopt_long takes any
 * unambiguous prefix ("--mag 10" became "--mags 10"), so a typo silently set another option;
 * every magpie command parses through mp_getopt_long, which refuses anything but the full name.
 * Like getopt_long it keeps its state in globals (optind, optarg) and permutes argv: main thread
 * only, one parse at a time; set optind = 1 before each parse. Errors as common/error.h (mp_err). */
#ifndef MP_OPT_H
#define MP_OPT_H

#include <getopt.h>

/* getopt_long (opterr is forced to 0) that also returns '?' for a long option written as a
 * prefix of its name. On '?' or a missing value, mp_err holds a one-line reason naming what
 * was typed: "unknown option '--mag' (did you mean '--mags'?)", "option '--mags' needs a value".
 * *longindex (may be NULL) as getopt_long. */
int mp_getopt_long(int argc, char *const *argv, const char *shortopts, const struct option *longopts, int *longindex);

/* The one usage-error line of every command, on stderr:
 *   magpie: error: WHAT: MESSAGE (see magpie HELP --help)
 * with HELP the words that reach the command's help (NULL: WHAT; "db DB split" for "db split").
 * Returns MP_EXIT_USAGE (1), for `return mp_usage_error(...)`. */
int mp_usage_error(const char *what, const char *help, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The long option in `longopts` that `name` (with or without leading dashes, up to any '=')
 * is a strict prefix of, for a "did you mean" hint; NULL when none or several. */
const char *mp_opt_suggest(const char *name, const struct option *longopts);

#endif
