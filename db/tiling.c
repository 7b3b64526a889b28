/* db/tiling.c — the tiler's side of the dataset: slide rows and their status transitions,
 * batched patch + image inserts, tile errors. Status moves pending -> tiling -> done|failed,
 * each step in its own transaction; patches and their images always commit together. */
#include "db/labels.h"
#include "db/sql.h"
#include "db/tiling.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"

/* ---- the tiling lock ---- */

int db_tile_lock_path(const char *db_path, char *out, size_t cap)
{
    char cur[PATH_MAX], link[PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", db_path) >= (int)sizeof cur) return mp_err_set("%s: path too long", db_path);
    /* A dataset not created yet may still be a symlink (dangling): follow it by hand, then
     * resolve the directory it lands in. */
    for (int hops = 0;; hops++) {
        char *r = realpath(cur, NULL);
        if (r) {
            int n = snprintf(out, cap, "%s.tile-lock", r);
            free(r);
            return n < (int)cap ? 0 : mp_err_set("%s: path too long", db_path);
        }
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) break; /* not a symlink: the file does not exist (yet) */
        if (hops >= 40) return mp_err_set("%s: %s", db_path, strerror(ELOOP));
        link[n] = 0;
        if (link[0] == '/') snprintf(cur, sizeof cur, "%s", link);
        else {
            char *slash = strrchr(cur, '/');
            char dir[PATH_MAX];
            snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - cur) : 1, slash ? cur : ".");
            if (snprintf(cur, sizeof cur, "%s/%s", dir, link) >= (int)sizeof cur)
                return mp_err_set("%s: path too long", db_path);
        }
    }
    const char *slash = strrchr(cur, '/');
    char dir[PATH_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == cur) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - cur), cur);
    const char *base = slash ? slash + 1 : cur;
    char *rd = realpath(dir, NULL);
    if (!rd) return mp_err_set("%s: %s", dir, strerror(errno));
    int n = snprintf(out, cap, "%s%s%s.tile-lock", rd, strcmp(rd, "/") ? "/" : "", base);
    free(rd);
    return n < (int)cap ? 0 : mp_err_set("%s: path too long", db_path);
}

/* The dataset file's own lock: an open-file-description (OFD) lock on one byte SQLite never
 * locks (its lock bytes start at 1 GiB), so every link to the file, hard links included, meets
 * the same lock, and SQLite's own locks are untouched.
 *
 * The descriptors stay open until the process exits. Closing any descriptor of a file drops
 * every POSIX lock this process holds on it, SQLite's included (a WAL reader's shared lock on
 * the dataset, say), so a descriptor opened beside a connection must never be closed. One per
 * dataset file, reused by later locks and probes. */
#define TILE_LOCK_BYTE (0x40000000 - 4096)

typedef struct {
    dev_t dev;
    ino_t ino;
    int fd;
    int holder; /* the path-lock fd of the db_tile_lock that holds it here, or -1 */
} ds_file;

static pthread_mutex_t g_ds_mu = PTHREAD_MUTEX_INITIALIZER;
static ds_file *g_ds;
static int g_nds, g_cds;

/* The kept descriptor of the file at path (0 with *out set; 1 when there is no such file; -1 +
 * mp_err). Call with g_ds_mu held. */
static int ds_get(const char *db_path, ds_file **out)
{
    struct stat st;
    if (stat(db_path, &st)) return errno == ENOENT ? 1 : mp_err_set("%s: %s", db_path, strerror(errno));
    for (int i = 0; i < g_nds; i++)
        if (g_ds[i].dev == st.st_dev && g_ds[i].ino == st.st_ino) {
            *out = &g_ds[i];
            return 0;
        }
    if (!S_ISREG(st.st_mode)) return mp_err_set("%s: is not a regular file", db_path);
    int fd = open(db_path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) fd = open(db_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return errno == ENOENT ? 1 : mp_err_set("%s: %s", db_path, strerror(errno));
    struct stat fs;
    if (fstat(fd, &fs) || !S_ISREG(fs.st_mode)) {
        close(fd); /* not a file SQLite can have open: closing it drops nothing */
        return mp_err_set("%s: is not a regular file", db_path);
    }
    if (g_nds == g_cds) g_ds = mp_xrealloc(g_ds, sizeof *g_ds * (size_t)(g_cds = g_cds ? 2 * g_cds : 4));
    g_ds[g_nds] = (ds_file){fs.st_dev, fs.st_ino, fd, -1};
    *out = &g_ds[g_nds++];
    return 0;
}

/* F_OFD_SETLK (type F_WRLCK or F_UNLCK) or F_OFD_GETLK on the lock byte. */
static int ds_lock(int fd, int cmd, short type, short *found)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = TILE_LOCK_BYTE, .l_len = 1};
    int r = fcntl(fd, cmd, &fl);
    if (found) *found = fl.l_type;
    return r;
}

static int path_locked(const char *db_path, const char *lp)
{
    return mp_err_set("%s: another magpie tile is writing to this dataset (%s is locked); wait for it, or give each "
                      "process its own dataset",
                      db_path, lp);
}

int db_tile_lock_new(const char *db_path, double wait_s, int create)
{
    char lp[PATH_MAX + 16];
    if (db_tile_lock_path(db_path, lp, sizeof lp)) return -1;
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return mp_err_set("%s: cannot create the lock file %s: %s", db_path, lp, strerror(errno));
    /* a short wait covers `db check` peeking at the lock, and a tiler just finishing */
    double waited = 0;
    for (;; waited += 0.05) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
        int e = errno;
        if (e == EINTR) continue;
        if (e != EWOULDBLOCK) {
            close(fd);
            return mp_err_set("%s: cannot lock %s: %s", db_path, lp, strerror(e));
        }
        if (waited >= wait_s) {
            close(fd);
            return path_locked(db_path, lp);
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    /* The name is ours now: make the file if it is new (an empty file is a new dataset to
     * SQLite and to db_open), so that the dataset itself can be locked from the start. */
    if (create && !mp_file_exists(db_path)) {
        int nf = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (nf < 0) {
            int e = errno;
            close(fd);
            return mp_err_set("%s: cannot create the dataset: %s", db_path, strerror(e));
        }
        close(nf); /* nothing of SQLite's is open on a file made just now */
    }
    pthread_mutex_lock(&g_ds_mu);
    for (int tries = 0;; tries++) {
        ds_file *d;
        int r = ds_get(db_path, &d);
        if (r < 0) break;
        if (r == 1) { /* removed meanwhile: nothing to share a lock with */
            pthread_mutex_unlock(&g_ds_mu);
            return fd;
        }
        if (d->holder >= 0) {
            mp_err_set("%s: this process already holds the dataset's lock (through another name)", db_path);
            break;
        }
        if (ds_lock(d->fd, F_OFD_SETLK, F_WRLCK, NULL) == 0) {
            /* the name may have been pointed at another file while we waited (a rename over it) */
            struct stat st;
            if (stat(db_path, &st) == 0 && (st.st_dev != d->dev || st.st_ino != d->ino) && tries < 10) {
                ds_lock(d->fd, F_OFD_SETLK, F_UNLCK, NULL);
                continue;
            }
            d->holder = fd;
            pthread_mutex_unlock(&g_ds_mu);
            return fd;
        }
        int e = errno;
        if (e == EINTR) continue;
        if (e != EAGAIN && e != EACCES) {
            mp_err_set("%s: cannot lock the dataset file: %s", db_path, strerror(e));
            break;
        }
        if (waited >= wait_s) {
            mp_err_set("%s: another magpie tile is writing to this dataset (the dataset file is locked, through "
                       "another name or a hard link); wait for it, or give each process its own dataset",
                       db_path);
            break;
        }
        pthread_mutex_unlock(&g_ds_mu);
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
        waited += 0.05;
        pthread_mutex_lock(&g_ds_mu);
    }
    pthread_mutex_unlock(&g_ds_mu);
    close(fd);
    return -1;
}

int db_tile_lock(const char *db_path, double wait_s) { return db_tile_lock_new(db_path, wait_s, 1); }

void db_tile_unlock(int lock)
{
    if (lock < 0) return;
    pthread_mutex_lock(&g_ds_mu);
    for (int i = 0; i < g_nds; i++)
        if (g_ds[i].holder == lock) {
            ds_lock(g_ds[i].fd, F_OFD_SETLK, F_UNLCK, NULL);
            g_ds[i].holder = -1;
        }
    pthread_mutex_unlock(&g_ds_mu);
    close(lock);
}

int db_tile_lock_held(const char *db_path)
{
    char lp[PATH_MAX + 16];
    if (db_tile_lock_path(db_path, lp, sizeof lp)) return -1;
    int fd = open(lp, O_RDONLY | O_CLOEXEC);
    int held = 0;
    if (fd < 0) {
        if (errno != ENOENT) return mp_err_set("%s: cannot open %s: %s", db_path, lp, strerror(errno));
    } else {
        /* a shared lock is refused only while a tiler holds the exclusive one */
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) flock(fd, LOCK_UN);
        else if (errno == EWOULDBLOCK) held = 1;
        else held = mp_err_set("%s: cannot test the lock %s: %s", db_path, lp, strerror(errno));
        close(fd);
    }
    if (held) return held;
    /* the dataset file's own lock: a tiler that came through another name */
    pthread_mutex_lock(&g_ds_mu);
    ds_file *d;
    int r = ds_get(db_path, &d);
    if (r == 0) {
        short found = F_UNLCK;
        if (d->holder >= 0) held = 1;
        else if (ds_lock(d->fd, F_OFD_GETLK, F_WRLCK, &found)) held = mp_err_set("%s: cannot test the dataset's lock: %s", db_path, strerror(errno));
        else held = found != F_UNLCK;
    } else if (r < 0) {
        held = -1;
    }
    pthread_mutex_unlock(&g_ds_mu);
    return held;
}

/* Roll back and keep the message that caused it. */
static int abort_tx(mp_db *db)
{
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", mp_err());
    db_exec(db, "ROLLBACK");
    return mp_err_set("%s", keep);
}

static int step_done(mp_db *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int r = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : db_fail(db, what);
    sqlite3_reset(st);
    return r;
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

int db_tiling_find(mp_db *db, const char *path, db_slide_state *out)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT id, fingerprint, params_hash, status FROM slides WHERE path = ?");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), r = 0;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(st, 0);
        copy_col(out->fingerprint, sizeof out->fingerprint, st, 1);
        copy_col(out->params_hash, sizeof out->params_hash, st, 2);
        copy_col(out->status, sizeof out->status, st, 3);
        r = 1;
    } else if (rc != SQLITE_DONE) {
        r = db_fail(db, "slide lookup");
    }
    sqlite3_finalize(st);
    return r;
}

static int exec_id(mp_db *db, const char *sql, int64_t id)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int r = step_done(db, st, "tiling");
    sqlite3_finalize(st);
    return r;
}

int db_tiling_prepare(mp_db *db, const char *path, const char *name, const char *fingerprint,
                      const char *params_json, const char *params_hash, int64_t *id)
{
    if (db_begin(db)) return -1;
    db_slide_state s;
    int found = db_tiling_find(db, path, &s);
    if (found < 0) return abort_tx(db);
    if (!found) {
        sqlite3_stmt *st = db_prepare(db, "INSERT INTO slides(path, name, fingerprint, params, params_hash, status) "
                                          "VALUES (?, ?, ?, ?, ?, 'pending')");
        if (!st) return abort_tx(db);
        sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, fingerprint, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, params_json, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, params_hash, -1, SQLITE_TRANSIENT);
        int r = step_done(db, st, "insert slide");
        sqlite3_finalize(st);
        if (r) return abort_tx(db);
        *id = sqlite3_last_insert_rowid(db_sqlite(db));
    } else {
        *id = s.id;
        if (strcmp(s.fingerprint, fingerprint) || strcmp(s.params_hash, params_hash)) {
            /* Stale output: the file or the settings changed. Images go by ON DELETE CASCADE. */
            if (exec_id(db, "DELETE FROM patches WHERE slide_id = ?", s.id) ||
                exec_id(db, "DELETE FROM tile_errors WHERE slide_id = ?", s.id))
                return abort_tx(db);
            sqlite3_stmt *st = db_prepare(db, "UPDATE slides SET fingerprint = ?, params = ?, params_hash = ?, "
                                              "status = 'pending', error = NULL, n_patches = 0, n_bad_tiles = 0, "
                                              "started_at = NULL, finished_at = NULL WHERE id = ?");
            if (!st) return abort_tx(db);
            sqlite3_bind_text(st, 1, fingerprint, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, params_json, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 3, params_hash, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 4, s.id);
            int r = step_done(db, st, "reset slide");
            sqlite3_finalize(st);
            if (r) return abort_tx(db);
        }
    }
    if (db_commit(db)) return abort_tx(db);
    return 0;
}

int db_tiling_start(mp_db *db, int64_t id, const db_slide_meta *m)
{
    sqlite3_stmt *st = db_prepare(db,
        "UPDATE slides SET vendor = ?, width = ?, height = ?, level_count = ?, mpp_x = ?, mpp_y = ?, "
        "mpp_source = ?, mask = ?, mask_width = ?, mask_height = ?, mask_downsample = ?, status = 'tiling', "
        "error = NULL, started_at = coalesce(started_at, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), kind = ?13 "
        "WHERE id = ?12");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, m->vendor ? m->vendor : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, m->width);
    sqlite3_bind_int64(st, 3, m->height);
    sqlite3_bind_int(st, 4, m->level_count);
    sqlite3_bind_double(st, 5, m->mpp_x);
    sqlite3_bind_double(st, 6, m->mpp_y);
    sqlite3_bind_text(st, 7, m->mpp_source, -1, SQLITE_TRANSIENT);
    if (m->mask_png) sqlite3_bind_blob(st, 8, m->mask_png, (int)m->mask_len, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 8);
    sqlite3_bind_int(st, 9, m->mask_width);
    sqlite3_bind_int(st, 10, m->mask_height);
    sqlite3_bind_double(st, 11, m->mask_downsample);
    sqlite3_bind_int64(st, 12, id);
    if (m->kind) sqlite3_bind_text(st, 13, m->kind, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 13);
    int r = step_done(db, st, "start slide");
    sqlite3_finalize(st);
    return r;
}

int db_tiling_set_kind(mp_db *db, int64_t id, const char *kind)
{
    sqlite3_stmt *st = db_prepare(db, "UPDATE slides SET kind = ? WHERE id = ?");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, id);
    int r = step_done(db, st, "slide kind");
    sqlite3_finalize(st);
    return r;
}

int db_tiling_fail(mp_db *db, int64_t id, const char *error)
{
    sqlite3_stmt *st = db_prepare(db, "UPDATE slides SET status = 'failed', error = ?, "
                                      "finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, id);
    int r = step_done(db, st, "fail slide");
    sqlite3_finalize(st);
    return r;
}

int db_tiling_finish(mp_db *db, int64_t id)
{
    /* The slide's stored region annotations go onto the patches it has now, in the transaction
     * that marks it done: a re-tiled slide (other --mags, size, stride) keeps its labels. */
    if (db_begin(db)) return -1;
    if (db_labels_apply(db, id) ||
        exec_id(db,
                "UPDATE slides SET status = 'done', error = NULL, "
                "n_patches = (SELECT count(*) FROM patches WHERE slide_id = slides.id), "
                "n_bad_tiles = (SELECT count(*) FROM tile_errors WHERE slide_id = slides.id), "
                "finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?", id) ||
        db_commit(db))
        return abort_tx(db);
    return 0;
}

int db_tiling_counts(mp_db *db, int64_t id, int stored, int64_t *patches, int64_t *errors)
{
    sqlite3_stmt *q = db_prepare(db, stored ? "SELECT n_patches, n_bad_tiles FROM slides WHERE id = ?1"
                                            : "SELECT (SELECT count(*) FROM patches WHERE slide_id = ?1), "
                                              "(SELECT count(*) FROM tile_errors WHERE slide_id = ?1)");
    if (!q) return -1;
    sqlite3_bind_int64(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *patches = sqlite3_column_int64(q, 0);
        *errors = sqlite3_column_int64(q, 1);
    }
    int r = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(db, "slide counts");
    sqlite3_finalize(q);
    return r;
}

int db_tiling_done_cells(mp_db *db, int64_t id, void (*fn)(int, int, void *), void *arg)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT gx, gy FROM patches WHERE slide_id = ?1 "
                                      "UNION ALL SELECT gx, gy FROM tile_errors WHERE slide_id = ?1");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) fn(sqlite3_column_int(st, 0), sqlite3_column_int(st, 1), arg);
    int r = rc == SQLITE_DONE ? 0 : db_fail(db, "done cells");
    sqlite3_finalize(st);
    return r;
}

struct db_tile_writer {
    mp_db *db;
    int64_t slide_id;
    sqlite3_stmt *patch, *image, *err, *count;
    void (*hook)(void *);
    void *hook_arg;
};

void db_tile_writer_set_hook(db_tile_writer *w, void (*fn)(void *), void *arg)
{
    w->hook = fn;
    w->hook_arg = arg;
}

db_tile_writer *db_tile_writer_new(mp_db *db, int64_t slide_id)
{
    db_tile_writer *w = mp_xcalloc(1, sizeof *w);
    w->db = db;
    w->slide_id = slide_id;
    w->patch = db_prepare(db, "INSERT INTO patches(slide_id, gx, gy, x0, y0, size0, tissue, blur, pen, brightness) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    w->image = w->patch ? db_prepare(db, "INSERT INTO images(patch_id, mag, width, height, level, scale, codec, data) "
                                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)") : NULL;
    w->err = w->image ? db_prepare(db, "INSERT INTO tile_errors(slide_id, gx, gy, message) VALUES (?, ?, ?, ?)") : NULL;
    /* The running count lets a reader (db info, progress) see how far a slide got. */
    w->count = w->err ? db_prepare(db, "UPDATE slides SET n_patches = n_patches + ?, n_bad_tiles = n_bad_tiles + ? "
                                       "WHERE id = ?") : NULL;
    if (!w->count) {
        db_tile_writer_free(w);
        return NULL;
    }
    return w;
}

void db_tile_writer_free(db_tile_writer *w)
{
    if (!w) return;
    sqlite3_finalize(w->patch);
    sqlite3_finalize(w->image);
    sqlite3_finalize(w->err);
    sqlite3_finalize(w->count);
    free(w);
}

int db_tile_writer_batch(db_tile_writer *w, const db_patch_rec *recs, int n)
{
    mp_db *db = w->db;
    if (db_begin(db)) return -1;
    int np = 0, ne = 0;
    for (int i = 0; i < n; i++) {
        const db_patch_rec *p = &recs[i];
        if (p->error) {
            sqlite3_bind_int64(w->err, 1, w->slide_id);
            sqlite3_bind_int(w->err, 2, p->gx);
            sqlite3_bind_int(w->err, 3, p->gy);
            sqlite3_bind_text(w->err, 4, p->error, -1, SQLITE_STATIC);
            if (step_done(db, w->err, "insert tile error")) return abort_tx(db);
            ne++;
            continue;
        }
        sqlite3_stmt *s = w->patch;
        sqlite3_bind_int64(s, 1, w->slide_id);
        sqlite3_bind_int(s, 2, p->gx);
        sqlite3_bind_int(s, 3, p->gy);
        sqlite3_bind_int64(s, 4, p->x0);
        sqlite3_bind_int64(s, 5, p->y0);
        sqlite3_bind_double(s, 6, p->size0);
        sqlite3_bind_double(s, 7, p->tissue);
        sqlite3_bind_double(s, 8, p->blur);
        sqlite3_bind_double(s, 9, p->pen);
        sqlite3_bind_double(s, 10, p->brightness);
        if (step_done(db, s, "insert patch")) return abort_tx(db);
        int64_t pid = sqlite3_last_insert_rowid(db_sqlite(db));
        for (int k = 0; k < p->n_images; k++) {
            const db_image_rec *im = &p->images[k];
            sqlite3_stmt *t = w->image;
            sqlite3_bind_int64(t, 1, pid);
            sqlite3_bind_double(t, 2, im->mag);
            sqlite3_bind_int(t, 3, im->width);
            sqlite3_bind_int(t, 4, im->height);
            sqlite3_bind_int(t, 5, im->level);
            sqlite3_bind_double(t, 6, im->scale);
            sqlite3_bind_text(t, 7, im->codec, -1, SQLITE_STATIC);
            sqlite3_bind_blob(t, 8, im->data, (int)im->len, SQLITE_STATIC);
            if (step_done(db, t, "insert image")) return abort_tx(db);
        }
        np++;
    }
    sqlite3_bind_int(w->count, 1, np);
    sqlite3_bind_int(w->count, 2, ne);
    sqlite3_bind_int64(w->count, 3, w->slide_id);
    if (step_done(db, w->count, "count patches")) return abort_tx(db);
    if (w->hook) w->hook(w->hook_arg);
    if (db_commit(db)) return abort_tx(db);
    return 0;
}
