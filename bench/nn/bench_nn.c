/* bench/nn/bench_nn.c — magpie's side of the NN speed benchmark: training steps (forward,
 * cross-entropy, backward, Adam) or inference forwards of ResNet-GN on one (size, batch,
 * threads) cell, or the OpenBLAS sgemm peak. Prints one JSON line; bench/nn/bench.py runs it
 * side by side with the PyTorch peer and writes the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/rng.h"
#include "nn/gemm.h"
#include "nn/losses.h"
#include "nn/model.h"
#include "nn/ops.h"
#include "nn/optim.h"

char *openblas_get_corename(void); /* OpenBLAS, not in cblas.h */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int gemm_peak(int threads, int n, int reps)
{
    nn_set_threads(threads);
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    nn_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double wall[64], cpu[64];
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
        double t = now(), t0 = cpu_now();
        nn_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        wall[r] = 2.0 * n * n * n / (now() - t) * 1e-9;
        cpu[r] = 2.0 * n * n * n / (cpu_now() - t0) * 1e-9;
    }
    printf("{\"gemm\": %d, \"threads\": %d, \"gflops\": [", n, threads);
    for (int r = 0; r < reps; r++) printf("%s%.2f", r ? ", " : "", wall[r]);
    printf("], \"gflops_cpu\": [");
    for (int r = 0; r < reps; r++) printf("%s%.2f", r ? ", " : "", cpu[r]);
    printf("]}\n");
    free(a), free(b), free(c);
    return 0;
}

int main(int argc, char **argv)
{
    int size = 224, batch = 32, threads = 1, steps = 3, train = 1, peak = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--infer")) train = 0;
        else if (!strcmp(argv[i], "--gemm-peak")) peak = 1;
        else {
            fprintf(stderr, "usage: bench_nn [--size S] [--batch B] [--threads T] [--steps K] [--infer] | --gemm-peak [--threads T]\n");
            return 1;
        }
    }
    if (peak) return gemm_peak(threads, 1536, steps);
    nn_set_threads(threads);
    nn_model_cfg cfg;
    nn_model_cfg_resnet_gn(&cfg, 2);
    nn_model *m = nn_model_create(&cfg, batch, size, size, train);
    if (!m) {
        fprintf(stderr, "bench_nn: %s\n", mp_err());
        return 2;
    }
    nn_model_init(m, 0);
    nn_model_freeze(m); /* as a model loaded for inference is (nn_model_from_ckpt); no-op when training */
    mp_rng r;
    mp_rng_seed(&r, 1);
    size_t nx = (size_t)batch * 3 * size * size;
    float *x = malloc(nx * 4), *dl = malloc((size_t)batch * 2 * 4);
    for (size_t i = 0; i < nx; i++) x[i] = (float)mp_rng_normal(&r);
    int32_t *y = malloc(batch * 4);
    for (int i = 0; i < batch; i++) y[i] = (int32_t)mp_rng_below(&r, 2);
    nn_optim o;
    memset(&o, 0, sizeof o);
    nn_optim_cfg oc = nn_optim_defaults(NN_OPT_ADAM);
    if (train && nn_optim_init(&o, nn_model_params(m), &oc)) {
        fprintf(stderr, "bench_nn: %s\n", mp_err());
        return 2;
    }
    printf("{\"size\": %d, \"batch\": %d, \"threads\": %d, \"mode\": \"%s\", \"flops\": %lld, \"sec\": [", size, batch,
           threads, train ? "train" : "infer", (long long)nn_model_flops(&cfg, size, size));
    if (steps > 100000) steps = 100000;
    double *cpu = malloc(sizeof(double) * (steps > 0 ? steps : 1));
    for (int s = -1; s < steps; s++) { /* step -1 is the warm-up, as in the peer */
        double t = now(), c = cpu_now();
        if (nn_model_forward(m, x, batch, size, size, train)) return 2;
        if (train) {
            memset(dl, 0, (size_t)batch * 2 * 4);
            nn_cross_entropy(dl, nn_model_logits(m), y, batch, 2, NULL, 0, 1.0f);
            if (nn_model_backward(m, dl, NULL)) return 2;
            nn_optim_step(&o);
        }
        t = now() - t;
        if (s >= 0) printf("%s%.5f", s ? ", " : "", t), cpu[s] = cpu_now() - c;
        fflush(stdout);
    }
    printf("], \"cpu\": [");
    for (int s = 0; s < steps; s++) printf("%s%.5f", s ? ", " : "", cpu[s]);
    /* the vector level the run used, the best this CPU has, and OpenBLAS's kernel family */
    printf("], \"kernels\": \"%s\", \"cpu_kernels\": \"%s\", \"blas_core\": \"%s\"}\n",
           nn_kernels_name(nn_kernels_level()), nn_kernels_name(nn_kernels_cpu()), openblas_get_corename());
    if (train) nn_optim_free(&o);
    nn_model_free(m);
    free(x), free(dl), free(y), free(cpu);
    return 0;
}
