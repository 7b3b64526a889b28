/* view/server.c — the HTTP side of `magpie view`: libmicrohttpd with a thread pool, the routes,
 * and the limits. Every route names a catalog entry by number; nothing in a URL is ever used as
 * a file path. */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/colormap.h"
#include "common/error.h"
#include "common/util.h"
#include "db/db.h"
#include "db/query.h"
#include "db/slides.h"
#include "view/assets.h"
#include "view/internal.h"

#define MAX_URL 1024
#define MAX_QUERY_ROWS 500
#define MAX_QUERY_OFFSET 1000000
#define MAX_PATCH_ROWS 200000

void view_opts_default(view_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bind = "127.0.0.1";
    o->port = 8642;
    o->threads = 4;
    o->max_conns = 64;
    o->per_ip = 32;
    o->timeout_s = 30;
    o->cache_bytes = (size_t)256 << 20;
    o->quality = 85;
}

/* ---- responses ---- */

/* the page loads nothing from elsewhere; OpenSeadragon sets inline styles */
static const char page_csp[] = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'";

/* A run's report.html and its files. The report is written from run files (slide names, manifest
 * fields, error text): report.c escapes them, but were anything to slip through, it must not run
 * with this server's origin, where a script could fetch every slide and dataset. `sandbox`
 * without allow-same-origin gives the document an opaque origin of its own, so it can read no
 * response of this server, and forbids forms, popups and navigating the viewer's tab.
 * allow-scripts is the one exception, for the report's own inline sort script (a bare `sandbox`
 * would stop the column sort and #sort=K); with default-src 'none' it can load nothing and
 * send nothing anywhere (no connect-src), only inline script and style and its embedded images. */
static const char report_csp[] = "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
                                 "style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
                                 "form-action 'none'; frame-ancestors 'none'";

static void add_headers(struct MHD_Response *r, const char *mime, int cache, const char *csp)
{
    MHD_add_response_header(r, "Content-Type", mime);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cache-Control", cache ? "private, max-age=3600" : "no-store");
    MHD_add_response_header(r, "Content-Security-Policy", csp);
}

static enum MHD_Result send_bytes(struct MHD_Connection *c, int status, const void *data, size_t len,
                                  const char *mime, int cache)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    add_headers(r, mime, cache, page_csp);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *msg)
{
    char buf[700];
    int n = snprintf(buf, sizeof buf, "%s\n", msg);
    if (n >= (int)sizeof buf) n = sizeof buf - 1;
    return send_bytes(c, status, buf, (size_t)n, "text/plain; charset=utf-8", 0);
}

static enum MHD_Result send_json(struct MHD_Connection *c, json_t *j, int cache)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return send_text(c, 500, "out of memory");
    size_t n = strlen(s);
    enum MHD_Result r = n > VIEW_MAX_RESPONSE ? send_text(c, 413, "response too large")
                                              : send_bytes(c, 200, s, n, "application/json", cache);
    free(s);
    return r;
}

/* ---- strict URL parsing: digits only, nothing left over ---- */

static int num(const char **p, int64_t *out, int64_t max)
{
    const char *s = *p;
    if (*s < '0' || *s > '9') return 0;
    int64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        if (v > max) return 0;
    }
    *out = v;
    *p = s;
    return 1;
}

static int lit(const char **p, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(*p, w, n)) return 0;
    *p += n;
    return 1;
}

/* "L/C_R.ext" with ext one of exts ("jpeg", "png"): the extension's index, -1 if no match */
static int tile_path(const char *p, int64_t *L, int64_t *col, int64_t *row)
{
    if (!num(&p, L, 62) || !lit(&p, "/") || !num(&p, col, 1 << 30) || !lit(&p, "_") || !num(&p, row, 1 << 30))
        return -1;
    if (!strcmp(p, ".jpeg") || !strcmp(p, ".jpg")) return 0;
    if (!strcmp(p, ".png")) return 1;
    return -1;
}

/* ---- routes ---- */

static json_t *catalog_json(view_server *v)
{
    json_t *root = json_object(), *sl = json_array(), *ds = json_array();
    for (int i = 0; i < v->nslides; i++) {
        view_slide *s = v->slides[i];
        json_t *o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:i}", "id", s->id, "name", s->name, "from", s->from,
                              "width", (json_int_t)s->ts.width, "height", (json_int_t)s->ts.height, "levels",
                              s->ts.levels);
        json_object_set_new(o, "mpp", s->mpp > 0 ? json_real(s->mpp) : json_null());
        json_object_set_new(o, "heatmap", json_boolean(s->pred_json != NULL));
        json_object_set_new(o, "dataset", json_boolean(s->db_path != NULL));
        json_array_append_new(sl, o);
    }
    for (int i = 0; i < v->ndatasets; i++)
        json_array_append_new(ds, json_pack("{s:i, s:s}", "id", v->datasets[i]->id, "name", v->datasets[i]->name));
    json_t *rp = json_array();
    for (int i = 0; i < v->nreports; i++) {
        char url[64];
        snprintf(url, sizeof url, "/r/%d/report.html", v->reports[i]->id);
        json_array_append_new(rp, json_pack("{s:i, s:s, s:s}", "id", v->reports[i]->id, "name", v->reports[i]->name,
                                            "url", url));
    }
    json_object_set_new(root, "slides", sl);
    json_object_set_new(root, "datasets", ds);
    json_object_set_new(root, "reports", rp);
    json_object_set_new(root, "openseadragon", json_boolean(VIEW_HAVE_OSD));
    return root;
}

static char *dzi_xml(int64_t w, int64_t h, const char *fmt)
{
    char *x = mp_xmalloc(512);
    snprintf(x, 512,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" Format=\"%s\" Overlap=\"%d\" "
             "TileSize=\"%d\">\n  <Size Width=\"%lld\" Height=\"%lld\"/>\n</Image>\n",
             fmt, VIEW_OVERLAP, VIEW_TILE, (long long)w, (long long)h);
    return x;
}

/* a tile; one drawn from the thumbnail says so, for tests and for anyone who wonders why it is soft */
static enum MHD_Result send_tile_bytes(struct MHD_Connection *c, const view_bytes *b)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    add_headers(r, b->mime, 1, page_csp);
    if (b->from_thumb) MHD_add_response_header(r, "X-Magpie-Tile", "thumbnail");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_tile(view_server *v, struct MHD_Connection *c, view_slide *s, int heat, int klass,
                                 int64_t L, int64_t col, int64_t row, int png)
{
    char key[128];
    snprintf(key, sizeof key, "%d/%c%d/%lld/%lld_%lld.%s", s->id, heat ? 'h' : 's', klass, (long long)L,
             (long long)col, (long long)row, png ? "png" : "jpeg");
    view_bytes b = {0};
    if (view_cache_get(v->cache, key, &b)) {
        enum MHD_Result r = send_tile_bytes(c, &b);
        free(b.data);
        return r;
    }
    int status = 500;
    char err[600] = "";
    int rc = heat ? view_heat_tile(v, s, klass, (int)L, col, row, &b, &status, err, sizeof err)
                  : view_slide_tile(v, s, (int)L, col, row, png, &b, &status, err, sizeof err);
    if (rc) return send_text(c, status, err);
    view_cache_put(v->cache, key, &b);
    enum MHD_Result r = send_tile_bytes(c, &b);
    free(b.data);
    return r;
}

static enum MHD_Result route_grid(struct MHD_Connection *c, view_slide *s)
{
    if (view_heat_load(s)) return send_text(c, 404, s->heat_err);
    const view_heat *h = &s->heat;
    if ((int64_t)h->nx * h->ny * h->K > (1 << 22)) return send_text(c, 413, "grid too large to send");
    json_t *cls = json_array(), *p = json_array();
    for (int k = 0; k < h->K; k++) json_array_append_new(cls, json_string(h->classes[k]));
    /* per cell: K probabilities x 1000 as integers, or null when not evaluated (compact) */
    for (size_t i = 0; i < (size_t)h->nx * h->ny; i++) {
        if (!h->valid[i]) {
            json_array_append_new(p, json_null());
            continue;
        }
        json_t *a = json_array();
        for (int k = 0; k < h->K; k++) json_array_append_new(a, json_integer(lrintf(h->prob[i * h->K + k] * 1000)));
        json_array_append_new(p, a);
    }
    json_t *j = json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:o, s:i, s:s, s:o}", "nx", h->nx, "ny", h->ny, "cell0",
                          h->cell0, "patch0", h->patch0, "ox", h->ox, "oy", h->oy, "classes", cls, "klass", h->klass,
                          "cmap", mp_cmap_name(mp_cmap_for(h->K)), "p", p);
    return send_json(c, j, 1);
}

typedef struct {
    json_t *a;
    int n;
} patch_list;

static int add_patch(void *ctx, const db_patch_place *p)
{
    patch_list *l = ctx;
    if (l->n++ >= MAX_PATCH_ROWS) return 1; /* one past the cap: the list is truncated */
    json_array_append_new(l->a, json_pack("[I, I, I, f, f]", (json_int_t)p->id, (json_int_t)p->x0, (json_int_t)p->y0,
                                          p->size0, p->tissue));
    return 0;
}

static enum MHD_Result route_patches(struct MHD_Connection *c, view_slide *s)
{
    if (!s->db_path) return send_text(c, 404, "this slide is in no dataset");
    mp_db *db = db_open(s->db_path, DB_OPEN_READONLY);
    if (!db) return send_text(c, 500, mp_err());
    patch_list l = {json_array(), 0};
    if (db_slide_patches(db, s->db_slide_id, MAX_PATCH_ROWS + 1, add_patch, &l) < 0) {
        json_decref(l.a);
        db_close(db);
        return send_text(c, 500, mp_err());
    }
    json_t *a = l.a;
    int n = l.n;
    db_close(db);
    return send_json(c, json_pack("{s:o, s:b}", "patches", a, "truncated", n > MAX_PATCH_ROWS), 1);
}

static enum MHD_Result route_mask(view_server *v, struct MHD_Connection *c, view_slide *s, int png)
{
    if (view_mask_load(v, s)) return send_text(c, 404, s->mask_err);
    if (png) return send_bytes(c, 200, s->mask_png.data, s->mask_png.len, "image/png", 1);
    return send_json(c, json_pack("{s:i, s:i, s:f}", "width", s->mask_w, "height", s->mask_h, "downsample", s->mask_ds),
                     1);
}

static enum MHD_Result route_query(view_server *v, struct MHD_Connection *c, view_dataset *d)
{
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
    const char *so = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset");
    const char *sl = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    int64_t off = 0, lim = 100;
    if (so && (!num(&so, &off, MAX_QUERY_OFFSET) || *so)) return send_text(c, 400, "offset: a number up to 1000000");
    if (sl && (!num(&sl, &lim, MAX_QUERY_ROWS) || *sl)) return send_text(c, 400, "limit: a number up to 500");
    db_query *dq = db_query_parse(q);
    if (!dq) return send_text(c, 400, mp_err());
    mp_db *db = db_open(d->path, DB_OPEN_READONLY);
    if (!db) {
        db_query_free(dq);
        return send_text(c, 500, mp_err());
    }
    if (db_query_check(db, dq)) {
        db_query_free(dq);
        db_close(db);
        return send_text(c, 400, mp_err());
    }
    enum MHD_Result r;
    int64_t count = db_query_count(db, dq, 0);
    db_query_rows *qr = count >= 0 ? db_query_run(db, dq, 0, off + lim) : NULL;
    if (!qr) {
        r = send_text(c, 500, mp_err());
    } else {
        json_t *rows = json_array();
        int64_t k = 0;
        db_patch_row row;
        while (db_query_next(qr, &row) == 1) {
            if (k++ < off) continue;
            json_t *o = db_patch_row_json(&row, DB_ROW_JSON_MAGS_TEXT | DB_ROW_JSON_PREDICTION | DB_ROW_JSON_SLIDE_ID);
            /* the slide in the viewer, when the catalog holds it */
            int64_t sid = row.slide_id;
            for (int i = 0; i < v->nslides; i++)
                if (v->slides[i]->db_path && !strcmp(v->slides[i]->db_path, d->path) && v->slides[i]->db_slide_id == sid)
                    json_object_set_new(o, "view_slide", json_integer(v->slides[i]->id));
            json_array_append_new(rows, o);
        }
        db_query_rows_free(qr);
        char mags[256];
        db_query_mags(db, mags, sizeof mags);
        r = send_json(c, json_pack("{s:I, s:I, s:o, s:s}", "count", (json_int_t)count, "offset", (json_int_t)off,
                                   "rows", rows, "mags", mags), 0);
    }
    db_query_free(dq);
    db_close(db);
    return r;
}

static enum MHD_Result route_image(struct MHD_Connection *c, view_dataset *d, int64_t pid)
{
    const char *sm = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "mag");
    double mag = 0;
    if (sm && (mp_parse_double(sm, &mag) || !(mag > 0))) return send_text(c, 400, "mag: a positive number");
    mp_db *db = db_open(d->path, DB_OPEN_READONLY);
    if (!db) return send_text(c, 500, mp_err());
    /* the asked magnification, else the finest stored */
    char codec[16];
    void *data;
    size_t n;
    int found = db_patch_image(db, pid, mag, codec, sizeof codec, &data, &n);
    enum MHD_Result r;
    if (found < 0) r = send_text(c, 500, mp_err());
    else if (!found) r = send_text(c, 404, "no such patch image");
    else if (n > VIEW_MAX_RESPONSE) r = send_text(c, 413, "patch image too large to send");
    else r = send_bytes(c, 200, data, n, !strcmp(codec, "png") ? "image/png" : "image/jpeg", 1);
    free(data);
    db_close(db);
    return r;
}

/* What a report may reference: images, and report.html itself. The run folder also holds the
 * dataset, heatmap TIFFs and manifests; those are not the report's to hand out. */
static const char *report_mime(const char *rel)
{
    static const char *types[][2] = {{".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
                                     {".jpeg", "image/jpeg"}};
    if (!strcmp(rel, "report.html")) return "text/html; charset=utf-8";
    const char *dot = strrchr(rel, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (!strcasecmp(dot, types[i][0])) return types[i][1];
    return NULL;
}

/* /r/ID/REL: REL is up to 4 names of [A-Za-z0-9._+-], none starting with '.' (so no "..", no
 * hidden file), of an allowed type; its real path (symlinks resolved) must lie inside the
 * folder, and the file is opened without following a last symlink, so nothing swapped in after
 * the check is read either. */
static enum MHD_Result route_report(struct MHD_Connection *c, const view_report *rp, const char *rel)
{
    int depth = 0;
    for (const char *q = rel; *q; q++) {
        if (q == rel || q[-1] == '/') {
            if (*q == '.' || *q == '/' || ++depth > 4) return send_text(c, 404, "not found");
        }
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              strchr("._+-/", *q)))
            return send_text(c, 404, "not found");
    }
    const char *mime = report_mime(rel);
    if (!depth || rel[strlen(rel) - 1] == '/' || !mime) return send_text(c, 404, "not found");
    char path[PATH_MAX], real[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", rp->dir, rel) >= (int)sizeof path || !realpath(path, real) ||
        !view_inside(rp->dir, real))
        return send_text(c, 404, "not found");
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return send_text(c, 404, "not found");
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return send_text(c, 404, "not found");
    }
    if ((uint64_t)st.st_size > VIEW_MAX_RESPONSE) {
        close(fd);
        return send_text(c, 413, "file too large to send");
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* MHD closes fd */
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    add_headers(r, mime, 0, report_csp);
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result route(view_server *v, struct MHD_Connection *c, const char *url)
{
    for (const view_asset *a = view_assets; a->url; a++)
        if (!strcmp(url, a->url)) return send_bytes(c, 200, a->data, a->len, a->mime, 0);
    if (!strcmp(url, "/")) {
        for (const view_asset *a = view_assets; a->url; a++)
            if (!strcmp(a->url, "/index.html")) return send_bytes(c, 200, a->data, a->len, a->mime, 0);
    }
    if (!strcmp(url, "/api/catalog")) return send_json(c, catalog_json(v), 0);
    const char *p = url;
    if (lit(&p, "/api/colormap/")) {
        mp_cmap cm;
        if (!strcmp(p, "viridis")) cm = MP_CMAP_VIRIDIS;
        else if (!strcmp(p, "coolwarm")) cm = MP_CMAP_COOLWARM;
        else return send_text(c, 404, "no such colour map");
        json_t *a = json_array();
        for (int i = 0; i < 256; i++) {
            uint8_t rgb[3];
            mp_colormap(cm, i / 255.0f, rgb);
            json_array_append_new(a, json_pack("[i,i,i]", rgb[0], rgb[1], rgb[2]));
        }
        return send_json(c, a, 1);
    }
    int64_t id, L, col, row, k;
    if (lit(&p, "/s/") && num(&p, &id, 1 << 30) && id < v->nslides && lit(&p, "/")) {
        view_slide *s = v->slides[id];
        int fmt;
        if (!strcmp(p, "slide.dzi")) {
            char *x = dzi_xml(s->ts.width, s->ts.height, "jpeg");
            enum MHD_Result r = send_bytes(c, 200, x, strlen(x), "application/xml", 1);
            free(x);
            return r;
        }
        if (lit(&p, "slide_files/") && (fmt = tile_path(p, &L, &col, &row)) >= 0)
            return send_tile(v, c, s, 0, 0, L, col, row, fmt);
        if (!strcmp(p, "grid.json")) return route_grid(c, s);
        if (!strcmp(p, "patches.json")) return route_patches(c, s);
        if (!strcmp(p, "mask.png")) return route_mask(v, c, s, 1);
        if (!strcmp(p, "mask.json")) return route_mask(v, c, s, 0);
        if (lit(&p, "heat/") && num(&p, &k, 255)) {
            if (!strcmp(p, ".dzi")) {
                if (view_heat_load(s)) return send_text(c, 404, s->heat_err);
                if (k >= s->heat.K) return send_text(c, 404, "no such class");
                char *x = dzi_xml(s->ts.width, s->ts.height, "png");
                enum MHD_Result r = send_bytes(c, 200, x, strlen(x), "application/xml", 1);
                free(x);
                return r;
            }
            if (lit(&p, "_files/") && tile_path(p, &L, &col, &row) == 1)
                return send_tile(v, c, s, 1, (int)k, L, col, row, 1);
        }
        return send_text(c, 404, "not found");
    }
    p = url;
    if (lit(&p, "/r/") && num(&p, &id, 1 << 30) && id < v->nreports && lit(&p, "/"))
        return route_report(c, v->reports[id], p);
    p = url;
    if (lit(&p, "/d/") && num(&p, &id, 1 << 30) && id < v->ndatasets && lit(&p, "/")) {
        view_dataset *d = v->datasets[id];
        if (!strcmp(p, "query")) return route_query(v, c, d);
        int64_t pid;
        if (lit(&p, "img/") && num(&p, &pid, INT64_MAX / 10) && !*p) return route_image(c, d, pid);
    }
    return send_text(c, 404, "not found");
}

/* DNS rebinding: a page from elsewhere whose name resolves to 127.0.0.1 would otherwise read
 * the slides through the user's browser. On loopback only loopback names are answered. */
static int host_ok(view_server *v, struct MHD_Connection *c)
{
    if (strcmp(v->o.bind, "127.0.0.1") && strcmp(v->o.bind, "::1") && strcmp(v->o.bind, "localhost")) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!h) return 1; /* HTTP/1.0 clients (curl --http1.0, benchmarks) send none */
    char name[300];
    snprintf(name, sizeof name, "%s", h);
    char *colon = name[0] == '[' ? strstr(name, "]:") : strrchr(name, ':');
    if (colon) colon[name[0] == '[' ? 1 : 0] = 0;
    return !strcasecmp(name, "127.0.0.1") || !strcasecmp(name, "localhost") || !strcmp(name, "[::1]");
}

/* MHD's unescaping, except that a %00 makes the whole URL empty (so 404) instead of cutting
 * it short: "/x.jpeg%00.png" must not be served as "/x.jpeg". */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    size_t n = MHD_http_unescape(s);
    if (strlen(s) != n) {
        s[0] = 0;
        return 0;
    }
    return n;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    view_server *v = cls;
    static int marker;
    if (!*con_cls) { /* first call: headers only; a body, if any, arrives next */
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_size) return MHD_NO; /* read-only: a body closes the connection unread */
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) return send_text(c, 405, "read-only: GET only");
    if (!host_ok(v, c)) return send_text(c, 403, "host not allowed");
    if (strlen(url) > MAX_URL) return send_text(c, 414, "URL too long");
    return route(v, c, url);
}

static int slide_cmp(const void *a, const void *b)
{
    const view_slide *x = *(view_slide *const *)a, *y = *(view_slide *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->path, y->path);
}

view_server *view_open(char *const *paths, int n, const view_opts *o)
{
    view_server *v = mp_xcalloc(1, sizeof *v);
    v->o = *o;
    v->max_read = VIEW_MAX_READ_SIDE;
    const char *mr = getenv("MAGPIE_VIEW_MAX_READ");
    if (mr && *mr) {
        long m;
        if (mp_parse_long(mr, &m) || m < 16 || m > VIEW_MAX_READ_SIDE) {
            mp_err_set("MAGPIE_VIEW_MAX_READ=%s: wants a whole number from 16 to %d", mr, VIEW_MAX_READ_SIDE);
            free(v);
            return NULL;
        }
        v->max_read = (int)m;
    }
    for (int i = 0; i < n; i++)
        if (view_catalog_add(v, paths[i])) {
            view_close(v);
            return NULL;
        }
    /* numbered by name, so a run's slides keep their numbers whatever order its workers took */
    qsort(v->slides, v->nslides, sizeof *v->slides, slide_cmp);
    for (int i = 0; i < v->nslides; i++) v->slides[i]->id = i;
    v->cache = view_cache_new(o->cache_bytes);
    return v;
}

void view_print_catalog(const view_server *v, FILE *f)
{
    for (int i = 0; i < v->nslides; i++) {
        const view_slide *s = v->slides[i];
        fprintf(f, "slide %d  %s  %lldx%lld%s%s  (%s)\n", s->id, s->name, (long long)s->ts.width,
                (long long)s->ts.height, s->pred_json ? ", heatmap" : "", s->db_path ? ", dataset" : "", s->path);
    }
    for (int i = 0; i < v->ndatasets; i++)
        fprintf(f, "dataset %d  %s  (%s)\n", v->datasets[i]->id, v->datasets[i]->name, v->datasets[i]->path);
    for (int i = 0; i < v->nreports; i++)
        fprintf(f, "report %d  %s  /r/%d/report.html  (%s/report.html)\n", v->reports[i]->id, v->reports[i]->name,
                v->reports[i]->id, v->reports[i]->dir);
}

int view_start(view_server *v)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    const char *b = !strcmp(v->o.bind, "localhost") ? "127.0.0.1" : v->o.bind;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    socklen_t sl;
    if (inet_pton(AF_INET, b, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)v->o.port);
        sl = sizeof *a;
    } else if (inet_pton(AF_INET6, b, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)v->o.port);
        sl = sizeof *a;
        flags |= MHD_USE_IPv6;
    } else return mp_err_set("--bind %s: not an IPv4 or IPv6 address", v->o.bind);
    (void)sl;
    v->mhd = MHD_start_daemon(flags, (uint16_t)v->o.port, NULL, NULL, handler, v, MHD_OPTION_SOCK_ADDR, &ss,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)v->o.threads, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)v->o.max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)v->o.per_ip,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)v->o.timeout_s,
                              MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                              /* per connection: the request line, headers and our buffers */
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32 * 1024, MHD_OPTION_END);
    if (!v->mhd) return mp_err_set("cannot listen on %s port %d (in use, or not an address of this machine)",
                                   v->o.bind, v->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(v->mhd, MHD_DAEMON_INFO_BIND_PORT);
    v->port = di ? di->port : v->o.port;
    return 0;
}

int view_port(const view_server *v) { return v->port; }

void view_close(view_server *v)
{
    if (!v) return;
    if (v->mhd) MHD_stop_daemon(v->mhd);
    view_cache_free(v->cache);
    view_catalog_free(v);
    free(v);
}
