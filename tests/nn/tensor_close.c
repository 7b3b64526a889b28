/* tests/nn/tensor_close.c — test helper for the model CLI script: compares two .npy files, or
 * two .safetensors files tensor by tensor (same names and shapes), elementwise
 * |a - b| <= atol + rtol·|b|. Prints the max difference; exit 0 close, 1 not, 2 unreadable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "nn/npy.h"
#include "nn/safetensors.h"

static double worst_abs, worst_rel;
static long bad;

static void cmp(const char *what, const float *a, const float *b, size_t n, double atol, double rtol)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst_abs) worst_abs = d;
        if (d / (fabs(b[i]) + 1e-12) > worst_rel && d > atol) worst_rel = d / (fabs(b[i]) + 1e-12);
        if (!(d <= atol + rtol * fabs(b[i]))) {
            if (bad++ < 5) fprintf(stderr, "%s[%zu]: %.9g vs %.9g\n", what, i, a[i], b[i]);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: tensor_close A B ATOL RTOL\n");
        return 2;
    }
    double atol = atof(argv[3]), rtol = atof(argv[4]);
    size_t la = strlen(argv[1]);
    if (la > 4 && !strcmp(argv[1] + la - 4, ".npy")) {
        nn_npy a, b;
        if (nn_npy_read(argv[1], &a) || nn_npy_read(argv[2], &b)) {
            fprintf(stderr, "%s\n", mp_err());
            return 2;
        }
        if (a.dtype != NN_F32 || b.dtype != NN_F32 || a.ndim != b.ndim ||
            memcmp(a.shape, b.shape, sizeof(int64_t) * (size_t)a.ndim)) {
            fprintf(stderr, "%s and %s differ in dtype or shape\n", argv[1], argv[2]);
            return 1;
        }
        cmp("npy", a.data, b.data, a.numel, atol, rtol);
        nn_npy_free(&a);
        nn_npy_free(&b);
    } else {
        nn_st_file a, b;
        if (nn_st_read(argv[1], &a) || nn_st_read(argv[2], &b)) {
            fprintf(stderr, "%s\n", mp_err());
            return 2;
        }
        if (a.n != b.n) {
            fprintf(stderr, "%d tensors vs %d\n", a.n, b.n);
            return 1;
        }
        for (int i = 0; i < b.n; i++) {
            const nn_st_tensor *x = nn_st_find(&a, b.t[i].name), *y = &b.t[i];
            if (!x || x->ndim != y->ndim || memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)y->ndim)) {
                fprintf(stderr, "tensor %s missing or shaped differently\n", y->name);
                return 1;
            }
            float *fa = malloc(x->numel * 4 + 4), *fb = malloc(y->numel * 4 + 4);
            nn_st_to_f32(x, fa);
            nn_st_to_f32(y, fb);
            cmp(y->name, fa, fb, y->numel, atol, rtol);
            free(fa);
            free(fb);
        }
        nn_st_free(&a);
        nn_st_free(&b);
    }
    printf("max abs diff %.3g%s\n", worst_abs, bad ? " — NOT within tolerance" : "");
    return bad ? 1 : 0;
}
