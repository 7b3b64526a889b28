/* common/plot.h — small charts as SVG documents (text only, libc): line charts with one or two
 * y axes, error bars and a legend (training curves, accuracy against magnification), and grouped
 * bar charts with error bars (benchmark tables). Rendering to PNG is the caller's (libvips'
 * svgload reads these documents); the same SVG can go into an HTML report as it is.
 * The documents returned are malloc'd, the caller's to free; no state kept, so any thread may draw. */
#ifndef MP_PLOT_H
#define MP_PLOT_H

typedef struct {
    const char *name;     /* legend entry */
    const char *color;    /* CSS colour, e.g. "#c0392b" */
    const double *x, *y;  /* n points; a non-finite y leaves a gap */
    const double *err;    /* NULL, or ± half-widths drawn as error bars */
    int n;
    int right;            /* measured on the right axis */
    int dash;             /* dashed line */
    int markers;          /* a dot at every point */
} mp_plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel, *y2label; /* y2label NULL: no right axis */
    int width, height;                             /* px; 0 = 760 × 440 */
    double ymin, ymax, y2min, y2max;               /* equal = from the data (padded, nice ticks) */
    int xlog2;                                     /* x on a log2 scale (magnifications) */
    int xint;                                      /* x is a count (epochs): ticks on whole numbers */
    int y2log;                                     /* right axis on a log10 scale (FLOPs) */
    const double *xticks;                          /* NULL: nice ticks from the data */
    const char *const *xticklabels;                /* labels of xticks (NULL: the numbers) */
    int nxticks;
    const char *note;                              /* a line of small text under the plot, or NULL */
    const mp_plot_series *s;
    int ns;
} mp_plot;

typedef struct {
    const char *title, *ylabel;
    int width, height;                       /* 0 = 760 × 440 */
    double ymin, ymax;                       /* equal = 0 .. from the data */
    int ngroups, nbars;                      /* groups along x, bars per group (legend entries) */
    const char *const *groups, *const *bars; /* their names */
    const char *const *colors;               /* per bar; NULL = a built-in palette */
    const double *val, *err;                 /* ngroups × nbars (row = group); NaN val = no bar; err may be NULL */
    const char *note;
} mp_bars;

/* The chart as a standalone SVG document, NUL-terminated; the caller frees it. */
char *mp_plot_svg(const mp_plot *p);
char *mp_bars_svg(const mp_bars *b);
/* "Nice" tick positions (steps 1, 2, 2.5 or 5 × 10^k) covering [lo, hi]: at most cap written to t;
 * returns how many. *lo and *hi are widened to the outer ticks. */
int mp_plot_ticks(double *lo, double *hi, int want, double *t, int cap);

#endif
