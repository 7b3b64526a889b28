/* nn/gemm.h — the engine's single door to BLAS: a row-major sgemm and BLAS thread control.
 * Only nn/gemm.c includes cblas.h, so swapping the BLAS (or adding a hand kernel) touches
 * one file. */
#ifndef NN_GEMM_H
#define NN_GEMM_H

/* C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C, all row-major.
 * ta/tb != 0 means the stored matrix is transposed (A stored K×M, B stored N×K). */
void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* BLAS threads (OpenBLAS pthread build). n < 1 is taken as 1. */
void nn_set_threads(int n);
int nn_get_threads(void);

#endif
