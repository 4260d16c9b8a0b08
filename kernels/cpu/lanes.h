/* What the training kernels share: reductions in LANES separate double partial sums, and one
 * body compiled twice.
 *
 * A reduction keeps LANES partial sums (value i of a call goes to lane i % LANES, in index order),
 * combined by lanes_total in a fixed tree. Each kernel's body is written once (an always-inline
 * function) and compiled for the baseline ISA and, on x86-64, with AVX-512 (a `target`
 * attribute); the public function (DISPATCH / DISPATCH_VOID) picks the latter when the CPU has it
 * (`__builtin_cpu_supports`). The compiler maps the lanes onto vector registers without
 * reordering any sum (ISO C mode: no floating-point contraction or reassociation), so both builds
 * return the same bits and a result depends only on the data and its length. */
#ifndef SENET_LANES_H
#define SENET_LANES_H
#include <stddef.h>
#include <string.h>

#define LANES 16
#define INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX512_BUILD 1
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
static inline int use_avx512(void) { return __builtin_cpu_supports("avx512f"); }
#else
#define HAVE_AVX512_BUILD 0
#endif

/* The sum of the LANES partial sums, as a balanced tree in lane order. */
INLINE double lanes_total(const double *s) {
    double t[LANES / 2];
    for (int j = 0; j < LANES / 2; j++) t[j] = s[2 * j] + s[2 * j + 1];
    for (int w = LANES / 4; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) t[j] = t[2 * j] + t[2 * j + 1];
    return t[0];
}

/* Eight floats / doubles / ints in one GCC vector (two SSE registers in the baseline build, one
 * AVX-512 register in the other): the 16 lanes of the backward reduction as two of each. */
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

/* v = the 8 floats at ptr (unaligned). */
#define LOAD8(v, ptr) memcpy(&(v), (ptr), sizeof(v))

/* The baseline and the AVX-512 build of each body, and the public function choosing one
 * (DISPATCH_VOID for the bodies without a result). */
#if HAVE_AVX512_BUILD
#define DISPATCH(ret, name, params, args)                                                         \
    static ret name##_base params { return name##_body args; }                                    \
    AVX512 static ret name##_avx512 params { return name##_body args; }                           \
    ret senet_##name params { return use_avx512() ? name##_avx512 args : name##_base args; }
#define DISPATCH_VOID(name, params, args)                                                         \
    static void name##_base params { name##_body args; }                                          \
    AVX512 static void name##_avx512 params { name##_body args; }                                 \
    void senet_##name params {                                                                    \
        if (use_avx512())                                                                         \
            name##_avx512 args;                                                                   \
        else                                                                                      \
            name##_base args;                                                                     \
    }
#else
#define DISPATCH(ret, name, params, args)                                                         \
    ret senet_##name params { return name##_body args; }
#define DISPATCH_VOID(name, params, args)                                                         \
    void senet_##name params { name##_body args; }
#endif

#endif
