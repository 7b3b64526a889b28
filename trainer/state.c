/* trainer/state.c — checkpoints of a run: the best one (the validated weights and the card) and
 * the training state written every epoch, which --resume reads back. Both directions walk one
 * table of named buffers (the run's counters, history, optimiser, weight average, and what each
 * method part adds), so what is saved is exactly what is loaded; every value read is checked
 * against the run before it is used (a CRC proves a file is what was written, not that it fits). */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "trainer/run.h"

void tr_state_add(tr_state *st, tr_st_entry e)
{
    assert(st->n < (int)(sizeof st->e / sizeof st->e[0])); /* a fixed number of entries */
    st->e[st->n++] = e;
}

/* The run's table, in file order (tensors: student weights, avg.*, optimiser moments, history,
 * then the method parts'; keys: the counters, the optimiser's, then the parts'). */
static void state_table(tr_run *R, tr_state *st)
{
    st->n = 0;
    if (R->avg) tr_state_add(st, (tr_st_entry){.name = "avg.", .kind = TR_ST_PARAMS, .ptr = nn_model_params(R->avg)});
    tr_state_add(st, (tr_st_entry){.name = "epoch", .kind = TR_ST_I64, .ptr = &R->nhist}); /* next epoch to run */
    tr_state_add(st, (tr_st_entry){.name = "step", .kind = TR_ST_I64, .ptr = &R->step});
    tr_state_add(st, (tr_st_entry){.name = "best_epoch", .kind = TR_ST_INT, .ptr = &R->best_epoch});
    tr_state_add(st, (tr_st_entry){.name = "bad_epochs", .kind = TR_ST_INT, .ptr = &R->bad_epochs});
    tr_state_add(st, (tr_st_entry){.name = "best_val", .kind = TR_ST_F64, .ptr = &R->best_val});
    tr_state_add(st, (tr_st_entry){.name = "seed", .kind = TR_ST_I64, .ptr = (void *)&R->o->seed, .save_only = 1});
    tr_state_add(st, (tr_st_entry){.name = "n_items", .kind = TR_ST_INT, .ptr = &R->n});
    tr_state_add(st, (tr_st_entry){.name = "opt", .kind = TR_ST_OPTIM, .ptr = &R->opt});
    tr_state_add(st, (tr_st_entry){.name = "history", .kind = TR_ST_TENSOR, .ptr = R->hist, .dtype = NN_F64,
                                   .cols = 2, .per_epoch = 1});
    for (int i = 0; i < R->nparts; i++)
        if (R->part[i]->state) R->part[i]->state(R, st);
}

static int save_entry(tr_run *R, nn_ckpt *ck, const tr_st_entry *e)
{
    switch (e->kind) {
    case TR_ST_I64: nn_ckpt_train_set_i64(ck, e->name, *(const int64_t *)e->ptr); return 0;
    case TR_ST_INT: nn_ckpt_train_set_i64(ck, e->name, *(const int *)e->ptr); return 0;
    case TR_ST_F64: nn_ckpt_train_set_f64(ck, e->name, *(const double *)e->ptr); return 0;
    case TR_ST_F32: nn_ckpt_train_set_f64(ck, e->name, *(const float *)e->ptr); return 0;
    case TR_ST_OPTIM: return nn_optim_save(e->ptr, ck);
    case TR_ST_PARAMS: {
        const nn_params *ps = e->ptr;
        for (int i = 0; i < ps->n; i++) {
            char name[NN_NAME_MAX + 8];
            snprintf(name, sizeof name, "%s%s", e->name, ps->p[i].name);
            if (nn_ckpt_add(ck, NN_CKPT_TRAIN, name, NN_F32, ps->p[i].ndim, ps->p[i].shape, ps->p[i].data, 0)) return -1;
        }
        return 0;
    }
    case TR_ST_TENSOR: {
        int64_t shape[2] = {e->per_epoch ? R->nhist : e->rows, e->cols};
        return nn_ckpt_add(ck, NN_CKPT_TRAIN, e->name, e->dtype, 2, shape, e->ptr, 0);
    }
    }
    return -1;
}

static int copy_tensor(const nn_ckpt *ck, const char *name, nn_dtype dtype, void *dst, size_t n, const char *path)
{
    const nn_ckpt_tensor *t = nn_ckpt_find(ck, NN_CKPT_TRAIN, name);
    if (!t || t->dtype != dtype || t->numel != n) return mp_err_set("%s: training state lacks %s", path, name);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

/* Tensors and optimisers (scalars are read and checked first, by load_counters). */
static int load_entry(tr_run *R, const nn_ckpt *ck, const tr_st_entry *e, const char *path)
{
    switch (e->kind) {
    case TR_ST_I64:
    case TR_ST_INT:
    case TR_ST_F64: return 0;
    case TR_ST_F32: {
        double v;
        if (nn_ckpt_train_get_f64(ck, e->name, &v) < 0) return -1;
        if (!(isfinite(v) && fabs(v) < 1e30)) return mp_err_set("%s: corrupt training state: %s %g", path, e->name, v);
        *(float *)e->ptr = (float)v;
        return 0;
    }
    case TR_ST_OPTIM: return nn_optim_load(e->ptr, ck);
    case TR_ST_PARAMS: {
        nn_params *ps = e->ptr;
        for (int i = 0; i < ps->n; i++) {
            char name[NN_NAME_MAX + 8];
            snprintf(name, sizeof name, "%s%s", e->name, ps->p[i].name);
            if (copy_tensor(ck, name, NN_F32, ps->p[i].data, ps->p[i].numel, path)) return -1;
        }
        return 0;
    }
    case TR_ST_TENSOR:
        if (e->per_epoch) {
            const nn_ckpt_tensor *h = nn_ckpt_find(ck, NN_CKPT_TRAIN, e->name);
            if (R->nhist == 0) return 0;
            if (!(h && h->dtype == e->dtype && h->ndim == 2 && h->shape[0] == R->nhist && h->shape[1] == e->cols))
                return mp_err_set("%s: corrupt training state: the %s does not hold its %lld epochs", path, e->name,
                                  (long long)R->nhist);
            memcpy(e->ptr, h->data, h->nbytes); /* the buffer holds epochs + 1 rows and nhist <= epochs */
            return 0;
        }
        return copy_tensor(ck, e->name, e->dtype, e->ptr, (size_t)(e->rows * e->cols), path);
    }
    return -1;
}

/* The scalar entries, read into a copy and checked together before any is used. */
static int load_counters(tr_run *R, const nn_ckpt *ck, const tr_state *st, const char *path)
{
    int64_t v[32];
    double f[32];
    for (int i = 0; i < st->n; i++) {
        const tr_st_entry *e = &st->e[i];
        if (e->save_only) continue;
        if ((e->kind == TR_ST_I64 || e->kind == TR_ST_INT) && nn_ckpt_train_get_i64(ck, e->name, &v[i]) < 0) return -1;
        if (e->kind == TR_ST_F64 && nn_ckpt_train_get_f64(ck, e->name, &f[i]) < 0) return -1;
    }
    /* the entries by name, as state_table lays them out */
    int64_t ep = 0, stp = 0, be = 0, bad = 0, nitems = 0;
    double bv = 0;
    for (int i = 0; i < st->n; i++) {
        const char *n = st->e[i].name;
        if (!strcmp(n, "epoch")) ep = v[i];
        else if (!strcmp(n, "step")) stp = v[i];
        else if (!strcmp(n, "best_epoch")) be = v[i];
        else if (!strcmp(n, "bad_epochs")) bad = v[i];
        else if (!strcmp(n, "n_items")) nitems = v[i];
        else if (!strcmp(n, "best_val")) bv = f[i];
    }
    if (nitems != R->n)
        return mp_err_set("%s: the checkpoint was trained on %lld patches, the dataset now gives %d", path,
                          (long long)nitems, R->n);
    if (ep < 0 || ep > TR_MAX_EPOCHS)
        return mp_err_set("%s: corrupt training state: epoch %lld (0..%d)", path, (long long)ep, TR_MAX_EPOCHS);
    if (ep > R->o->epochs)
        return mp_err_set("%s: %lld epochs already run, more than the %d %s; resume with --epochs %lld or more", path,
                          (long long)ep, R->o->epochs, R->auto_epochs ? "of the automatic schedule" : "asked for (--epochs)",
                          (long long)ep);
    /* a step per batch, a batch holds at least one patch; best_epoch is -1 until an epoch is kept */
    if (stp < 0 || stp > ep * (int64_t)R->n)
        return mp_err_set("%s: corrupt training state: step %lld after %lld epochs of %d patches", path, (long long)stp,
                          (long long)ep, R->n);
    if (be < -1 || be >= ep)
        return mp_err_set("%s: corrupt training state: best_epoch %lld after %lld epochs", path, (long long)be, (long long)ep);
    if (bad < 0 || bad > ep)
        return mp_err_set("%s: corrupt training state: bad_epochs %lld after %lld epochs", path, (long long)bad, (long long)ep);
    if (!(bv >= -1 && bv <= 1)) return mp_err_set("%s: corrupt training state: best_val %g (a balanced accuracy, or -1)", path, bv);
    /* every value fits: store them through the table */
    for (int i = 0; i < st->n; i++) {
        const tr_st_entry *e = &st->e[i];
        if (e->save_only) continue;
        if (e->kind == TR_ST_I64) *(int64_t *)e->ptr = v[i];
        else if (e->kind == TR_ST_INT) *(int *)e->ptr = (int)v[i];
        else if (e->kind == TR_ST_F64) *(double *)e->ptr = f[i];
    }
    return 0;
}

int tr_state_save(tr_run *R, const char *path, int with_state, int epoch)
{
    nn_ckpt ck = {0};
    nn_card_write(&R->info, &ck);
    nn_ckpt_setf(&ck, "trained.epoch", "%d", epoch + 1); /* 1-based, as in the log and the messages */
    nn_ckpt_setf(&ck, "val.balanced_accuracy", "%.6f", R->best_val);
    if (R->o->teacher) nn_ckpt_set(&ck, "teacher", R->o->teacher);
    /* the best checkpoint holds the weights that were validated (the average when there is one);
     * the training state holds the student's own, and the average apart */
    int rc = nn_ckpt_add_params(&ck, nn_model_params(R->avg && !with_state ? R->avg : R->student));
    if (!rc && with_state) {
        tr_state st;
        state_table(R, &st);
        for (int i = 0; i < st.n && !rc; i++) rc = save_entry(R, &ck, &st.e[i]);
    }
    if (!rc) rc = nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    return rc;
}

int tr_state_load(tr_run *R, const char *path)
{
    nn_ckpt ck = {0};
    if (nn_ckpt_load(&ck, path) < 0) return -1;
    tr_state st;
    state_table(R, &st);
    int rc = nn_ckpt_load_params(&ck, nn_model_params(R->student));
    if (!rc) rc = load_counters(R, &ck, &st, path);
    for (int i = 0; i < st.n && !rc; i++) rc = load_entry(R, &ck, &st.e[i], path);
    if (!rc) R->epoch0 = (int)R->nhist;
    nn_ckpt_free(&ck);
    return rc;
}
