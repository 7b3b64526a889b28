/* nn/params.c — the parameter table: plan, allocate once, look up by name. */
#include "nn/params.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

static const char *entry_name(const void *ps, int i) { return ((const nn_params *)ps)->p[i].name; }

int nn_params_add(nn_params *ps, const char *name, int ndim, const int64_t *shape, int trainable)
{
    if (ps->data) return mp_err_set("nn: parameter %s declared after allocation", name);
    if (ndim < 0 || ndim > NN_MAX_DIM) return mp_err_set("nn: parameter %s has %d dims", name, ndim);
    if (strlen(name) >= NN_NAME_MAX) return mp_err_set("nn: parameter name too long: %s", name);
    if (nn_params_find(ps, name)) return mp_err_set("nn: duplicate parameter %s", name);
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 64;
        nn_param *p = realloc(ps->p, (size_t)cap * sizeof *p);
        if (!p) return mp_err_set("nn: out of memory");
        ps->p = p;
        ps->cap = cap;
    }
    nn_param *e = &ps->p[ps->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return mp_err_set("nn: parameter %s has a non-positive dimension", name);
        if (shape[i] > (1ll << 31) || e->numel * (size_t)shape[i] > (1ull << 34))
            return mp_err_set("nn: parameter %s is too large", name);
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    /* Keep every slice 16-float (64-byte) aligned for vector loads. */
    e->offset = ps->total;
    ps->total += (e->numel + 15) & ~(size_t)15;
    e->trainable = trainable;
    mp_strindex_add(&ps->idx, ps->n, entry_name, ps);
    return ps->n++;
}

int nn_params_alloc(nn_params *ps) { return nn_params_alloc_ex(ps, 1); }

int nn_params_alloc_ex(nn_params *ps, int grads)
{
    size_t bytes = (ps->total ? ps->total : 16) * sizeof(float);
    ps->data = mp_alloc_big(bytes);
    ps->grad = grads ? mp_alloc_big(bytes) : NULL;
    if (!ps->data || (grads && !ps->grad)) {
        free(ps->data);
        free(ps->grad);
        ps->data = ps->grad = NULL;
        return mp_err_set("nn: out of memory allocating %zu parameters", ps->total);
    }
    memset(ps->data, 0, bytes);
    if (grads) memset(ps->grad, 0, bytes);
    for (int i = 0; i < ps->n; i++) {
        ps->p[i].data = ps->data + ps->p[i].offset;
        ps->p[i].grad = grads && ps->p[i].trainable ? ps->grad + ps->p[i].offset : NULL;
    }
    return 0;
}

void nn_params_zero_grad(nn_params *ps)
{
    if (ps->grad) memset(ps->grad, 0, ps->total * sizeof(float));
}

nn_param *nn_params_find(const nn_params *ps, const char *name)
{
    int i = mp_strindex_find(&ps->idx, name, entry_name, ps);
    return i < 0 ? NULL : &ps->p[i];
}

size_t nn_params_count_trainable(const nn_params *ps)
{
    size_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].trainable) n += ps->p[i].numel;
    return n;
}

void nn_params_free(nn_params *ps)
{
    if (!ps) return;
    free(ps->p);
    free(ps->data);
    free(ps->grad);
    mp_strindex_free(&ps->idx);
    memset(ps, 0, sizeof *ps);
}
