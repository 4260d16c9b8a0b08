/* What both Winograd transform files (winograd_avx512.c, F(4x4, 3x3); winograd2_avx512.c,
 * F(2x2, 3x3)) share before their transforms: the target attribute, short names of the
 * AVX-512 operations, and lane masks. Included by those two files only. */
#ifndef SENET_WINOGRAD_COMMON_H
#define SENET_WINOGRAD_COMMON_H
#include <immintrin.h>
#include "senet_kernels.h"
#include "sgemm_avx512.h"
#include "winograd_avx512.h"

#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define NR SENET_SGEMM_NR

#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps
#define MUL _mm512_mul_ps
#define FMA _mm512_fmadd_ps
#define SET1 _mm512_set1_ps

/* Lanes [0, n) of a 16-lane mask. */
static inline __mmask16 first_lanes(long n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* Lanes l of a 16-lane load at column c0 whose column c0 + l lies in [0, w). */
static inline __mmask16 inside(long c0, long w) {
    return (__mmask16)(first_lanes(w - c0) & ~first_lanes(-c0));
}

#endif
