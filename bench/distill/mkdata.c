/* bench/distill/mkdata.c — the distillation benchmark's dataset: single-class synthetic slides
 * rendered with magpie's synth generator at 1.0 µm/px (level 0 = 10x), cut into 224 px patches
 * whose 1.25x image is the 8×8 area average (28 px), both JPEG q90, written into a magpie DB
 * the way the tiler lays it out; plus labels.csv (slide, patient, label) for `db labels import`.
 * Usage: mkdata OUT.db LABELS.csv SLIDES GRID [SEED] [NUISANCE] [THREADS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "synth/synth.h"

enum { PX = 224, LO = 28 };

static synth_params P;
static int nslides, grid, next_slide;
static mp_db *db;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite3_stmt *ins_slide, *ins_patch, *ins_img;

static int slide_class(int i) { return (i / 2) % 3; } /* two slides per patient, one class each */

static void box8(const uint8_t *in, uint8_t *out)
{
    for (int y = 0; y < LO; y++)
        for (int x = 0; x < LO; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int j = 0; j < 8; j++)
                    for (int i = 0; i < 8; i++) s += in[3 * ((y * 8 + j) * PX + x * 8 + i) + c];
                out[3 * (y * LO + x) + c] = (uint8_t)((s + 32) / 64);
            }
}

static void *worker(void *arg)
{
    (void)arg;
    synth_scratch *sc = synth_scratch_new();
    tjhandle tj = tjInitCompress();
    uint8_t *hi = malloc(PX * PX * 3), lo[LO * LO * 3];
    int np = grid * grid;
    unsigned char **jh = calloc(np, sizeof *jh), **jl = calloc(np, sizeof *jl);
    unsigned long *lh = calloc(np, sizeof *lh), *ll = calloc(np, sizeof *ll);
    for (;;) {
        pthread_mutex_lock(&mu);
        int i = next_slide++;
        pthread_mutex_unlock(&mu);
        if (i >= nslides) break;
        synth_slide *s = synth_slide_new(&P, i, slide_class(i));
        for (int g = 0; g < np; g++) {
            synth_render(s, sc, (g % grid) * PX, (g / grid) * PX, PX, PX, hi, PX * 3);
            box8(hi, lo);
            jh[g] = jl[g] = NULL;
            lh[g] = ll[g] = 0;
            tjCompress2(tj, hi, PX, 0, PX, TJPF_RGB, &jh[g], &lh[g], TJSAMP_444, 90, 0);
            tjCompress2(tj, lo, LO, 0, LO, TJPF_RGB, &jl[g], &ll[g], TJSAMP_444, 90, 0);
        }
        synth_slide_free(s);
        pthread_mutex_lock(&mu);
        char name[64], path[96];
        snprintf(name, sizeof name, "slide_%04d", i);
        snprintf(path, sizeof path, "/synth/distill/%s.tiff", name);
        sqlite3_reset(ins_slide);
        sqlite3_bind_int(ins_slide, 1, i + 1);
        sqlite3_bind_text(ins_slide, 2, path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins_slide, 3, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(ins_slide, 4, grid * PX);
        sqlite3_bind_int(ins_slide, 5, np);
        sqlite3_step(ins_slide);
        for (int g = 0; g < np; g++) {
            int64_t pid = (int64_t)i * np + g + 1;
            sqlite3_reset(ins_patch);
            sqlite3_bind_int64(ins_patch, 1, pid);
            sqlite3_bind_int(ins_patch, 2, i + 1);
            sqlite3_bind_int(ins_patch, 3, g % grid);
            sqlite3_bind_int(ins_patch, 4, g / grid);
            sqlite3_bind_int(ins_patch, 5, (g % grid) * PX);
            sqlite3_bind_int(ins_patch, 6, (g / grid) * PX);
            sqlite3_step(ins_patch);
            for (int v = 0; v < 2; v++) {
                sqlite3_reset(ins_img);
                sqlite3_bind_int64(ins_img, 1, pid);
                sqlite3_bind_double(ins_img, 2, v ? 1.25 : 10.0);
                sqlite3_bind_int(ins_img, 3, v ? LO : PX);
                sqlite3_bind_double(ins_img, 4, v ? 0.125 : 1.0);
                sqlite3_bind_blob(ins_img, 5, v ? jl[g] : jh[g], (int)(v ? ll[g] : lh[g]), SQLITE_TRANSIENT);
                sqlite3_step(ins_img);
            }
            tjFree(jh[g]);
            tjFree(jl[g]);
        }
        pthread_mutex_unlock(&mu);
    }
    free(jh);
    free(jl);
    free(lh);
    free(ll);
    free(hi);
    tjDestroy(tj);
    synth_scratch_free(sc);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: mkdata OUT.db LABELS.csv SLIDES GRID [SEED] [NUISANCE] [THREADS]\n");
        return 1;
    }
    nslides = atoi(argv[3]);
    grid = atoi(argv[4]);
    synth_params_default(&P);
    P.width = P.height = grid * PX;
    P.mpp = 1.0;
    P.seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
    if (synth_nuisance_preset(&P, argc > 6 ? argv[6] : "mild") < 0) {
        fprintf(stderr, "%s\n", mp_err());
        return 1;
    }
    int threads = argc > 7 ? atoi(argv[7]) : 2;
    P.full_tissue = 1; /* every patch is tissue; no glass, pen or dust */
    P.purity = 1.0;    /* one class per slide: the slide label is every patch's label */
    P.pen_prob = 0;
    P.dust_per_mm2 = 0;
    unlink(argv[1]);
    db = db_open(argv[1], DB_OPEN_CREATE);
    if (!db) {
        fprintf(stderr, "%s\n", mp_err());
        return 1;
    }
    db_exec(db, "BEGIN");
    ins_slide = db_prepare(db, "INSERT INTO slides(id, path, name, fingerprint, vendor, width, height, level_count, mpp_x, "
                               "mpp_y, mpp_source, status, n_patches) VALUES (?1, ?2, ?3, 'synth', 'magpie-synth', ?4, ?4, 1, "
                               "1.0, 1.0, '--mpp', 'done', ?5)");
    ins_patch = db_prepare(db, "INSERT INTO patches(id, slide_id, gx, gy, x0, y0, size0, tissue) VALUES (?,?,?,?,?,?,224,1)");
    ins_img = db_prepare(db, "INSERT INTO images(patch_id, mag, width, height, level, scale, codec, data) "
                             "VALUES (?1, ?2, ?3, ?3, 0, ?4, 'jpeg', ?5)");
    pthread_t th[8];
    if (threads < 1 || threads > 8) threads = 2;
    for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, worker, NULL);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    sqlite3_finalize(ins_slide);
    sqlite3_finalize(ins_patch);
    sqlite3_finalize(ins_img);
    if (db_exec(db, "COMMIT") < 0) {
        fprintf(stderr, "%s\n", mp_err());
        return 1;
    }
    db_close(db);
    FILE *f = fopen(argv[2], "w");
    if (!f) return 1;
    fprintf(f, "slide,patient,label\n");
    for (int i = 0; i < nslides; i++) fprintf(f, "slide_%04d,P%04d,%s\n", i, i / 2, P.names[slide_class(i)]);
    fclose(f);
    return 0;
}
