/* nn/safetensors.h — the safetensors format (8-byte little-endian header length, JSON header
 * {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, raw little-endian data),
 * the way PyTorch state_dicts move in and out of magpie.
 * -1 + mp_err "PATH: reason" on failure (a bad header names the tensor); a read file owns its
 * tensors (nn_st_free), lookups borrow them; writes are atomic (common/util.h). Any thread. */
#ifndef NN_SAFETENSORS_H
#define NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/strindex.h"
#include "nn/dtype.h"
#include "nn/params.h"

#define NN_ST_MAX_DIM 8
/* What a file may declare (the reader refuses more, in one line): tensors, metadata pairs, the
 * length of a name or key, of a metadata value. */
#define NN_ST_MAX_TENSORS 65536
#define NN_ST_MAX_META 65536
#define NN_ST_MAX_NAME 1024
#define NN_ST_MAX_VALUE (1 << 20)

typedef struct {
    char *name;
    nn_dtype dtype;
    int ndim;
    int64_t shape[NN_ST_MAX_DIM];
    size_t numel, nbytes;
    const uint8_t *data; /* borrowed from the file buffer; may be unaligned */
} nn_st_tensor;

typedef struct {
    uint8_t *buf; /* the whole file */
    size_t len;
    nn_st_tensor *t; /* in header order */
    int n;
    char **meta; /* key, value, key, value ... (nmeta pairs) */
    int nmeta;
    mp_strindex idx_t, idx_meta; /* name -> tensor, key -> pair */
} nn_st_file;

/* Read and validate PATH: header bounds, JSON, dtypes, shapes vs byte ranges, ranges inside
 * the data and not overlapping. -1 + mp_err ("x.safetensors: reason"). */
int nn_st_read(const char *path, nn_st_file *f);
/* Same on a buffer; takes ownership of buf (malloc'd) even on failure. */
int nn_st_parse(const char *name, uint8_t *buf, size_t len, nn_st_file *f);
const nn_st_tensor *nn_st_find(const nn_st_file *f, const char *name);
const char *nn_st_meta(const nn_st_file *f, const char *key); /* NULL if absent */
/* Copy a tensor to float (converting F64/F16/BF16/integers). dst holds t->numel floats. */
void nn_st_to_f32(const nn_st_tensor *t, float *dst);
void nn_st_free(nn_st_file *f); /* accepts a zeroed struct */

typedef struct {
    const char *name;
    nn_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} nn_st_entry;

/* Write n tensors (in that order) and optional metadata (meta: key, value, ..., NULL; may be
 * NULL) atomically. */
int nn_st_write(const char *path, const nn_st_entry *e, int n, const char *const *meta);
/* Write every entry of a parameter table as F32 under its PyTorch name: the values (grad = 0)
 * or the gradients of the trainable entries (grad = 1). */
int nn_st_write_params(const char *path, const nn_params *ps, int grad, const char *const *meta);

#endif
