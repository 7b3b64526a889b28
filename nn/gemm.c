/* nn/gemm.c — the only file that includes cblas.h (OpenBLAS, pthread build).
 * Thin on purpose: callers pass row-major shapes; degenerate sizes are no-ops so ops never
 * need a special case for empty tensors. */
#include "nn/gemm.h"

#include <cblas.h>

static int g_threads = 1;
static int g_blas_cur = -1;        /* what OpenBLAS was last told; set by the calling thread only */
static _Thread_local int tl_share; /* inside a batch share: GEMMs run on one BLAS thread */

void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* BLAS would leave C untouched only for beta == 1; keep the maths exact */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    if (!tl_share && g_blas_cur != g_threads) nn_gemm_blas_threads(g_threads);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Exported by OpenBLAS's pthread server (its fork handler calls it); not in cblas.h. */
extern int blas_thread_shutdown_(void);

/* OpenBLAS starts its threads in a library constructor (one per CPU unless OPENBLAS_NUM_THREADS
 * says otherwise), and openblas_set_num_threads starts them too; each then spins (sched_yield)
 * for about 0.1 s after it starts or finishes a job before it sleeps. magpie's compute runs in
 * nn/pool.c's shares on one BLAS thread each, so those spinning threads only took a CPU from
 * the pool's second worker during the first tenth of a second of every process. They are
 * stopped here; a GEMM outside the shares that wants more threads restarts them. */
void nn_set_threads(int n)
{
    if (n < 1) n = 1;
    g_threads = n;
    blas_thread_shutdown_();
    openblas_set_num_threads(1);
    g_blas_cur = 1;
}

int nn_get_threads(void) { return g_threads; }

/* Only when the count changes: every openblas_set_num_threads call reaches into the pool, and
 * restoring 2 threads after each batch of 1-thread worker GEMMs kept its idle threads spinning
 * (sched_yield) against the workers; the count now goes back up only before a GEMM that runs
 * outside the workers. */
void nn_gemm_blas_threads(int n)
{
    if (n < 1) n = 1;
    if (n == g_blas_cur) return;
    openblas_set_num_threads(n);
    g_blas_cur = n;
}

void nn_gemm_in_share(int on) { tl_share = on; }

void nn_blas_park(void) { blas_thread_shutdown_(); }
