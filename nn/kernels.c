/* nn/kernels.c — which kernel level the ops run (nn_kernels in ops.h): the CPU's best, or a lower
 * one forced by MAGPIE_KERNELS or nn_kernels_set. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "nn/level.h"

int nn_level_current = -1;
static int g_cpu = -1;
static pthread_once_t g_level_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"generic", "avx2", "avx512"};

const char *nn_kernels_name(nn_kernels k) { return k >= 0 && k <= NN_KERNELS_AVX512 ? level_names[k] : "?"; }

static int cpu_best(void)
{
#if NN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return NN_KERNELS_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NN_KERNELS_AVX2;
#endif
    return NN_KERNELS_GENERIC;
}

/* MAGPIE_KERNELS is a tuning knob, not a command's input: a bad value warns and runs on */
static void level_init(void)
{
    int cpu = cpu_best(), lv = cpu;
    const char *e = getenv("MAGPIE_KERNELS");
    if (e && *e && strcmp(e, "auto")) {
        int want = -1;
        for (int k = 0; k <= NN_KERNELS_AVX512; k++)
            if (!strcmp(e, level_names[k])) want = k;
        if (want < 0)
            mp_warn("MAGPIE_KERNELS=%s is not avx512, avx2, generic or auto: using %s", e, level_names[cpu]);
        else if (want > cpu)
            mp_warn("MAGPIE_KERNELS=%s: this CPU (or build) runs %s at most: using %s", e, level_names[cpu],
                    level_names[cpu]);
        else
            lv = want;
    }
    __atomic_store_n(&g_cpu, cpu, __ATOMIC_RELAXED);
    __atomic_store_n(&nn_level_current, lv, __ATOMIC_RELEASE);
}

int nn_level_init(void)
{
    pthread_once(&g_level_once, level_init);
    return __atomic_load_n(&nn_level_current, __ATOMIC_ACQUIRE);
}
nn_kernels nn_kernels_level(void) { return (nn_kernels)level(); }

nn_kernels nn_kernels_cpu(void)
{
    level();
    return (nn_kernels)__atomic_load_n(&g_cpu, __ATOMIC_RELAXED);
}

nn_kernels nn_kernels_set(nn_kernels k)
{
    int cpu = nn_kernels_cpu(), v = k < NN_KERNELS_GENERIC ? NN_KERNELS_GENERIC : k > cpu ? cpu : (int)k;
    __atomic_store_n(&nn_level_current, v, __ATOMIC_RELEASE);
    return (nn_kernels)v;
}
