/* common/opt.c — exact long-option names on top of getopt_long (see opt.h). */
#include "common/opt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"

const char *mp_opt_suggest(const char *name, const struct option *longopts)
{
    while (*name == '-') name++;
    size_t n = strcspn(name, "=");
    const char *hit = NULL;
    if (n == 0) return NULL;
    for (const struct option *o = longopts; o->name; o++) {
        if (strncmp(o->name, name, n) || strlen(o->name) == n) continue;
        if (hit) return NULL; /* several candidates: no single suggestion */
        hit = o->name;
    }
    return hit;
}

static int unknown(const char *typed, const struct option *longopts)
{
    const char *s = typed[0] == '-' && typed[1] == '-' ? mp_opt_suggest(typed, longopts) : NULL;
    size_t n = strcspn(typed, "=");
    if (s) return mp_err_set("unknown option '%.*s' (did you mean '--%s'?)", (int)n, typed, s), '?';
    return mp_err_set("unknown option '%.*s'", (int)n, typed), '?';
}

int mp_getopt_long(int argc, char *const *argv, const char *shortopts, const struct option *longopts, int *longindex)
{
    opterr = 0;
    int li = -1;
    int c = getopt_long(argc, argv, shortopts, longopts, &li);
    if (longindex) *longindex = li;
    if (c == -1) return c;
    if (c == '?' || c == ':') {
        const char *typed = optind - 1 >= 1 && optind - 1 < argc ? argv[optind - 1] : "?";
        if (optopt && !(typed[0] == '-' && typed[1] == '-')) {
            /* a short option: getopt stays inside a cluster, so name the letter */
            const char *sp = strchr(shortopts, optopt);
            if (sp && sp[1] == ':') return mp_err_set("option '-%c' needs a value", optopt), '?';
            return mp_err_set("unknown option '-%c'", optopt), '?';
        }
        /* an exact name with a missing value also lands here: name it as such */
        size_t n = strcspn(typed, "=");
        for (const struct option *o = longopts; o->name; o++)
            if (typed[0] == '-' && typed[1] == '-' && strlen(o->name) == n - 2 && !strncmp(o->name, typed + 2, n - 2)) {
                if (o->has_arg == required_argument) return mp_err_set("option '--%s' needs a value", o->name), '?';
                if (o->has_arg == no_argument && typed[n] == '=')
                    return mp_err_set("option '--%s' takes no value", o->name), '?';
            }
        return unknown(typed, longopts);
    }
    if (li < 0) return c; /* a short option */
    /* What was typed for this long option: the argument before its separate value, else the
     * last one consumed ("--name" or "--name=value"). */
    const char *typed = argv[optind - 1];
    if (longopts[li].has_arg != no_argument && optarg == argv[optind - 1] && optind >= 2) typed = argv[optind - 2];
    size_t n = strcspn(typed, "=");
    if (!(typed[0] == '-' && typed[1] == '-') || n - 2 != strlen(longopts[li].name) ||
        strncmp(typed + 2, longopts[li].name, n - 2))
        return unknown(typed, longopts);
    return c;
}

int mp_usage_error(const char *what, const char *help, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mp_error("%s: %s (see magpie %s --help)", what, msg, help ? help : what);
    return MP_EXIT_USAGE;
}
