/* nn/npy.c — .npy reader/writer. The header is a Python dict literal, so it gets its own
 * small strict parser (three known keys, string/bool/tuple values); no JSON library applies. */
#include "nn/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string ('...' or "..."), no escapes (none occur in npy headers). */
static int parse_str(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (n + 1 >= cap) return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[n] = 0;
    return 0;
}

static int parse_header(const char *name, const char *h, size_t hlen, char *descr, int *fortran, int *ndim,
                        int64_t *shape)
{
    cursor c = {h, h + hlen};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!eat(&c, '{')) return mp_err_set("%s: malformed .npy header: expected '{'", name);
    for (;;) {
        if (eat(&c, '}')) break;
        char key[32];
        if (parse_str(&c, key, sizeof key) != 0 || !eat(&c, ':'))
            return mp_err_set("%s: malformed .npy header: expected 'key':", name);
        if (!strcmp(key, "descr")) {
            if (parse_str(&c, descr, 16) != 0) return mp_err_set("%s: malformed .npy header: bad descr", name);
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            skip_ws(&c);
            if (c.end - c.p >= 4 && !memcmp(c.p, "True", 4)) {
                *fortran = 1;
                c.p += 4;
            } else if (c.end - c.p >= 5 && !memcmp(c.p, "False", 5)) {
                *fortran = 0;
                c.p += 5;
            } else {
                return mp_err_set("%s: malformed .npy header: bad fortran_order", name);
            }
            have_fortran = 1;
        } else if (!strcmp(key, "shape")) {
            if (!eat(&c, '(')) return mp_err_set("%s: malformed .npy header: bad shape", name);
            *ndim = 0;
            while (!eat(&c, ')')) {
                skip_ws(&c);
                int64_t v = 0;
                int digits = 0;
                while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
                    if (v > (INT64_MAX - 9) / 10) return mp_err_set("%s: malformed .npy header: huge dimension", name);
                    v = v * 10 + (*c.p++ - '0');
                    digits++;
                }
                if (c.p < c.end && *c.p == 'L') c.p++; /* Python 2 longs */
                if (!digits) return mp_err_set("%s: malformed .npy header: bad shape", name);
                if (*ndim == NN_NPY_MAX_DIM)
                    return mp_err_set("%s: more than %d dimensions", name, NN_NPY_MAX_DIM);
                shape[(*ndim)++] = v;
                if (!eat(&c, ',')) {
                    if (!eat(&c, ')')) return mp_err_set("%s: malformed .npy header: bad shape", name);
                    break;
                }
            }
            have_shape = 1;
        } else {
            return mp_err_set("%s: malformed .npy header: unknown key '%s'", name, key);
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return mp_err_set("%s: malformed .npy header: expected ',' or '}'", name);
            break;
        }
    }
    if (!have_descr || !have_fortran || !have_shape)
        return mp_err_set("%s: malformed .npy header: needs descr, fortran_order and shape", name);
    return 0;
}

int nn_npy_parse(const char *name, const uint8_t *buf, size_t len, nn_npy *out)
{
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, magic, 6) != 0) return mp_err_set("%s: not a .npy file (bad magic)", name);
    int major = buf[6], minor = buf[7];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (major == 3) return mp_err_set("%s: .npy version 3.0 (utf-8 header) not supported", name);
        if (len < 12) return mp_err_set("%s: truncated .npy header", name);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return mp_err_set("%s: unsupported .npy version %d.%d", name, major, minor);
    }
    if (hlen > len - hstart)
        return mp_err_set("%s: truncated .npy header: needs %zu bytes, file has %zu", name, hstart + hlen, len);
    char descr[16] = "";
    int fortran = 0, ndim = 0;
    int64_t shape[NN_NPY_MAX_DIM];
    if (parse_header(name, (const char *)buf + hstart, hlen, descr, &fortran, &ndim, shape) != 0) return -1;
    nn_dtype dt;
    if (!strcmp(descr, "<f4")) dt = NN_F32;
    else if (!strcmp(descr, "<i8")) dt = NN_I64;
    else if (!strcmp(descr, "<i4")) dt = NN_I32;
    else
        return mp_err_set("%s: dtype '%s' not supported (float32 '<f4', int64 '<i8' or int32 '<i4')", name, descr);
    if (fortran) return mp_err_set("%s: Fortran-order array not supported (save a C-contiguous array)", name);
    int64_t numel = nn_numel(ndim, shape);
    size_t es = nn_dtype_size(dt), data_at = hstart + hlen;
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / es) return mp_err_set("%s: shape too large", name);
    size_t need = (size_t)numel * es;
    if (len - data_at < need)
        return mp_err_set("%s: truncated: data needs %zu bytes, file has %zu", name, need, len - data_at);
    if (len - data_at > need)
        return mp_err_set("%s: %zu trailing bytes after the data", name, len - data_at - need);
    out->data = malloc(need ? need : 1);
    if (!out->data) return mp_err_set("%s: out of memory (%zu bytes)", name, need);
    memcpy(out->data, buf + data_at, need);
    out->dtype = dt;
    out->ndim = ndim;
    memcpy(out->shape, shape, sizeof(int64_t) * (size_t)ndim);
    out->numel = (size_t)numel;
    return 0;
}

int nn_npy_read(const char *path, nn_npy *out)
{
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (mp_read_file(path, &buf, &len) != 0) return -1;
    int rc = nn_npy_parse(path, buf, len, out);
    free(buf);
    return rc;
}

int nn_npy_header(const char *path, nn_dtype dtype, int ndim, const int64_t *shape, uint8_t *out, size_t cap)
{
    const char *descr = dtype == NN_F32 ? "<f4" : dtype == NN_I64 ? "<i8" : dtype == NN_I32 ? "<i4"
                      : dtype == NN_U8  ? "|u1" : NULL;
    if (!descr) return mp_err_set("%s: cannot write dtype %s to .npy", path, nn_dtype_name(dtype));
    if (ndim < 0 || ndim > NN_NPY_MAX_DIM) return mp_err_set("%s: %d dimensions", path, ndim);
    if (nn_numel(ndim, shape) < 0) return mp_err_set("%s: bad shape", path);
    char h[512];
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    /* numpy's spelling: "(3,)", "(2, 3)", "()" */
    for (int i = 0; i < ndim; i++)
        n += snprintf(h + n, sizeof h - (size_t)n, "%lld%s", (long long)shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
    n += snprintf(h + n, sizeof h - (size_t)n, "), }");
    /* Pad with spaces so the data starts on a 64-byte boundary; the header ends in '\n'. */
    size_t total = ((size_t)10 + (size_t)n + 1 + 63) & ~(size_t)63;
    size_t hlen = total - 10;
    if (total > cap) return mp_err_set("%s: .npy header too long", path);
    memcpy(out, magic, 6);
    out[6] = 1;
    out[7] = 0;
    out[8] = (uint8_t)(hlen & 255);
    out[9] = (uint8_t)(hlen >> 8);
    memcpy(out + 10, h, (size_t)n);
    memset(out + 10 + n, ' ', hlen - (size_t)n - 1);
    out[total - 1] = '\n';
    return (int)total;
}

int nn_npy_write(const char *path, nn_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    uint8_t head[640];
    int total = nn_npy_header(path, dtype, ndim, shape, head, sizeof head);
    if (total < 0) return -1;
    size_t dbytes = (size_t)nn_numel(ndim, shape) * nn_dtype_size(dtype);
    uint8_t *buf = malloc((size_t)total + dbytes);
    if (!buf) return mp_err_set("%s: out of memory", path);
    memcpy(buf, head, (size_t)total);
    if (dbytes) memcpy(buf + total, data, dbytes);
    int rc = mp_write_file_atomic(path, buf, (size_t)total + dbytes);
    free(buf);
    return rc;
}

void nn_npy_free(nn_npy *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
