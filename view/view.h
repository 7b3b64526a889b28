/* view/view.h — the door of view/: `magpie view`, a small read-only HTTP server (libmicrohttpd)
 * for looking at slides, their heatmaps and datasets in a browser (OpenSeadragon, embedded).
 *
 * What it serves is fixed when it opens: a catalog built from the PATHs given (slides, `magpie
 * run` folders, `magpie infer --out` folders, datasets, folders of those). Every URL names an
 * entry of that catalog by its number (/s/3/slide.dzi, /d/1/query?q=...), never a file path, so
 * no request can reach a file the catalog does not hold, whatever it contains ('..', %2f, an
 * absolute path). Files met while scanning a folder are kept only when their real path (symlinks
 * resolved) is inside the folder's real path. Slides a run folder or dataset names as its inputs
 * are served too (the user gave the run to look at them); the catalog lists them at start-up.
 *
 * Slide pixels come through the tiler's patch reader (tiler_read_patch), the one path from a
 * slide to a model's pixels; tiles are kept in a byte-bounded LRU cache. Limits: connections,
 * connections per IP, a thread pool, a per-connection memory bound (headers and URL), a timeout,
 * GET/HEAD only without a body, and a cap on every response's size.
 *
 * Contract: no vendor header here (libmicrohttpd, libvips and jansson stay in the .c files;
 * view/internal.h and assets.h are inside); writes nothing, opens datasets read-only. Errors:
 * -1 (or NULL) + mp_err "PATH: reason"; a request's failure is its HTTP status, never the
 * server's. Memory: a server is opened and closed in pairs (view_open/view_close) and copies the
 * paths it is given. Threads: open, start and close from one thread; requests run on the pool's
 * threads, each borrowing a slide reader from that slide's pool (one thread per reader at a time)
 * and opening its own dataset connection; the readers' pools and the tile cache are locked. */
#ifndef MP_VIEW_H
#define MP_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VIEW_TILE 254      /* Deep Zoom tile side, plus VIEW_OVERLAP on each inner edge */
#define VIEW_OVERLAP 1
#define VIEW_MAX_RESPONSE (16u << 20) /* no response is larger (a stored patch image past it is refused) */

typedef struct {
    const char *bind;      /* address to listen on; "127.0.0.1" (loopback) unless told otherwise */
    int port;              /* 0 = any free port (the chosen one is view_port's) */
    int threads;           /* request threads (the pool); each renders its own tiles */
    int max_conns;         /* open connections at once */
    int per_ip;            /* open connections from one address */
    int timeout_s;         /* an idle connection is closed after this */
    size_t cache_bytes;    /* tile cache budget */
    int quality;           /* JPEG tiles */
    int quiet;             /* no catalog on stdout */
} view_opts;

void view_opts_default(view_opts *o);

typedef struct view_server view_server;

/* Build the catalog from paths (each a slide, dataset, run/infer folder or folder of slides).
 * NULL + mp_err "PATH: reason" when a PATH is missing or holds nothing to show. Needs
 * tiler_global_init first. */
view_server *view_open(char *const *paths, int n, const view_opts *o);
/* One line per catalog entry (id, kind, name, what it has). */
void view_print_catalog(const view_server *v, FILE *f);
/* Listen and serve on the pool's threads; returns at once. -1 + mp_err (address in use, ...). */
int view_start(view_server *v);
int view_port(const view_server *v);
/* Stop (if started) and free; accepts NULL. */
void view_close(view_server *v);

/* ---- Deep Zoom geometry (public for the tests) ----
 * Level L of a w x h image is ceil(w / 2^(max - L)) x ceil(h / 2^(max - L)), max = ceil(log2(max
 * side)); tile (c, r) covers [c*T - (c ? O : 0), min((c+1)*T + O, lw)) in x, likewise in y. */
int view_dz_max_level(int64_t w, int64_t h);
/* Level size and tile rectangle in that level's pixels; -1 when (L, c, r) is outside the image. */
int view_dz_tile_rect(int64_t w, int64_t h, int level, int64_t col, int64_t row, int64_t *x, int64_t *y, int *tw,
                      int *th);

#endif
