/* nn/dtype.c — sizes, names and float conversion of file tensor types. */
#include "nn/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[NN_DTYPE_COUNT] = {
    [NN_F32] = {"F32", 4}, [NN_F64] = {"F64", 8}, [NN_F16] = {"F16", 2}, [NN_BF16] = {"BF16", 2},
    [NN_I64] = {"I64", 8}, [NN_I32] = {"I32", 4}, [NN_U64] = {"U64", 8}, [NN_U8] = {"U8", 1},
    [NN_BOOL] = {"BOOL", 1},
};

size_t nn_dtype_size(nn_dtype t)
{
    return (unsigned)t < NN_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *nn_dtype_name(nn_dtype t)
{
    return (unsigned)t < NN_DTYPE_COUNT ? dtypes[t].name : "?";
}

int nn_dtype_parse(const char *s)
{
    for (int i = 0; i < NN_DTYPE_COUNT; i++)
        if (!strcmp(s, dtypes[i].name)) return i;
    return -1;
}

static float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 1024)) {
                man <<= 1;
                exp--;
            }
            bits = sign | exp << 23 | (man & 1023) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void nn_dtype_to_f32(float *dst, const void *src, nn_dtype t, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) {
        switch (t) {
        case NN_F32: memcpy(&dst[i], s + 4 * i, 4); break;
        case NN_F64: { double d; memcpy(&d, s + 8 * i, 8); dst[i] = (float)d; break; }
        case NN_F16: { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = half_to_f32(h); break; }
        case NN_BF16: { uint16_t h; memcpy(&h, s + 2 * i, 2); uint32_t b = (uint32_t)h << 16; memcpy(&dst[i], &b, 4); break; }
        case NN_I64: { int64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; break; }
        case NN_I32: { int32_t v; memcpy(&v, s + 4 * i, 4); dst[i] = (float)v; break; }
        case NN_U64: { uint64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; break; }
        case NN_U8: case NN_BOOL: dst[i] = (float)s[i]; break;
        default: dst[i] = 0; break;
        }
    }
}

int64_t nn_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}
