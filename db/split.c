/* db/split.c — patient-grouped, stratified splits. Patients (slides without a patient are their
 * own patient) are grouped by their majority slide label, shuffled per stratum with a seeded RNG
 * and cut at the cumulative ratios, so every stratum is spread over train/val/test alike. */
#include "db/split.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"

enum { S_TRAIN, S_VAL, S_TEST, S_UNLAB };
static const char *split_names[4] = {"train", "val", "test", "unlabeled"};

typedef struct {
    int64_t id;
    char *name, *patient, *label;
} slide_row;

typedef struct {
    char *name;
    char *label;  /* majority label of its labelled slides, NULL if none */
    int split;
    int forced_unlabeled;
} patient_row;

int db_split_known(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, split_names[i])) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    if (!x || !y) return (x != NULL) - (y != NULL);
    return strcmp(x, y);
}

static int find_patient(patient_row *p, int n, const char *name)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(p[mid].name, name);
        if (!c) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int db_split_make(mp_db *db, const db_split_opts *o, db_split_report *rep)
{
    memset(rep, 0, sizeof *rep);
    double sum = o->ratios[0] + o->ratios[1] + o->ratios[2];
    for (int i = 0; i < 3; i++)
        if (!(o->ratios[i] >= 0) || !isfinite(o->ratios[i])) return mp_err_set("split: ratios must be >= 0");
    if (!(sum > 0)) return mp_err_set("split: ratios sum to 0");
    if (!(o->unlabeled_ratio >= 0 && o->unlabeled_ratio < 1)) return mp_err_set("split: --unlabeled-ratio must be in [0, 1)");

    sqlite3_stmt *st = db_prepare(db, "SELECT id, name, coalesce(patient, name), label FROM slides ORDER BY name, id");
    if (!st) return -1;
    slide_row *s = NULL;
    int ns = 0, rc = -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        s = mp_xrealloc(s, sizeof *s * (ns + 1));
        s[ns].id = sqlite3_column_int64(st, 0);
        s[ns].name = mp_xstrdup((const char *)sqlite3_column_text(st, 1));
        s[ns].patient = mp_xstrdup((const char *)sqlite3_column_text(st, 2));
        const char *l = (const char *)sqlite3_column_text(st, 3);
        s[ns].label = l && *l ? mp_xstrdup(l) : NULL;
        ns++;
    }
    sqlite3_finalize(st);
    if (ns == 0) {
        mp_err_set("%s: no slides to split", db_path(db));
        goto out;
    }

    /* Distinct patients, sorted by name so the result does not depend on slide order. */
    char **pn = mp_xmalloc(sizeof(char *) * ns);
    for (int i = 0; i < ns; i++) pn[i] = s[i].patient;
    qsort(pn, ns, sizeof(char *), cmp_str);
    patient_row *p = mp_xcalloc(ns, sizeof *p);
    int np = 0;
    for (int i = 0; i < ns; i++)
        if (!np || strcmp(p[np - 1].name, pn[i])) p[np++].name = pn[i];
    free(pn);

    /* Majority label per patient (ties: the label that sorts first). */
    for (int i = 0; i < np; i++) {
        int best = 0;
        for (int a = 0; a < ns; a++) {
            if (!s[a].label || strcmp(s[a].patient, p[i].name)) continue;
            int cnt = 0;
            for (int b = 0; b < ns; b++)
                if (s[b].label && !strcmp(s[b].patient, p[i].name) && !strcmp(s[b].label, s[a].label)) cnt++;
            if (cnt > best || (cnt == best && strcmp(s[a].label, p[i].label) < 0)) {
                best = cnt;
                p[i].label = s[a].label;
            }
        }
    }
    for (int u = 0; u < o->n_unlabeled; u++) {
        int a = 0;
        while (a < ns && strcmp(s[a].name, o->unlabeled[u])) a++;
        if (a == ns) {
            mp_err_set("%s: --unlabeled: no slide named '%s'", db_path(db), o->unlabeled[u]);
            free(p);
            goto out;
        }
        p[find_patient(p, np, s[a].patient)].forced_unlabeled = 1;
    }

    /* Strata: distinct labels of labelled, not held-out patients (one stratum without --stratify),
     * taken in order of their first patient so the result depends only on the data and the seed. */
    for (int i = 0; i < np; i++) p[i].split = !p[i].label || p[i].forced_unlabeled ? S_UNLAB : -1;
    int *idx = mp_xmalloc(sizeof(int) * np);
    for (int stratum = 0;; stratum++) {
        const char *lab = NULL;
        int n = 0;
        for (int i = 0; i < np; i++)
            if (p[i].split < 0 && (!o->stratify || !lab || !strcmp(lab, p[i].label))) {
                if (!lab) lab = p[i].label;
                idx[n++] = i;
            }
        if (!n) break;
        mp_rng r;
        mp_rng_derive(&r, o->seed, 0x5711, (uint64_t)stratum, 0);
        mp_rng_shuffle_u32(&r, (uint32_t *)idx, (uint32_t)n);
        int nu = (int)floor(o->unlabeled_ratio * n + 0.5);
        double c1 = o->ratios[0] / sum, c2 = (o->ratios[0] + o->ratios[1]) / sum;
        int m = n - nu;
        int b1 = (int)floor(c1 * m + 0.5), b2 = (int)floor(c2 * m + 0.5);
        for (int j = 0; j < n; j++)
            p[idx[j]].split = j < nu ? S_UNLAB : (j - nu < b1 ? S_TRAIN : j - nu < b2 ? S_VAL : S_TEST);
    }
    free(idx);

    if (db_begin(db) < 0) {
        free(p);
        goto out;
    }
    st = db_prepare(db, "INSERT INTO splits(slide_id, split) VALUES (?, ?)");
    int ok = st && db_exec(db, "DELETE FROM splits") == 0;
    int *seen = mp_xcalloc(np * 4, sizeof(int));
    for (int a = 0; ok && a < ns; a++) {
        int pi = find_patient(p, np, s[a].patient);
        /* Unlabelled slides of a train patient join the unlabelled pool (both feed training);
         * those of a val/test patient stay with their patient so no patient leaks into training. */
        int sp = p[pi].split;
        if (!s[a].label && sp == S_TRAIN) sp = S_UNLAB;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, s[a].id);
        sqlite3_bind_text(st, 2, split_names[sp], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) ok = db_fail(db, "writing splits") == 0;
        rep->slides[sp]++;
        if (!seen[pi * 4 + sp]++) rep->patients[sp]++;
    }
    free(seen);
    sqlite3_finalize(st);
    free(p);
    if (!ok) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        mp_err_set("%s", msg);
        goto out;
    }
    if (db_commit(db) < 0) goto out;
    rc = db_split_check(db);
out:
    for (int i = 0; i < ns; i++) {
        free(s[i].name);
        free(s[i].patient);
        free(s[i].label);
    }
    free(s);
    return rc;
}

int db_split_check(mp_db *db)
{
    sqlite3_stmt *st = db_prepare(db,
        "SELECT coalesce(s.patient, s.name), min(sp.split), max(sp.split) FROM slides s JOIN splits sp ON sp.slide_id = s.id "
        "WHERE sp.split IN ('train', 'val', 'test') GROUP BY coalesce(s.patient, s.name) "
        "HAVING count(DISTINCT sp.split) > 1 ORDER BY 1 LIMIT 1");
    if (!st) return -1;
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = mp_err_set("%s: patient %s is in two splits (%s and %s)", db_path(db), sqlite3_column_text(st, 0),
                        sqlite3_column_text(st, 1), sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
    if (rc) return rc;
    /* Unlabelled slides of a val/test patient would leak that patient into training. */
    st = db_prepare(db,
        "SELECT coalesce(s.patient, s.name), min(sp.split) FROM slides s JOIN splits sp ON sp.slide_id = s.id "
        "GROUP BY coalesce(s.patient, s.name) HAVING sum(sp.split = 'unlabeled') > 0 "
        "AND sum(sp.split IN ('val', 'test')) > 0 ORDER BY 1 LIMIT 1");
    if (!st) return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = mp_err_set("%s: patient %s is in two splits (%s and unlabeled)", db_path(db), sqlite3_column_text(st, 0),
                        sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    return rc;
}
