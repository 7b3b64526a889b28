/* nn/gemm.c — the only file that includes cblas.h (OpenBLAS, pthread build).
 * Thin on purpose: callers pass row-major shapes; degenerate sizes are no-ops so ops never
 * need a special case for empty tensors. */
#include "nn/gemm.h"

#include <cblas.h>

static int g_threads = 1;

void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* BLAS would leave C untouched only for beta == 1; keep the maths exact */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

void nn_set_threads(int n)
{
    if (n < 1) n = 1;
    g_threads = n;
    openblas_set_num_threads(n);
}

int nn_get_threads(void) { return g_threads; }

void nn_gemm_blas_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

/* Exported by OpenBLAS's pthread server (its fork handler calls it); not in cblas.h. */
extern int blas_thread_shutdown_(void);

void nn_blas_park(void) { blas_thread_shutdown_(); }
