/* nn/safetensors.c — safetensors reader (validating every header field against the file) and
 * writer (header padded with spaces to 8 bytes so data is aligned, as the reference writer does). */
#include "nn/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

void nn_st_free(nn_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
    free(f->t);
    free(f->meta);
    free(f->buf);
    mp_strindex_free(&f->idx_t);
    mp_strindex_free(&f->idx_meta);
    memset(f, 0, sizeof *f);
}

static const char *tensor_name(const void *f, int i) { return ((const nn_st_file *)f)->t[i].name; }
static const char *meta_key(const void *f, int i) { return ((const nn_st_file *)f)->meta[2 * i]; }

static int by_offset(const void *a, const void *b)
{
    const nn_st_tensor *x = *(nn_st_tensor *const *)a, *y = *(nn_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int parse_entry(const char *name, const char *key, json_t *v, const uint8_t *data, size_t dlen,
                       nn_st_tensor *t)
{
    if (!json_is_object(v)) return mp_err_set("%s: tensor %s: header entry is not an object", name, key);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"), *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return mp_err_set("%s: tensor %s: missing dtype", name, key);
    int dt = nn_dtype_parse(json_string_value(jd));
    if (dt < 0 || dt == NN_U64)
        return mp_err_set("%s: tensor %s: unsupported dtype %s", name, key, json_string_value(jd));
    if (!json_is_array(js)) return mp_err_set("%s: tensor %s: missing shape", name, key);
    if (json_array_size(js) > NN_ST_MAX_DIM)
        return mp_err_set("%s: tensor %s: %zu dimensions (max %d)", name, key, json_array_size(js), NN_ST_MAX_DIM);
    t->ndim = (int)json_array_size(js);
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(js, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return mp_err_set("%s: tensor %s: bad shape", name, key);
        t->shape[d] = json_integer_value(x);
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return mp_err_set("%s: tensor %s: bad data_offsets", name, key);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    int64_t numel = nn_numel(t->ndim, t->shape);
    size_t es = nn_dtype_size((nn_dtype)dt);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / es) return mp_err_set("%s: tensor %s: shape too large", name, key);
    if (b < 0 || e < b) return mp_err_set("%s: tensor %s: bad data_offsets [%lld, %lld]", name, key, (long long)b, (long long)e);
    if ((uint64_t)(e - b) != (uint64_t)numel * es)
        return mp_err_set("%s: tensor %s: shape and dtype need %llu bytes, data_offsets give %lld", name, key,
                          (unsigned long long)numel * es, (long long)(e - b));
    if ((uint64_t)e > dlen)
        return mp_err_set("%s: truncated: tensor %s needs data bytes %lld..%lld, file has %zu", name, key,
                          (long long)b, (long long)e, dlen);
    t->dtype = (nn_dtype)dt;
    t->numel = (size_t)numel;
    t->nbytes = (size_t)(e - b);
    t->data = data + b;
    return 0;
}

int nn_st_parse(const char *name, uint8_t *buf, size_t len, nn_st_file *f)
{
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->len = len;
    if (len < 8) return mp_err_set("%s: truncated: %zu bytes, no safetensors header", name, len), nn_st_free(f), -1;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > ST_MAX_HEADER) {
        mp_err_set("%s: header length %llu is implausible (not a safetensors file?)", name, (unsigned long long)hlen);
        nn_st_free(f);
        return -1;
    }
    if (hlen > len - 8) {
        mp_err_set("%s: truncated: header needs bytes 8..%llu, file has %zu", name, (unsigned long long)(8 + hlen), len);
        nn_st_free(f);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        mp_err_set("%s: malformed JSON header: %s (line %d, column %d)", name, jerr.text, jerr.line, jerr.column);
        nn_st_free(f);
        return -1;
    }
    int rc = -1;
    nn_st_tensor **order = NULL;
    if (!json_is_object(root)) {
        mp_err_set("%s: malformed JSON header: not an object", name);
        goto done;
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t dlen = len - 8 - (size_t)hlen;
    size_t cap = json_object_size(root);
    if (cap > NN_ST_MAX_TENSORS + 1) { /* + __metadata__ */
        mp_err_set("%s: header declares %zu tensors (at most %d)", name, cap, NN_ST_MAX_TENSORS);
        goto done;
    }
    f->t = mp_xcalloc(cap ? cap : 1, sizeof *f->t);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                mp_err_set("%s: __metadata__ is not an object", name);
                goto done;
            }
            if (json_object_size(v) > NN_ST_MAX_META) {
                mp_err_set("%s: __metadata__ has %zu keys (at most %d)", name, json_object_size(v), NN_ST_MAX_META);
                goto done;
            }
            f->meta = mp_xcalloc(2 * json_object_size(v) + 1, sizeof *f->meta);
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv)
            {
                if (!json_is_string(mv)) {
                    mp_err_set("%s: __metadata__ value of %.64s is not a string", name, mk);
                    goto done;
                }
                if (strlen(mk) > NN_ST_MAX_NAME || json_string_length(mv) > NN_ST_MAX_VALUE) {
                    mp_err_set("%s: __metadata__ %.64s...: key or value too long (at most %d and %d bytes)", name, mk,
                               NN_ST_MAX_NAME, NN_ST_MAX_VALUE);
                    goto done;
                }
                f->meta[2 * f->nmeta] = mp_xstrdup(mk);
                f->meta[2 * f->nmeta + 1] = mp_xstrdup(json_string_value(mv));
                mp_strindex_add(&f->idx_meta, f->nmeta, meta_key, f);
                f->nmeta++;
            }
            continue;
        }
        nn_st_tensor *t = &f->t[f->n];
        if (strlen(key) > NN_ST_MAX_NAME) {
            mp_err_set("%s: tensor name %.64s... is longer than %d bytes", name, key, NN_ST_MAX_NAME);
            goto done;
        }
        if (parse_entry(name, key, v, data, dlen, t) != 0) goto done;
        t->name = mp_xstrdup(key);
        mp_strindex_add(&f->idx_t, f->n, tensor_name, f);
        f->n++;
    }
    /* Byte ranges must tile the data area exactly: no overlap, no hole, nothing after. */
    order = mp_xcalloc((size_t)f->n + 1, sizeof *order);
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof *order, by_offset);
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        size_t b = (size_t)(order[i]->data - data);
        if (b < at) {
            mp_err_set("%s: tensor %s overlaps tensor %s", name, order[i]->name, order[i - 1]->name);
            goto done;
        }
        if (b > at) {
            mp_err_set("%s: hole in the data before tensor %s (bytes %zu..%zu unused)", name, order[i]->name, at, b);
            goto done;
        }
        at = b + order[i]->nbytes;
    }
    if (at != dlen) {
        mp_err_set("%s: %zu bytes after the last tensor", name, dlen - at);
        goto done;
    }
    rc = 0;
done:
    free(order);
    json_decref(root);
    if (rc != 0) nn_st_free(f);
    return rc;
}

int nn_st_read(const char *path, nn_st_file *f)
{
    uint8_t *buf;
    size_t len;
    memset(f, 0, sizeof *f);
    if (mp_read_file(path, &buf, &len) != 0) return -1;
    return nn_st_parse(path, buf, len, f);
}

const nn_st_tensor *nn_st_find(const nn_st_file *f, const char *name)
{
    int i = mp_strindex_find(&f->idx_t, name, tensor_name, f);
    return i < 0 ? NULL : &f->t[i];
}

const char *nn_st_meta(const nn_st_file *f, const char *key)
{
    int i = mp_strindex_find(&f->idx_meta, key, meta_key, f);
    return i < 0 ? NULL : f->meta[2 * i + 1];
}

void nn_st_to_f32(const nn_st_tensor *t, float *dst)
{
    nn_dtype_to_f32(dst, t->data, t->dtype, t->numel);
}

int nn_st_write(const char *path, const nn_st_entry *e, int n, const char *const *meta)
{
    json_t *root = json_object();
    if (meta && meta[0]) {
        json_t *m = json_object();
        for (int i = 0; meta[i] && meta[i + 1]; i += 2) json_object_set_new(m, meta[i], json_string(meta[i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = nn_numel(e[i].ndim, e[i].shape);
        if (numel < 0 || e[i].ndim > NN_ST_MAX_DIM || !nn_dtype_size(e[i].dtype)) {
            json_decref(root);
            return mp_err_set("%s: tensor %s: bad shape or dtype", path, e[i].name);
        }
        size_t nb = (size_t)numel * nn_dtype_size(e[i].dtype);
        json_t *shape = json_array();
        for (int d = 0; d < e[i].ndim; d++) json_array_append_new(shape, json_integer(e[i].shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", nn_dtype_name(e[i].dtype), "shape", shape,
                                "data_offsets", (json_int_t)at, (json_int_t)(at + nb));
        if (!ent || json_object_get(root, e[i].name)) {
            json_decref(ent);
            json_decref(root);
            return mp_err_set("%s: tensor %s: duplicate or unencodable name", path, e[i].name);
        }
        json_object_set_new(root, e[i].name, ent);
        at += nb;
    }
    char *h = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!h) return mp_err_set("%s: cannot encode the header", path);
    size_t hl = strlen(h), hpad = (hl + 7) & ~(size_t)7;
    uint8_t *buf = malloc(8 + hpad + at);
    if (!buf) {
        free(h);
        return mp_err_set("%s: out of memory", path);
    }
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hpad >> (8 * i));
    memcpy(buf + 8, h, hl);
    memset(buf + 8 + hl, ' ', hpad - hl);
    free(h);
    uint8_t *d = buf + 8 + hpad;
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)nn_numel(e[i].ndim, e[i].shape) * nn_dtype_size(e[i].dtype);
        if (nb) memcpy(d, e[i].data, nb);
        d += nb;
    }
    int rc = mp_write_file_atomic(path, buf, 8 + hpad + at);
    free(buf);
    return rc;
}

int nn_st_write_params(const char *path, const nn_params *ps, int grad, const char *const *meta)
{
    nn_st_entry *e = mp_xcalloc((size_t)ps->n + 1, sizeof *e);
    int n = 0;
    for (int i = 0; i < ps->n; i++) {
        const nn_param *p = &ps->p[i];
        if (grad && !p->trainable) continue;
        e[n] = (nn_st_entry){p->name, NN_F32, p->ndim, p->shape, grad ? p->grad : p->data};
        n++;
    }
    int rc = nn_st_write(path, e, n, meta);
    free(e);
    return rc;
}
