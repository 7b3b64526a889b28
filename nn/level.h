/* nn/level.h — inside nn (not a door): the kernel level the op files switch on (see
 * nn_kernels in ops.h) and NN_VEC_FN, which compiles a loop once per level. x86-64 builds carry
 * three levels of the hot loops: hand-written AVX-512 / AVX2 kernels for a few small-map paths,
 * and every NN_VEC_FN loop compiled three times (AVX-512F, AVX2+FMA, baseline) behind a switch
 * on the level. The baseline build targets plain x86-64. Not under the sanitizers, which do not
 * need the speed. */
#ifndef NN_LEVEL_H
#define NN_LEVEL_H

#include <string.h>

#include "nn/ops.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define NN_X86 1
#include <immintrin.h>
#else
#define NN_X86 0
#endif

extern int nn_level_current; /* -1 until the first op reads MAGPIE_KERNELS (kernels.c) */
int nn_level_init(void);

static inline int level(void)
{
    int v = __atomic_load_n(&nn_level_current, __ATOMIC_ACQUIRE);
    if (__builtin_expect(v < 0, 0)) v = nn_level_init();
    return v;
}

/* NN_VEC_FN(storage, type, name, (params), (args), extra attributes) { body }: the body becomes
 * an always_inline name_i, compiled into one function per level, and name switches on the
 * level. Helpers a body calls should be always_inline too (or the _i of another NN_VEC_FN), so
 * they are compiled for the caller's level rather than dispatched again. */
#if NN_X86
#define NN_VEC_FN(sc, ret, name, params, args, extra)                                                         \
    static inline __attribute__((always_inline)) extra ret name##_i params;                                  \
    __attribute__((target("avx512f"))) extra static ret name##_avx512 params { return name##_i args; }      \
    __attribute__((target("avx2,fma"))) extra static ret name##_avx2 params { return name##_i args; }       \
    extra static ret name##_generic params { return name##_i args; }                                        \
    sc ret name params                                                                                       \
    {                                                                                                        \
        switch (level()) {                                                                                   \
        case NN_KERNELS_AVX512: return name##_avx512 args;                                                   \
        case NN_KERNELS_AVX2: return name##_avx2 args;                                                       \
        default: return name##_generic args;                                                                 \
        }                                                                                                    \
    }                                                                                                        \
    static inline __attribute__((always_inline)) extra ret name##_i params
#else
#define NN_VEC_FN(sc, ret, name, params, args, extra) \
    static inline ret name##_i params;              \
    sc ret name params { return name##_i args; }   \
    static inline ret name##_i params
#endif

/* Sums use 16 float lanes (a fixed order, so results are deterministic and vectorise without
 * -ffast-math), folded into double per call. */
#define LANES 16

/* The lane sums spelt as GCC vectors: the scalar-array form was left as 16 scalar accumulators
 * (vaddss/vfmadd231ss) by the vectoriser. Same lanes, same order, same results. */
typedef float vf16 __attribute__((vector_size(4 * LANES)));
typedef int vi16 __attribute__((vector_size(4 * LANES)));
/* unaligned load (a macro: a function returning vf16 would change the ABI between clones) */
#define VLOAD(p) (__extension__({                                                                                  \
    vf16 v_;                                                                                                       \
    memcpy(&v_, (p), sizeof v_);                                                                                   \
    v_;                                                                                                            \
}))

#endif
