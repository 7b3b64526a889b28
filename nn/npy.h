/* nn/npy.h — NumPy .npy files (format versions 1.0 and 2.0), the batch format of
 * `magpie model run/grad`. Only what a model consumes or produces: little-endian float32,
 * int64 and int32 in C order; anything else is refused with a message that says why.
 * -1 + mp_err "PATH: reason" on failure; a read array owns its data (nn_npy_free). Any thread. */
#ifndef NN_NPY_H
#define NN_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "nn/dtype.h"

#define NN_NPY_MAX_DIM 8

typedef struct {
    nn_dtype dtype; /* NN_F32, NN_I64 or NN_I32 */
    int ndim;
    int64_t shape[NN_NPY_MAX_DIM];
    size_t numel;
    void *data;     /* owned; numel elements of dtype */
} nn_npy;

/* Read PATH. -1 + mp_err ("x.npy: reason") on any problem. */
int nn_npy_read(const char *path, nn_npy *out);
/* Parse an in-memory file; name is used in messages only. */
int nn_npy_parse(const char *name, const uint8_t *buf, size_t len, nn_npy *out);
/* Write atomically (temp file, fsync, rename). dtype must be NN_F32, NN_I64 or NN_I32. */
int nn_npy_write(const char *path, nn_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* The header of an array written piece by piece (e.g. a dataset export too large to hold): the
 * bytes before the data, padded to 64; dtype NN_F32, NN_I64, NN_I32 or NN_U8 ('|u1', written
 * only: the reader takes what a model consumes). Returns its length (<= cap), or -1 + mp_err. */
int nn_npy_header(const char *path, nn_dtype dtype, int ndim, const int64_t *shape, uint8_t *out, size_t cap);
void nn_npy_free(nn_npy *a); /* accepts a zeroed struct */

#endif
