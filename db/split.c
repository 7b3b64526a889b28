/* db/split.c — patient-grouped, stratified splits. Patients (slides without a patient are their
 * own patient) are grouped by their majority slide label, shuffled per stratum with a seeded RNG
 * and cut at the cumulative ratios, so every stratum is spread over train/val/test alike. */
#include "db/split.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "db/sql.h"
#include "common/rng.h"
#include "common/util.h"
#include "db/slides.h"

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
    if (!(sum > 0) && o->folds <= 1) return mp_err_set("split: ratios sum to 0");
    if (o->folds > 64 || (o->folds > 1 && (o->fold < 0 || o->fold >= o->folds)))
        return mp_err_set("split: --folds wants 2..64 and --fold 0..K-1");
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
        /* by path, id, or a name no other slide has */
        int64_t sid = -1;
        int m = db_slide_match(db, o->unlabeled[u], 1, &sid);
        int a = 0;
        while (m == 1 && a < ns && s[a].id != sid) a++;
        if (m <= 0 || a == ns) {
            if (m == 0) mp_err_set("%s: --unlabeled: no slide named '%s'", db_path(db), o->unlabeled[u]);
            else if (m < 0) mp_err_prefix("--unlabeled");
            free(p);
            goto out;
        }
        p[find_patient(p, np, s[a].patient)].forced_unlabeled = 1;
    }

    /* Strata: distinct labels of labelled, not held-out patients (one stratum without --stratify),
     * taken in order of their first patient so the result depends only on the data and the seed. */
    for (int i = 0; i < np; i++) p[i].split = !p[i].label || p[i].forced_unlabeled ? S_UNLAB : -1;
    int *idx = mp_xmalloc(sizeof(int) * np);
    int *fold = mp_xcalloc((size_t)np, sizeof(int));
    /* the patients each stratum keeps for train/val/test (after the unlabeled hold-out), for
     * the "cannot fill" message; and the splits (or folds) asked for */
    char short_msg[1024] = "";
    size_t used = 0;
    int asked = 0, need = 0, short_of = 0, total_m = 0;
    if (o->folds > 1) need = asked = o->folds;
    else if (o->counts) {
        for (int k = 0; k < 3; k++) need += (int)o->ratios[k], asked += o->ratios[k] > 0;
    } else
        for (int k = 0; k < 3; k++) need += o->ratios[k] > 0, asked += o->ratios[k] > 0;
    int fold_next = 0; /* folds continue round-robin across strata, so fold sizes stay even */
    for (int stratum = 0; np; stratum++) {
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
        int m = n - nu, cnt[3] = {0, 0, 0};
        total_m += m;
        if (used < sizeof short_msg)
            used += (size_t)snprintf(short_msg + used, sizeof short_msg - used, "%s%s %d", used ? ", " : "",
                                     o->stratify ? lab : "all classes", m);
        if (m < need) short_of = 1;
        if (o->folds > 1) {
            for (int j = 0; j < n; j++) {
                if (j < nu) {
                    p[idx[j]].split = S_UNLAB;
                    continue;
                }
                fold[idx[j]] = fold_next;
                fold_next = (fold_next + 1) % o->folds;
                p[idx[j]].split = fold[idx[j]] == o->fold ? S_VAL : S_TRAIN;
            }
            continue;
        }
        if (o->counts) {
            cnt[1] = (int)o->ratios[1], cnt[2] = (int)o->ratios[2];
            cnt[0] = m - cnt[1] - cnt[2];
        } else {
            /* cut at the cumulative ratios, then give every split asked for at least one
             * patient, taken from the largest (m >= splits asked, checked above) */
            double c1 = o->ratios[0] / sum, c2 = (o->ratios[0] + o->ratios[1]) / sum;
            int b1 = (int)floor(c1 * m + 0.5), b2 = (int)floor(c2 * m + 0.5);
            cnt[0] = b1, cnt[1] = b2 - b1, cnt[2] = m - b2;
            for (int k = 0; k < 3 && m >= need; k++)
                if (o->ratios[k] > 0 && cnt[k] == 0) {
                    int big = 0;
                    for (int q = 1; q < 3; q++)
                        if (cnt[q] > cnt[big]) big = q;
                    cnt[big]--, cnt[k]++;
                }
        }
        for (int j = 0; j < n; j++)
            p[idx[j]].split = j < nu ? S_UNLAB : (j - nu < cnt[0] ? S_TRAIN : j - nu < cnt[0] + cnt[1] ? S_VAL : S_TEST);
    }
    free(idx);
    if (short_of || (asked && np && used == 0)) {
        static const char *nm3[3] = {"train", "val", "test"};
        char splits[64] = "";
        if (o->folds > 1) snprintf(splits, sizeof splits, "%d folds", o->folds);
        else
            for (int k = 0, c = 0; k < 3; k++)
                if (o->ratios[k] > 0)
                    snprintf(splits + strlen(splits), sizeof splits - strlen(splits), "%s%s", c++ ? (c == asked ? " and " : ", ") : "",
                             nm3[k]);
        if (used == 0) snprintf(short_msg, sizeof short_msg, "none labelled");
        if (o->stratify)
            mp_err_set("%s: cannot fill %s with every class: patients per class (labelled%s): %s; each class needs "
                       "at least %d. Label more patients, ask for fewer splits, or --stratify none",
                       db_path(db), splits, o->unlabeled_ratio > 0 ? ", after the unlabeled hold-out" : "", short_msg,
                       need);
        else
            mp_err_set("%s: cannot fill %s: %d labelled patients%s, %d needed. Label more patients or ask for fewer "
                       "splits",
                       db_path(db), splits, total_m,
                       o->unlabeled_ratio > 0 ? " after the unlabeled hold-out" : "", need);
        free(fold);
        free(p);
        goto out;
    }

    if (db_begin(db) < 0) {
        free(fold);
        free(p);
        goto out;
    }
    st = db_prepare(db, "INSERT INTO splits(slide_id, split) VALUES (?, ?)");
    sqlite3_stmt *fst = st ? db_prepare(db, "INSERT INTO folds(slide_id, fold, k) VALUES (?, ?, ?)") : NULL;
    int ok = fst && db_exec(db, "DELETE FROM splits; DELETE FROM folds") == 0;
    int *seen = mp_xcalloc(np * 4, sizeof(int));
    int *fseen = mp_xcalloc(np, sizeof(int));
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
        /* a patient's slides share its fold, labelled or not, so folds stay disjoint */
        if (ok && o->folds > 1 && p[pi].split != S_UNLAB) {
            sqlite3_reset(fst);
            sqlite3_bind_int64(fst, 1, s[a].id);
            sqlite3_bind_int(fst, 2, fold[pi]);
            sqlite3_bind_int(fst, 3, o->folds);
            if (sqlite3_step(fst) != SQLITE_DONE) ok = db_fail(db, "writing folds") == 0;
            if (!fseen[pi]++ && fold[pi] < 64) rep->fold_patients[fold[pi]]++;
        }
    }
    free(seen);
    free(fseen);
    sqlite3_finalize(st);
    sqlite3_finalize(fst);
    free(p);
    free(fold);
    if (!ok) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        mp_err_set("%s", msg);
        goto out;
    }
    /* the leak check runs inside the transaction: a leak (a bug) commits nothing */
    if (db_split_check(db) < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mp_err());
        db_rollback(db);
        mp_err_set("%s", msg);
        goto out;
    }
    rc = db_commit(db);
out:
    for (int i = 0; i < ns; i++) {
        free(s[i].name);
        free(s[i].patient);
        free(s[i].label);
    }
    free(s);
    return rc;
}

static int has_table(mp_db *db, const char *name)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

int db_split_leaks(mp_db *db, void (*fn)(void *ctx, const char *msg), void *ctx)
{
    static const char *rules[] = {
        "SELECT 'patient ' || coalesce(s.patient, s.name) || ' is in two splits (' || min(sp.split) || ' and ' || "
        "max(sp.split) || ')' FROM slides s JOIN splits sp ON sp.slide_id = s.id WHERE sp.split IN ('train', 'val', 'test') "
        "GROUP BY coalesce(s.patient, s.name) HAVING count(DISTINCT sp.split) > 1 ORDER BY 1",
        /* Unlabelled slides of a val/test patient would leak that patient into training. */
        "SELECT 'patient ' || coalesce(s.patient, s.name) || ' is in two splits (' || "
        "min(CASE WHEN sp.split IN ('val', 'test') THEN sp.split END) || ' and unlabeled)' "
        "FROM slides s JOIN splits sp ON sp.slide_id = s.id GROUP BY coalesce(s.patient, s.name) "
        "HAVING sum(sp.split = 'unlabeled') > 0 AND sum(sp.split IN ('val', 'test')) > 0 ORDER BY 1",
        "SELECT 'patient ' || coalesce(s.patient, s.name) || ' is in two folds (' || min(f.fold) || ' and ' || "
        "max(f.fold) || ')' FROM slides s JOIN folds f ON f.slide_id = s.id GROUP BY coalesce(s.patient, s.name) "
        "HAVING count(DISTINCT f.fold) > 1 ORDER BY 1",
        "SELECT 'folds of different K (' || group_concat(DISTINCT k) || ')' FROM folds HAVING count(DISTINCT k) > 1",
    };
    int folds = has_table(db, "folds");
    if (folds < 0) return -1;
    int n = 0;
    for (int r = 0; r < 4; r++) {
        if (r >= 2 && !folds) break;
        sqlite3_stmt *st = db_prepare(db, rules[r]);
        if (!st) return -1;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            n++;
            if (fn) fn(ctx, (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return db_fail(db, "checking splits");
    }
    return n;
}

static void first_leak(void *ctx, const char *msg)
{
    char *buf = ctx;
    if (!buf[0]) snprintf(buf, 512, "%s", msg);
}

int db_split_check(mp_db *db)
{
    char first[512] = "";
    int n = db_split_leaks(db, first_leak, first);
    if (n < 0) return -1;
    if (n > 0) return mp_err_set("%s: %s", db_path(db), first);
    return 0;
}

int db_split_set(mp_db *db, const char *path, const char *split)
{
    int set = split && split[0];
    sqlite3_stmt *st = db_prepare(db, set ? "INSERT OR REPLACE INTO splits(slide_id, split) SELECT id, ?2 FROM slides "
                                            "WHERE path = ?1"
                                          : "DELETE FROM splits WHERE slide_id IN (SELECT id FROM slides WHERE path = ?1)");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
    if (set) sqlite3_bind_text(st, 2, split, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(db, "manifest split");
    sqlite3_finalize(st);
    return rc;
}
