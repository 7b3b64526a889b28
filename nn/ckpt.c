/* nn/ckpt.c — checkpoint writer (streamed through common's atomic writer) and a loader that
 * checks every field against the file before trusting it. Layout: see nn/ckpt.h. */
#include "nn/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"

static const char magic[8] = {'M', 'A', 'G', 'P', 'I', 'E', 'C', 'K'};
#define PREAMBLE 64
#define REC 160
#define ALIGN 64

/* ---- key/values ---- */

static const char *kv_key(const void *kv, int i) { return (*(char *const *const *)kv)[2 * i]; }

static void kv_set(char ***kv, int *n, mp_strindex *idx, const char *key, const char *val)
{
    int i = mp_strindex_find(idx, key, kv_key, kv);
    if (i >= 0) {
        free((*kv)[2 * i + 1]);
        (*kv)[2 * i + 1] = mp_xstrdup(val);
        return;
    }
    if ((*n & (*n - 1)) == 0) /* capacity: the next power of two, so growth is geometric */
        *kv = mp_xrealloc(*kv, sizeof **kv * 2 * (size_t)(*n ? 2 * *n : 1));
    (*kv)[2 * *n] = mp_xstrdup(key);
    (*kv)[2 * *n + 1] = mp_xstrdup(val);
    mp_strindex_add(idx, *n, kv_key, kv);
    (*n)++;
}

static const char *kv_get(const void *kv, const mp_strindex *idx, const char *key) /* kv: the char ** list's address */
{
    int i = mp_strindex_find(idx, key, kv_key, kv);
    return i < 0 ? NULL : (*(char *const *const *)kv)[2 * i + 1];
}

void nn_ckpt_set(nn_ckpt *ck, const char *key, const char *val) { kv_set(&ck->meta, &ck->nmeta, &ck->idx_meta, key, val); }
const char *nn_ckpt_get(const nn_ckpt *ck, const char *key) { return kv_get(&ck->meta, &ck->idx_meta, key); }
const char *nn_ckpt_train_get(const nn_ckpt *ck, const char *key) { return kv_get(&ck->train, &ck->idx_train, key); }

void nn_ckpt_train_set(nn_ckpt *ck, const char *key, const char *val)
{
    kv_set(&ck->train, &ck->ntrain, &ck->idx_train, key, val);
    ck->has_train = 1;
}

void nn_ckpt_setf(nn_ckpt *ck, const char *key, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    nn_ckpt_set(ck, key, buf);
}

void nn_ckpt_train_setf(nn_ckpt *ck, const char *key, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    nn_ckpt_train_set(ck, key, buf);
}

void nn_ckpt_train_set_i64(nn_ckpt *ck, const char *key, int64_t v) { nn_ckpt_train_setf(ck, key, "%lld", (long long)v); }
void nn_ckpt_train_set_f64(nn_ckpt *ck, const char *key, double v) { nn_ckpt_train_setf(ck, key, "%.17g", v); }

static const char *ck_name(const nn_ckpt *ck) { return ck->path ? ck->path : "checkpoint"; }

int nn_ckpt_train_get_i64(const nn_ckpt *ck, const char *key, int64_t *v)
{
    const char *s = nn_ckpt_train_get(ck, key);
    long x;
    if (!s) return mp_err_set("%s: training state has no %s", ck_name(ck), key);
    if (mp_parse_long(s, &x) != 0) return mp_err_set("%s: training state %s = '%s' is not an integer", ck_name(ck), key, s);
    *v = x;
    return 0;
}

int nn_ckpt_train_get_f64(const nn_ckpt *ck, const char *key, double *v)
{
    const char *s = nn_ckpt_train_get(ck, key);
    if (!s) return mp_err_set("%s: training state has no %s", ck_name(ck), key);
    if (mp_parse_double(s, v) != 0) return mp_err_set("%s: training state %s = '%s' is not a number", ck_name(ck), key, s);
    return 0;
}

/* ---- tensors ---- */

void nn_ckpt_free(nn_ckpt *ck)
{
    if (!ck) return;
    for (int i = 0; i < 2 * ck->nmeta; i++) free(ck->meta[i]);
    for (int i = 0; i < 2 * ck->ntrain; i++) free(ck->train[i]);
    for (int i = 0; i < ck->n; i++)
        if (ck->t[i].owned) free(ck->t[i].data);
    free(ck->meta);
    free(ck->train);
    free(ck->t);
    free(ck->buf);
    free(ck->path);
    mp_strindex_free(&ck->idx_meta);
    mp_strindex_free(&ck->idx_train);
    mp_strindex_free(&ck->idx_t[0]);
    mp_strindex_free(&ck->idx_t[1]);
    memset(ck, 0, sizeof *ck);
}

static const char *tensor_name(const void *ck, int i) { return ((const nn_ckpt *)ck)->t[i].name; }

const nn_ckpt_tensor *nn_ckpt_find(const nn_ckpt *ck, int section, const char *name)
{
    if (section != NN_CKPT_MODEL && section != NN_CKPT_TRAIN) return NULL;
    int i = mp_strindex_find(&ck->idx_t[section], name, tensor_name, ck);
    return i < 0 ? NULL : &ck->t[i];
}

/* any section: names are unique across the file */
static int tensor_exists(const nn_ckpt *ck, const char *name)
{
    return nn_ckpt_find(ck, NN_CKPT_MODEL, name) || nn_ckpt_find(ck, NN_CKPT_TRAIN, name);
}

int nn_ckpt_add(nn_ckpt *ck, int section, const char *name, nn_dtype dtype, int ndim, const int64_t *shape,
                const void *data, int copy)
{
    if (section != NN_CKPT_MODEL && section != NN_CKPT_TRAIN) return mp_err_set("ckpt: bad section %d", section);
    if (!name[0] || strlen(name) >= NN_NAME_MAX) return mp_err_set("ckpt: bad tensor name '%s'", name);
    if (!nn_dtype_size(dtype)) return mp_err_set("ckpt: tensor %s: bad dtype", name);
    if (ndim < 0 || ndim > NN_MAX_DIM) return mp_err_set("ckpt: tensor %s: %d dimensions", name, ndim);
    if (tensor_exists(ck, name)) return mp_err_set("ckpt: duplicate tensor %s", name);
    if (ck->n >= NN_CKPT_MAX_TENSORS) return mp_err_set("ckpt: more than %d tensors", NN_CKPT_MAX_TENSORS);
    int64_t numel = nn_numel(ndim, shape);
    if (numel < 0) return mp_err_set("ckpt: tensor %s: bad shape", name);
    if (ck->n == ck->cap) {
        ck->cap = ck->cap ? 2 * ck->cap : 64;
        ck->t = mp_xrealloc(ck->t, sizeof *ck->t * (size_t)ck->cap);
    }
    nn_ckpt_tensor *t = &ck->t[ck->n];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = (size_t)numel;
    t->nbytes = t->numel * nn_dtype_size(dtype);
    t->section = section;
    if (copy) {
        t->data = mp_xmalloc(t->nbytes);
        if (t->nbytes) memcpy(t->data, data, t->nbytes);
        t->owned = 1;
    } else {
        t->data = (void *)data;
    }
    if (section == NN_CKPT_TRAIN) ck->has_train = 1;
    mp_strindex_add(&ck->idx_t[section], ck->n, tensor_name, ck);
    ck->n++;
    return 0;
}

int nn_ckpt_add_params(nn_ckpt *ck, const nn_params *ps)
{
    for (int i = 0; i < ps->n; i++) {
        const nn_param *p = &ps->p[i];
        if (nn_ckpt_add(ck, NN_CKPT_MODEL, p->name, NN_F32, p->ndim, p->shape, p->data, 0) != 0) return -1;
    }
    return 0;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

int nn_ckpt_load_params(const nn_ckpt *ck, nn_params *ps)
{
    for (int i = 0; i < ps->n; i++) {
        nn_param *p = &ps->p[i];
        const nn_ckpt_tensor *t = nn_ckpt_find(ck, NN_CKPT_MODEL, p->name);
        if (!t) return mp_err_set("%s: missing tensor %s", ck_name(ck), p->name);
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char a[128], b[128];
            fmt_shape(a, sizeof a, t->ndim, t->shape);
            fmt_shape(b, sizeof b, p->ndim, p->shape);
            return mp_err_set("%s: tensor %s has shape %s, the model expects %s", ck_name(ck), p->name, a, b);
        }
        if (t->dtype != NN_F32) {
            nn_dtype_to_f32(p->data, t->data, t->dtype, p->numel);
        } else if (p->numel) {
            memcpy(p->data, t->data, p->numel * sizeof(float));
        }
    }
    for (int i = 0; i < ck->n; i++)
        if (ck->t[i].section == NN_CKPT_MODEL && !nn_params_find(ps, ck->t[i].name))
            return mp_err_set("%s: unexpected tensor %s (not in the model)", ck_name(ck), ck->t[i].name);
    return 0;
}

int nn_ckpt_add_rng(nn_ckpt *ck, const char *name, const mp_rng *r)
{
    char key[NN_NAME_MAX];
    if ((size_t)snprintf(key, sizeof key, "rng.%s", name) >= sizeof key) return mp_err_set("ckpt: rng name too long");
    int64_t four = 4;
    return nn_ckpt_add(ck, NN_CKPT_TRAIN, key, NN_U64, 1, &four, r->s, 1);
}

int nn_ckpt_get_rng(const nn_ckpt *ck, const char *name, mp_rng *r)
{
    char key[NN_NAME_MAX];
    snprintf(key, sizeof key, "rng.%s", name);
    const nn_ckpt_tensor *t = nn_ckpt_find(ck, NN_CKPT_TRAIN, key);
    if (!t) return mp_err_set("%s: training state has no RNG %s", ck_name(ck), name);
    if (t->dtype != NN_U64 || t->numel != 4) return mp_err_set("%s: RNG %s is not U64[4]", ck_name(ck), name);
    memcpy(r->s, t->data, sizeof r->s);
    return 0;
}

/* ---- writing ---- */

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static json_t *kv_json(char *const *kv, int n)
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++) json_object_set_new(o, kv[2 * i], json_string(kv[2 * i + 1]));
    return o;
}

int nn_ckpt_save(const nn_ckpt *ck, const char *path)
{
    json_t *root = json_object();
    json_object_set_new(root, "meta", kv_json(ck->meta, ck->nmeta));
    if (ck->has_train) json_object_set_new(root, "train", kv_json(ck->train, ck->ntrain));
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(root);
    if (!hdr) return mp_err_set("%s: cannot encode the header (invalid UTF-8 in a key or value?)", path);
    uint64_t hlen = strlen(hdr);
    uint64_t table_off = align_up(PREAMBLE + hlen, 8);
    uint64_t data_off = align_up(table_off + (uint64_t)REC * (uint64_t)ck->n, ALIGN);
    uint8_t *head = mp_xcalloc(data_off, 1);
    memcpy(head + PREAMBLE, hdr, hlen);
    free(hdr);
    uint64_t at = 0;
    for (int i = 0; i < ck->n; i++) {
        const nn_ckpt_tensor *t = &ck->t[i];
        uint8_t *r = head + table_off + (uint64_t)REC * i;
        memcpy(r, t->name, strlen(t->name));
        put32(r + 96, (uint32_t)t->dtype);
        put32(r + 100, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) put64(r + 104 + 8 * d, (uint64_t)t->shape[d]);
        at = align_up(at, ALIGN);
        put64(r + 136, at);
        put64(r + 144, t->nbytes);
        put32(r + 152, mp_crc32(0, t->data, t->nbytes));
        r[156] = (uint8_t)t->section;
        at += t->nbytes;
    }
    memcpy(head, magic, 8);
    put32(head + 8, NN_CKPT_VERSION);
    put32(head + 12, ck->has_train ? 1u : 0u);
    put64(head + 16, hlen);
    put64(head + 24, (uint64_t)ck->n);
    put64(head + 32, table_off);
    put64(head + 40, data_off);
    put64(head + 48, data_off + at);
    uint32_t crc = mp_crc32(0, head, 56);
    crc = mp_crc32(crc, head + PREAMBLE, data_off - PREAMBLE);
    put32(head + 56, crc);

    mp_atomic_file f;
    if (mp_atomic_open(&f, path) < 0) {
        free(head);
        return -1;
    }
    static const uint8_t zeros[ALIGN];
    int bad = mp_atomic_write(&f, head, data_off);
    free(head);
    at = 0;
    for (int i = 0; i < ck->n && !bad; i++) {
        uint64_t pad = align_up(at, ALIGN) - at;
        bad = mp_atomic_write(&f, zeros, pad) || mp_atomic_write(&f, ck->t[i].data, ck->t[i].nbytes);
        at += pad + ck->t[i].nbytes;
    }
    return bad ? -1 : mp_atomic_commit(&f);
}

/* ---- loading ---- */

static int kv_load(const char *name, json_t *o, const char *what, char ***kv, int *n, mp_strindex *idx)
{
    if (!json_is_object(o)) return mp_err_set("%s: malformed header: \"%s\" is not an object", name, what);
    if (json_object_size(o) > NN_CKPT_MAX_KEYS)
        return mp_err_set("%s: header \"%s\" has %zu keys (at most %d)", name, what, json_object_size(o), NN_CKPT_MAX_KEYS);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!json_is_string(v)) return mp_err_set("%s: malformed header: %s.%s is not a string", name, what, k);
        if (strlen(k) > NN_CKPT_MAX_KEY_LEN || json_string_length(v) > NN_CKPT_MAX_VALUE_LEN)
            return mp_err_set("%s: header %s.%.40s...: key or value too long (at most %d and %d bytes)", name, what, k,
                              NN_CKPT_MAX_KEY_LEN, NN_CKPT_MAX_VALUE_LEN);
        kv_set(kv, n, idx, k, json_string_value(v));
    }
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const nn_ckpt_tensor *x = *(nn_ckpt_tensor *const *)a, *y = *(nn_ckpt_tensor *const *)b;
    return (uint8_t *)x->data < (uint8_t *)y->data ? -1 : (uint8_t *)x->data > (uint8_t *)y->data;
}

static int parse(nn_ckpt *ck, const char *name, const uint8_t *buf, size_t len)
{
    if (memcmp(buf, magic, len < 8 ? len : 8) != 0 || len == 0) {
        /* a PyTorch state_dict saved as safetensors (8-byte header length, then its JSON) is
         * the likeliest wrong file: say what to do with it */
        if (len > 9 && buf[8] == '{' && get64(buf) > 1 && get64(buf) <= len - 8)
            return mp_err_set("%s: a safetensors file, not a magpie checkpoint (bad magic); convert it with magpie "
                              "model import FILE --out CKPT --mag M --size PX --mean a,b,c --std a,b,c",
                              name);
        return mp_err_set("%s: not a magpie checkpoint (bad magic)", name);
    }
    if (len < PREAMBLE) return mp_err_set("%s: truncated: %zu bytes, the preamble needs %d", name, len, PREAMBLE);
    uint32_t version = get32(buf + 8), flags = get32(buf + 12);
    if (version != NN_CKPT_VERSION)
        return mp_err_set("%s: unsupported checkpoint version %u (this build reads %d)", name, version, NN_CKPT_VERSION);
    uint64_t hlen = get64(buf + 16), nt = get64(buf + 24), table_off = get64(buf + 32), data_off = get64(buf + 40),
             file_len = get64(buf + 48);
    if ((flags & ~1u) || get32(buf + 60) != 0) return mp_err_set("%s: corrupt preamble (reserved bits set)", name);
    /* Bounds that only rule out overflow here; sizes against the file length come next, so a
     * truncated file is reported as truncated, not as corrupt. */
    if (nt > NN_CKPT_MAX_TENSORS && table_off == align_up(PREAMBLE + hlen, 8) && data_off == align_up(table_off + REC * nt, ALIGN))
        return mp_err_set("%s: declares %llu tensors (at most %d)", name, (unsigned long long)nt, NN_CKPT_MAX_TENSORS);
    if (hlen > NN_CKPT_MAX_HEADER || nt > NN_CKPT_MAX_TENSORS || table_off != align_up(PREAMBLE + hlen, 8) ||
        data_off != align_up(table_off + REC * nt, ALIGN))
        return mp_err_set("%s: corrupt preamble (header %llu bytes, %llu tensors, table at %llu, data at %llu)", name,
                          (unsigned long long)hlen, (unsigned long long)nt, (unsigned long long)table_off,
                          (unsigned long long)data_off);
    if (data_off > len)
        return mp_err_set("%s: truncated: header and tensor table need bytes 0..%llu, file has %zu", name,
                          (unsigned long long)data_off, len);
    uint32_t crc = mp_crc32(mp_crc32(0, buf, 56), buf + PREAMBLE, data_off - PREAMBLE);
    if (crc != get32(buf + 56))
        return mp_err_set("%s: header CRC mismatch (stored %08x, computed %08x)", name, get32(buf + 56), crc);
    for (uint64_t i = PREAMBLE + hlen; i < table_off; i++)
        if (buf[i]) return mp_err_set("%s: corrupt header padding", name);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + PREAMBLE, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return mp_err_set("%s: malformed header: %s", name, jerr.text);
    int rc = json_is_object(root) ? 0 : mp_err_set("%s: malformed header: not an object", name);
    json_t *jm = json_object_get(root, "meta"), *jt = json_object_get(root, "train");
    if (!rc && !jm) rc = mp_err_set("%s: malformed header: no \"meta\"", name);
    if (!rc && !!jt != (flags & 1)) rc = mp_err_set("%s: malformed header: \"train\" disagrees with the flags", name);
    if (!rc) rc = kv_load(name, jm, "meta", &ck->meta, &ck->nmeta, &ck->idx_meta);
    if (!rc && jt) rc = kv_load(name, jt, "train", &ck->train, &ck->ntrain, &ck->idx_train);
    json_decref(root);
    if (rc) return -1;
    ck->has_train = (int)(flags & 1);

    uint64_t dlen_decl = file_len >= data_off ? file_len - data_off : 0;
    /* 2^48 bytes bounds every size product below against overflow */
    if (file_len < data_off || file_len > (1ull << 48))
        return mp_err_set("%s: corrupt preamble (file length %llu)", name, (unsigned long long)file_len);
    ck->cap = nt ? (int)nt : 1;
    ck->t = mp_xcalloc((size_t)ck->cap, sizeof *ck->t);
    for (uint64_t i = 0; i < nt; i++) {
        const uint8_t *r = buf + table_off + REC * i;
        nn_ckpt_tensor *t = &ck->t[i];
        if (!memchr(r, 0, 96) || !r[0]) return mp_err_set("%s: tensor #%llu: bad name", name, (unsigned long long)i);
        memcpy(t->name, r, 96);
        for (size_t k = strlen(t->name); k < 96; k++)
            if (r[k]) return mp_err_set("%s: tensor %s: corrupt name padding", name, t->name);
        uint32_t dt = get32(r + 96), nd = get32(r + 100);
        if (!nn_dtype_size((nn_dtype)dt)) return mp_err_set("%s: tensor %s: unknown dtype %u", name, t->name, dt);
        if (nd > NN_MAX_DIM) return mp_err_set("%s: tensor %s: %u dimensions", name, t->name, nd);
        t->dtype = (nn_dtype)dt;
        t->ndim = (int)nd;
        for (int d = 0; d < NN_MAX_DIM; d++) {
            uint64_t s = get64(r + 104 + 8 * d);
            if (d >= t->ndim ? s != 0 : s > (uint64_t)INT64_MAX)
                return mp_err_set("%s: tensor %s: bad shape", name, t->name);
            if (d < t->ndim) t->shape[d] = (int64_t)s;
        }
        int64_t numel = nn_numel(t->ndim, t->shape);
        uint64_t off = get64(r + 136), nb = get64(r + 144);
        if (numel < 0 || (uint64_t)numel > dlen_decl / nn_dtype_size(t->dtype) + 1 ||
            nb != (uint64_t)numel * nn_dtype_size(t->dtype))
            return mp_err_set("%s: tensor %s: size %llu bytes does not match its shape and dtype", name, t->name,
                              (unsigned long long)nb);
        if (r[156] > 1 || r[157] || r[158] || r[159])
            return mp_err_set("%s: tensor %s: corrupt table record", name, t->name);
        if (off % ALIGN || off > dlen_decl || nb > dlen_decl - off)
            return mp_err_set("%s: tensor %s: bytes %llu..%llu lie outside the data area (%llu bytes)", name, t->name,
                              (unsigned long long)(data_off + off), (unsigned long long)(data_off + off + nb),
                              (unsigned long long)dlen_decl);
        if (tensor_exists(ck, t->name)) return mp_err_set("%s: duplicate tensor %s", name, t->name);
        t->numel = (size_t)numel;
        t->nbytes = (size_t)nb;
        t->section = r[156];
        mp_strindex_add(&ck->idx_t[t->section], ck->n, tensor_name, ck);
        /* Offset into buf: the file buffer is kept, tensors point into it. */
        t->data = (uint8_t *)buf + data_off + off;
        ck->n++;
    }
    /* Ranges in file order: no overlap, zero padding between, the last ends at file_len. */
    nn_ckpt_tensor **order = mp_xcalloc((size_t)ck->n + 1, sizeof *order);
    for (int i = 0; i < ck->n; i++) order[i] = &ck->t[i];
    qsort(order, (size_t)ck->n, sizeof *order, by_offset);
    uint64_t at = data_off;
    rc = 0;
    for (int i = 0; i < ck->n && !rc; i++) {
        uint64_t b = (uint64_t)((uint8_t *)order[i]->data - buf), e = b + order[i]->nbytes;
        if (b < at) rc = mp_err_set("%s: tensor %s overlaps tensor %s", name, order[i]->name, order[i - 1]->name);
        else if (e > len)
            rc = mp_err_set("%s: truncated: tensor %s needs bytes %llu..%llu, file has %zu", name, order[i]->name,
                            (unsigned long long)b, (unsigned long long)e, len);
        for (uint64_t k = at; !rc && k < b; k++)
            if (buf[k]) rc = mp_err_set("%s: corrupt padding before tensor %s", name, order[i]->name);
        at = e;
    }
    free(order);
    if (rc) return -1;
    if (at != file_len)
        return mp_err_set("%s: corrupt preamble (file length %llu, tensors end at %llu)", name,
                          (unsigned long long)file_len, (unsigned long long)at);
    if (len < file_len)
        return mp_err_set("%s: truncated: file has %zu bytes, the checkpoint is %llu", name, len, (unsigned long long)file_len);
    if (len > file_len)
        return mp_err_set("%s: %llu unexpected bytes after the data", name, (unsigned long long)(len - file_len));
    for (int i = 0; i < ck->n; i++) {
        uint32_t c = mp_crc32(0, ck->t[i].data, ck->t[i].nbytes), s = get32(buf + table_off + REC * (uint64_t)i + 152);
        if (c != s)
            return mp_err_set("%s: CRC mismatch in tensor %s (stored %08x, computed %08x)", name, ck->t[i].name, s, c);
    }
    return 0;
}

int nn_ckpt_parse(nn_ckpt *ck, const char *name, uint8_t *buf, size_t len)
{
    memset(ck, 0, sizeof *ck);
    ck->buf = buf;
    ck->path = mp_xstrdup(name);
    if (parse(ck, name, buf, len) != 0) {
        nn_ckpt_free(ck);
        return -1;
    }
    return 0;
}

int nn_ckpt_load(nn_ckpt *ck, const char *path)
{
    uint8_t *buf;
    size_t len;
    memset(ck, 0, sizeof *ck);
    if (mp_read_file(path, &buf, &len) != 0) return -1;
    return nn_ckpt_parse(ck, path, buf, len);
}
