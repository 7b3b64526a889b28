/* nn/dtype.h — element types of tensors that cross a file boundary (checkpoints, safetensors,
 * .npy). Compute is float32 throughout; the other types carry counters, labels, RNG states
 * and foreign files, and convert to float where a model needs them. */
#ifndef NN_DTYPE_H
#define NN_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NN_F32 = 0,
    NN_F64 = 1,
    NN_F16 = 2,
    NN_BF16 = 3,
    NN_I64 = 4,
    NN_I32 = 5,
    NN_U64 = 6,
    NN_U8 = 7,
    NN_BOOL = 8,
    NN_DTYPE_COUNT
} nn_dtype;

size_t nn_dtype_size(nn_dtype t);       /* bytes per element; 0 for an invalid value */
const char *nn_dtype_name(nn_dtype t);  /* safetensors spelling: "F32", "I64", ... */
int nn_dtype_parse(const char *s);      /* inverse of nn_dtype_name; -1 if unknown */
/* Convert n elements of type t at src (little-endian, any alignment) to float. */
void nn_dtype_to_f32(float *dst, const void *src, nn_dtype t, size_t n);
/* Product of dims with overflow check; -1 if a dim is negative or the product overflows. */
int64_t nn_numel(int ndim, const int64_t *shape);

#endif
