/* nn/gemm.h — the engine's single door to BLAS: a row-major sgemm and BLAS thread control.
 * Only nn/gemm.c includes cblas.h, so swapping the BLAS (or adding a hand kernel) touches
 * one file.
 * nn_sgemm never fails and may be called from several threads at once; the thread settings below
 * are process-wide (set them from the main thread, before work starts). */
#ifndef NN_GEMM_H
#define NN_GEMM_H

/* C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C, all row-major.
 * ta/tb != 0 means the stored matrix is transposed (A stored K×M, B stored N×K). */
void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* The engine's thread count (OpenBLAS pthread build; no OpenMP anywhere). n < 1 is taken as 1.
 * Models created afterwards default to that many data-parallel workers (nn_model_set_workers),
 * and BLAS uses that many threads outside worker sections. */
void nn_set_threads(int n);
int nn_get_threads(void);
/* BLAS threads only, leaving nn_get_threads() alone: workers set 1 while they run. */
void nn_gemm_blas_threads(int n);
/* Mark the calling thread as running one share of a batch split (its GEMMs stay on one BLAS thread). */
void nn_gemm_in_share(int on);
/* Stop OpenBLAS's pool threads, which the library starts at load time and which spin for
 * ~0.1 s of CPU before they sleep. For commands that never call BLAS (tile, synth, db): on a
 * 2-core machine that spin takes a core from the real work. A later BLAS call restarts the
 * pool (OpenBLAS re-initialises it lazily, as after a fork). */
void nn_blas_park(void);

#endif
